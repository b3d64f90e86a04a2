"""Hostile but honest CLI use: two runs writing one output, empty and blank inputs, bad output paths found before
the model loads, NaN weights, and stdout closed early. Each test reproduces a defect of the reliability catalogue."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import lock_held_elsewhere
from safetensors.torch import load_file, save_file

from gpte import Embedder
from gpte.cli import main, options
from gpte.locking import OutputLockedError, exclusive_output, lock_file
from gpte.runtime.streaming import encode_to


def _encode(tiny_models, source: Path, output: Path, *more: str) -> int:
    return main(["encode", str(source), "-o", str(output), "--model", str(tiny_models["bert"]), "--no-progress", *more])


@pytest.mark.parametrize("kind", [[], ["--kind", "multivector"], ["--chunk"]])
def test_a_second_encode_into_one_output_fails_at_once_naming_the_first(tiny_models, tmp_path, capsys, kind):
    source = tmp_path / "texts.txt"
    source.write_text("a wing\nheat transfer\n", encoding="utf-8")
    output = tmp_path / ("out" if kind else "out.npy")
    with lock_held_elsewhere(output) as holder:
        assert _encode(tiny_models, source, output, *kind) == 1
        error = capsys.readouterr().err
        assert f"output {output} is being written by another process (pid {holder.pid}:" in error
        assert not output.exists() and not list(tmp_path.glob(".out*partial*"))
    assert _encode(tiny_models, source, output, *kind) == 0  # the holder died: its lock went with it


def test_encode_to_refuses_an_output_another_process_writes(embedder, tmp_path):
    message = "is being written by another process"
    with lock_held_elsewhere(tmp_path / "v.npy"), pytest.raises(OutputLockedError, match=message):
        encode_to(embedder, ["a", "b"], tmp_path / "v.npy", show_progress=False)


def test_empty_input_gives_zero_rows_of_the_models_width_and_blank_lines_warn(tiny_models, tmp_path):
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "blank.txt").write_text("\n  \nwings\n\n", encoding="utf-8")
    assert _encode(tiny_models, tmp_path / "empty.txt", tmp_path / "empty.npy") == 0
    assert np.load(tmp_path / "empty.npy").shape == (0, 32)  # as Embedder.encode([]), not (0, 0)
    assert _encode(tiny_models, tmp_path / "empty.txt", tmp_path / "empty8.npy", "--precision", "ubinary") == 0
    assert np.load(tmp_path / "empty8.npy").shape == (0, 4)
    with pytest.warns(UserWarning, match=r"blank.txt: 3 of 4 texts are empty or blank \(the first is text 0\)"):
        assert _encode(tiny_models, tmp_path / "blank.txt", tmp_path / "blank.npy") == 0
    assert np.load(tmp_path / "blank.npy").shape == (4, 32)


@pytest.mark.parametrize(
    ("output", "kind", "message"),
    [
        ("missing/x.npy", [], "the folder of output {tmp}/missing/x.npy does not exist: create {tmp}/missing first"),
        ("texts.txt/x.npy", [], "is not a folder: {tmp}/texts.txt is a file"),
        ("folder.npy", [], "output {tmp}/folder.npy is a folder; this output is a file: give another name"),
        ("texts.txt", ["--kind", "multivector"], "output {tmp}/texts.txt is a file; this output is a folder"),
        ("missing/chunks", ["--chunk"], "the folder of output {tmp}/missing/chunks does not exist"),
    ],
)
def test_bad_output_paths_fail_in_one_line_before_the_model_loads(
    tiny_models, tmp_path, capsys, monkeypatch, output, kind, message
):
    (tmp_path / "texts.txt").write_text("a wing\n", encoding="utf-8")
    (tmp_path / "folder.npy").mkdir()

    def no_loading(*_, **__):
        raise AssertionError("the model was loaded before the output was checked")

    for loader in ("load_dense_model", "load_multivector_model"):
        monkeypatch.setattr(options, loader, no_loading)
    assert _encode(tiny_models, tmp_path / "texts.txt", tmp_path / output, *kind) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message.format(tmp=tmp_path) in error


def test_unwritable_output_folder_is_refused_before_the_model_loads(tiny_models, tmp_path, capsys):
    if sys.platform == "win32" or __import__("os").geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    (tmp_path / "texts.txt").write_text("a wing\n", encoding="utf-8")
    assert _encode(tiny_models, tmp_path / "texts.txt", locked / "x.npy") == 1
    assert f"the folder {locked} is not writable" in capsys.readouterr().err


def test_nan_weights_fail_encode_naming_the_model_and_info_counts_them(tiny_models, tmp_path, capsys):
    folder = tmp_path / "broken"
    shutil.copytree(tiny_models["bert"], folder)
    weights = load_file(folder / "model.safetensors")
    name = next(key for key in weights if key.endswith("attention.output.dense.weight"))
    weights[name][0, :3] = torch.tensor([float("nan"), float("inf"), float("nan")])
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    (tmp_path / "texts.txt").write_text("a wing\nheat\n", encoding="utf-8")
    code = main(["encode", str(tmp_path / "texts.txt"), "-o", str(tmp_path / "v.npy"), "--model", str(folder)])
    error = capsys.readouterr().err
    assert code == 1 and "produced NaN or infinite values for 2 of 2 texts (the first: text 0)" in error
    assert "broken" in error and not (tmp_path / "v.npy").exists()
    assert Embedder.load(folder).info()["non_finite_parameters"] == 3
    assert main(["info", str(folder)]) == 0
    assert any(
        line.split() == ["non_finite_parameters", "3"] for line in capsys.readouterr().out.splitlines()
    )  # gpte info reports them


def test_stdout_closed_early_exits_quietly(tiny_models):
    process = subprocess.Popen(
        [sys.executable, "-m", "gpte", "info", str(tiny_models["bert"])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.close()  # as `| head` does once it has read what it wants
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr


# ----------------------------------------------------------------- input files that are not UTF-8 text


def _one_line_error(capsys) -> str:
    error = capsys.readouterr().err
    lines = [line for line in error.splitlines() if line.startswith("gpte: ")]
    assert len(lines) == 1 and "Traceback" not in error, error
    return lines[0]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("latin1.txt", b"a wing\nheat\ncaf\xe9 au lait\n", "{path}:3: not UTF-8 text (byte 0xe9 at column 4)"),
        ("latin1.csv", b"id,text\n0,a wing\n1,caf\xe9\n", "{path}:3: not UTF-8 text (byte 0xe9 at column 6)"),
        ("latin1.jsonl", b'{"text": "a"}\n{"text": "caf\xe9"}\n', "{path}:2: not UTF-8 text (byte 0xe9 at column 14)"),
        (
            "surrogate.jsonl",
            b'{"text": "a wing"}\n{"text": "a \\ud800 b"}\n',
            "{path}:2: a lone surrogate '\\ud800' at character 3 of 'a \\ud800 b' (a JSON \\u escape of half a "
            "UTF-16 pair)",
        ),
        ("blank.jsonl", b'{"text": "a wing"}\n  \n', "{path}:2: not valid JSON (an empty line)"),
    ],
)
def test_encode_names_the_line_of_a_file_that_is_not_text(tiny_models, tmp_path, capsys, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    assert _encode(tiny_models, path, tmp_path / "out.npy") == 1
    assert message.format(path=path) in _one_line_error(capsys)
    assert not (tmp_path / "out.npy").exists()


def test_index_names_the_document_and_line_that_is_not_utf8(tiny_models, tmp_path, capsys):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "good.txt").write_text("a wing stalls\n", encoding="utf-8")
    (docs / "sub" / "bad.txt").write_bytes(b"heat transfer\r\nin hypersonic\r\nflow at Mach \xff\r\n")
    argv = ["index", str(docs), "--name", "n", "--root", str(tmp_path / "indexes"), "--model", str(tiny_models["bert"])]
    assert main([*argv, "--no-progress"]) == 1
    assert f"{docs / 'sub' / 'bad.txt'}:3: not UTF-8 text (byte 0xff at column 14)" in _one_line_error(capsys)


def test_readers_decode_as_text_mode_did(tmp_path):
    import csv

    from gpte.data.readers import csv_lines, iter_jsonl, read_text_file

    # csv: lines split as newline="" splits them (\n, \r\n and a lone \r), quoted newlines kept, line_num the same
    content = 'a,b\r\n1,"x\r\ny"\n2,z\r3,w\r\n4,"p\rq"\r'
    path = tmp_path / "t.csv"
    path.write_bytes(content.encode("utf-8"))
    with path.open(encoding="utf-8", newline="") as handle:
        expected = [(row, reader.line_num) for reader in [csv.DictReader(handle)] for row in reader]
    reader = csv.DictReader(csv_lines(path))
    assert [(row, reader.line_num) for row in reader] == expected and len(expected) == 4
    path.write_bytes(b"a,b\ntext\rx")  # a lone \r one character before the end of a last line
    with path.open(encoding="utf-8", newline="") as handle:
        expected = list(csv.reader(handle))
    assert list(csv.reader(csv_lines(path))) == expected == [["a", "b"], ["text"], ["x"]]
    # a whole document: \r\n and \r read as \n, as read_text reads them
    path.write_bytes("caf\u00e9\r\nau\rlait\n".encode())
    assert read_text_file(path) == path.read_text(encoding="utf-8") == "caf\u00e9\nau\nlait\n"
    path.write_bytes(b"fine\nalso fine\n\x80bad\n")
    with pytest.raises(ValueError, match=r"t.csv:3: not UTF-8 text \(byte 0x80 at column 1\); save the file as UTF-8"):
        read_text_file(path)
    # jsonl: a whole character written as a surrogate pair is fine; a lone half, in a key or nested, is not
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"t": "\\ud83d\\ude00"}\r\n{"t": [{"\\uDC00": 1}]}\n', encoding="utf-8")
    rows = iter_jsonl(jsonl)
    assert next(rows) == (1, {"t": "\U0001f600"})
    with pytest.raises(ValueError, match=r"t.jsonl:2: a lone surrogate '\\udc00' at character 1"):
        next(rows)


def test_the_write_lock_is_reentrant_in_a_thread_and_refuses_another_thread(tmp_path):
    output = tmp_path / "v.npy"
    refused = []

    def second_writer() -> None:
        try:
            with exclusive_output(output):
                refused.append(False)
        except OutputLockedError as error:
            refused.append(str(error))

    with exclusive_output(output), exclusive_output(output):  # the same thread: reentrant
        thread = threading.Thread(target=second_writer)
        thread.start()
        thread.join()
    assert len(refused) == 1 and refused[0] and "is being written by another process" in refused[0]
    with exclusive_output(output):  # released by both exits
        pass
    assert oct(lock_file(output).parent.stat().st_mode & 0o777) == "0o700"
