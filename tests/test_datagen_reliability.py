"""Hostile but honest use of ``gpte mine``, ``gpte synth``, ``gpte analyze`` and ``gpte rerank``: empty, blank,
malformed, mistyped, non-UTF-8 and lone-surrogate inputs (one line naming the file and line), bad output paths found
before any model loads, two runs writing one output, unknown option values, and an interrupt from inside the model
followed by a rerun that gives what an uninterrupted run gives. Each case that held is kept as a regression test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import lock_held_elsewhere

from gpte.cli import main

TOPICS = [
    "wings stall at high angles of attack",
    "boundary layers thicken downstream",
    "shock waves form at supersonic speed",
    "heat transfer in hypersonic flow",
    "panel flutter of thin plates",
    "buckling of cylindrical shells",
]
STS_ROWS = [
    ("A man is playing a guitar.", "A man plays the guitar.", 4.8),
    ("A dog runs in the park.", "The stock market fell today.", 0.2),
    ("Two kids play soccer.", "Children are playing football.", 4.0),
    ("A cat sleeps on the sofa.", "A plane lands at the airport.", 0.0),
]
SURROGATE = "\\ud800"  # a JSON escape of a lone surrogate: valid JSON, not valid Unicode


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def _one_line_error(capsys) -> str:
    error = capsys.readouterr().err
    lines = [line for line in error.splitlines() if line.startswith("gpte: ")]
    assert len(lines) == 1 and "Traceback" not in error, error
    return lines[0]


def _no_loading(*_, **__):
    raise AssertionError("a model was loaded before the inputs and output were checked")


# ----------------------------------------------------------------- gpte mine


@pytest.fixture()
def mine_inputs(tmp_path):
    corpus = _write(tmp_path / "corpus.jsonl", _jsonl([{"_id": f"d{i}", "text": t} for i, t in enumerate(TOPICS)]))
    pairs = _write(
        tmp_path / "pairs.jsonl",
        _jsonl([{"query": f"about {t.split()[0]}", "positive_id": f"d{i}"} for i, t in enumerate(TOPICS)]),
    )
    return corpus, pairs


def _mine(tiny_models, pairs, corpus, output, *more: str) -> int:
    argv = ["mine", str(pairs), "--corpus", str(corpus), "-o", str(output), "--model", str(tiny_models["bert"])]
    return main([*argv, "--num-negatives", "1", "--range-max", "3", "--no-progress", *more])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "{pairs}: no pairs"),
        ("\n \n", "{pairs}:1: not valid JSON (an empty line)"),
        ('{"query": "q", "positive_id": "d0"}\n{oops\n', "{pairs}:2: not valid JSON"),
        ('{"positive_id": "d0"}\n', "{pairs}:1: a pair needs a non-empty text field 'query'"),
        ('{"query": 5, "positive_id": "d0"}\n', "{pairs}:1: a pair needs a non-empty text field 'query'"),
        ('{"query": "q"}\n', "{pairs}:1: a pair needs one of the fields positive_id, positive_ids, positive"),
        ('{"query": "q", "positive_ids": [["d0"]]}\n', "{pairs}:1: positive_ids must be a corpus id or a list of"),
        ('{"query": "q", "positive": {"text": "t"}}\n', "{pairs}:1: positive must be a text"),
        ('{"query": "q", "positive_id": true}\n', "{pairs}:1: positive_id must be a corpus id"),
        (b'{"query": "caf\xe9", "positive_id": "d0"}\n', "{pairs}:1: not UTF-8 text"),
        (
            '{"query": "a ' + SURROGATE + ' b", "positive_id": "d0"}\n',
            "{pairs}:1: a lone surrogate '\\ud800' at character 3",
        ),
    ],
)
def test_mine_refuses_bad_pairs_in_one_line_before_the_model_loads(
    tiny_models, mine_inputs, tmp_path, capsys, monkeypatch, content, message
):
    corpus, _ = mine_inputs
    pairs = _write(tmp_path / "bad.jsonl", content)
    monkeypatch.setattr("gpte.datagen.mining.open_corpus_index", _no_loading)
    assert _mine(tiny_models, pairs, corpus, tmp_path / "out.jsonl") == 1
    assert message.format(pairs=pairs) in _one_line_error(capsys)
    assert not list(tmp_path.glob("*out.jsonl*"))


def test_mine_numeric_ids_are_ids(tiny_models, mine_inputs, tmp_path):
    corpus = _write(tmp_path / "numbered.jsonl", _jsonl([{"_id": i, "text": t} for i, t in enumerate(TOPICS)]))
    pairs = _write(
        tmp_path / "p.jsonl", '{"query": "wing", "positive_id": 0}\n{"query": "heat", "positive_ids": [3]}\n'
    )
    assert _mine(tiny_models, pairs, corpus, tmp_path / "out.jsonl") == 0
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [row["positive_id"] for row in rows] == ["0", "3"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "{corpus}: no documents found"),
        ('{"_id": "x", "text": 5}\n', "{corpus}:1: the text is int, not a string"),
        (b'{"_id": "x", "text": "a"}\n{"_id": "y", "text": "caf\xe9"}\n', "{corpus}:2: not UTF-8 text"),
        ('{"_id": "x", "text": "a"}\n{"_id": "y", "text": "a ' + SURROGATE + '"}\n', "{corpus}:2: a lone surrogate"),
    ],
)
def test_mine_names_the_corpus_line_that_cannot_be_read(tiny_models, mine_inputs, tmp_path, capsys, content, message):
    _, pairs = mine_inputs
    corpus = _write(tmp_path / "bad_corpus.jsonl", content)
    assert _mine(tiny_models, pairs, corpus, tmp_path / "out.jsonl") == 1
    assert message.format(corpus=corpus) in _one_line_error(capsys)


@pytest.mark.parametrize(
    ("output", "more", "message"),
    [
        ("missing/out.jsonl", [], "the folder of output {tmp}/missing/out.jsonl does not exist"),
        ("corpus.jsonl/out.jsonl", [], "{tmp}/corpus.jsonl is a file"),
        ("folder.jsonl", [], "output {tmp}/folder.jsonl is a folder; this output is a file"),
        ("folder.jsonl", ["--overwrite"], "output {tmp}/folder.jsonl is a folder; this output is a file"),
        ("pairs.jsonl", [], "{tmp}/pairs.jsonl already exists"),
        ("out.jsonl", ["--index-dir", "pairs.jsonl"], "output {tmp}/pairs.jsonl is a file; this output is a folder"),
        ("out.jsonl", ["--mode", "sparse"], "unknown mining mode 'sparse'; choose one of dense, lexical, hybrid"),
        ("out.jsonl", ["--sampling", "middle"], "unknown sampling 'middle'; choose one of top, random"),
    ],
)
def test_mine_checks_output_and_options_before_any_model_loads(
    tiny_models, mine_inputs, tmp_path, capsys, monkeypatch, output, more, message
):
    corpus, pairs = mine_inputs
    (tmp_path / "folder.jsonl").mkdir()
    monkeypatch.setattr("gpte.datagen.mining.open_corpus_index", _no_loading)
    monkeypatch.setattr("gpte.models.loading.load_reranker", _no_loading)
    more = [str(tmp_path / m) if m.endswith(".jsonl") else m for m in more]
    code = _mine(tiny_models, pairs, corpus, tmp_path / output, *more, "--cross-encoder", "any")
    assert code == 1 and message.format(tmp=tmp_path) in _one_line_error(capsys)
    assert (tmp_path / "folder.jsonl").is_dir() and not (tmp_path / "missing").exists()
    assert not list(tmp_path.glob(".*progress")) and not list(tmp_path.glob("*.index"))


def test_a_second_mine_into_one_output_fails_at_once(tiny_models, mine_inputs, tmp_path, capsys, monkeypatch):
    corpus, pairs = mine_inputs
    output = tmp_path / "out.jsonl"
    with lock_held_elsewhere(output) as holder:
        monkeypatch.setattr("gpte.datagen.mining.open_corpus_index", _no_loading)
        assert _mine(tiny_models, pairs, corpus, output) == 1
        assert f"output {output} is being written by another process (pid {holder.pid}" in _one_line_error(capsys)
        assert not list(tmp_path.glob("*out.jsonl*"))


def test_mine_interrupted_in_the_model_resumes_to_the_uninterrupted_output(
    tiny_models, mine_inputs, tmp_path, capsys, monkeypatch
):
    from gpte.models.embedder import Embedder

    corpus, pairs = mine_inputs
    more = ("--chunk-size", "2", "--sampling", "random")
    assert _mine(tiny_models, pairs, corpus, tmp_path / "whole.jsonl", *more) == 0
    original, queries = Embedder.encode, []

    def interrupted_at_the_second_chunk(self, texts, *args, role=None, **kwargs):
        if role == "query":
            queries.append(texts)
            if len(queries) == 2:
                raise KeyboardInterrupt
        return original(self, texts, *args, role=role, **kwargs)

    monkeypatch.setattr(Embedder, "encode", interrupted_at_the_second_chunk)
    output = tmp_path / "resumed.jsonl"
    assert _mine(tiny_models, pairs, corpus, output, *more) == 130
    assert not output.exists() and not list(tmp_path.glob(".resumed.jsonl.partial*"))
    assert len(list((tmp_path / ".resumed.jsonl.progress").glob("0*.jsonl"))) == 1
    monkeypatch.setattr(Embedder, "encode", original)
    capsys.readouterr()
    assert _mine(tiny_models, pairs, corpus, output, *more) == 0
    assert "1 chunks resumed" in capsys.readouterr().out
    assert output.read_text() == (tmp_path / "whole.jsonl").read_text() != ""


# ----------------------------------------------------------------- gpte synth


def _synth(chat_llama, recipe, source, output, *more: str) -> int:
    argv = ["synth", recipe, *([str(source)] if source else []), "-o", str(output), "--generator", str(chat_llama)]
    quiet = ["--language", "", "--min-words", "0", "--no-dedup", "--round-trip-k", "0", "--max-new-tokens", "4"]
    return main([*argv, *quiet, "--max-attempts", "1", "--no-progress", *more])


@pytest.mark.parametrize("recipe", ["paraphrase", "e5", "queries"])
@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.jsonl", "", "{source}: no "),
        ("blank.txt", "\n  \n\n", "{source}: no non-empty"),
        ("blank.jsonl", "\n \n", "{source}:1: not valid JSON"),
        ("bad.jsonl", '{"text": "a dog"}\n{oops\n', "{source}:2: not valid JSON"),
        ("field.jsonl", '{"body": "a dog"}\n', "{source}:1: no field 'text'"),
        ("number.jsonl", '{"text": 5}\n', "{source}:1: the text is int, not a string"),
        ("lists.jsonl", '{"text": [["a dog"]]}\n', "{source}:1: the text is list, not a string"),
        ("latin1.txt", b"a dog\ncaf\xe9 au lait\n", "{source}:2: not UTF-8 text"),
        ("surrogate.jsonl", '{"text": "a dog"}\n{"text": "a ' + SURROGATE + '"}\n', "{source}:2: a lone surrogate"),
    ],
)
def test_synth_refuses_bad_sources_in_one_line(chat_llama, tmp_path, capsys, recipe, name, content, message):
    source = _write(tmp_path / name, content)
    assert _synth(chat_llama, recipe, source, tmp_path / "out.jsonl") == 1
    assert message.format(source=source) in _one_line_error(capsys)
    assert not list(tmp_path.glob("*out.jsonl*"))


def test_synth_queries_skip_empty_documents(chat_llama, tmp_path, capsys):
    folder = tmp_path / "docs"
    folder.mkdir()
    _write(folder / "empty.txt", "")
    _write(folder / "blank.txt", "  \n")
    assert _synth(chat_llama, "queries", folder, tmp_path / "out.jsonl") == 1
    assert f"{folder}: no non-empty documents" in _one_line_error(capsys)
    _write(folder / "dog.txt", "two dogs run in the park")
    assert _synth(chat_llama, "queries", folder, tmp_path / "out.jsonl") == 0
    assert "queries: 1 inputs" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "{examples}: no examples"),
        ('{"document": "d"}\n', "{examples}:1: an example needs the text fields document and query"),
        ('{"document": "d", "query": 5}\n', "{examples}:1: an example needs the text fields document and query"),
        ("{oops\n", "{examples}:1: not valid JSON"),
        (b'{"document": "caf\xe9", "query": "q"}\n', "{examples}:1: not UTF-8 text"),
        (
            '{"document": "d", "query": "' + SURROGATE + '"}\n',
            "{examples}:1: a lone surrogate '\\ud800' at character 1",
        ),
    ],
)
def test_synth_refuses_bad_examples_before_the_generator_loads(
    chat_llama, tmp_path, capsys, monkeypatch, content, message
):
    source = _write(tmp_path / "corpus.jsonl", _jsonl([{"_id": "a", "text": "two dogs run"}]))
    examples = _write(tmp_path / "examples.jsonl", content)
    monkeypatch.setattr("gpte.datagen.generators.load_generator", _no_loading)
    assert _synth(chat_llama, "queries", source, tmp_path / "out.jsonl", "--examples", str(examples)) == 1
    assert message.format(examples=examples) in _one_line_error(capsys)


@pytest.mark.parametrize(
    ("output", "more", "message"),
    [
        ("missing/out.jsonl", [], "the folder of output {tmp}/missing/out.jsonl does not exist"),
        ("s.txt/out.jsonl", [], "{tmp}/s.txt is a file"),
        ("folder.jsonl", ["--overwrite"], "output {tmp}/folder.jsonl is a folder; this output is a file"),
        ("s.txt", [], "{tmp}/s.txt already exists"),
        ("out.jsonl", ["--language", "english"], "unknown language 'english'; choose an ISO 639-1 code"),
        ("out.jsonl", ["--temperature", "-1"], "temperature must be >= 0"),
        ("out.jsonl", ["--limit", "0"], "limit must be a whole number >= 1"),
    ],
)
def test_synth_checks_output_and_options_before_the_generator_loads(
    chat_llama, tmp_path, capsys, monkeypatch, output, more, message
):
    source = _write(tmp_path / "s.txt", "two dogs run\n")
    (tmp_path / "folder.jsonl").mkdir()
    monkeypatch.setattr("gpte.datagen.generators.load_generator", _no_loading)
    assert _synth(chat_llama, "paraphrase", source, tmp_path / output, *more) == 1
    assert message.format(tmp=tmp_path) in _one_line_error(capsys)
    assert (tmp_path / "folder.jsonl").is_dir() and not (tmp_path / "missing").exists()
    assert source.read_text() == "two dogs run\n" and not list(tmp_path.glob(".*progress"))


def test_unknown_recipe_names_the_recipes(chat_llama, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("gpte.datagen.generators.load_generator", _no_loading)
    assert _synth(chat_llama, "nli", None, tmp_path / "out.jsonl") == 1
    assert "unknown recipe 'nli'; choose one of queries, e5, paraphrase" in _one_line_error(capsys)


def test_a_second_synth_into_one_output_fails_at_once(chat_llama, tmp_path, capsys, monkeypatch):
    source = _write(tmp_path / "s.txt", "two dogs run\n")
    output = tmp_path / "out.jsonl"
    with lock_held_elsewhere(output) as holder:
        monkeypatch.setattr("gpte.datagen.generators.load_generator", _no_loading)
        assert _synth(chat_llama, "paraphrase", source, output) == 1
        assert f"output {output} is being written by another process (pid {holder.pid}" in _one_line_error(capsys)
        assert not list(tmp_path.glob("*out.jsonl*"))


def test_synth_interrupted_in_the_generator_resumes_to_the_uninterrupted_output(
    chat_llama, tmp_path, capsys, monkeypatch
):
    from gpte.datagen.generators import TransformersGenerator

    rows = [{"_id": str(i), "text": f"a man is playing guitar number {i}"} for i in range(4)]
    source = _write(tmp_path / "corpus.jsonl", _jsonl(rows))
    more = ("--chunk-size", "2", "--max-new-tokens", "6")
    assert _synth(chat_llama, "queries", source, tmp_path / "whole.jsonl", *more) == 0
    original, calls = TransformersGenerator.generate, []

    def interrupted_at_the_second_chunk(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TransformersGenerator, "generate", interrupted_at_the_second_chunk)
    output = tmp_path / "resumed.jsonl"
    assert _synth(chat_llama, "queries", source, output, *more) == 130
    assert not output.exists() and not list(tmp_path.glob(".resumed.jsonl.partial*"))
    monkeypatch.setattr(TransformersGenerator, "generate", original)
    capsys.readouterr()
    assert _synth(chat_llama, "queries", source, output, *more) == 0
    assert "1 chunks resumed" in capsys.readouterr().out
    assert output.read_text() == (tmp_path / "whole.jsonl").read_text() != ""


# ----------------------------------------------------------------- gpte rerank

RERANK_ROW = {"query": "wing stall", "candidates": ["a wing stalls", "two dogs", {"id": "d3", "text": "heat"}]}


def _rerank(tiny_models, source, *more: str) -> int:
    return main(["rerank", str(source), "--model", str(tiny_models["bert-cross-encoder"]), *more])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("\n \n", "{source}:1: not valid JSON"),
        (_jsonl([RERANK_ROW]) + "{oops\n", "{source}:2: not valid JSON"),
        ("[1, 2]\n", "{source}:1: expected a JSON object, got list"),
        ('{"candidates": ["a"]}\n', "{source}:1: query must be a non-empty string, got None"),
        ('{"query": "q"}\n', "{source}:1: candidates must be a list"),
        ('{"query": 5, "candidates": ["a"]}\n', "{source}:1: query must be a non-empty string, got 5"),
        ('{"query": "q", "candidates": [["a"]]}\n', "{source}:1: candidate 0 must be a string or an object"),
        ('{"query": "q", "candidates": "abc"}\n', "{source}:1: candidates must be a list"),
        (b'{"query": "caf\xe9", "candidates": ["a"]}\n', "{source}:1: not UTF-8 text"),
        (
            '{"query": "a ' + SURROGATE + '", "candidates": ["a"]}\n',
            "{source}:1: a lone surrogate '\\ud800' at character 3",
        ),
        (
            '{"query": "a", "candidates": ["b", "' + SURROGATE + '"]}\n',
            "{source}:1: a lone surrogate '\\ud800' at character 1",
        ),
    ],
)
def test_rerank_refuses_bad_rows_in_one_line_before_the_model_loads(
    tiny_models, tmp_path, capsys, monkeypatch, content, message
):
    source = _write(tmp_path / "in.jsonl", content)
    monkeypatch.setattr("gpte.models.loading.load_reranker", _no_loading)
    assert _rerank(tiny_models, source, "-o", str(tmp_path / "out.jsonl")) == 1
    assert message.format(source=source) in _one_line_error(capsys)
    assert not list(tmp_path.glob("*out.jsonl*"))


def test_rerank_of_an_empty_file_writes_no_rows(tiny_models, tmp_path):
    source = _write(tmp_path / "in.jsonl", "")
    assert _rerank(tiny_models, source, "-o", str(tmp_path / "out.jsonl")) == 0
    assert (tmp_path / "out.jsonl").read_text() == ""


@pytest.mark.parametrize(
    ("output", "more", "message"),
    [
        ("missing/out.jsonl", [], "the folder of output {tmp}/missing/out.jsonl does not exist"),
        ("in.jsonl/out.jsonl", [], "{tmp}/in.jsonl is a file"),
        ("folder.jsonl", [], "output {tmp}/folder.jsonl is a folder; this output is a file"),
        ("folder.jsonl", ["--overwrite"], "output {tmp}/folder.jsonl is a folder; this output is a file"),
        ("in.jsonl", [], "{tmp}/in.jsonl already exists"),
        ("out.jsonl", ["--top-k", "0"], "--top-k must be a positive integer, got 0"),
    ],
)
def test_rerank_checks_the_output_before_the_model_loads(
    tiny_models, tmp_path, capsys, monkeypatch, output, more, message
):
    source = _write(tmp_path / "in.jsonl", _jsonl([RERANK_ROW]))
    (tmp_path / "folder.jsonl").mkdir()
    (tmp_path / "folder.jsonl" / "keep.txt").write_text("mine")
    monkeypatch.setattr("gpte.models.loading.load_reranker", _no_loading)
    assert _rerank(tiny_models, source, "-o", str(tmp_path / output), *more) == 1
    assert message.format(tmp=tmp_path) in _one_line_error(capsys)
    assert (tmp_path / "folder.jsonl" / "keep.txt").read_text() == "mine" and not (tmp_path / "missing").exists()


def test_a_second_rerank_into_one_output_fails_at_once(tiny_models, tmp_path, capsys, monkeypatch):
    source = _write(tmp_path / "in.jsonl", _jsonl([RERANK_ROW]))
    output = tmp_path / "out.jsonl"
    with lock_held_elsewhere(output) as holder:
        monkeypatch.setattr("gpte.models.loading.load_reranker", _no_loading)
        assert _rerank(tiny_models, source, "-o", str(output)) == 1
        assert f"output {output} is being written by another process (pid {holder.pid}" in _one_line_error(capsys)
        assert not output.exists()


def test_rerank_interrupted_in_the_model_leaves_nothing_and_a_rerun_gives_the_same_rows(
    tiny_models, tmp_path, monkeypatch
):
    from gpte.models.cross_encoder import CrossEncoder

    source = _write(tmp_path / "in.jsonl", _jsonl([RERANK_ROW, {**RERANK_ROW, "query": "heat"}]))
    assert _rerank(tiny_models, source, "-o", str(tmp_path / "whole.jsonl")) == 0

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    original = CrossEncoder.predict_with_report
    monkeypatch.setattr(CrossEncoder, "predict_with_report", interrupted)
    output = tmp_path / "again.jsonl"
    assert _rerank(tiny_models, source, "-o", str(output)) == 130
    assert not output.exists() and not list(tmp_path.glob(".again*"))
    monkeypatch.setattr(CrossEncoder, "predict_with_report", original)
    assert _rerank(tiny_models, source, "-o", str(output)) == 0
    assert output.read_text() == (tmp_path / "whole.jsonl").read_text() != ""


# ----------------------------------------------------------------- gpte analyze


def _task_root(root: Path, content: str | bytes | None = None) -> Path:
    """``root/sts/toy``: an STS task whose two splits (test, the task's own, and train) hold ``content`` (default:
    STS_ROWS)."""
    folder = root / "sts" / "toy"
    folder.mkdir(parents=True)
    meta = {"task_type": "STS", "main_score": "cosine_spearman", "score_range": [0, 5]}
    (folder / "meta.json").write_text(json.dumps(meta))
    rows = _jsonl([{"sentence1": a, "sentence2": b, "score": s} for a, b, s in STS_ROWS])
    for split in ("test", "train"):
        _write(folder / f"{split}.jsonl", rows if content is None else content)
    return root


def _analyze(tiny_models, root, output, *more: str, sections=("geometry",)) -> int:
    argv = ["analyze", "--model", str(tiny_models["bert"]), "--data", str(root), "-o", str(output)]
    tasks = ["--corpus", "sts/toy", "--tasks", "sts/toy", "--labelled", "", "--pairs", "", "--inversion-test", ""]
    return main([*argv, "--sections", *sections, *tasks, "--device", "cpu", *more])


@pytest.mark.parametrize(
    ("content", "more", "message"),
    [
        ("", [], "{file}: no rows; the task is empty"),
        ("\n \n", [], "{file}:1: not valid JSON"),
        ('{"sentence1": "a"}\n', [], "{file}:1: missing field(s) sentence2"),
        (
            '{"sentence1": "a", "sentence2": "b", "score": 1}\n{"sentence1": 5, "sentence2": "b", "score": 1}\n',
            [],
            "{file}:2: sentence1 is int, not a string",
        ),
        ('{"sentence1": [["a"]], "sentence2": "b", "score": 1}\n', [], "{file}:1: sentence1 is list, not a string"),
        (b'{"sentence1": "caf\xe9", "sentence2": "b", "score": 1}\n', [], "{file}:1: not UTF-8 text"),
        (
            '{"sentence1": "a ' + SURROGATE + '", "sentence2": "b", "score": 1}\n',
            [],
            "{file}:1: a lone surrogate '\\ud800' at character 3",
        ),
        ('{"sentence1": "a", "sentence2": "b", "score": "high"}\n', ["--pairs", "sts/toy"], "{file}:1: score 'high'"),
    ],
)
def test_analyze_refuses_bad_task_rows_in_one_line_before_the_model_loads(
    tiny_models, tmp_path, capsys, monkeypatch, content, more, message
):
    from gpte.models.embedder import Embedder

    root = _task_root(tmp_path / "data", content)
    monkeypatch.setattr(Embedder, "load", _no_loading)
    assert _analyze(tiny_models, root, tmp_path / "out", *more) == 1
    assert message.format(file=root / "sts" / "toy" / "test.jsonl") in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_analyze_a_task_that_fails_to_score_is_one_line(tiny_models, tmp_path, capsys):
    root = _task_root(tmp_path / "data")
    rows = _jsonl([{"sentence1": a, "sentence2": b, "score": "high"} for a, b, _ in STS_ROWS])
    _write(root / "sts" / "toy" / "test.jsonl", rows)  # its texts read; its scores fail when the task is scored
    assert _analyze(tiny_models, root, tmp_path / "out", sections=("whitening",)) == 1
    assert "sts/toy" in _one_line_error(capsys)


@pytest.mark.parametrize(
    ("output", "more", "message"),
    [
        ("missing/out", [], "the folder of output {tmp}/missing/out does not exist"),
        ("afile/out", [], "{tmp}/afile is a file"),
        ("afile", [], "output {tmp}/afile is a file; this output is a folder"),
        ("out", ["--save-whitened", "afile"], "output {tmp}/afile is a file; this output is a folder"),
        ("out", ["--save-whitened", "missing/w"], "the folder of output {tmp}/missing/w does not exist"),
        ("out", ["--probe-epochs", "0"], "epochs must be a positive integer, got 0"),
        ("out", ["--sections", "geometri"], "unknown section(s) geometri; choose from: geometry, whitening"),
    ],
)
def test_analyze_checks_output_and_options_before_the_model_loads(
    tiny_models, tmp_path, capsys, monkeypatch, output, more, message
):
    from gpte.models.embedder import Embedder

    root = _task_root(tmp_path / "data")
    _write(tmp_path / "afile", "mine")
    monkeypatch.setattr(Embedder, "load", _no_loading)
    more = [str(tmp_path / m) if m in ("afile", "missing/w") else m for m in more]
    assert _analyze(tiny_models, root, tmp_path / output, *more) == 1
    assert message.format(tmp=tmp_path) in _one_line_error(capsys)
    assert (tmp_path / "afile").read_text() == "mine" and not (tmp_path / "missing").exists()


def test_a_second_analyze_into_one_folder_fails_at_once(tiny_models, tmp_path, capsys, monkeypatch):
    from gpte.models.embedder import Embedder

    root = _task_root(tmp_path / "data")
    output = tmp_path / "out"
    with lock_held_elsewhere(output) as holder:
        monkeypatch.setattr(Embedder, "load", _no_loading)
        assert _analyze(tiny_models, root, output) == 1
        assert f"report folder {output} is being written by another process (pid {holder.pid}" in _one_line_error(
            capsys
        )
        assert not output.exists()


def test_analyze_interrupted_in_the_model_resumes_to_the_uninterrupted_report(
    tiny_models, tmp_path, capsys, monkeypatch
):
    from gpte.models.embedder import Embedder

    root = _task_root(tmp_path / "data")
    sections = ("geometry", "bias")
    assert _analyze(tiny_models, root, tmp_path / "whole", sections=sections) == 0
    original, calls = Embedder.encode, []

    def interrupted_in_the_second_section(self, texts, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the first call encodes the corpus (geometry), the second is bias's
            raise KeyboardInterrupt
        return original(self, texts, *args, **kwargs)

    monkeypatch.setattr(Embedder, "encode", interrupted_in_the_second_section)
    output = tmp_path / "resumed"
    assert _analyze(tiny_models, root, output, sections=sections) == 130
    assert [path.name for path in (output / "sections").iterdir()] == ["geometry.json"]
    monkeypatch.setattr(Embedder, "encode", original)
    assert _analyze(tiny_models, root, output, sections=sections) == 0
    for name in ("sections/geometry.json", "sections/bias.json", "report.md"):
        assert (output / name).read_text() == (tmp_path / "whole" / name).read_text()
