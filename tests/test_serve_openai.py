"""OpenAI compatibility of ``gpte serve``, checked with the real openai client (and LangChain's OpenAIEmbeddings)
against uvicorn on loopback: GET /v1/models and /v1/models/{id} in OpenAI's shape; OpenAI's error shape on every
error of a /v1 route (the gate's 401, 413 and 500 and FastAPI's 422 included), so the client shows gpte's message,
while the TEI-style routes keep ``{"detail": ...}``; token-id inputs (tiktoken ids, as LangChain sends by default)
refused with a 400 that says what to send instead."""

from __future__ import annotations

import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from test_serve_reliability import FELL_OVER, _Failing, _openai_error, _serving

from gpte.serve.app import TOKEN_IDS_REFUSED, create_app

openai = pytest.importorskip("openai")

KEY = "secret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
JSON = {"content-type": "application/json"}


def _app(embedder, splade):
    """Two served embedding models, a sparse model (not on /v1) and a failing model, behind the key."""
    return create_app(
        {"tiny": embedder, "tiny-2": embedder, "failing": _Failing(embedder)},
        api_key=KEY,
        max_request_bytes=4096,
        max_inputs=8,
        sparse_models={"splade-tiny": splade},
    )


@pytest.fixture(scope="module")
def server(embedder, splade):
    """The app on uvicorn: (its base URL, the second it was started)."""
    started = int(time.time())
    with _serving(_app(embedder, splade)) as base:
        yield base, started


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server[0]}/v1", api_key=KEY, max_retries=0)


@pytest.fixture(scope="module")
def http(embedder, splade):
    with TestClient(_app(embedder, splade), raise_server_exceptions=False) as test_client:
        yield test_client


def test_models_list_and_retrieve_in_openai_shape(client, server):
    models = client.models.list()
    assert [model.id for model in models] == ["tiny", "tiny-2", "failing"]  # embedding models only, as served
    assert {(model.object, model.owned_by) for model in models} == {("model", "gpte")}
    assert all(server[1] - 1 <= model.created <= time.time() for model in models)  # the server's start, in seconds
    tiny = client.models.retrieve("tiny-2")
    assert (tiny.id, tiny.object, tiny.owned_by) == ("tiny-2", "model", "gpte")
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("splade-tiny")  # a sparse model is no model of /v1/embeddings
    assert missing.value.body == {
        "message": "model 'splade-tiny' is not served; served models: tiny, tiny-2, failing",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


def test_openai_client_shows_gpte_errors(client, server):
    with pytest.raises(openai.NotFoundError) as missing:
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert "served models: tiny, tiny-2, failing" in str(missing.value)
    assert (missing.value.type, missing.value.param, missing.value.code) == (
        "invalid_request_error",
        "model",
        "model_not_found",
    )
    with pytest.raises(openai.BadRequestError) as wide:
        client.embeddings.create(model="tiny", input="x", dimensions=999)
    assert wide.value.body["message"] == "dimensions must be at most 32 for tiny, got 999"
    assert wide.value.param == "dimensions"
    with pytest.raises(openai.AuthenticationError) as refused:
        openai.OpenAI(base_url=f"{server[0]}/v1", api_key="wrong", max_retries=0).models.list()
    assert (refused.value.type, refused.value.code) == ("authentication_error", "invalid_api_key")
    assert refused.value.body["message"] == "missing or wrong API key; send Authorization: Bearer <key>"
    with pytest.raises(openai.InternalServerError) as failed:
        client.embeddings.create(model="failing", input="x")
    assert failed.value.body == FELL_OVER["error"]


@pytest.mark.parametrize("token_input", [[1, 2, 3], [[1, 2], [3]]])
def test_openai_client_token_ids_are_a_clear_400(client, token_input):
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model="tiny", input=token_input)
    assert refused.value.body == _openai_error(TOKEN_IDS_REFUSED, "input")["error"]
    assert "token ids" in TOKEN_IDS_REFUSED and "check_embedding_ctx_length=False" in TOKEN_IDS_REFUSED


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "body"),
    [
        (
            "POST",
            "/v1/embeddings",
            {"json": {"input": [[5, 6]], "model": "tiny"}},
            400,
            _openai_error(TOKEN_IDS_REFUSED, "input"),
        ),
        (
            "POST",
            "/v1/embeddings",
            {"json": {"input": [], "model": "tiny"}},
            400,
            _openai_error("input is empty; give a non-empty list of strings", param="input"),
        ),
        (
            "POST",
            "/v1/embeddings",
            {"json": {"input": ["ok", ""], "model": "tiny"}},
            400,
            _openai_error("input 1 is an empty string; every input must be non-empty", param="input"),
        ),
        (
            "GET",
            "/v1/models",
            {"headers": {}},
            401,
            _openai_error(
                "missing or wrong API key; send Authorization: Bearer <key>",
                code="invalid_api_key",
                kind="authentication_error",
            ),
        ),
        (
            "GET",
            "/v1/models/gpt-4",
            {},
            404,
            _openai_error(
                "model 'gpt-4' is not served; served models: tiny, tiny-2, failing",
                param="model",
                code="model_not_found",
            ),
        ),
        ("GET", "/v1/chat/completions", {}, 404, _openai_error("Not Found")),
        (
            "POST",
            "/v1/embeddings",
            {"content": b"x" * 5000, "headers": {**AUTH, **JSON}},
            413,
            _openai_error("request body over the limit of 4096 bytes"),
        ),
        (
            "POST",
            "/v1/embeddings",
            {"json": {"input": ["x"] * 9, "model": "tiny"}},
            413,
            _openai_error("9 inputs in one request; the limit is 8", param="input"),
        ),
        (
            "POST",
            "/v1/embeddings",
            {"json": {"model": "tiny"}},
            422,
            _openai_error("input: Field required (missing)", param="input"),
        ),
        (
            "POST",
            "/v1/embeddings",
            {"json": {"input": "x", "model": "tiny", "dimensions": 0, "encoding_format": "hex"}},
            422,
            _openai_error(
                "encoding_format: Input should be 'float' or 'base64' (literal_error); "
                "dimensions: Input should be greater than or equal to 1 (greater_than_equal)",
                param="encoding_format",  # the first field at fault, in the request model's order
            ),
        ),
        (
            "POST",
            "/v1/embeddings",
            {"content": b'{"input": "x", "model": ', "headers": {**AUTH, **JSON}},
            422,
            _openai_error("the body is not valid JSON: Expecting value at character 24 (json_invalid)"),
        ),
        (
            "POST",
            "/v1/embeddings",
            {"json": {"input": "x", "model": "failing"}},
            500,
            FELL_OVER,
        ),
    ],
)
def test_every_v1_error_is_openai_shaped(http, method, path, kwargs, status, body):
    response = http.request(method, path, **{"headers": AUTH, **kwargs})
    assert response.status_code == status, response.text
    assert response.json() == body
    assert response.content.isascii()


def test_a_lone_surrogate_in_a_v1_error_is_escaped_ascii(http):
    response = http.post("/v1/embeddings", content='{"input": "ok", "model": "\\ud800"}', headers={**AUTH, **JSON})
    assert response.status_code == 404 and response.content.isascii()
    assert response.json()["error"]["message"].startswith("model '\\ud800' is not served")


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "detail"),
    [
        ("POST", "/embed_sparse", {"json": {"inputs": "x"}, "headers": {}}, 401, "missing or wrong API key"),
        ("POST", "/embed_sparse", {"json": {"inputs": "x", "model": "nope"}}, 404, "served sparse models: splade-tiny"),
        ("POST", "/embed_sparse", {"json": {}}, 422, None),
        ("POST", "/rerank", {"json": {"query": "q", "texts": ["a"]}}, 404, "served rerankers: none"),
        ("GET", "/no/such/path", {}, 404, "Not Found"),
    ],
)
def test_tei_routes_keep_the_detail_shape(http, method, path, kwargs, status, detail):
    response = http.request(method, path, **{"headers": AUTH, **kwargs})
    assert response.status_code == status and set(response.json()) == {"detail"}
    if detail is None:  # FastAPI's list of field errors
        assert response.json()["detail"][0]["type"] == "missing"
    else:
        assert detail in response.json()["detail"]


def test_model_routes_are_counted_by_their_route_template(http):
    assert http.get("/v1/models/tiny", headers=AUTH).status_code == 200
    metrics = http.get("/metrics", headers=AUTH).text
    assert 'gpte_requests_total{route="/v1/models/{model:path}",status="200"}' in metrics


def _bytes_encoding():
    """A byte-level tiktoken encoding, built offline (cl100k's file is a download): LangChain's tokenization as it
    runs against OpenAI, with ids of another vocabulary."""
    import tiktoken

    return tiktoken.Encoding(
        name="bytes", pat_str=r"\S+|\s+", mergeable_ranks={bytes([i]): i for i in range(256)}, special_tokens={}
    )


def test_langchain_openai_embeddings(server, embedder, monkeypatch):
    langchain_openai = pytest.importorskip("langchain_openai")
    texts = ["A man plays a guitar.", "Two dogs run in the park."]
    options = {"model": "tiny", "base_url": f"{server[0]}/v1", "api_key": KEY, "max_retries": 0}
    embeddings = langchain_openai.OpenAIEmbeddings(check_embedding_ctx_length=False, **options)
    vectors = np.array(embeddings.embed_documents(texts), dtype=np.float32)
    assert np.abs(vectors - embedder.encode(texts)).max() <= 1e-5
    query = np.array(embeddings.embed_query("wings stall"), dtype=np.float32)
    assert np.abs(query - embedder.encode(["wings stall"])[0]).max() <= 1e-5
    # the default (check_embedding_ctx_length=True) tokenizes with tiktoken and sends the ids: our 400 says what to do
    monkeypatch.setattr(langchain_openai.embeddings.base.tiktoken, "encoding_for_model", lambda _: _bytes_encoding())
    with pytest.raises(openai.BadRequestError) as refused:
        langchain_openai.OpenAIEmbeddings(**options).embed_documents(texts)
    assert "check_embedding_ctx_length=False" in refused.value.body["message"]
