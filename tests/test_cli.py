"""The gpte CLI: encode from every input format to .npy/.parquet, refusals, crash safety, info; the verbs' parsers
(help, shared options spelled once), logging levels, and the backends of evaluate and index."""

import argparse
import json
import logging
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SENTENCES

from gpte import Embedder
from gpte.cli import build_parser, main, options
from gpte.cli import evaluate as cli_evaluate
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


# ------------------------------------------------------------------ the parsers


def _verb_parsers():
    parser = build_parser()
    (verbs,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return verbs.choices


VERBS = sorted(_verb_parsers())


def test_python_dash_m_gpte_runs_the_command():  # python -m gpte.cli: the subprocess tests of test_search, test_train
    result = subprocess.run([sys.executable, "-m", "gpte", "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: gpte ") and all(verb in result.stdout for verb in VERBS)


def test_every_verb_has_help(capsys):
    expected = {"encode", "distill-static", "info", "evaluate", "report", "train", "merge", "whiten", "index"}
    expected |= {"embed-corpus", "search", "mine", "synth", "analyze", "serve", "rerank"}
    assert set(VERBS) == expected
    for verb in VERBS:
        with pytest.raises(SystemExit) as exit:
            main([verb, "--help"])
        assert exit.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: gpte {verb} ")


def _shared_reference():
    """One argparse action per shared option, as the helpers of gpte.cli.options make them."""
    reference = argparse.ArgumentParser()
    options.add_model(reference)
    options.add_device(reference)
    options.add_backend(reference)
    options.add_batch_size(reference)
    options.add_output(reference, "what is written")
    options.add_no_progress(reference)
    return {action.dest: action for action in reference._actions if action.dest != "help"}


def test_shared_options_are_spelled_the_same_in_every_verb():
    reference = _shared_reference()
    flags = {flag for action in reference.values() for flag in action.option_strings}
    seen = {dest: [] for dest in reference}
    for verb, parser in _verb_parsers().items():
        for action in parser._actions:
            if not set(action.option_strings) & flags and action.dest not in reference:
                continue
            if not action.option_strings:  # a positional named like an option's dest (gpte info MODEL)
                continue
            shared = reference[action.dest]
            where = f"gpte {verb} {'/'.join(action.option_strings)}"
            seen[action.dest].append(verb)
            assert action.option_strings == shared.option_strings, where
            assert (action.type, action.choices, action.const) == (shared.type, shared.choices, shared.const), where
            if action.dest == "output":  # what is written differs: a file, a folder; evaluate has a default
                assert action.required == (action.default is None) and action.help, where
                continue
            assert action.default == shared.default, where
            if action.dest == "model":  # the common help, then what the model is for in this verb
                assert action.help == shared.help or action.help.startswith(shared.help + "; "), where
            else:
                assert action.help == shared.help, where
    assert set(seen["backend"]) == {"encode", "evaluate", "index"}
    assert {"encode", "evaluate", "index", "analyze", "whiten", "distill-static"} <= set(seen["device"])
    assert {"encode", "evaluate", "index", "mine", "synth", "analyze", "serve"} <= set(seen["model"])
    assert {"encode", "distill-static", "index", "mine", "synth"} <= set(seen["no_progress"])


def test_verbosity_options_before_or_after_the_verb():
    parser = build_parser()
    assert parser.parse_args(["report", "r"]).log_level == logging.INFO
    assert parser.parse_args(["-q", "report", "r"]).log_level == logging.WARNING
    assert parser.parse_args(["report", "r", "--quiet"]).log_level == logging.WARNING
    assert parser.parse_args(["report", "-v", "r"]).log_level == logging.DEBUG
    with pytest.raises(SystemExit):
        parser.parse_args(["-q", "-v", "report", "r"])


# ------------------------------------------------------------------ logging


def test_quiet_and_verbose_set_the_level_of_gpte_logging(monkeypatch, capsys):
    from transformers.utils import logging as transformers_logging

    root_level, transformers_level = logging.getLogger().level, transformers_logging.get_verbosity()
    during = []

    def talk(args):
        log = logging.getLogger("gpte.evaluate.report")
        log.debug("debug line")
        log.info("info line")
        log.warning("warning line")
        logging.getLogger("somelibrary").warning("library warning")
        logging.getLogger("chattylibrary").debug("chatty debug")  # a library that set its own logger to DEBUG (bm25s)
        logging.warning("Please consider to run pre-processing before quantization.")  # onnxruntime's, on the root
        during.append((transformers_logging.get_verbosity(), transformers_logging.is_progress_bar_enabled()))
        print("the result")
        return 0

    monkeypatch.setattr(cli_evaluate, "_report", talk)
    logging.getLogger("chattylibrary").setLevel(logging.DEBUG)
    assert main(["report", "r"]) == 0 and main(["report", "r"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "the result\n" * 2
    assert captured.err == "info line\ngpte: warning: warning line\n" * 2  # handler added once per call, then removed
    assert during[-1] == (logging.ERROR, False)  # transformers: no logs, no "Loading weights" bars

    for argv in (["-q", "report", "r"], ["report", "r", "-q"]):
        assert main(argv) == 0
        assert capsys.readouterr() == ("the result\n", "gpte: warning: warning line\n")

    assert main(["-v", "report", "r"]) == 0
    err = capsys.readouterr().err
    assert "debug line" in err and "info line\n" in err and "somelibrary: warning: library warning" in err
    assert "Please consider to run pre-processing" in err and during[-1][0] != logging.ERROR
    assert "chatty debug" not in err  # other libraries' debug messages stay out even with -v
    logging.getLogger("chattylibrary").setLevel(logging.NOTSET)

    # all undone for the caller of main
    assert logging.getLogger("gpte").level == logging.NOTSET and logging.getLogger().level == root_level
    assert transformers_logging.get_verbosity() == transformers_level


# ------------------------------------------------------------------ backends of evaluate and index

STS_ROWS = [
    {"sentence1": "A man is playing a guitar.", "sentence2": "A man plays the guitar.", "score": 4.8},
    {"sentence1": "A woman is slicing an onion.", "sentence2": "Two dogs run.", "score": 0.2},
    {"sentence1": "The quick brown fox jumps.", "sentence2": "A fox jumps quickly.", "score": 4.0},
]


@pytest.fixture(scope="module")
def static_model(tiny_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("static") / "model"
    args = ["distill-static", "--model", str(tiny_models["bert"]), "-o", str(folder), "--pca-dims", "8"]
    assert main([*args, "--device", "cpu", "--no-progress"]) == 0
    return folder


def test_a_static_model_is_described_evaluated_and_indexed(static_model, tmp_path, capsys):
    assert main(["info", str(static_model), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["backend"] == "static"

    task = tmp_path / "tasks" / "sts" / "tiny"
    task.mkdir(parents=True)
    (task / "meta.json").write_text(json.dumps({"task_type": "STS", "score_range": [0, 5]}))
    (task / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in STS_ROWS))
    evaluate = ["evaluate", "--data", str(tmp_path / "tasks"), "--model", str(static_model)]  # found to be static
    evaluate += ["-o", str(tmp_path / "results")]
    assert main(evaluate) == 0
    out, err = capsys.readouterr()
    assert "sts/tiny" in out and "[1/1] sts/tiny" in err  # the table on stdout; gpte's INFO progress on stderr
    assert main(["-q", *evaluate, "--overwrite"]) == 0
    out, err = capsys.readouterr()
    assert "sts/tiny" in out and "[1/1]" not in err

    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"_id": str(n), "text": text}) + "\n" for n, text in enumerate(SENTENCES)))
    index = ["index", str(docs), "--name", "notes", "--root", str(tmp_path / "indexes"), "--model", str(static_model)]
    assert main([*index, "--backend", "static", "--no-progress"]) == 0
    assert "index notes" in capsys.readouterr().out
    assert main(["search", "notes", "guitar", "--root", str(tmp_path / "indexes"), "--json", "-k", "1"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["doc_id"] in {"0", "4"}  # the static model, reloaded by the index


def test_a_static_model_is_served(static_model, tmp_path, monkeypatch):
    import uvicorn
    from fastapi.testclient import TestClient

    from gpte.models.static import StaticEmbedder

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append(app))
    assert main(["serve", "--model", str(static_model), "--port", "0"]) == 0
    with TestClient(served[0]) as client:
        body = client.post("/v1/embeddings", json={"input": ["a man plays"], "model": static_model.name}).json()
    expected = StaticEmbedder.load(static_model).encode(["a man plays"])[0]
    np.testing.assert_array_equal(np.array(body["data"][0]["embedding"], dtype=np.float32), expected)


@pytest.mark.parametrize("verb", ["evaluate", "index"])
def test_evaluate_and_index_load_the_model_with_the_backend_given(verb, tmp_path, monkeypatch, capsys):
    from gpte.models import loading

    asked = []

    def load_model(name, backend="torch", **options):
        asked.append((name, backend, options))
        raise ValueError("loaded")

    monkeypatch.setattr(loading, "load_model", load_model)
    (tmp_path / "tasks" / "sts").mkdir(parents=True)
    (tmp_path / "tasks" / "sts" / "meta.json").write_text(json.dumps({"task_type": "STS"}))
    (tmp_path / "docs.txt").write_text("a document\n")
    argv = {
        "evaluate": ["evaluate", "--data", str(tmp_path / "tasks")],
        "index": ["index", str(tmp_path / "docs.txt"), "--name", "n", "--root", str(tmp_path)],
    }[verb]
    assert main([*argv, "--model", "some-model", "--backend", "onnx", "--device", "cpu"]) == 1
    assert asked == [("some-model", "onnx", {"device": "cpu"})]
    assert "gpte: error: loaded" in capsys.readouterr().err
    assert main([*argv, "--backend", "static"]) == 1
    assert "--backend static needs --model FOLDER" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "--backend", "tensorrt"])
    assert "invalid choice: 'tensorrt'" in capsys.readouterr().err
