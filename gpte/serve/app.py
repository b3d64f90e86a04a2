"""The HTTP API (FastAPI): OpenAI-compatible embeddings, TEI-compatible reranking, index search, health and
Prometheus metrics.

    POST /v1/embeddings   {"input": str | [str], "model": NAME, "encoding_format": "float" | "base64", "dimensions": D}
    POST /rerank          {"query": str, "texts": [str], "raw_scores": false, "return_text": false, "truncate": false,
                           "model": NAME (default: the first reranker)} -> [{"index", "score", "text"?}] best first
    POST /embed_sparse    {"inputs": str | [str], "model": NAME (default: the first sparse model), "prompt_name": ROLE,
                           "truncate": false} -> [[{"index", "value"}]] one list per input, by token index
    POST /embed_multivector {"inputs": str | [str], "model": NAME (default: the first multi-vector model),
                           "prompt_name": "query" | "document" (default) | a prompt name, "truncate": false}
                           -> [[[float]]] one list of token vectors per input (TEI's /embed_all shape)
    POST /search          {"query": str, "index": NAME, "k": 10, "mode": "dense" | "sparse" | "lexical" | "hybrid" |
                           "dense+sparse" | ... (gpte.search.query.SEARCH_MODES; default: the index's), "filters": {...}}
    GET  /health          served models, rerankers and indexes
    GET  /metrics         Prometheus text format

/rerank and /embed_sparse speak Hugging Face text-embeddings-inference's API: ``raw_scores`` false applies the reranker's activation
(sigmoid: scores in (0, 1)), true gives the raw logit; with ``truncate`` false a (query, text) pair longer than the
reranker's input is refused with 413 before anything is scored, with true the text is cut to fit; /embed_sparse
and /embed_multivector likewise refuse (413) an input longer than the model reads unless ``truncate`` is true.
/embed_multivector answers in the shape of TEI's /embed_all (token vectors per input): a ColBERT model's unit vector
per scored token (a query's expansion tokens included, a document's skiplisted punctuation left out).

Errors: 400 empty input or query, empty string or bad option, 401 missing or wrong API key
(``Authorization: Bearer KEY``), 404 unknown model, reranker or index (the served ones listed), 413 request body
over ``max_request_bytes``, more inputs than ``max_inputs`` or a pair too long to rerank untruncated, 422 malformed
JSON or fields. The app holds no logic of its own: it calls the model's ``encode`` and the reranker's ``predict``
(through ``gpte.serve.batching``) and ``Index.search``.
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

from gpte.models.protocol import (
    DenseModel,
    MultiVectorModel,
    PairScorer,
    SparseModel,
    best_first,
    require_multivector,
    require_pair_scorer,
    require_sparse,
)
from gpte.search.query import mode_retrievers
from gpte.serve.batching import EmbeddingBatcher, RerankBatcher, RoleBatcher

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


class RerankRequest(BaseModel):
    query: str
    texts: list[str]
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool = False
    model: str | None = None


class RoleRequest(BaseModel):
    """/embed_sparse and /embed_multivector: texts, the model, the role or prompt, whether to cut long inputs."""

    inputs: str | list[str]
    model: str | None = None
    prompt_name: str | None = None
    truncate: bool = False


class SearchRequest(BaseModel):
    query: str
    index: str | None = None
    k: int = Field(default=10, ge=1, le=1000)
    mode: str | None = None  # None: the index's default mode
    dense_mode: Literal["exact", "hnsw", "binary", "int8"] | None = None  # None: the index's default
    fusion: Literal["rrf", "weighted"] = "rrf"
    filters: dict[str, Any] | None = None


def create_app(
    models: dict[str, DenseModel],
    indexes: dict[str, Index | MilvusIndex] | None = None,
    api_key: str | None = None,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    max_inputs: int = MAX_INPUTS,
    rerankers: dict[str, PairScorer] | None = None,
    sparse_models: dict[str, SparseModel] | None = None,
    multivector_models: dict[str, MultiVectorModel] | None = None,
) -> FastAPI:
    """The app serving ``models`` (name -> any gpte dense model) on /v1/embeddings, ``indexes`` (name ->
    ``gpte.search.index.Index``) on /search, ``rerankers`` (name -> any one-score pair scorer) on /rerank and
    ``sparse_models`` (name -> any sparse model) on /embed_sparse and ``multivector_models`` (name -> any
    multi-vector model) on /embed_multivector.

    ``api_key``: when set, every route but /health needs ``Authorization: Bearer <api_key>``.

    Raises:
        ValueError: nothing to serve, or a reranker with several scores per pair.
        TypeError: a reranker that is not a ``PairScorer``, a sparse model that is not a ``SparseModel``, a
            multi-vector model that is not a ``MultiVectorModel``.
    """
    indexes, rerankers, sparse_models = indexes or {}, rerankers or {}, sparse_models or {}
    multivector_models = multivector_models or {}
    if not (models or rerankers or indexes or sparse_models or multivector_models):
        raise ValueError("serve at least one model, reranker, sparse model, multi-vector model or index")
    _check_rerankers(rerankers)
    for name, sparse_model in sparse_models.items():
        require_sparse(sparse_model, f"/embed_sparse (model {name!r})")
    for name, multivector_model in multivector_models.items():
        require_multivector(multivector_model, f"/embed_multivector (model {name!r})")
    batchers = {name: EmbeddingBatcher(model) for name, model in models.items()}
    query_batchers = {  # /search queries of a dense model, batched too
        name: EmbeddingBatcher(index.embedder) for name, index in indexes.items() if index.embedder is not None
    }
    sparse_query_batchers = {  # /search queries of a sparse model: batched, and one model call at a time
        name: RoleBatcher(index.sparse_model)
        for name, index in indexes.items()
        if getattr(index, "sparse_model", None) is not None
    }
    token_query_batchers = {  # /search queries of a multi-vector model, batched the same way
        name: RoleBatcher(index.multivector_model)
        for name, index in indexes.items()
        if getattr(index, "multivector_model", None) is not None
    }
    rerank_batchers = {name: RerankBatcher(reranker) for name, reranker in rerankers.items()}
    sparse_batchers = {name: RoleBatcher(sparse_model) for name, sparse_model in sparse_models.items()}
    multivector_batchers = {name: RoleBatcher(model) for name, model in multivector_models.items()}
    metrics = _Metrics()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        every = [
            *batchers.values(),
            *query_batchers.values(),
            *sparse_query_batchers.values(),
            *token_query_batchers.values(),
            *rerank_batchers.values(),
            *sparse_batchers.values(),
            *multivector_batchers.values(),
        ]
        for batcher in every:
            batcher.start()
        yield
        await asyncio.gather(*(batcher.stop() for batcher in every))

    app = FastAPI(title="gpte", lifespan=lifespan)
    app.state.batchers, app.state.query_batchers, app.state.rerank_batchers = batchers, query_batchers, rerank_batchers
    app.middleware("http")(_limit_and_count(max_request_bytes, metrics))
    authorized = _authorization(api_key)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "models": list(models),
            "rerankers": list(rerankers),
            "sparse_models": list(sparse_models),
            "multivector_models": list(multivector_models),
            "indexes": list(indexes),
        }

    @app.get("/metrics", dependencies=[Depends(authorized)])
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/embeddings", dependencies=[Depends(authorized)])
    async def embeddings(request: EmbeddingRequest) -> dict[str, Any]:
        texts = [request.input] if isinstance(request.input, str) else request.input
        _check_texts(texts, max_inputs)
        if request.model not in models:
            raise HTTPException(
                404, f"model {request.model!r} is not served; served models: {', '.join(models) or 'none'}"
            )
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

    @app.post("/rerank", dependencies=[Depends(authorized)])
    async def rerank(request: RerankRequest) -> list[dict[str, Any]]:
        if not request.query:
            raise HTTPException(400, "query is an empty string; give the query to rank the texts for")
        _check_texts(request.texts, max_inputs, field="texts", item="text")
        name = request.model or next(iter(rerankers), None)
        if name not in rerankers:
            raise HTTPException(
                404, f"reranker {request.model!r} is not served; served rerankers: {', '.join(rerankers) or 'none'}"
            )
        if not request.truncate:
            _check_pair_lengths(rerankers[name], name, request.query, request.texts)
        try:
            scores = await rerank_batchers[name].score(request.query, request.texts, activation=not request.raw_scores)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        metrics.pairs.inc(len(request.texts))
        return _ranking(scores, request.texts if request.return_text else None)

    @app.post("/embed_sparse", dependencies=[Depends(authorized)])
    async def embed_sparse(request: RoleRequest) -> list[list[dict[str, Any]]]:
        vectors = await _embed_by_role(request, sparse_models, sparse_batchers, "sparse model")
        return [_sparse_entries(vectors[row]) for row in range(vectors.shape[0])]

    @app.post("/embed_multivector", dependencies=[Depends(authorized)])
    async def embed_multivector(request: RoleRequest) -> list[list[list[float]]]:
        vectors = await _embed_by_role(request, multivector_models, multivector_batchers, "multi-vector model")
        return [vectors[row].tolist() for row in range(len(vectors))]

    async def _embed_by_role(request: RoleRequest, served: dict[str, Any], role_batchers: dict, what: str) -> Any:
        """``request``'s texts encoded by the served model it names (404 naming the served ones), 400/413 for bad
        input."""
        texts = [request.inputs] if isinstance(request.inputs, str) else request.inputs
        _check_texts(texts, max_inputs, field="inputs")
        name = request.model or next(iter(served), None)
        if name not in served:
            raise HTTPException(
                404, f"{what} {request.model!r} is not served; served {what}s: {', '.join(served) or 'none'}"
            )
        try:
            if not request.truncate:
                _check_text_lengths(served[name], f"{what} {name!r}", texts, request.prompt_name)
            vectors = await role_batchers[name].embed(texts, request.prompt_name)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        metrics.texts.inc(len(texts))
        return vectors

    @app.post("/search", dependencies=[Depends(authorized)])
    async def search(request: SearchRequest) -> dict[str, Any]:
        name = request.index or next(iter(indexes), None)
        if name not in indexes:
            raise HTTPException(
                404, f"index {request.index!r} is not served; served indexes: {', '.join(indexes) or 'none'}"
            )
        options = request.model_dump(exclude={"query", "index"}, exclude_none=True)
        try:
            retrievers = mode_retrievers(request.mode or getattr(indexes[name], "default_mode", "dense"))
            if "dense" in retrievers and name in query_batchers and request.query.strip():  # search refuses ""
                options["query_vectors"] = await query_batchers[name].embed([request.query], role="query")
            if "sparse" in retrievers and name in sparse_query_batchers and request.query.strip():
                options["sparse_query_vectors"] = await sparse_query_batchers[name].embed([request.query], "query")
            if "multivector" in retrievers and name in token_query_batchers and request.query.strip():
                options["multivector_query_vectors"] = await token_query_batchers[name].embed([request.query], "query")
            hits = await asyncio.to_thread(indexes[name].search, request.query, **options)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        return {"index": name, "hits": [hit.__dict__ for hit in hits]}

    return app


def _check_texts(texts: list[str], max_inputs: int, field: str = "input", item: str = "input") -> None:
    """400 for no texts or an empty one, 413 for more than ``max_inputs``; ``field`` is the request's field and
    ``item`` what one of its texts is called in the messages."""
    if not texts:
        raise HTTPException(400, f"{field} is empty; give a non-empty list of strings")
    if len(texts) > max_inputs:
        raise HTTPException(413, f"{len(texts)} {item}s in one request; the limit is {max_inputs}")
    empty = [i for i, text in enumerate(texts) if not text]
    if empty:
        raise HTTPException(400, f"{item} {empty[0]} is an empty string; every {item} must be non-empty")
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise HTTPException(
                400, f"{item} {i} is not valid Unicode text: {error.reason} at character {error.start}"
            ) from None


def _check_rerankers(rerankers: dict[str, PairScorer]) -> None:
    """TypeError for a served reranker that is not a pair scorer, ValueError for one with several scores a pair."""
    for name, reranker in rerankers.items():
        require_pair_scorer(reranker, f"/rerank (reranker {name!r})")
        labels = getattr(reranker, "num_labels", 1)
        if labels != 1:
            raise ValueError(f"reranker {name!r} gives {labels} scores a pair; /rerank serves one-score rerankers")


def _check_pair_lengths(reranker: PairScorer, name: str, query: str, texts: list[str]) -> None:
    """413 naming the first (query, text) pair whose tokens exceed what ``reranker`` reads of a pair (its
    ``max_seq_length`` less the special and prompt tokens), counted before anything is scored."""
    budget = reranker.text_token_budget()
    if budget is None:
        return
    query_tokens, *text_tokens = reranker.count_tokens([query, *texts])
    for i, tokens in enumerate(text_tokens):
        if query_tokens + tokens > budget:
            raise HTTPException(
                413,
                f"pair {i} (the query and text {i}) has {query_tokens + tokens} tokens; reranker {name!r} reads at "
                f"most {budget} (max_seq_length {reranker.max_seq_length} less its special and prompt tokens); "
                "shorten the text or send truncate=true to cut it",
            )


def _check_text_lengths(model: SparseModel | MultiVectorModel, what: str, texts: list[str], role: str | None) -> None:
    """413 naming the first input longer than ``model`` (``what``: its kind and name) reads with ``role``'s prompt
    (TEI's ``truncate: false``)."""
    budget = model.text_token_budget(role)
    for i, tokens in enumerate(model.count_tokens(texts)):
        if tokens > budget:
            raise HTTPException(
                413,
                f"input {i} has {tokens} tokens; {what} reads at most {budget} with its prompt and "
                "special tokens: shorten it or send truncate: true",
            )


def _sparse_entries(row: Any) -> list[dict[str, Any]]:
    """One sparse vector as TEI's ``[{"index": token id, "value": weight}]``, by token index."""
    row = row.tocsr()
    row.sort_indices()
    return [{"index": int(i), "value": float(v)} for i, v in zip(row.indices, row.data) if v != 0]


def _ranking(scores: np.ndarray, texts: list[str] | None) -> list[dict[str, Any]]:
    """``[{"index", "score", "text" (when texts are given)}]`` best first; ties keep the input order."""
    order = best_first(scores)
    if texts is None:
        return [{"index": int(i), "score": float(scores[i])} for i in order]
    return [{"index": int(i), "score": float(scores[i]), "text": texts[i]} for i in order]


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
        self.pairs = Counter("gpte_reranked_pairs", "(query, text) pairs scored", registry=self.registry)


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
