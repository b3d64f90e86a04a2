"""The HTTP server under bad and heavy input: a request with a lone surrogate fails alone among concurrent valid
ones; the API key is checked before the body is read and a body over the limit is refused after at most the limit
and one chunk (chunked uploads included), with /docs behind the key; a failing route gives a clean JSON 500 that
/metrics counts and that keeps the keep-alive connection; usage counts the tokens actually embedded, names the
truncated inputs, and tokens are counted off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from test_serve import _free_port, post_concurrently

from gpte.search.index import Index, build_index
from gpte.serve.app import create_app

KEY = "secret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
JSON = {"content-type": "application/json"}
BAD_EMBEDDING = '{"input": "bad \\ud800", "model": "tiny"}'  # a lone surrogate: no UTF-8 encoding exists


def _openai_error(
    message: str, param: str | None = None, code: str | None = None, kind: str = "invalid_request_error"
) -> dict:
    """An error body of a /v1 route, in OpenAI's shape."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


FELL_OVER = _openai_error("internal error: RuntimeError: the model fell over", kind="server_error")  # a failing route


class _Failing:
    """The embedder, except that ``encode`` raises (a model that falls over mid-request)."""

    def __init__(self, model):
        self._model = model

    def __getattr__(self, name):
        return getattr(self._model, name)

    def encode(self, *args, **kwargs):
        raise RuntimeError("the model fell over")


def _requests_total(client: TestClient, route: str, status: int) -> float:
    label = f'gpte_requests_total{{route="{route}",status="{status}"}} '
    lines = client.get("/metrics", headers=AUTH).text.splitlines()
    return next((float(line[len(label) :]) for line in lines if line.startswith(label)), 0.0)


def _post_stream(app, path: str, chunks: Iterator[bytes], headers: dict[str, str]) -> tuple[httpx.Response, int, int]:
    """POST the chunks as a streamed (chunked, no Content-Length unless ``headers`` give one) body; returns the
    response and how many chunks and bytes the server pulled (the ASGI transport pulls a chunk per ``receive``)."""
    pulled = pulled_bytes = 0

    async def body():
        nonlocal pulled, pulled_bytes
        for chunk in chunks:
            pulled += 1
            pulled_bytes += len(chunk)
            yield chunk

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as http,
        ):
            return await http.post(path, content=body(), headers={**JSON, **headers})

    return asyncio.run(scenario()), pulled, pulled_bytes


@contextlib.contextmanager
def _serving(app) -> Iterator[str]:
    """``app`` served by uvicorn on loopback in a thread; yields its base URL."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert not thread.is_alive()


# ------------------------------------------------------------------ 1. a poisoned request fails alone


def test_lone_surrogate_among_concurrent_embeddings_fails_alone(embedder):
    app = create_app({"tiny": embedder})
    texts = [f"sentence number {i} about wings" for i in range(20)]
    bodies = [f'{{"input": ["{text}"], "model": "tiny"}}' for text in texts]
    bodies.insert(7, BAD_EMBEDDING)
    responses = post_concurrently(app, "/v1/embeddings", bodies, raw=True)
    bad = responses.pop(7)
    assert bad.status_code == 400
    assert bad.json() == _openai_error(
        "input 0 is not valid Unicode text: surrogates not allowed at character 4", "input"
    )
    assert [r.status_code for r in responses] == [200] * len(texts)
    vectors = np.array([r.json()["data"][0]["embedding"] for r in responses], dtype=np.float32)
    assert np.abs(vectors - embedder.encode(texts)).max() <= 1e-5


def test_lone_surrogate_among_concurrent_searches_fails_alone(embedder, index):
    app = create_app({"tiny": embedder}, {"docs": index})
    queries = [f"question {i} about wings and heat" for i in range(20)]
    bodies = [f'{{"query": "{query}", "k": 2, "mode": "hybrid"}}' for query in queries]
    bodies.insert(3, '{"query": "why \\ud800", "k": 2, "mode": "hybrid"}')
    responses = post_concurrently(app, "/search", bodies, raw=True)
    bad = responses.pop(3)
    assert bad.status_code == 400
    assert bad.json() == {"detail": "query is not valid Unicode text: surrogates not allowed at character 4"}
    assert [r.status_code for r in responses] == [200] * len(queries)
    for query, response in zip(queries, responses):
        expected = index.search(query, k=2, mode="hybrid")
        hits = response.json()["hits"]
        assert [h["doc_id"] for h in hits] == [h.doc_id for h in expected]
        assert [h["score"] for h in hits] == pytest.approx([h.score for h in expected], abs=1e-5)


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/embeddings", BAD_EMBEDDING, 400, "input 0 is not valid Unicode text"),
        ("/v1/embeddings", '{"input": ["ok", "\\udfff x"], "model": "tiny"}', 400, "input 1 is not valid Unicode"),
        ("/search", '{"query": "\\ud800"}', 400, "query is not valid Unicode text"),
        ("/search", '{"query": "wings \\ud800", "mode": "lexical"}', 400, "query is not valid Unicode text"),
        ("/search", '{"query": "wings \\ud800", "mode": "dense"}', 400, "query is not valid Unicode text"),
        ("/v1/embeddings", '{"input": "ok", "model": "\\ud800"}', 404, "is not served; served models: tiny"),
        ("/search", '{"query": "wings", "mode": "\\ud800"}', 400, "unknown search mode"),
        ("/v1/embeddings", '{"input": "ok", "model": "tiny", "dimensions": "\\ud800"}', 422, "string_unicode"),
    ],
)
def test_lone_surrogate_alone_is_a_client_error(embedder, index, path, body, status, message):
    app = create_app({"tiny": embedder}, {"docs": index})
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(path, content=body, headers=JSON)
    assert response.status_code == status, response.text
    assert message in response.text


# ------------------------------------------------------------------ 2. the key first, then a streamed limit


def _chunks(size: int, count: int) -> Iterator[bytes]:
    yield b'{"input": "'
    for _ in range(count):
        yield b"x" * size


def test_unauthenticated_upload_is_refused_before_its_body_is_read(embedder):
    app = create_app({"tiny": embedder}, api_key=KEY, max_request_bytes=4096)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response, pulled, _ = _post_stream(app, "/v1/embeddings", _chunks(65536, 1024), headers)  # 64 MiB offered
        assert response.status_code == 401
        assert response.json() == _openai_error(
            "missing or wrong API key; send Authorization: Bearer <key>",
            None,
            "invalid_api_key",
            "authentication_error",
        )
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["connection"] == "close"  # the unread body is not drained
        assert pulled == 0


def test_chunked_upload_over_the_limit_stops_after_the_limit_and_one_chunk(embedder):
    app = create_app({"tiny": embedder}, api_key=KEY, max_request_bytes=4096)
    response, pulled, pulled_bytes = _post_stream(app, "/v1/embeddings", _chunks(1000, 65536), AUTH)  # 64 MB, no length
    assert response.status_code == 413
    assert response.json() == _openai_error("request body over the limit of 4096 bytes")
    assert response.headers["connection"] == "close"
    assert pulled_bytes <= 4096 + 1000  # the limit and one chunk at most
    assert pulled == 6  # 11 + 5 * 1000 bytes: the 6th chunk crosses the limit, and reading stops there


def test_declared_length_over_the_limit_is_refused_unread(embedder):
    app = create_app({"tiny": embedder}, api_key=KEY, max_request_bytes=4096)
    headers = {**AUTH, "Content-Length": str(11 + 65536 * 1000)}
    response, pulled, _ = _post_stream(app, "/v1/embeddings", _chunks(65536, 1000), headers)
    assert response.status_code == 413 and pulled == 0


def test_chunked_upload_within_the_limit_is_served(embedder):
    app = create_app({"tiny": embedder}, api_key=KEY, max_request_bytes=4096)

    def chunks():
        yield b'{"input": ["wings stall", '
        yield b'"heat flux"], "model": "tiny"}'

    response, pulled, _ = _post_stream(app, "/v1/embeddings", chunks(), AUTH)
    assert response.status_code == 200 and pulled == 2
    assert "connection" not in response.headers  # read whole: the connection stays open
    vectors = np.array([row["embedding"] for row in response.json()["data"]], dtype=np.float32)
    assert np.abs(vectors - embedder.encode(["wings stall", "heat flux"])).max() <= 1e-5


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_docs_are_behind_the_key_unless_public(embedder, path):
    with TestClient(create_app({"tiny": embedder}, api_key=KEY)) as client:
        assert client.get(path).status_code == 401
        assert client.get(path, headers=AUTH).status_code == 200
        assert client.get("/health").status_code == 200
    with TestClient(create_app({"tiny": embedder}, api_key=KEY, public_docs=True)) as client:
        assert client.get(path).status_code == 200
        assert client.post("/v1/embeddings", json={"input": "x", "model": "tiny"}).status_code == 401
        assert client.get("/metrics").status_code == 401
    with TestClient(create_app({"tiny": embedder})) as client:  # no key: everything is public
        assert client.get(path).status_code == 200


# ------------------------------------------------------------------ 3. 500s: clean, counted, keep-alive kept


def test_failing_route_is_a_clean_json_500_counted_in_metrics(embedder, caplog):
    app = create_app({"tiny": _Failing(embedder)}, api_key=KEY, max_request_bytes=4096)
    with TestClient(app, raise_server_exceptions=False) as client, caplog.at_level(logging.ERROR):
        response = client.post("/v1/embeddings", json={"input": "wings", "model": "tiny"}, headers=AUTH)
        assert response.status_code == 500
        assert response.json() == FELL_OVER
        assert "Traceback" not in response.text
        assert _requests_total(client, "/v1/embeddings", 500) == 1.0
        assert client.post("/v1/embeddings", json={"input": "x", "model": "tiny"}).status_code == 401
        assert client.post("/v1/embeddings", content=b"x" * 5000, headers={**AUTH, **JSON}).status_code == 413
        assert _requests_total(client, "/v1/embeddings", 401) == 1.0
        assert _requests_total(client, "/v1/embeddings", 413) == 1.0
    logged = [record for record in caplog.records if record.exc_info and record.exc_info[0] is RuntimeError]
    assert logged and "/v1/embeddings" in logged[0].getMessage()  # the traceback stays in the server's log


def test_unknown_paths_share_one_metrics_label(embedder):
    with TestClient(create_app({"tiny": embedder})) as client:
        for i in range(3):
            assert client.get(f"/no/such/path/{i}").status_code == 404
        metrics = client.get("/metrics").text
    assert "/no/such/path" not in metrics  # a client cannot grow the label set without bound
    assert 'gpte_requests_total{route="<unmatched>",status="404"} 3.0' in metrics


def test_keep_alive_connection_survives_a_500(embedder):
    app = create_app({"failing": _Failing(embedder), "tiny": embedder}, api_key=KEY)
    with _serving(app) as url, httpx.Client(base_url=url, headers=AUTH) as client:
        failed = client.post("/v1/embeddings", json={"input": "wings", "model": "failing"})
        assert failed.status_code == 500
        assert failed.json() == FELL_OVER
        assert failed.headers.get("connection", "keep-alive") != "close"
        first = failed.extensions["network_stream"].get_extra_info("client_addr")
        served = client.post("/v1/embeddings", json={"input": "wings", "model": "tiny"})
        assert served.status_code == 200
        assert served.extensions["network_stream"].get_extra_info("client_addr") == first  # the same connection
        vector = np.array(served.json()["data"][0]["embedding"], dtype=np.float32)
        assert np.abs(vector - embedder.encode(["wings"])[0]).max() <= 1e-5


# ------------------------------------------------------------------ 4. usage: tokens embedded, off the loop


@pytest.mark.filterwarnings("ignore:.*were truncated:UserWarning")  # encode's own word on the long inputs
def test_usage_counts_the_tokens_embedded_and_names_truncated_inputs(embedder):
    budget = embedder.text_token_budget(None)
    assert budget == 126  # the tiny BERT reads 128 tokens, less [CLS] and [SEP]
    long_text = " ".join(["wings stall at high angles"] * 10_000)  # 50,000 words
    short = ["A man plays a guitar.", "Two dogs run."]
    counts = [len(ids) for ids in embedder.backbone.tokenizer(short, add_special_tokens=False)["input_ids"]]
    with TestClient(create_app({"tiny": embedder})) as client:
        alone = client.post("/v1/embeddings", json={"input": long_text, "model": "tiny"})
        assert alone.status_code == 200
        assert alone.json()["usage"] == {"prompt_tokens": budget, "total_tokens": budget}
        assert alone.headers["x-truncated-inputs"] == "0"
        mixed = client.post(
            "/v1/embeddings", json={"input": [short[0], long_text, short[1], long_text], "model": "tiny"}
        )
        assert mixed.json()["usage"]["prompt_tokens"] == counts[0] + budget + counts[1] + budget
        assert mixed.headers["x-truncated-inputs"] == "1,3"
        vectors = np.array([row["embedding"] for row in mixed.json()["data"]], dtype=np.float32)
        assert np.abs(vectors - embedder.encode([short[0], long_text, short[1], long_text])).max() <= 1e-5
        plain = client.post("/v1/embeddings", json={"input": short, "model": "tiny"})
        assert plain.json()["usage"] == {"prompt_tokens": sum(counts), "total_tokens": sum(counts)}
        assert "x-truncated-inputs" not in plain.headers


def test_tokens_are_counted_off_the_event_loop(embedder, monkeypatch):
    calls: list[tuple[threading.Thread, bool]] = []
    count_tokens = embedder.count_tokens

    def recording(texts):
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:  # no event loop runs in this thread
            on_loop = False
        calls.append((threading.current_thread(), on_loop))
        return count_tokens(texts)

    monkeypatch.setattr(embedder, "count_tokens", recording)
    app = create_app({"tiny": embedder})
    responses = post_concurrently(app, "/v1/embeddings", [{"input": f"text {i}", "model": "tiny"} for i in range(6)])
    assert [r.status_code for r in responses] == [200] * 6
    assert calls  # usage was counted ...
    assert all(thread is not threading.main_thread() and not on_loop for thread, on_loop in calls)  # ... off the loop


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"source": {"$in": ["a.txt"]}}, "filter 'source': {'$in': ['a.txt']} is not allowed"),
        ({"source": [["a.txt"], "b.txt"]}, "filter 'source': [['a.txt'], 'b.txt'] is not allowed"),
        ({"year": 1960}, "no document has the metadata field 'year'; the fields are: source"),
    ],
)
def test_bad_search_filters_are_client_errors(embedder, index, filters, message):
    with TestClient(create_app({"tiny": embedder}, {"docs": index})) as client:
        for mode in ("dense", "lexical", "hybrid"):
            response = client.post("/search", json={"query": "wings", "mode": mode, "filters": filters})
            assert response.status_code == 400 and message in response.json()["detail"]
        assert client.post("/search", json={"query": "wings", "filters": {"source": "a.txt"}}).status_code == 200


def _write_generation_docs(folder, version: int) -> set[tuple[str, str]]:
    """The documents of index update ``version``; returns their (doc id, text) pairs."""
    pairs = set()
    for i, topic in enumerate(["wings stall at high angles", "hypersonic heat transfer", "shock waves"]):
        text = f"{topic} in report {version} number {i}."
        (folder / f"d{i}.txt").write_text(text, encoding="utf-8")
        pairs.add((f"d{i}.txt", text))
    return pairs


@pytest.mark.parametrize("refresh", [0.0, None])
def test_searches_during_five_index_updates_never_fail_and_follow_the_update(embedder, tmp_path, refresh):
    docs, root = tmp_path / "docs", tmp_path / "index"
    docs.mkdir()
    versions = [_write_generation_docs(docs, 0)]
    build_index(root, docs, embedder=embedder, show_progress=False)
    app = create_app({}, {"docs": Index.open(root, embedder=embedder)}, index_refresh_seconds=refresh)

    def update_five_times() -> None:
        for version in range(1, 6):
            versions.append(_write_generation_docs(docs, version))
            build_index(root, docs, embedder=embedder, show_progress=False)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as http,
        ):
            updates = asyncio.ensure_future(asyncio.to_thread(update_five_times))
            responses = []
            while not updates.done():
                for mode in ("dense", "lexical", "hybrid"):
                    responses.append(await http.post("/search", json={"query": "heat and wings", "mode": mode}))
            await updates
            reloaded = (await http.post("/admin/reload")).json()
            last = await http.post("/search", json={"query": "heat and wings", "mode": "lexical"})
            return responses, reloaded, last

    responses, reloaded, last = asyncio.run(scenario())
    assert len(responses) >= 3 and [r.status_code for r in responses if r.status_code != 200] == []
    seen = {(hit["doc_id"], hit["text"]) for r in responses for hit in r.json()["hits"]}
    assert seen <= set().union(*versions)  # every hit is a document of some generation, never a mix or an error
    assert reloaded == {"indexes": {"docs": "gen-000006"}}
    assert {(hit["doc_id"], hit["text"]) for hit in last.json()["hits"]} <= versions[-1]
    if refresh == 0.0:
        assert seen & set().union(*versions[1:])  # followed the updates while they ran, without a reload
    else:
        assert seen <= versions[0]  # no refresh: the first generation until the reload


def test_a_broken_index_on_disk_leaves_the_open_generation_answering(embedder, tmp_path, caplog):
    docs, root = tmp_path / "docs", tmp_path / "index"
    docs.mkdir()
    first = _write_generation_docs(docs, 0)
    build_index(root, docs, embedder=embedder, show_progress=False)
    app = create_app({}, {"docs": Index.open(root, embedder=embedder)}, index_refresh_seconds=0)
    (root / "CURRENT").write_text("gen-000099\n", encoding="utf-8")  # names a generation that does not exist
    with TestClient(app) as client, caplog.at_level(logging.WARNING, logger="gpte.serve.live_indexes"):
        for mode in ("dense", "lexical", "hybrid"):
            response = client.post("/search", json={"query": "heat", "mode": mode})
            assert response.status_code == 200
            assert {(hit["doc_id"], hit["text"]) for hit in response.json()["hits"]} <= first
        assert client.post("/admin/reload").json() == {"indexes": {"docs": "gen-000001"}}
        assert "index 'docs': cannot open its live generation" in caplog.text and "gen-000099" in caplog.text
        (root / "CURRENT").write_text("gen-000001\n", encoding="utf-8")
        second = _write_generation_docs(docs, 1)
        build_index(root, docs, embedder=embedder, show_progress=False)  # repaired and updated: followed again
        hits = client.post("/search", json={"query": "heat", "mode": "lexical"}).json()["hits"]
        assert {(hit["doc_id"], hit["text"]) for hit in hits} <= second
