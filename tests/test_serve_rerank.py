"""Reranking over HTTP and on the command line: POST /rerank in text-embeddings-inference's shape (scores equal the
reranker's predict, raw and activated, best first; every error status; truncation refused or applied), concurrent
requests scored together without one bad request failing the others, ``gpte serve --reranker`` and ``gpte rerank`` —
on the tiny random cross-encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from test_serve import post_concurrently

from gpte.cli import main
from gpte.models.cross_encoder import CrossEncoder
from gpte.serve.app import create_app

KEY = "secret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
QUERY = "what is a wing stall"
TEXTS = [
    "the boundary layer carries heat from the plate",
    "a stall happens when the wing exceeds its critical angle of attack",
    "supersonic flow " * 12,
    "two dogs run in the park",
]
LONG_TEXT = "supersonic flow " * 100  # over the tiny cross-encoder's 128 tokens


@pytest.fixture(scope="module")
def cross_encoder(tiny_models) -> CrossEncoder:
    return CrossEncoder.load(tiny_models["bert-cross-encoder"], device="cpu")


@pytest.fixture(scope="module")
def client(embedder, cross_encoder):
    app = create_app(
        {"tiny": embedder}, api_key=KEY, max_request_bytes=4096, max_inputs=8, rerankers={"ce": cross_encoder}
    )
    with TestClient(app) as test_client:
        yield test_client


def _predict(reranker, query: str, texts: list[str], **options) -> np.ndarray:
    return reranker.predict([(query, text) for text in texts], show_progress=False, **options)


def test_scores_equal_predict_raw_and_activated_best_first(client, cross_encoder):
    for raw in (False, True):
        body = client.post("/rerank", json={"query": QUERY, "texts": TEXTS, "raw_scores": raw}, headers=AUTH).json()
        expected = _predict(cross_encoder, QUERY, TEXTS, activation=not raw)
        assert np.ptp(expected) > 0.01  # distinct scores: the order means something
        assert [row["index"] for row in body] == np.argsort(-expected, kind="stable").tolist()
        np.testing.assert_allclose([row["score"] for row in body], np.sort(expected)[::-1], atol=1e-6)
        assert all(set(row) == {"index", "score"} for row in body)
    activated = client.post("/rerank", json={"query": QUERY, "texts": TEXTS}, headers=AUTH).json()
    assert all(0 < row["score"] < 1 for row in activated)  # sigmoid by default, as TEI
    with_text = client.post(
        "/rerank", json={"query": QUERY, "texts": TEXTS, "return_text": True, "model": "ce"}, headers=AUTH
    ).json()
    assert [row["text"] for row in with_text] == [TEXTS[row["index"]] for row in with_text]
    assert [row["score"] for row in with_text] == [row["score"] for row in activated]


def test_truncate_false_refuses_a_long_pair_and_true_scores_it_cut(client, cross_encoder):
    texts = ["short text", LONG_TEXT]
    refused = client.post("/rerank", json={"query": QUERY, "texts": texts}, headers=AUTH)
    assert refused.status_code == 413
    detail = refused.json()["detail"]
    assert "pair 1 (the query and text 1)" in detail and "at most 125" in detail and "truncate=true" in detail
    body = client.post("/rerank", json={"query": QUERY, "texts": texts, "truncate": True}, headers=AUTH).json()
    scores = dict((row["index"], row["score"]) for row in body)
    result = cross_encoder.predict_with_report([(QUERY, text) for text in texts], show_progress=False)
    assert result.report.truncated_indices == [1]  # the model cut the text it scored
    np.testing.assert_allclose([scores[0], scores[1]], result.scores, atol=1e-6)


@pytest.mark.parametrize(
    ("request_kwargs", "status", "message"),
    [
        ({"json": {"query": "q", "texts": ["t"]}, "headers": {}}, 401, "missing or wrong API key"),
        (
            {"json": {"query": "q", "texts": ["t"]}, "headers": {"Authorization": "Bearer wrong"}},
            401,
            "missing or wrong API key",
        ),
        (
            {"json": {"query": "q", "texts": ["t"], "model": "bge"}},
            404,
            "reranker 'bge' is not served; served rerankers: ce",
        ),
        (
            {"content": b'{"query": "q", "texts": ', "headers": {**AUTH, "content-type": "application/json"}},
            422,
            "json_invalid",
        ),
        ({"json": {"query": "q"}}, 422, "missing"),
        ({"json": {"query": "q", "texts": "not a list"}}, 422, "list_type"),
        ({"json": {"query": "q", "texts": ["x" * 5000]}}, 413, "over the limit of 4096 bytes"),
        ({"json": {"query": "q", "texts": ["t"] * 9}}, 413, "9 texts in one request; the limit is 8"),
        ({"json": {"query": "", "texts": ["t"]}}, 400, "query is an empty string"),
        ({"json": {"query": "q", "texts": []}}, 400, "texts is empty"),
        ({"json": {"query": "q", "texts": ["ok", ""]}}, 400, "text 1 is an empty string"),
    ],
)
def test_rerank_errors(client, request_kwargs, status, message):
    response = client.post("/rerank", **{"headers": AUTH, **request_kwargs})
    assert response.status_code == status
    assert message in response.text


def _counter(client: TestClient, name: str) -> float:
    lines = client.get("/metrics", headers=AUTH).text.splitlines()
    return next((float(line.split()[-1]) for line in lines if line.startswith(name + " ")), 0.0)


def test_health_lists_rerankers_and_metrics_count_pairs(client):
    assert client.get("/health").json() == {
        "status": "ok",
        "models": ["tiny"],
        "rerankers": ["ce"],
        "sparse_models": [],
        "multivector_models": [],
        "indexes": [],
    }
    before = _counter(client, "gpte_reranked_pairs_total")
    assert client.post("/rerank", json={"query": "q", "texts": ["a", "b"]}, headers=AUTH).status_code == 200
    assert _counter(client, "gpte_reranked_pairs_total") == before + 2
    assert 'gpte_requests_total{route="/rerank",status="200"}' in client.get("/metrics", headers=AUTH).text


def test_a_server_of_rerankers_only(cross_encoder, embedder):
    with TestClient(create_app({}, rerankers={"ce": cross_encoder})) as client:
        assert client.post("/rerank", json={"query": "q", "texts": ["a"]}).status_code == 200
        response = client.post("/v1/embeddings", json={"input": "a", "model": "tiny"})
        assert response.status_code == 404 and "served models: none" in response.text
    with pytest.raises(
        ValueError, match="serve at least one model, reranker, sparse model, multi-vector model or index"
    ):
        create_app({})
    with pytest.raises(TypeError, match="takes a reranker"):
        create_app({}, rerankers={"dense": embedder})


def test_concurrent_requests_are_scored_together(cross_encoder):
    app = create_app({}, rerankers={"ce": cross_encoder})
    texts = [f"sentence number {i} about wings" for i in range(24)]
    responses = post_concurrently(app, "/rerank", [{"query": QUERY, "texts": [text]} for text in texts])
    scores = [response.json()[0]["score"] for response in responses]
    np.testing.assert_allclose(scores, _predict(cross_encoder, QUERY, texts), atol=1e-5)  # up to padding noise
    assert app.state.rerank_batchers["ce"].batches < len(texts)  # several requests per predict call


class PoisonedCrossEncoder(CrossEncoder):
    """The cross-encoder failing every call that holds the text POISON, recording the pairs of each call."""

    calls: list[int]

    def predict(self, pairs, *args, **kwargs):
        self.calls.append(len(pairs))
        if any(text == "POISON" for _, text in pairs):
            raise ValueError("the model cannot read POISON")
        return super().predict(pairs, *args, **kwargs)


def test_a_bad_request_fails_alone_among_those_batched_with_it(tiny_models, cross_encoder):
    poisoned = PoisonedCrossEncoder.load(tiny_models["bert-cross-encoder"], device="cpu")
    poisoned.calls = []
    app = create_app({}, rerankers={"ce": poisoned})
    texts = [f"sentence number {i} about wings" for i in range(12)]
    bodies = [{"query": QUERY, "texts": [text]} for text in texts]
    bodies[4] = {"query": QUERY, "texts": ["POISON"]}  # passes the checks, fails in the model
    bodies[8] = {"query": QUERY, "texts": [LONG_TEXT]}  # refused before it is batched
    responses = post_concurrently(app, "/rerank", bodies)
    assert responses[4].status_code == 400 and "cannot read POISON" in responses[4].text
    assert responses[8].status_code == 413
    good = [i for i in range(12) if i not in (4, 8)]
    assert all(responses[i].status_code == 200 for i in good)
    scores = [responses[i].json()[0]["score"] for i in good]
    np.testing.assert_allclose(scores, _predict(cross_encoder, QUERY, [texts[i] for i in good]), atol=1e-5)
    assert max(poisoned.calls) > 1  # the poisoned request was batched with others, then each ran alone


def test_gpte_serve_reranker_only(tiny_models, monkeypatch):
    import uvicorn

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append(app))
    folder = tiny_models["bert-cross-encoder"]
    assert main(["serve", "--reranker", str(folder), "--port", "0"]) == 0
    with TestClient(served[0]) as client:
        assert client.get("/health").json()["models"] == [] and client.get("/health").json()["rerankers"] == [
            folder.name
        ]
        assert client.post("/rerank", json={"query": "q", "texts": ["a", "b"], "model": folder.name}).status_code == 200


def _write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


ROWS = [
    {"query": QUERY, "candidates": TEXTS, "qid": "q1"},
    {"query": "heat transfer", "candidates": [{"id": "d7", "text": TEXTS[0]}, {"text": TEXTS[3]}, TEXTS[1]]},
    {"query": "no candidates", "candidates": []},
]


def test_gpte_rerank_ranks_each_rows_candidates_as_predict_scores_them(tiny_models, cross_encoder, tmp_path, capsys):
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_jsonl(source, ROWS)
    folder = str(tiny_models["bert-cross-encoder"])
    assert main(["rerank", str(source), "--model", folder, "-o", str(output), "--top-k", "3"]) == 0
    assert "reranked 3 rows, 7 pairs" in capsys.readouterr().out
    first, second, third = (json.loads(line) for line in output.read_text().splitlines())
    assert first["qid"] == "q1" and first["candidates"] == TEXTS  # every field kept
    expected = _predict(cross_encoder, QUERY, TEXTS)
    assert [entry["index"] for entry in first["ranking"]] == np.argsort(-expected, kind="stable")[:3].tolist()
    np.testing.assert_allclose([entry["score"] for entry in first["ranking"]], np.sort(expected)[::-1][:3], atol=1e-5)
    expected = _predict(cross_encoder, "heat transfer", [TEXTS[0], TEXTS[3], TEXTS[1]])
    names = [{"id": "d7"}, {"index": 1}, {"index": 2}]
    ranked = [{**names[i], "score": pytest.approx(float(expected[i]), abs=1e-5)} for i in np.argsort(-expected)]
    assert second["ranking"] == ranked
    assert third["ranking"] == []

    assert main(["rerank", str(source), "--model", folder, "--raw-scores"]) == 0  # no -o: the rows on stdout
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    raw = _predict(cross_encoder, QUERY, TEXTS, activation=False)
    np.testing.assert_allclose([entry["score"] for entry in printed[0]["ranking"]], np.sort(raw)[::-1], atol=1e-5)


def test_gpte_rerank_refuses_to_overwrite_and_names_a_bad_line(tiny_models, tmp_path, capsys):
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_jsonl(source, ROWS)
    output.write_text("keep me", encoding="utf-8")
    folder = str(tiny_models["bert-cross-encoder"])
    assert main(["rerank", str(source), "--model", folder, "-o", str(output)]) == 1
    assert "already exists" in capsys.readouterr().err and output.read_text() == "keep me"
    assert main(["rerank", str(source), "--model", folder, "-o", str(output), "--overwrite"]) == 0
    assert len(output.read_text().splitlines()) == 3

    _write_jsonl(source, [ROWS[0], {"query": "q", "candidates": ["ok", {"id": 3}]}])
    fresh = tmp_path / "fresh.jsonl"
    assert main(["rerank", str(source), "--model", folder, "-o", str(fresh)]) == 1
    error = capsys.readouterr().err
    assert f"{source}:2: candidate 1 must be a string or an object with a string text field" in error
    assert not fresh.exists()
    _write_jsonl(source, [{"query": "", "candidates": ["a"]}])
    assert main(["rerank", str(source), "--model", folder]) == 1
    assert f"{source}:1: query must be a non-empty string" in capsys.readouterr().err
