"""The HTTP API: OpenAI-compatible embeddings (the openai client against a real uvicorn server on
loopback), search, health, metrics, micro-batching of concurrent requests, and every error status."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient

from gpte.serve.app import create_app

KEY = "secret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def client(embedder, index):
    app = create_app({"tiny": embedder}, {"docs": index}, api_key=KEY, max_request_bytes=4096, max_inputs=8)
    with TestClient(app) as test_client:
        yield test_client


def test_embeddings_match_encode_in_both_encodings(client, embedder):
    texts = ["A man plays a guitar.", "Two dogs run."]
    body = client.post("/v1/embeddings", json={"input": texts, "model": "tiny"}, headers=AUTH).json()
    assert body["object"] == "list" and body["model"] == "tiny"
    assert [row["index"] for row in body["data"]] == [0, 1]
    expected = embedder.encode(texts)
    assert np.array_equal(np.array([row["embedding"] for row in body["data"]], dtype=np.float32), expected)
    tokens = sum(len(ids) for ids in embedder.backbone.tokenizer(texts, add_special_tokens=False)["input_ids"])
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    b64 = client.post(
        "/v1/embeddings",
        json={"input": texts[0], "model": "tiny", "encoding_format": "base64", "dimensions": 16},
        headers=AUTH,
    ).json()
    import base64

    vector = np.frombuffer(base64.b64decode(b64["data"][0]["embedding"]), dtype="<f4")
    assert np.array_equal(vector, embedder.encode([texts[0]], truncate_dim=16)[0])


def _requests_total(client: TestClient, route: str, status: int) -> float:
    """The gpte_requests_total counter of (route, status) read from /metrics; 0 before the first such request."""
    label = f'gpte_requests_total{{route="{route}",status="{status}"}} '
    lines = client.get("/metrics", headers=AUTH).text.splitlines()
    return next((float(line[len(label) :]) for line in lines if line.startswith(label)), 0.0)


def test_search_health_and_metrics(client, index):
    searches, embeddings = _requests_total(client, "/search", 200), _requests_total(client, "/v1/embeddings", 200)
    hits = client.post("/search", json={"query": "why do wings stall", "k": 2}, headers=AUTH).json()
    expected = index.search("why do wings stall", k=2)
    assert hits["index"] == "docs" and [(h["doc_id"], h["score"]) for h in hits["hits"]] == [
        (h.doc_id, h.score) for h in expected
    ]
    assert (
        client.post("/search", json={"query": "heat", "mode": "lexical", "index": "docs"}, headers=AUTH).json()["hits"][
            0
        ]["doc_id"]
        == "b.txt"
    )
    assert client.post("/v1/embeddings", json={"input": "wings", "model": "tiny"}, headers=AUTH).status_code == 200
    assert client.get("/health").json() == {
        "status": "ok",
        "models": ["tiny"],
        "rerankers": [],
        "sparse_models": [],
        "multivector_models": [],
        "indexes": ["docs"],
    }
    assert _requests_total(client, "/search", 200) == searches + 2
    assert _requests_total(client, "/v1/embeddings", 200) == embeddings + 1
    assert 'gpte_request_seconds_count{route="/v1/embeddings"}' in client.get("/metrics", headers=AUTH).text


@pytest.mark.parametrize(
    ("request_kwargs", "status", "message"),
    [
        ({"json": {"input": "x", "model": "tiny"}, "headers": {}}, 401, "missing or wrong API key"),
        (
            {"json": {"input": "x", "model": "tiny"}, "headers": {"Authorization": "Bearer wrong"}},
            401,
            "missing or wrong API key",
        ),
        ({"json": {"input": "x", "model": "gpt-4"}}, 404, "model 'gpt-4' is not served; served models: tiny"),
        (
            {"content": b'{"input": "x", "model": ', "headers": {**AUTH, "content-type": "application/json"}},
            422,
            "json_invalid",
        ),
        ({"json": {"model": "tiny"}}, 422, "missing"),
        ({"json": {"input": "x" * 5000, "model": "tiny"}}, 413, "over the limit of 4096 bytes"),
        ({"json": {"input": ["x"] * 9, "model": "tiny"}}, 413, "9 inputs in one request; the limit is 8"),
        ({"json": {"input": ["ok", ""], "model": "tiny"}}, 400, "input 1 is an empty string"),
        ({"json": {"input": [], "model": "tiny"}}, 400, "input is empty"),
        ({"json": {"input": "x", "model": "tiny", "dimensions": 999}}, 400, "dimensions must be at most 32"),
    ],
)
def test_embedding_errors(client, request_kwargs, status, message):
    kwargs = {"headers": AUTH, **request_kwargs}
    response = client.post("/v1/embeddings", **kwargs)
    assert response.status_code == status
    assert message in response.text


def test_search_errors(client):
    assert client.post("/search", json={"query": "  "}, headers=AUTH).status_code == 400
    response = client.post("/search", json={"query": "x", "index": "web"}, headers=AUTH)
    assert response.status_code == 404 and "served indexes: docs" in response.text
    unknown = client.post("/search", json={"query": "x", "mode": "semantic"}, headers=AUTH)
    assert unknown.status_code == 400 and "unknown search mode 'semantic'; choose one of dense, lexical" in unknown.text


def post_concurrently(app, path: str, bodies: list, raw: bool = False) -> list[httpx.Response]:
    """POST every body to ``path`` at once, through the app's lifespan (its batchers running); ``raw``: the bodies
    are JSON texts sent as written (e.g. with an escaped lone surrogate, which httpx cannot encode from a str)."""

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as http,
        ):
            options = [
                {"content": body, "headers": {"content-type": "application/json"}} if raw else {"json": body}
                for body in bodies
            ]
            return await asyncio.gather(*(http.post(path, **option) for option in options))

    return asyncio.run(scenario())


def test_concurrent_requests_are_batched_and_each_gets_its_own_vectors(embedder, index):
    app = create_app({"tiny": embedder}, {"docs": index})
    texts = [f"sentence number {i} about wings" for i in range(40)]
    responses = post_concurrently(app, "/v1/embeddings", [{"input": [t], "model": "tiny"} for t in texts])
    vectors = np.array([r.json()["data"][0]["embedding"] for r in responses], dtype=np.float32)
    assert (
        np.abs(vectors - embedder.encode(texts)).max() <= 1e-5
    )  # batched with others: same vectors up to padding noise


def test_concurrent_searches_share_query_batches_and_rank_as_the_index_does(embedder, index):
    app = create_app({"tiny": embedder}, {"docs": index})
    queries = [f"question {i} about wings and heat" for i in range(24)]
    responses = post_concurrently(app, "/search", [{"query": q, "k": 3, "mode": "hybrid"} for q in queries])
    for query, response in zip(queries, responses):
        expected = index.search(query, k=3, mode="hybrid")
        assert [h["doc_id"] for h in response.json()["hits"]] == [h.doc_id for h in expected]
    assert app.state.query_batchers["docs"].batches < len(queries)  # several queries per encode


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_openai_client_unchanged_against_a_real_server(embedder, index):
    openai = pytest.importorskip("openai")
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app({"tiny": embedder}, {"docs": index}, api_key=KEY),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0)
        texts = ["A man plays a guitar.", "Two dogs run in the park."]
        response = client.embeddings.create(model="tiny", input=texts)  # the client asks for base64 and decodes it
        assert np.array_equal(
            np.array([row.embedding for row in response.data], dtype=np.float32), embedder.encode(texts)
        )
        with pytest.raises(openai.NotFoundError):
            client.embeddings.create(model="text-embedding-3-small", input="x")
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong", max_retries=0).embeddings.create(
                model="tiny", input="x"
            )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert not thread.is_alive()
