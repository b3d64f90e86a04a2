"""Sparse vectors over HTTP and on the command line: POST /embed_sparse in text-embeddings-inference's shape
(entries equal the model's encode, by token index; roles; every error status as /v1/embeddings; long inputs refused
unless truncate), concurrent requests batched without a bad one failing the others, ``gpte serve --sparse`` and
``gpte encode --kind sparse`` (.npz and .jsonl) — on the tiny SPLADE."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse
from fastapi.testclient import TestClient
from test_serve import post_concurrently

from gpte.cli import main
from gpte.serve.app import create_app

KEY = "secret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
TEXTS = ["a stall happens when the wing exceeds its critical angle", "two dogs run in the park", "heat flux"]


@pytest.fixture(scope="module")
def client(embedder, splade):
    app = create_app(
        {"tiny": embedder}, api_key=KEY, max_request_bytes=4096, max_inputs=8, sparse_models={"splade": splade}
    )
    with TestClient(app) as test_client:
        yield test_client


def _as_dense(entries: list[dict], size: int) -> np.ndarray:
    row = np.zeros(size, dtype=np.float32)
    for entry in entries:
        row[entry["index"]] = entry["value"]
    return row


def test_entries_equal_encode_by_token_index(client, splade):
    body = client.post("/embed_sparse", json={"inputs": TEXTS}, headers=AUTH).json()
    assert len(body) == len(TEXTS)
    expected = splade.encode(TEXTS).toarray()
    for entries, row in zip(body, expected):
        indices = [entry["index"] for entry in entries]
        assert indices == sorted(indices) and len(indices) == np.count_nonzero(row)
        np.testing.assert_allclose(_as_dense(entries, splade.vocab_size), row, atol=1e-6)
    single = client.post("/embed_sparse", json={"inputs": "heat flux", "model": "splade"}, headers=AUTH).json()
    np.testing.assert_allclose(
        _as_dense(single[0], splade.vocab_size), _as_dense(body[2], splade.vocab_size), atol=1e-5
    )  # alone or batched with others: equal up to padding noise


def test_prompt_name_picks_the_role(embedder, splade, tmp_path):
    model = splade.__class__(
        splade.document_head, splade.tokenizer, 128, prompts={"query": "query: "}, name="asymmetric"
    )
    app = create_app({}, sparse_models={"m": model})
    with TestClient(app) as http:
        body = http.post("/embed_sparse", json={"inputs": ["wings"], "prompt_name": "query"}).json()
    np.testing.assert_allclose(
        _as_dense(body[0], model.vocab_size), model.encode(["wings"], role="query").toarray()[0], atol=1e-6
    )
    assert not np.allclose(model.encode(["wings"], role="query").toarray(), model.encode(["wings"]).toarray())


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        ({"inputs": TEXTS}, {}, 401, "API key"),
        ({"inputs": []}, AUTH, 400, "inputs is empty"),
        ({"inputs": ["ok", ""]}, AUTH, 400, "input 1 is an empty string"),
        ({"inputs": ["x"] * 9}, AUTH, 413, "the limit is 8"),
        ({"inputs": TEXTS, "model": "nope"}, AUTH, 404, "served sparse models: splade"),
        ({"inputs": TEXTS, "prompt_name": "passage"}, AUTH, 400, "unknown role 'passage'"),
        ({"inputs": ["wing " * 200]}, AUTH, 413, "input 0 has 200 tokens; sparse model 'splade' reads at most 126"),
        ({"inputs": [1]}, AUTH, 422, ""),
    ],
)
def test_errors_name_the_problem(client, body, headers, status, message):
    response = client.post("/embed_sparse", json=body, headers=headers)
    assert response.status_code == status
    assert message in json.dumps(response.json())


def test_truncate_true_cuts_a_long_input(client, splade):
    body = client.post("/embed_sparse", json={"inputs": ["wing " * 200], "truncate": True}, headers=AUTH).json()
    np.testing.assert_allclose(
        _as_dense(body[0], splade.vocab_size), splade.encode(["wing " * 200]).toarray()[0], atol=1e-6
    )


def test_concurrent_requests_each_get_their_vectors_and_a_bad_one_fails_alone(splade):
    app = create_app({}, sparse_models={"splade": splade})
    texts = [f"sentence number {i} about wings" for i in range(12)]
    bodies = [json.dumps({"inputs": [text]}) for text in texts] + ['{"inputs": ["fine", "bad \\ud800"]}']
    responses = post_concurrently(app, "/embed_sparse", bodies, raw=True)
    assert [r.status_code for r in responses[:-1]] == [200] * len(texts)
    expected = splade.encode(texts).toarray()
    for response, row in zip(responses, expected):
        np.testing.assert_allclose(_as_dense(response.json()[0], splade.vocab_size), row, atol=1e-5)
    assert responses[-1].status_code == 400  # a lone surrogate cannot be tokenized: this request alone fails
    assert "surrogate" in responses[-1].json()["detail"]


def test_serve_cli_loads_sparse_models(monkeypatch, splade, tmp_path):
    import uvicorn

    folder = splade.save(tmp_path / "splade-tiny")
    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append(app))
    assert main(["serve", "--sparse", str(folder), "--port", "0"]) == 0
    with TestClient(served[0]) as http:
        assert http.get("/health").json()["sparse_models"] == ["splade-tiny"]
        assert http.get("/health").json()["models"] == []
        assert len(http.post("/embed_sparse", json={"inputs": ["wings"]}).json()) == 1


def test_encode_cli_writes_npz_and_jsonl(splade, tmp_path, capsys):
    folder = splade.save(tmp_path / "splade-tiny")
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    assert main(["encode", str(texts), "-o", str(tmp_path / "v.npz"), "--model", str(folder), "--top-k", "4"]) == 0
    assert "wrote 3 sparse vectors (4.0 active of 30522" in capsys.readouterr().out
    matrix = scipy.sparse.load_npz(tmp_path / "v.npz")
    np.testing.assert_allclose(matrix.toarray(), splade.encode(TEXTS, top_k=4).toarray(), atol=1e-6)
    assert main(["encode", str(texts), "-o", str(tmp_path / "v.jsonl"), "--model", str(folder), "--top-k", "4"]) == 0
    lines = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [list(line.items()) for line in lines] == [
        [(token, pytest.approx(weight, abs=1e-6)) for token, weight in splade.decode(matrix[row])] for row in range(3)
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["-o", "v.npy", "--kind", "sparse"], "unsupported sparse output format '.npy'; use one of .npz, .jsonl"),
        (["-o", "v.npz", "--kind", "sparse", "--truncate-dim", "8"], "--truncate-dim apply to dense models"),
        (["-o", "v.npy", "--kind", "dense", "--top-k", "3"], "--top-k and --threshold apply to sparse models"),
    ],
)
def test_encode_cli_refuses_options_of_the_other_kind(splade, tmp_path, capsys, arguments, message):
    texts = tmp_path / "texts.txt"
    texts.write_text("a\n", encoding="utf-8")
    folder = splade.save(tmp_path / "m")
    arguments = [tmp_path / a if a.startswith("v.") else a for a in arguments]
    assert main(["encode", str(texts), "--model", str(folder), *map(str, arguments)]) == 1
    assert message in capsys.readouterr().err


def test_search_serves_sparse_and_fused_modes_as_the_index_ranks(embedder, splade, tmp_path):
    from gpte.search.index import Index, build_index

    documents = tmp_path / "docs.jsonl"
    rows = [{"_id": f"d{i}", "text": text} for i, text in enumerate(TEXTS * 2)]
    documents.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    build_index(tmp_path / "both", documents, embedder=embedder, sparse_model=splade, show_progress=False)
    build_index(tmp_path / "sparse-only", documents, sparse_model=splade, dense=False, show_progress=False)
    both = Index.open(tmp_path / "both", embedder=embedder, sparse_model=splade)
    sparse_only = Index.open(tmp_path / "sparse-only", sparse_model=splade)
    app = create_app({}, {"both": both, "sparse-only": sparse_only})
    with TestClient(app) as http:
        for name, index, mode in (
            ("both", both, "dense+sparse"),
            ("both", both, "sparse"),
            ("sparse-only", sparse_only, None),
        ):
            body = {"query": "wing stall", "index": name, "k": 3} | ({"mode": mode} if mode else {})
            hits = http.post("/search", json=body).json()["hits"]
            expected = index.search("wing stall", k=3, **({"mode": mode} if mode else {}))
            assert [hit["doc_id"] for hit in hits] == [hit.doc_id for hit in expected]
            np.testing.assert_allclose([hit["score"] for hit in hits], [hit.score for hit in expected], rtol=1e-5)
        refused = http.post("/search", json={"query": "wing", "index": "sparse-only", "mode": "dense"})
        assert refused.status_code == 400 and "built without a dense model" in refused.json()["detail"]
