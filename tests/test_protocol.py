"""The model contract (gpte.models.protocol): both dense kinds conform, token budgets are what fits, fingerprints
are hashed once, a static model goes through evaluate, index/search and serve and index chunks fit the
model — on tiny random models (exact checks)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gpte import Embedder
from gpte.evaluate import evaluate, load_task
from gpte.models import fingerprint
from gpte.models.loading import load_model
from gpte.models.protocol import DenseModel, TextModel, VectorEncoder, require_dense
from gpte.models.static import StaticEmbedder, distill_static
from gpte.runtime.streaming import encode_to
from gpte.search.index import Index, build_index

DOCS = {
    "a.txt": "Wings stall when the angle of attack is too high for the airflow to follow the surface. " * 3,
    "b.txt": "The boundary layer thickens downstream along a flat plate in laminar flow. " * 3,
    "c.txt": "Heat transfer at hypersonic speeds is large near the stagnation point of a blunt body.",
}
STS_ROWS = [
    {"sentence1": "A man plays a guitar.", "sentence2": "A man plays the guitar.", "score": 4.8},
    {"sentence1": "A woman slices an onion.", "sentence2": "Two dogs run in a field.", "score": 0.2},
    {"sentence1": "The cat sleeps.", "sentence2": "A cat is sleeping.", "score": 4.5},
    {"sentence1": "Wings stall at high angles.", "sentence2": "The stock market fell.", "score": 0.0},
]


@pytest.fixture(scope="module")
def bert(tiny_models):
    return Embedder.load(tiny_models["bert"], pooling="mean", device="cpu", max_seq_length=16)


@pytest.fixture(scope="module")
def static_folder(tiny_models, tmp_path_factory):
    source = Embedder.load(tiny_models["bert"], pooling="mean", device="cpu")
    return distill_static(source, pca_dims=8, show_progress=False).save(tmp_path_factory.mktemp("static") / "model")


def _docs(folder):
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_both_dense_kinds_conform_and_other_objects_are_refused(bert, static_folder):
    static = load_model(static_folder)
    assert isinstance(static, StaticEmbedder)
    for model in (bert, static):
        assert isinstance(model, TextModel) and isinstance(model, DenseModel) and isinstance(model, VectorEncoder)
        assert model.output_kind == "dense" and len(model.fingerprint) == 64
    assert static.max_seq_length is None and static.text_token_budget(role="query") is None
    assert static.count_tokens(["a wing stalls"]) == [len(static.token_offsets("a wing stalls"))]
    with pytest.raises(TypeError, match="a search index takes a dense model .* got object"):
        require_dense(object(), "a search index")
    with pytest.raises(ValueError, match="a static model has no prompts"):
        static.encode(["x"], prompt="query: ")


def test_static_encode_options_match_the_embedder_semantics(static_folder):
    static = load_model(static_folder)
    texts = ["a wing stalls", "heat transfer", ""]
    full = static.encode(texts, normalize=False)
    cut = static.encode(texts, truncate_dim=4, normalize=True)
    expected = full[:, :4] / np.maximum(np.linalg.norm(full[:, :4], axis=1, keepdims=True), 1e-12)
    np.testing.assert_allclose(cut, expected, atol=1e-6)
    assert static.encode(texts, convert_to="torch").shape == (3, 8)
    assert static.encode("one text").shape == (8,)
    result = static.encode_with_report(texts)
    assert (result.report.n_texts, result.report.n_truncated) == (3, 0)
    with pytest.raises(ValueError, match="truncate_dim must be an integer from 1 to the model's dimension 8"):
        static.encode(texts, truncate_dim=9)


def test_token_budget_is_exactly_what_fits_without_truncation(bert):
    assert bert.text_token_budget() == 16 - 2  # [CLS] text [SEP]
    fits = bert.tokenizer.tokenizer.convert_tokens_to_string(["wing"] * 14)
    assert bert.count_tokens([fits]) == [14]
    assert bert.encode_with_report([fits]).report.n_truncated == 0
    assert bert.encode_with_report([fits + " wing"]).report.n_truncated == 1
    prompted = Embedder.load(bert.backbone.model.name_or_path, max_seq_length=16, prompts={"query": "query: "})
    budget = prompted.text_token_budget(role="query")
    assert budget == 16 - 2 - prompted.count_tokens(["query: "])[0] == 12  # [CLS] query : text [SEP]
    assert prompted.encode_with_report([" ".join(["wing"] * budget)], role="query").report.n_truncated == 0
    assert prompted.encode_with_report([" ".join(["wing"] * (budget + 1))], role="query").report.n_truncated == 1
    echo = Embedder.load(bert.backbone.model.name_or_path, max_seq_length=16, prompts={"echo": "{text} means {text}"})
    assert echo.text_token_budget(prompt="echo") == (16 - 2 - 1) // 2  # two copies of the text share the rest


def test_index_chunks_fit_the_model_and_the_count_of_truncated_chunks_is_reported(bert, tmp_path):
    source = _docs(tmp_path / "docs")
    report = build_index(tmp_path / "index", source, embedder=bert, show_progress=False, ann=None)
    index = Index.open(tmp_path / "index", embedder=bert)
    assert index.snapshot.manifest["chunk_tokens"] == 14 and report.truncated == 0 and report.chunks > 3
    for text in index.snapshot.chunks.texts:
        assert bert.count_tokens([text])[0] <= 14
    whole = build_index(tmp_path / "whole", source, embedder=bert, chunk_tokens=0, show_progress=False, ann=None)
    assert whole.truncated == 3  # whole documents, each longer than 16 tokens: the model cut every one
    with pytest.raises(
        ValueError, match="leaves 14 for text after its document prompt and special tokens; use at most 14"
    ):
        build_index(tmp_path / "big", source, embedder=bert, chunk_tokens=15, show_progress=False)


def test_weights_are_hashed_once_per_state(bert, tmp_path, monkeypatch):
    calls = []
    original = fingerprint.hash_state
    monkeypatch.setattr(fingerprint, "hash_state", lambda state: calls.append(1) or original(state))
    model = Embedder.load(bert.backbone.model.name_or_path, pooling="mean", device="cpu", max_seq_length=16)
    build_index(tmp_path / "index", _docs(tmp_path / "docs"), embedder=model, show_progress=False, ann=None)
    Index.open(tmp_path / "index", embedder=model)
    Index.open(tmp_path / "index", embedder=model)
    encode_to(model, ["a", "b"], tmp_path / "one.npy", show_progress=False)
    encode_to(model, ["a", "b"], tmp_path / "two.npy", show_progress=False)
    assert len(calls) == 1
    before = model.fingerprint
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # an in-place change, as an optimizer step makes
    assert model.fingerprint != before and len(calls) == 2
    model.normalize = not model.normalize  # a setting: a new fingerprint without hashing the weights again
    assert len(calls) == 2 and model.fingerprint != before


def test_a_static_model_is_evaluated_indexed_searched_and_served(static_folder, tmp_path):
    from fastapi.testclient import TestClient

    from gpte.serve.app import create_app

    task_folder = tmp_path / "sts"
    task_folder.mkdir()
    (task_folder / "meta.json").write_text(json.dumps({"task_type": "STS", "score_range": [0, 5]}))
    (task_folder / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in STS_ROWS))
    model = load_model(static_folder)
    run = evaluate(model, [load_task(task_folder, "sts")])
    first, second = model.encode([r["sentence1"] for r in STS_ROWS]), model.encode([r["sentence2"] for r in STS_ROWS])
    from scipy.stats import spearmanr

    cosines = [float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) for a, b in zip(first, second)]
    expected = spearmanr(cosines, [r["score"] for r in STS_ROWS]).statistic
    assert run.results["sts"]["main_score_value"] == pytest.approx(expected, abs=1e-9)

    build_index(tmp_path / "index", _docs(tmp_path / "docs"), model=str(static_folder), show_progress=False)
    index = Index.open(tmp_path / "index")  # reloads the static model by the folder it recorded
    assert isinstance(index.embedder, StaticEmbedder)
    assert index.search("boundary layer in laminar flow", k=1)[0].doc_id == "b.txt"

    with TestClient(create_app({"static": model})) as client:
        body = client.post("/v1/embeddings", json={"input": ["a wing stalls"], "model": "static"}).json()
    np.testing.assert_array_equal(
        np.array(body["data"][0]["embedding"], np.float32), model.encode(["a wing stalls"])[0]
    )
    assert body["usage"]["prompt_tokens"] == model.count_tokens(["a wing stalls"])[0]


def test_an_index_reopens_its_model_with_the_backend_it_was_built_with(tiny_models, tmp_path):
    import shutil

    folder = shutil.copytree(tiny_models["bert"], tmp_path / "bert")  # the ONNX files are written beside it
    model = Embedder.load(folder, device="cpu", backend="onnx")  # the settings a reload by name gives
    build_index(tmp_path / "index", _docs(tmp_path / "docs"), embedder=model, model=str(folder), show_progress=False)
    index = Index.open(tmp_path / "index")  # no model given: the recorded one, with the recorded backend
    assert index.snapshot.manifest["backend"] == "onnx" and index.embedder.backend == "onnx"
    assert index.embedder.fingerprint == model.fingerprint


def test_empty_and_huge_inputs(bert, static_folder, tmp_path):
    from gpte.models.chunking import chunk_spans
    from gpte.runtime.vector_store import VectorStore

    static = load_model(static_folder)
    assert static.encode([]).shape == (0, 8) and static.encode_with_report([]).report.n_texts == 0
    assert bert.count_tokens([]) == [] and bert.count_tokens([""]) == [0] and static.count_tokens([""]) == [0]
    assert [(s.start, s.end) for s in chunk_spans("", bert, 14, 1)] == [(0, 0)]
    huge = "wing " * 20_000  # 20,000 tokens: chunked to the budget, every chunk fits
    spans = chunk_spans(huge, bert, bert.text_token_budget(), 1)
    assert len(spans) == -(-(20_000 - 14) // 13) + 1
    assert max(bert.count_tokens([huge[s.start : s.end] for s in spans])) == 14
    long_prompt = Embedder.load(bert.backbone.model.name_or_path, max_seq_length=16, prompts={"document": "word " * 40})
    assert long_prompt.text_token_budget(role="document") == 0  # a prompt longer than the model: nothing fits, not < 0
    with pytest.raises(ValueError, match="no text fits; shorten the prompt or raise max_seq_length"):
        build_index(tmp_path / "i", _docs(tmp_path / "docs"), embedder=long_prompt, show_progress=False)
    store = VectorStore(tmp_path / "store")
    assert store.vectors([], lambda texts: np.zeros((len(texts), 2))).shape == (0, 0)
    store.add([], np.zeros((0, 2)))
    assert not (tmp_path / "store").exists()  # nothing to keep: no folder, no empty part


def test_a_store_part_killed_while_written_leaves_no_damaged_file(tmp_path, monkeypatch):
    from gpte.runtime.vector_store import VectorStore

    store = VectorStore(tmp_path / "store")
    store.add(["a"], np.ones((1, 2)))

    def die(*args, **kwargs):
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(np, "savez", die)
    with pytest.raises(KeyboardInterrupt):
        store.add(["b"], np.ones((1, 2)))
    monkeypatch.undo()
    assert len(list((tmp_path / "store").glob("part-*.npz"))) == 1  # the finished part only, no partial one
    again = VectorStore(tmp_path / "store")
    assert set(again.get(["a", "b"])) == {"a"}  # a rerun re-encodes b and nothing else
