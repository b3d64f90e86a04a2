"""The HTTP API (FastAPI): OpenAI-compatible embeddings and model list, TEI-compatible reranking, index search,
health and Prometheus metrics.

    POST /v1/embeddings   {"input": str | [str], "model": NAME, "encoding_format": "float" | "base64", "dimensions": D}
    GET  /v1/models       {"object": "list", "data": [{"id": NAME, "object": "model", "created": unix seconds (when
                          the server loaded it), "owned_by": "gpte"}]}: the models of /v1/embeddings only (rerankers,
                          sparse and multi-vector models have no /v1 route; /health names them)
    GET  /v1/models/NAME  one of them in the same shape; 404 for any other name
    POST /rerank          {"query": str, "texts": [str], "raw_scores": false, "return_text": false, "truncate": false,
                           "model": NAME (default: the first reranker)} -> [{"index", "score", "text"?}] best first
    POST /embed_sparse    {"inputs": str | [str], "model": NAME (default: the first sparse model), "prompt_name": ROLE,
                           "truncate": false} -> [[{"index", "value"}]] one list per input, by token index
    POST /embed_multivector {"inputs": str | [str], "model": NAME (default: the first multi-vector model),
                           "prompt_name": "query" | "document" (default) | a prompt name, "truncate": false}
                           -> [[[float]]] one list of token vectors per input (TEI's /embed_all shape)
    POST /search          {"query": str, "index": NAME, "k": 10, "mode": "dense" | "sparse" | "lexical" | "hybrid" |
                           "dense+sparse" | ... (gpte.search.query.SEARCH_MODES; default: the index's), "filters": {...}}
    POST /admin/reload    (no body) -> {"indexes": {NAME: generation}}: serve each index's live generation now (it is also
                          checked every ``index_refresh_seconds`` as it is searched: a ``gpte index`` update of a
                          served index is picked up without a restart; running searches finish on their generation)
    GET  /health          served models, rerankers and indexes (public even with an API key)
    GET  /metrics         Prometheus text format: gpte_requests_total{route, status} counts every response (401,
                          413 and 500 included; a route by its template, /v1/models/{model:path}; a path that
                          is no route as route="<unmatched>"),
                          gpte_request_seconds{route}, gpte_embedded_texts, gpte_reranked_pairs
    GET  /, /ui/...       the web page: search playground, results board, embedding map (``gpte.serve.web``; the page
                          and its static files are public and hold no data, its /ui data routes need the key)
    GET  /docs, /redoc, /openapi.json  the OpenAPI pages (behind the API key unless ``public_docs``)

/v1/embeddings answers in OpenAI's shape. Token ids as ``input`` (``[int]`` or ``[[int]]``, which OpenAI's schema
allows and LangChain's OpenAIEmbeddings sends by default) are refused with a 400 that says why: they are tiktoken
ids of OpenAI's vocabulary, which mean nothing to the served model's own tokenizer; send text (LangChain:
``check_embedding_ctx_length=False``). Its ``usage`` counts the tokens embedded: each input's tokens as OpenAI
counts them (no prompt or special tokens), at most the tokens the model reads of one input (``text_token_budget``),
since a longer input is cut to fit. When inputs were cut, the response header ``X-Truncated-Inputs`` lists their
indices, comma-separated (``X-Truncated-Inputs: 0,3``); it is absent when none was. Tokens are counted with the
batch in its worker thread, never on the event loop.

/rerank and /embed_sparse speak Hugging Face text-embeddings-inference's API: ``raw_scores`` false applies the reranker's activation
(sigmoid: scores in (0, 1)), true gives the raw logit; with ``truncate`` false a (query, text) pair longer than the
reranker's input is refused with 413 before anything is scored, with true the text is cut to fit; /embed_sparse
and /embed_multivector likewise refuse (413) an input longer than the model reads unless ``truncate`` is true.
/embed_multivector answers in the shape of TEI's /embed_all (token vectors per input): a ColBERT model's unit vector
per scored token (a query's expansion tokens included, a document's skiplisted punctuation left out).

Every request first passes one ASGI middleware (``_Gate``): the API key is checked before a byte of the body is
read (every path but /health, and the OpenAPI pages when ``public_docs``), then the body is limited as it streams: a
Content-Length over ``max_request_bytes`` is refused unread, a chunked body is counted as it arrives and refused once
over the limit, so at most the limit and one chunk is ever read; a response sent before the body was read whole
closes the connection (``Connection: close``) rather than drain the rest. An exception in a route is a 500 whose
message is ``internal error: <ExceptionType>: <first line of its message>``; the traceback goes to the log
(logger ``gpte.serve.app``), never to the client, and the keep-alive connection stays usable.

Errors: 400 empty input or query, empty string, text that is not valid Unicode (a lone surrogate, which has no UTF-8
form) or bad option, 401 missing or wrong API key (``Authorization: Bearer KEY``), 404 unknown model, reranker or
index (the served ones listed), 413 request body over ``max_request_bytes``, more inputs than ``max_inputs`` or a
pair too long to rerank untruncated, 422 malformed JSON or fields, 500 a failure in the server. Error bodies are
ASCII JSON (a lone surrogate echoed from the request is escaped, never a failure to encode), in the shape each
route's clients read, whichever part of the server refused (the gate, FastAPI's validation or the route):

- under /v1/ OpenAI's ``{"error": {"message": str, "type": str, "param": str | null, "code": str | null}}``, so the
  openai client raises its matching error (``openai.NotFoundError`` ...) carrying gpte's message. ``type`` is
  "invalid_request_error" (400, 404, 413, 422), "authentication_error" (401) or "server_error" (500); ``param`` the
  request field at fault (a 422 names its first); ``code`` "model_not_found" (404 of a model) or
  "invalid_api_key" (401), else null. A 422's field errors read as one message, ``field: what (error type)``.
- elsewhere (/rerank, /embed_sparse, /embed_multivector, /search, ..., which TEI and FastAPI clients call)
  FastAPI's ``{"detail": str}``, a 422 ``{"detail": [field errors]}``.

A request that fails fails alone, never the requests batched with it. The app holds no logic of its own: it calls
the model's ``encode`` and the reranker's ``predict`` (through ``gpte.serve.batching``) and ``Index.search``.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import time
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.utils import is_body_allowed_for_status_code
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, Field
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
from gpte.serve.live_indexes import LiveIndexes
from gpte.serve.web import PUBLIC_PATHS as WEB_PUBLIC_PATHS
from gpte.serve.web import web_router

if TYPE_CHECKING:  # annotations only: a server without indexes needs neither back-end
    from gpte.search.index import Index
    from gpte.search.milvus import MilvusIndex

MAX_REQUEST_BYTES = 1 << 20
MAX_INPUTS = 2048  # OpenAI's limit of inputs per embeddings request
UNMATCHED_ROUTE = "<unmatched>"  # the metrics label of a path that is no route (a client cannot grow the label set)
OPENAI_PREFIX = "/v1/"  # errors of these paths are in OpenAI's shape, of the others in FastAPI's {"detail": ...}
TOKEN_IDS_REFUSED = (
    "input is token ids; gpte embeds text with the served model's own tokenizer, in whose vocabulary OpenAI's "
    "tiktoken ids mean nothing: send the text as a string or a list of strings (with LangChain's OpenAIEmbeddings, "
    "pass check_embedding_ctx_length=False)"
)

logger = logging.getLogger(__name__)


class EmbeddingRequest(BaseModel):
    # OpenAI's schema: text, texts, or token ids (one list or one list per input); token ids are accepted here
    # only to be refused with a 400 that says why (TOKEN_IDS_REFUSED) rather than a 422 about types
    input: str | list[str] | list[int] | list[list[int]]
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
    public_docs: bool = False,
    index_refresh_seconds: float | None = 1.0,
    results_folders: list[Path] | None = None,
    maps: dict[str, Path] | None = None,
) -> FastAPI:
    """The app serving ``models`` (name -> any gpte dense model) on /v1/embeddings, ``indexes`` (name ->
    ``gpte.search.index.Index``) on /search, ``rerankers`` (name -> any one-score pair scorer) on /rerank and
    ``sparse_models`` (name -> any sparse model) on /embed_sparse and ``multivector_models`` (name -> any
    multi-vector model) on /embed_multivector.

    ``api_key``: when set, every route but /health needs ``Authorization: Bearer <api_key>``, checked before the
    body is read; ``public_docs``: /docs, /redoc and /openapi.json need no key even then.
    ``max_request_bytes``: the largest request body read (413 beyond, declared or streamed).
    ``index_refresh_seconds``: how often a searched index is checked for a newer generation made live by a build
    (``gpte.serve.live_indexes``); None: only on ``POST /admin/reload``.
    ``results_folders`` (``gpte evaluate`` outputs) and ``maps`` (name -> ``gpte analyze`` output): what the web page
    at / shows on its results board and embedding map (``gpte.serve.web``).

    Raises:
        ValueError: nothing to serve, or a reranker with several scores per pair.
        FileNotFoundError: a results folder or map that does not exist.
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

    live = LiveIndexes(indexes, index_refresh_seconds)
    app = FastAPI(title="gpte", lifespan=lifespan)
    app.state.batchers, app.state.query_batchers, app.state.rerank_batchers = batchers, query_batchers, rerank_batchers
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    docs = [app.docs_url, app.redoc_url, app.openapi_url, app.swagger_ui_oauth2_redirect_url]
    app.add_middleware(
        _Gate,
        api_key=api_key,
        public_paths={"/health", *WEB_PUBLIC_PATHS, *(path for path in docs if public_docs and path)},
        max_request_bytes=max_request_bytes,
        metrics=metrics,
        routes=app.router.routes,
    )

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

    @app.post("/admin/reload")
    async def reload() -> dict[str, Any]:
        return {"indexes": await live.reload()}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    created = int(time.time())  # OpenAI's "created" of a model: here, when this server loaded it

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        """The models of /v1/embeddings, in OpenAI's list shape (rerankers, sparse and multi-vector models have no
        /v1 route, so they are not listed: /health names them)."""
        return {"object": "list", "data": [_model_entry(name, created) for name in models]}

    @app.get("/v1/models/{model:path}")  # :path: a served name may hold a slash
    async def retrieve_model(model: str) -> dict[str, Any]:
        _require_served(model, models)
        return _model_entry(model, created)

    @app.post("/v1/embeddings")
    async def embeddings(request: EmbeddingRequest, response: Response) -> dict[str, Any]:
        texts = _input_texts(request.input)
        _check_texts(texts, max_inputs)
        _require_served(request.model, models)
        model = models[request.model]
        if request.dimensions is not None and request.dimensions > model.dimension:
            raise _ApiError(
                400,
                f"dimensions must be at most {model.dimension} for {request.model}, got {request.dimensions}",
                param="dimensions",
            )
        counted = await batchers[request.model].embed_counted(texts, request.dimensions)
        metrics.texts.inc(len(texts))
        tokens = sum(counted.embedded_tokens)  # as OpenAI counts them (no prompt or specials), cut ones at the budget
        if counted.truncated:
            response.headers["X-Truncated-Inputs"] = ",".join(map(str, counted.truncated))
        data = [
            {"object": "embedding", "index": i, "embedding": _encode_vector(v, request.encoding_format)}
            for i, v in enumerate(counted.vectors)
        ]
        return {
            "object": "list",
            "data": data,
            "model": request.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    @app.post("/rerank")
    async def rerank(request: RerankRequest) -> list[dict[str, Any]]:
        if not request.query:
            raise HTTPException(400, "query is an empty string; give the query to rank the texts for")
        _check_unicode([request.query], "query", numbered=False)
        _check_texts(request.texts, max_inputs, field="texts", item="text")
        name = request.model or next(iter(rerankers), None)
        if name not in rerankers:
            raise HTTPException(
                404, f"reranker {request.model!r} is not served; served rerankers: {', '.join(rerankers) or 'none'}"
            )
        if not request.truncate:
            # tokenizing long texts is slow: off the event loop
            await asyncio.to_thread(_check_pair_lengths, rerankers[name], name, request.query, request.texts)
        try:
            scores = await rerank_batchers[name].score(request.query, request.texts, activation=not request.raw_scores)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        metrics.pairs.inc(len(request.texts))
        return _ranking(scores, request.texts if request.return_text else None)

    @app.post("/embed_sparse")
    async def embed_sparse(request: RoleRequest) -> list[list[dict[str, Any]]]:
        vectors = await _embed_by_role(request, sparse_models, sparse_batchers, "sparse model")
        return [_sparse_entries(vectors[row]) for row in range(vectors.shape[0])]

    @app.post("/embed_multivector")
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
                await asyncio.to_thread(  # tokenizing long texts is slow: off the event loop
                    _check_text_lengths, served[name], f"{what} {name!r}", texts, request.prompt_name
                )
            vectors = await role_batchers[name].embed(texts, request.prompt_name)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        metrics.texts.inc(len(texts))
        return vectors

    @app.post("/search")
    async def search(request: SearchRequest) -> dict[str, Any]:
        _check_unicode([request.query], "query", numbered=False)
        name = request.index or next(iter(indexes), None)
        if name not in indexes:
            raise HTTPException(
                404, f"index {request.index!r} is not served; served indexes: {', '.join(indexes) or 'none'}"
            )
        options = request.model_dump(exclude={"query", "index"}, exclude_none=True)
        try:
            index = await live.get(name)
            retrievers = mode_retrievers(request.mode or getattr(index, "default_mode", "dense"))
            if "dense" in retrievers and name in query_batchers and request.query.strip():  # search refuses ""
                options["query_vectors"] = await query_batchers[name].embed([request.query], role="query")
            if "sparse" in retrievers and name in sparse_query_batchers and request.query.strip():
                options["sparse_query_vectors"] = await sparse_query_batchers[name].embed([request.query], "query")
            if "multivector" in retrievers and name in token_query_batchers and request.query.strip():
                options["multivector_query_vectors"] = await token_query_batchers[name].embed([request.query], "query")
            hits = await asyncio.to_thread(index.search, request.query, **options)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        return {"index": name, "hits": [hit.__dict__ for hit in hits]}

    app.include_router(web_router(results_folders, maps, indexes))
    return app


class _ApiError(HTTPException):
    """An HTTP error with what OpenAI's error shape adds to the message: ``param``, the request field at fault, and
    ``code``, a machine-readable reason (None where there is none). Routes off /v1 answer the message alone."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(status, message)
        self.param = param
        self.code = code


def _require_served(name: str, models: dict[str, DenseModel]) -> None:
    """404 (OpenAI's ``model_not_found``) naming the served models when ``name`` is none of them."""
    if name not in models:
        served = ", ".join(models) or "none"
        raise _ApiError(404, f"model {name!r} is not served; served models: {served}", "model", "model_not_found")


def _model_entry(name: str, created: int) -> dict[str, Any]:
    """One served model in OpenAI's model shape."""
    return {"id": name, "object": "model", "created": created, "owned_by": "gpte"}


def _input_texts(given: str | list[str] | list[int] | list[list[int]]) -> list[str]:
    """The texts of /v1/embeddings' ``input``; 400 for token ids: OpenAI's clients send tiktoken ids (LangChain's
    OpenAIEmbeddings does by default), which are no ids of the served model's vocabulary."""
    texts = [given] if isinstance(given, str) else given
    if any(not isinstance(text, str) for text in texts):
        raise _ApiError(400, TOKEN_IDS_REFUSED, param="input")
    return texts


def _check_texts(texts: list[str], max_inputs: int, field: str = "input", item: str = "input") -> None:
    """400 for no texts, an empty one or one that is not valid Unicode, 413 for more than ``max_inputs``; ``field``
    is the request's field and ``item`` what one of its texts is called in the messages."""
    if not texts:
        raise _ApiError(400, f"{field} is empty; give a non-empty list of strings", field)
    if len(texts) > max_inputs:
        raise _ApiError(413, f"{len(texts)} {item}s in one request; the limit is {max_inputs}", field)
    empty = [i for i, text in enumerate(texts) if not text]
    if empty:
        raise _ApiError(400, f"{item} {empty[0]} is an empty string; every {item} must be non-empty", field)
    _check_unicode(texts, item, field=field)


def _check_unicode(texts: Sequence[str], item: str, numbered: bool = True, field: str | None = None) -> None:
    """400 naming the first text that has no UTF-8 form (a lone surrogate, which JSON's ``\\ud800`` escape can
    carry): refused before it reaches a model, whose tokenizer would fail on it (and fail its batch). ``field``: the
    request's field (default: ``item``)."""
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            which = f"{item} {i}" if numbered else item
            message = f"{which} is not valid Unicode text: {error.reason} at character {error.start}"
            raise _ApiError(400, message, field or item) from None


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


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("gpte_requests", "HTTP requests", ["route", "status"], registry=self.registry)
        self.latency = Histogram("gpte_request_seconds", "request latency", ["route"], registry=self.registry)
        self.texts = Counter("gpte_embedded_texts", "texts embedded", registry=self.registry)
        self.pairs = Counter("gpte_reranked_pairs", "(query, text) pairs scored", registry=self.registry)


def _error(
    path: str,
    status: int,
    detail: Any,
    headers: dict[str, str] | None = None,
    param: str | None = None,
    code: str | None = None,
) -> Response:
    """Every error response: for a ``path`` under ``OPENAI_PREFIX`` OpenAI's ``{"error": {"message", "type",
    "param", "code"}}`` (a FastAPI field-error list ``detail`` becomes one message, ``param`` its first field), for
    the others FastAPI's ``{"detail": detail}`` (what TEI and FastAPI clients read). ASCII JSON: text echoed from
    the request (a lone surrogate) cannot fail to encode."""
    if path.startswith(OPENAI_PREFIX):
        if not isinstance(detail, str):
            detail, param = _field_errors(detail)
        content = {"error": {"message": detail, "type": _openai_error_type(status), "param": param, "code": code}}
    else:
        content = {"detail": detail}
    body = json.dumps(content, ensure_ascii=True, separators=(",", ":"))
    return Response(body, status, headers, media_type="application/json")


def _openai_error_type(status: int) -> str:
    """OpenAI's error ``type`` of an HTTP status."""
    if status >= 500:
        return "server_error"
    return "authentication_error" if status == 401 else "invalid_request_error"


def _field_errors(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """FastAPI's field errors as one message (``field: what is wrong (error type)``, ``"; "``-joined, repeats
    dropped) and the top-level field of the first (None for a body that is not JSON)."""
    parts = []
    for error in errors:
        where = error["loc"][1:]  # after "body", "query" or "path"
        if error["type"] == "json_invalid":
            reason = error.get("ctx", {}).get("error", error["msg"])
            parts.append(f"the body is not valid JSON: {reason} at character {where[0]} (json_invalid)")
        else:
            parts.append(f"{'.'.join(map(str, where)) or 'body'}: {error['msg']} ({error['type']})")
    loc = errors[0]["loc"]
    return "; ".join(dict.fromkeys(parts)), loc[1] if len(loc) > 1 and isinstance(loc[1], str) else None


async def _http_error(request: Request, error: StarletteHTTPException) -> Response:
    if not is_body_allowed_for_status_code(error.status_code):
        return Response(status_code=error.status_code, headers=error.headers)
    param, code = getattr(error, "param", None), getattr(error, "code", None)
    return _error(request.scope["path"], error.status_code, error.detail, error.headers, param, code)


async def _validation_error(request: Request, error: RequestValidationError) -> Response:
    return _error(request.scope["path"], 422, jsonable_encoder(error.errors()))


def _too_large(path: str, limit: int) -> Response:
    return _error(path, 413, f"request body over the limit of {limit} bytes")


class _BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` once the body passes the limit: FastAPI lets an HTTPException through its body
    reading, so it becomes the 413 response."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over the limit of {limit} bytes")


class _Gate:
    """Pure ASGI middleware in front of every route, in this order: the API key (401 before any of the body is
    read), the body limit (413 for a Content-Length over ``max_request_bytes`` unread; a streamed body counted as it
    arrives and refused once over the limit, so at most the limit and one chunk is read), the route (an exception
    becomes a clean JSON 500, its traceback logged), and the metrics of whatever status was sent.

    Args:
        api_key: the key every path but ``public_paths`` needs (None: no key).
        public_paths: paths served without the key.
        max_request_bytes: the largest body read.
        metrics: where requests are counted and timed.
        routes: the app's routes; a path that is none of theirs is counted as ``UNMATCHED_ROUTE``.
    """

    def __init__(
        self,
        app: ASGIApp,
        api_key: str | None,
        public_paths: set[str],
        max_request_bytes: int,
        metrics: _Metrics,
        routes: Sequence[Any],
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.public_paths = public_paths
        self.max_request_bytes = max_request_bytes
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = Headers(scope=scope)
        path = scope["path"]
        route = next(  # the route's template (/v1/models/{model:path}), so a client cannot grow the label set
            (getattr(one, "path", UNMATCHED_ROUTE) for one in self.routes if one.matches(scope)[0] is not Match.NONE),
            UNMATCHED_ROUTE,
        )
        status: int | None = None
        received = 0
        body_read = headers.get("transfer-encoding") is None and headers.get("content-length", "0") in ("", "0")

        async def limited_receive() -> Message:
            nonlocal received, body_read
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_request_bytes:  # this chunk is dropped and no further one is asked for
                    raise _BodyTooLarge(self.max_request_bytes)
                body_read = not message.get("more_body", False)
            return message

        async def counted_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if not body_read:  # the rest of the body will not be read: close rather than drain it
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        try:
            refusal = self._refusal(path, headers)
            if refusal is not None:
                await refusal(scope, receive, counted_send)
                return
            try:
                await self.app(scope, limited_receive, counted_send)
            except _BodyTooLarge:
                if status is not None:
                    raise
                await _too_large(path, self.max_request_bytes)(scope, receive, counted_send)
            except Exception as error:
                logger.exception("%s %s failed", scope["method"], path)
                if status is not None:  # a response half sent: the connection can only be closed
                    raise
                message = (str(error).splitlines() or [""])[0]
                detail = f"internal error: {type(error).__name__}" + (f": {message}" if message else "")
                await _error(path, 500, detail)(scope, receive, counted_send)
        finally:
            if status is not None:
                self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)

    def _refusal(self, path: str, headers: Headers) -> Response | None:
        """The 401 or 413 answered before the body is read; None: the request goes on."""
        if self.api_key is not None and path not in self.public_paths:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), self.api_key.encode()):
                message = "missing or wrong API key; send Authorization: Bearer <key>"
                return _error(path, 401, message, {"WWW-Authenticate": "Bearer"}, code="invalid_api_key")
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_request_bytes:
            return _too_large(path, self.max_request_bytes)
        return None
