"""The HTTP API (FastAPI): OpenAI-compatible embeddings, index search, health and Prometheus metrics.

    POST /v1/embeddings   {"input": str | [str], "model": NAME, "encoding_format": "float" | "base64", "dimensions": D}
    POST /search          {"query": str, "index": NAME, "k": 10, "mode": "dense" | "lexical" | "hybrid", "filters": {...}}
    GET  /health          served models and indexes
    GET  /metrics         Prometheus text format

Errors: 400 empty input or bad option, 401 missing or wrong API key (``Authorization: Bearer KEY``),
404 unknown model or index (the served ones listed), 413 request body over ``max_request_bytes`` or more
inputs than ``max_inputs``, 422 malformed JSON or fields. The app holds no logic of its own: it calls
the model's ``encode`` (through ``gpte.serve.batching``) and ``Index.search``.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, Field

from gpte.models.protocol import DenseModel
from gpte.serve.batching import EmbeddingBatcher

if TYPE_CHECKING:  # annotations only: a server without indexes needs neither back-end
    from gpte.search.index import Index
    from gpte.search.milvus import MilvusIndex

MAX_REQUEST_BYTES = 1 << 20
MAX_INPUTS = 2048  # OpenAI's limit of inputs per embeddings request


class EmbeddingRequest(BaseModel):
    input: str | list[str]
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


class SearchRequest(BaseModel):
    query: str
    index: str | None = None
    k: int = Field(default=10, ge=1, le=1000)
    mode: Literal["dense", "lexical", "hybrid"] = "dense"
    dense_mode: Literal["exact", "hnsw", "binary", "int8"] | None = None  # None: the index's default
    fusion: Literal["rrf", "weighted"] = "rrf"
    filters: dict[str, Any] | None = None


def create_app(
    models: dict[str, DenseModel],
    indexes: dict[str, Index | MilvusIndex] | None = None,
    api_key: str | None = None,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    max_inputs: int = MAX_INPUTS,
) -> FastAPI:
    """The app serving ``models`` (name -> any gpte dense model) and ``indexes`` (name -> ``gpte.search.index.Index``).

    ``api_key``: when set, every route but /health needs ``Authorization: Bearer <api_key>``."""
    if not models:
        raise ValueError("serve at least one model")
    indexes = indexes or {}
    batchers = {name: EmbeddingBatcher(model) for name, model in models.items()}
    query_batchers = {
        name: EmbeddingBatcher(index.embedder) for name, index in indexes.items()
    }  # /search queries, batched too
    metrics = _Metrics()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        every = [*batchers.values(), *query_batchers.values()]
        for batcher in every:
            batcher.start()
        yield
        await asyncio.gather(*(batcher.stop() for batcher in every))

    app = FastAPI(title="gpte", lifespan=lifespan)
    app.state.batchers, app.state.query_batchers = batchers, query_batchers
    app.middleware("http")(_limit_and_count(max_request_bytes, metrics))
    authorized = _authorization(api_key)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": list(models), "indexes": list(indexes)}

    @app.get("/metrics", dependencies=[Depends(authorized)])
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/embeddings", dependencies=[Depends(authorized)])
    async def embeddings(request: EmbeddingRequest) -> dict[str, Any]:
        texts = [request.input] if isinstance(request.input, str) else request.input
        _check_texts(texts, max_inputs)
        if request.model not in models:
            raise HTTPException(404, f"model {request.model!r} is not served; served models: {', '.join(models)}")
        model = models[request.model]
        if request.dimensions is not None and request.dimensions > model.dimension:
            raise HTTPException(
                400, f"dimensions must be at most {model.dimension} for {request.model}, got {request.dimensions}"
            )
        vectors = await batchers[request.model].embed(texts, request.dimensions)
        metrics.texts.inc(len(texts))
        tokens = sum(model.count_tokens(texts))  # the input's tokens, as OpenAI counts them (no prompt or specials)
        data = [
            {"object": "embedding", "index": i, "embedding": _encode_vector(v, request.encoding_format)}
            for i, v in enumerate(vectors)
        ]
        return {
            "object": "list",
            "data": data,
            "model": request.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    @app.post("/search", dependencies=[Depends(authorized)])
    async def search(request: SearchRequest) -> dict[str, Any]:
        name = request.index or next(iter(indexes), None)
        if name not in indexes:
            raise HTTPException(
                404, f"index {request.index!r} is not served; served indexes: {', '.join(indexes) or 'none'}"
            )
        options = request.model_dump(exclude={"query", "index"}, exclude_none=True)
        try:
            if request.mode != "lexical" and request.query.strip():  # an empty query is refused by search
                options["query_vectors"] = await query_batchers[name].embed([request.query], role="query")
            hits = await asyncio.to_thread(indexes[name].search, request.query, **options)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        return {"index": name, "hits": [hit.__dict__ for hit in hits]}

    return app


def _check_texts(texts: list[str], max_inputs: int) -> None:
    if not texts:
        raise HTTPException(400, "input is empty; give a string or a non-empty list of strings")
    if len(texts) > max_inputs:
        raise HTTPException(413, f"{len(texts)} inputs in one request; the limit is {max_inputs}")
    empty = [i for i, text in enumerate(texts) if not text]
    if empty:
        raise HTTPException(400, f"input {empty[0]} is an empty string; every input must be non-empty")


def _encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    """A vector as a JSON list, or as base64 of little-endian float32 bytes (what the openai client asks for)."""
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return np.asarray(vector, dtype=np.float32).tolist()


def _authorization(api_key: str | None):
    async def check(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), api_key.encode()):
            raise HTTPException(
                401,
                "missing or wrong API key; send Authorization: Bearer <key>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("gpte_requests", "HTTP requests", ["route", "status"], registry=self.registry)
        self.latency = Histogram("gpte_request_seconds", "request latency", ["route"], registry=self.registry)
        self.texts = Counter("gpte_embedded_texts", "texts embedded", registry=self.registry)


def _limit_and_count(max_request_bytes: int, metrics: _Metrics):
    """Middleware: 413 for a body over the limit (declared or streamed), then count and time the request."""

    async def middleware(request: Request, call_next):
        started = time.perf_counter()
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_request_bytes:
            response = _too_large(max_request_bytes)
        else:
            body = await request.body()
            response = _too_large(max_request_bytes) if len(body) > max_request_bytes else await call_next(request)
        route = request.url.path
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - started)
        return response

    return middleware


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"request body over the limit of {limit} bytes"}, status_code=413)
