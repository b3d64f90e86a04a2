"""Long documents on the command line, on the tiny random BERT: ``gpte encode --chunk`` (plain and late chunk vectors,
with each chunk's characters, resumable) equals ``ChunkedEncoder.encode_chunks``; ``gpte evaluate --chunk-tokens``
equals ``evaluate(ChunkedEncoder(...))`` and files its results under a name that shows the chunking; options that do
not fit are refused with their reason."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from gpte.cli import main
from gpte.evaluate.results import read_results
from gpte.evaluate.runner import evaluate
from gpte.evaluate.tasks import load_task
from gpte.models.chunked import ChunkedEncoder
from gpte.models.embedder import Embedder
from gpte.models.multivector import TokenVectors
from gpte.runtime.token_output import CHUNK_VECTORS, EncodedTexts, ExtraArray, TokenEncoding, encode_tokens_to

SENTENCES = "The wing was tested at high speed. Results agreed with theory! Why? The boundary layer thickened.\n"
TEXTS = [
    SENTENCES * 3 + "Heat transfer rates (thin-skin gauges) were low; naïve estimates were 30% high.",
    "a short note .",
    "",
    "the flap moves down . the tail shakes hard . " * 4,
    "Mach 2.5: separation near the trailing edge.",
]
FILES = ("tokens.npy", "offsets.npy", "spans.npy")


@pytest.fixture(scope="module")
def bert(tiny_models) -> Embedder:
    """The tiny BERT as ``gpte encode`` loads it (mean pooling, 128 tokens) on the CPU."""
    return Embedder.load(tiny_models["bert"], device="cpu")


@pytest.fixture()
def texts_file(tmp_path):
    path = tmp_path / "texts.jsonl"
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in TEXTS), encoding="utf-8")
    return path


def _encode(tiny_models, texts_file, output, *options: str) -> list[str]:
    return [
        "encode",
        str(texts_file),
        "-o",
        str(output),
        "--model",
        str(tiny_models["bert"]),
        "--no-progress",
        *options,
    ]


def _assert_written(output, chunked: ChunkedEncoder, texts: list[str]) -> None:
    """The folder ``output`` holds exactly ``chunked.encode_chunks(texts)``: vectors, texts' chunk offsets, spans."""
    expected, _ = chunked.encode_chunks(texts, role=None)
    written = TokenVectors.load(output)
    np.testing.assert_array_equal(written.data, expected.vectors)
    np.testing.assert_array_equal(written.offsets, expected.token_vectors(len(texts)).offsets)
    spans = np.load(output / "spans.npy")
    assert spans.dtype == np.int64 and spans.shape == (len(written.data), 2)
    np.testing.assert_array_equal(spans, expected.spans)


@pytest.mark.parametrize(
    ("options", "settings"),
    [
        (["--chunk-tokens", "12", "--chunk-overlap", "3"], {"chunk_tokens": 12, "overlap": 3}),
        (["--chunk-tokens", "10", "--chunk-boundary", "token"], {"chunk_tokens": 10, "boundary": "token"}),
        (["--chunk"], {}),
    ],
    ids=["sentence", "token", "default-size"],
)
def test_encode_chunk_writes_the_chunk_vectors_and_their_characters(
    tiny_models, bert, texts_file, tmp_path, capsys, options, settings
):
    output = tmp_path / "chunks"
    assert main(_encode(tiny_models, texts_file, output, *options)) == 0
    chunked = ChunkedEncoder(bert, **settings)
    _assert_written(output, chunked, TEXTS)
    written, spans = TokenVectors.load(output), np.load(output / "spans.npy")
    pieces = [
        TEXTS[i][start:end]
        for i in range(len(TEXTS))
        for start, end in spans[written.offsets[i] : written.offsets[i + 1]]
    ]
    np.testing.assert_allclose(written.data, bert.encode(pieces), atol=1e-5, rtol=0)  # row r: its characters' vector
    assert max(bert.count_tokens(pieces)) <= chunked.chunk_tokens
    assert written.lengths.tolist()[1:3] == [1, 1] and pieces[written.offsets[2]] == ""  # short and empty: one chunk
    if settings:
        assert written.lengths[0] > 1
    out = capsys.readouterr().out
    assert (
        f"wrote {len(written.data)} chunk vectors (at most {chunked.chunk_tokens} tokens) of 32 float32 values" in out
    )
    assert f"for {len(TEXTS)} texts" in out and "tokens.npy, offsets.npy and spans.npy" in out
    assert not list(tmp_path.glob(".chunks*"))  # nothing left beside the output


def test_encode_chunk_tokens_0_keeps_whole_texts(tiny_models, bert, texts_file, tmp_path, capsys):
    output = tmp_path / "whole"
    assert main(_encode(tiny_models, texts_file, output, "--chunk-tokens", "0")) == 0
    _assert_written(output, ChunkedEncoder(bert, 0), TEXTS)
    assert np.load(output / "spans.npy").tolist() == [[0, len(text)] for text in TEXTS]
    assert f"wrote {len(TEXTS)} chunk vectors (whole texts)" in capsys.readouterr().out


def test_encode_late_chunking_writes_the_late_chunk_vectors(tiny_models, bert, texts_file, tmp_path, capsys):
    output = tmp_path / "late"
    assert main(_encode(tiny_models, texts_file, output, "--late-chunking", "--chunk-tokens", "12")) == 0
    late = ChunkedEncoder(bert, 12, late=True)
    _assert_written(output, late, TEXTS)
    plain = ChunkedEncoder(bert, 12).encode_chunks(TEXTS, role=None)[0]
    assert not np.allclose(TokenVectors.load(output).data, plain.vectors, atol=1e-3)  # chunks saw their document
    assert "late chunk vectors (at most 12 tokens)" in capsys.readouterr().out

    long_text = [SENTENCES * 12]  # beyond the model's 128 tokens: overlapping windows
    assert bert.count_tokens(long_text)[0] > bert.max_seq_length
    long_file = tmp_path / "long.jsonl"
    long_file.write_text(json.dumps({"text": long_text[0]}) + "\n", encoding="utf-8")
    windowed = tmp_path / "windowed"
    assert main(_encode(tiny_models, long_file, windowed, "--late-chunking", "--window-overlap", "16")) == 0
    _assert_written(windowed, ChunkedEncoder(bert, late=True, window_overlap=16), long_text)


def test_an_interrupted_chunk_encode_resumes_to_the_same_files(tiny_models, texts_file, tmp_path, capsys, monkeypatch):
    options = ("--chunk-tokens", "12", "--chunk-size", "2")  # 5 texts: 3 chunks of texts
    assert main(_encode(tiny_models, texts_file, tmp_path / "whole", *options)) == 0
    output = tmp_path / "resumed"
    real, calls = ChunkedEncoder.encode_chunks, []

    def failing_third_chunk(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ChunkedEncoder, "encode_chunks", failing_third_chunk)
    capsys.readouterr()
    assert main(_encode(tiny_models, texts_file, output, *options)) == 130
    assert "interrupted; nothing was written under the output's final name" in capsys.readouterr().err
    partial = tmp_path / ".resumed.partial"
    assert not output.exists() and sorted(p.name for p in partial.glob("chunk-*")) == ["chunk-000000", "chunk-000001"]
    assert sorted(p.name for p in (partial / "chunk-000001").iterdir()) == sorted(FILES)
    monkeypatch.setattr(ChunkedEncoder, "encode_chunks", real)
    assert main(_encode(tiny_models, texts_file, output, *options)) == 0
    assert "2 chunks of texts kept from an interrupted run" in capsys.readouterr().out
    for name in FILES:
        assert (output / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    assert not partial.exists()
    assert main(_encode(tiny_models, texts_file, output, *options)) == 1
    assert "already exists" in capsys.readouterr().err


def test_the_token_writer_refuses_extra_arrays_unlike_their_declaration(bert, tmp_path):
    def int32_spans(model, texts, **options):
        encoded = CHUNK_VECTORS.encode(model, texts, **options)
        return EncodedTexts(encoded.vectors, 0, {"spans": encoded.extras["spans"].astype(np.int32)})

    chunked, output = ChunkedEncoder(bert, 12), tmp_path / "o"
    wrong_dtype = TokenEncoding(int32_spans, (ExtraArray("spans", (2,), "int64"),))
    with pytest.raises(ValueError, match=r"extra array 'spans' is int32 \(\d+, 2\); expected int64 \(\d+, 2\)"):
        encode_tokens_to(chunked, TEXTS, output, show_progress=False, encoding=wrong_dtype)
    with pytest.raises(ValueError, match=r"the encoding gave extra arrays \['spans'\]; it declares \[\]"):
        encode_tokens_to(chunked, TEXTS, output, show_progress=False, encoding=TokenEncoding(CHUNK_VECTORS.encode))
    assert not output.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--kind", "sparse", "--chunk"], "--chunk apply to dense models, not --kind sparse"),
        (["--kind", "multivector", "--late-chunking"], "--late-chunking apply to dense models, not --kind multivector"),
        (["--chunk", "--precision", "int8"], "--precision int8 apply to one vector per text, not to chunk vectors"),
        (["--chunk-tokens", "8", "--truncate-dim", "4", "--normalize"], "--truncate-dim, --normalize apply to one"),
        (["--chunk-overlap", "4"], "--chunk-overlap shape chunks; ask for chunking with --chunk, --chunk-tokens N or"),
        (["--chunk", "--window-overlap", "4"], "--window-overlap applies to --late-chunking"),
        (["--chunk-tokens", "500"], "chunks of 500 tokens do not fit .*: its max_seq_length of 128 tokens leaves 126"),
        (["--chunk-tokens", "8", "--chunk-overlap", "8"], r"chunk overlap must be a whole number in \[0, 8\), got 8"),
        (["--chunk-tokens", "-2"], r"chunk size must be a whole number of tokens >= 0 \(0: whole documents\), got -2"),
    ],
)
def test_encode_refuses_chunk_options_that_do_not_fit(tiny_models, texts_file, tmp_path, capsys, options, message):
    output = tmp_path / "refused"
    assert main(_encode(tiny_models, texts_file, output, *options)) == 1
    err = capsys.readouterr().err
    assert err.startswith("gpte: error: ") and re.search(message, err), err
    assert not output.exists() and not list(tmp_path.glob(".refused*"))


def test_encode_refuses_an_unknown_boundary_a_one_token_pooling_and_a_static_model(
    tiny_models, texts_file, tmp_path, capsys
):
    with pytest.raises(SystemExit):
        main(_encode(tiny_models, texts_file, tmp_path / "o", "--chunk", "--chunk-boundary", "word"))
    err = capsys.readouterr().err  # choices quoted from Python 3.12.8 on
    assert re.search(r"--chunk-boundary: invalid choice: 'word' \(choose from '?token'?, '?sentence'?\)", err)
    cls = Embedder.load(tiny_models["bert"], pooling="cls", device="cpu").save(tmp_path / "cls")
    encode = ["encode", str(texts_file), "-o", str(tmp_path / "o"), "--no-progress"]
    assert main([*encode, "--model", str(cls), "--late-chunking"]) == 1
    assert "late chunking pools each chunk's tokens, but cls pooling reads one fixed token" in capsys.readouterr().err
    static = ["distill-static", "--model", str(tiny_models["bert"]), "-o", str(tmp_path / "static"), "--pca-dims", "8"]
    assert main([*static, "--device", "cpu", "--no-progress"]) == 0
    assert main([*encode, "--model", str(tmp_path / "static"), "--chunk"]) == 1
    assert "static model, which has none (encode its texts whole" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ gpte evaluate on long documents

DOCUMENTS = {
    "d1": "the wing stalls early . " * 12 + "the flap moves down at low speed .",
    "d2": "heat flows fast through the thin skin . " * 10,
    "d3": "a man plays the guitar . the crowd sings along . " * 6,
}
QUERIES = {"q1": "does the flap move down ?", "q2": "heat through skin", "q3": "who plays guitar"}


@pytest.fixture()
def long_task(tmp_path):
    """A BEIR folder of three long documents and three queries (with meta.json, as ``--data`` finds tasks)."""
    folder = tmp_path / "tasks" / "long"
    (folder / "qrels").mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"task_type": "Retrieval"}))
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as out:
        out.writelines(json.dumps({"_id": key, "title": "", "text": text}) + "\n" for key, text in DOCUMENTS.items())
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as out:
        out.writelines(json.dumps({"_id": key, "text": text}) + "\n" for key, text in QUERIES.items())
    qrels = "".join(f"q{n}\td{n}\t1\n" for n in (1, 2, 3))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels)
    return folder


@pytest.mark.parametrize(
    ("options", "settings", "suffix"),
    [
        (["--chunk-tokens", "8", "--chunk-aggregate", "mean"], {"aggregate": "mean"}, "8t-1o-sentence-mean"),
        (
            ["--late-chunking", "--chunk-tokens", "8", "--chunk-overlap", "0"],
            {"late": True, "overlap": 0},
            "8t-0o-sentence-max",
        ),
    ],
    ids=["plain-mean", "late-max"],
)
def test_evaluate_scores_long_documents_by_their_chunks(
    tiny_models, bert, long_task, tmp_path, capsys, options, settings, suffix
):
    results = tmp_path / "results"
    argv = ["evaluate", "--data", str(long_task.parent), "--model", str(tiny_models["bert"]), "-o", str(results)]
    assert main([*argv, "--device", "cpu", *options]) == 0
    chunked = ChunkedEncoder(bert, 8, **settings)
    expected = evaluate(chunked, [load_task(long_task)]).results["long"]
    [result] = read_results(results)
    assert result["scores"] == expected["scores"] and result["main_score"] == expected["main_score"]
    assert result["tokens"] == expected["tokens"] and result["tokens"]["document_tokens"] > 1  # chunks per document
    name = chunked.name  # the model's name, +plain-chunks or +late-chunks, and the settings
    assert name.endswith(("+late-chunks-" if chunked.late else "+plain-chunks-") + suffix)
    assert result["provenance"]["model"] == name and result["provenance"]["model_sha256"] == chunked.fingerprint
    assert suffix in capsys.readouterr().out  # the table names the chunked model


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--sparse", "--chunk-tokens", "8"],
            "--chunk-tokens apply to dense models; .* is evaluated as a sparse model",
        ),
        (["--multivector", "--late-chunking"], "--late-chunking apply to dense models; .* as a multi-vector model"),
        (["--chunk-aggregate", "mean"], "--chunk-aggregate shape chunks; ask for chunking with --chunk"),
        (["--chunk", "--window-overlap", "4"], "--window-overlap applies to --late-chunking"),
    ],
)
def test_evaluate_refuses_chunk_options_that_do_not_fit(tiny_models, long_task, tmp_path, capsys, options, message):
    argv = ["evaluate", "--data", str(long_task.parent), "--model", str(tiny_models["bert"]), "-o", str(tmp_path / "r")]
    assert main([*argv, "--device", "cpu", *options]) == 1
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "r").exists()


def test_evaluate_refuses_chunk_options_for_a_reranker(tiny_models, long_task, tmp_path, capsys):
    argv = ["evaluate", "--data", str(long_task.parent), "--model", str(tiny_models["bert-cross-encoder"])]
    assert main([*argv, "-o", str(tmp_path / "r"), "--chunk-tokens", "8"]) == 1
    assert "--chunk-tokens apply to a dense --model; " in capsys.readouterr().err
