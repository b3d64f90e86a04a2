"""The gpte CLI: encode from every input format to .npy/.parquet, refusals, crash safety, info."""

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SENTENCES

from gpte import Embedder
from gpte.cli import main
from gpte.data.readers import read_texts


@pytest.fixture(scope="module")
def bert_vectors(tiny_models):
    return Embedder.load(tiny_models["bert"]).encode(SENTENCES)


def _write_inputs(folder):
    (folder / "texts.txt").write_text("\n".join(SENTENCES) + "\n")
    (folder / "texts.jsonl").write_text(
        "".join(json.dumps({"id": i, "body": t}) + "\n" for i, t in enumerate(SENTENCES))
    )
    (folder / "texts.csv").write_text("id,body\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(SENTENCES)))
    pq.write_table(pa.table({"body": SENTENCES}), folder / "texts.parquet")


@pytest.mark.parametrize(
    "source, field", [("texts.txt", None), ("texts.jsonl", "body"), ("texts.csv", "body"), ("texts.parquet", "body")]
)
@pytest.mark.parametrize("target", ["out.npy", "out.parquet"])
def test_encode_every_format(tiny_models, bert_vectors, tmp_path, capsys, source, field, target):
    _write_inputs(tmp_path)
    args = [
        "encode",
        str(tmp_path / source),
        "-o",
        str(tmp_path / target),
        "--model",
        str(tiny_models["bert"]),
        "--no-progress",
    ]
    assert main(args + (["--field", field] if field else [])) == 0
    if target.endswith(".npy"):
        written = np.load(tmp_path / target)
    else:
        written = np.stack(pq.read_table(tmp_path / target).column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(written, bert_vectors, atol=1e-6)
    assert f"wrote {len(SENTENCES)} vectors of 32 float32 values" in capsys.readouterr().out


def test_encode_options_reach_the_embedder(tiny_models, tmp_path):
    _write_inputs(tmp_path)
    out = tmp_path / "bits.npy"
    assert (
        main(
            [
                "encode",
                str(tmp_path / "texts.txt"),
                "-o",
                str(out),
                "--model",
                str(tiny_models["bert"]),
                "--truncate-dim",
                "16",
                "--precision",
                "ubinary",
                "--no-progress",
            ]
        )
        == 0
    )
    assert np.load(out).shape == (len(SENTENCES), 2) and np.load(out).dtype == np.uint8


def test_existing_output_is_refused_unless_overwrite(tiny_models, tmp_path, capsys):
    _write_inputs(tmp_path)
    out = tmp_path / "out.npy"
    out.write_bytes(b"precious")
    args = ["encode", str(tmp_path / "texts.txt"), "-o", str(out), "--model", str(tiny_models["bert"]), "--no-progress"]
    assert main(args) == 1
    assert "already exists; pass overwrite=True (CLI: --overwrite)" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert main(args + ["--overwrite"]) == 0 and np.load(out).shape == (len(SENTENCES), 32)


def _encode_args(tiny_models, folder):
    return [
        "encode",
        str(folder / "texts.txt"),
        "-o",
        str(folder / "out.npy"),
        "--model",
        str(tiny_models["bert"]),
        "--no-progress",
    ]


def test_an_interrupt_during_encoding_leaves_no_file(tiny_models, tmp_path, monkeypatch):
    _write_inputs(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Embedder, "encode_with_report", interrupted)
    assert main(_encode_args(tiny_models, tmp_path)) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_crash_while_writing_leaves_no_file_under_the_final_name(tiny_models, tmp_path, monkeypatch):
    from gpte.runtime import streaming

    _write_inputs(tmp_path)
    real_write = streaming._PartialFile.write_chunk

    def failing_write(self, number, vectors):
        real_write(self, number, vectors[:2])  # part of the chunk is on disk when the crash comes
        raise OSError("disk full")

    monkeypatch.setattr(streaming._PartialFile, "write_chunk", failing_write)
    with pytest.raises(OSError, match="disk full"):
        main(_encode_args(tiny_models, tmp_path) + ["--chunk-size", "4"])
    assert not (tmp_path / "out.npy").exists()
    monkeypatch.undo()
    assert main(_encode_args(tiny_models, tmp_path) + ["--chunk-size", "4"]) == 0  # the partial file is not trusted
    np.testing.assert_allclose(
        np.load(tmp_path / "out.npy"), Embedder.load(tiny_models["bert"]).encode(SENTENCES), atol=1e-5
    )
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_bad_inputs_name_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": broken}\n')
    assert main(["encode", str(bad), "-o", str(tmp_path / "o.npy")]) == 1
    assert f"{bad}:2: not valid JSON" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"bad.jsonl:1: no field 'body' \(fields: text\)"):
        read_texts(bad, "body")
    nums = tmp_path / "nums.jsonl"
    nums.write_text('{"text": 5}\n')
    with pytest.raises(ValueError, match="nums.jsonl:1: the text is int, not a string"):
        read_texts(nums)
    with pytest.raises(ValueError, match="unsupported input format '.docx'"):
        (tmp_path / "a.docx").write_text("x")
        read_texts(tmp_path / "a.docx")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_texts(tmp_path / "missing.txt")
    assert main(["encode", str(bad), "-o", str(tmp_path / "o.h5")]) == 1
    assert "unsupported output format '.h5'; use one of .npy, .parquet" in capsys.readouterr().err


def test_txt_keeps_empty_lines_as_empty_texts(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a\n\nb\r\n")
    assert read_texts(path) == ["a", "", "b"]


def test_info(tiny_models, capsys):
    assert main(["info", str(tiny_models["llama"]), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["backbone"], info["kind"], info["pooling"]["name"], info["dimension"]) == (
        "LlamaModel",
        "decoder",
        "last",
        32,
    )
    assert main(["info", str(tiny_models["bert"])]) == 0
    assert "max_seq_length" in capsys.readouterr().out


@pytest.mark.real
def test_the_installed_command_encodes_with_the_packaged_default_model(tmp_path):
    (tmp_path / "in.txt").write_text("A man is playing a guitar.\nA woman is slicing an onion.\n")
    result = subprocess.run(
        [sys.executable, "-m", "gpte.cli", "encode", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.npy")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    vectors = np.load(tmp_path / "out.npy")
    np.testing.assert_allclose(
        vectors,
        Embedder.load(device="cpu").encode(["A man is playing a guitar.", "A woman is slicing an onion."]),
        atol=1e-6,
    )
