"""``gpte serve``: the HTTP API over models, rerankers and indexes."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpte.cli import options


def register(verbs: Any) -> None:
    serve = verbs.add_parser(
        "serve",
        help="HTTP API: OpenAI-compatible /v1/embeddings and /v1/models, TEI-compatible /rerank and /embed_sparse, "
        "/embed_multivector, /search, /health, /metrics, and a web page at / (search, results board, embedding map)",
    )
    options.add_model(
        serve,
        "a model to serve (repeatable; the default one only when no --reranker, --sparse or --multivector is given)",
        repeatable=True,
    )
    serve.add_argument(
        "--sparse",
        action="append",
        default=[],
        metavar="MODEL",
        help="a sparse model to serve on /embed_sparse (repeatable): a SparseEncoder folder or hub id, promptreps, or "
        "an encoder (SPLADE with a new masked-LM head)",
    )
    serve.add_argument(
        "--multivector",
        action="append",
        default=[],
        metavar="MODEL",
        help="a multi-vector model to serve on /embed_multivector (repeatable): a MultiVectorEncoder or PyLate folder, "
        "or a transformer (a new projection)",
    )
    serve.add_argument(
        "--reranker",
        action="append",
        default=[],
        metavar="MODEL",
        help="a reranker to serve on /rerank (repeatable): a cross-encoder folder or hub id, an LLM folder or .gguf "
        "(its yes/no answer), or llm (the packaged SmolLM2)",
    )
    serve.add_argument("--index", action="append", default=[], help="index name to serve (repeatable)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--api-key", default=None, help="require Authorization: Bearer KEY (default: $GPTE_API_KEY if set)"
    )
    serve.add_argument("--max-request-bytes", type=int, default=1 << 20)
    serve.add_argument("--public-docs", action="store_true", help="serve /docs and /openapi.json without the API key")
    serve.add_argument(
        "--index-refresh",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="check a searched index for a newer generation (a gpte index update) this often; 0: every search "
        "(POST /admin/reload checks now)",
    )
    serve.add_argument(
        "--results",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="a gpte evaluate output folder shown on the web page's results board (repeatable)",
    )
    serve.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a gpte analyze output folder (its projection.json) shown on the web page's map (repeatable)",
    )
    options.add_index_location(serve, " (for every --index)")
    serve.set_defaults(run=_serve)


def _serve(args: argparse.Namespace) -> int:
    from gpte.errors import extra_needed
    from gpte.models.loading import load_model, load_reranker
    from gpte.models.multivector import load_multivector_encoder
    from gpte.models.sparse import load_sparse_encoder
    from gpte.serve.app import create_app

    with extra_needed("serve"):
        import uvicorn

    others = args.reranker or args.sparse or args.multivector
    models = _loaded(args.model or ([] if others else [None]), load_model)
    rerankers = _loaded(args.reranker, load_reranker)
    sparse_models = _loaded(args.sparse, load_sparse_encoder)
    multivector_models = _loaded(args.multivector, load_multivector_encoder)
    indexes = {name: options.open_index(name, args) for name in args.index}
    api_key = args.api_key or os.environ.get("GPTE_API_KEY")
    app = create_app(
        models,
        indexes,
        api_key=api_key,
        max_request_bytes=args.max_request_bytes,
        rerankers=rerankers,
        sparse_models=sparse_models,
        multivector_models=multivector_models,
        public_docs=args.public_docs,
        index_refresh_seconds=args.index_refresh,
        results_folders=args.results,
        maps=dict(_named_folder(pair) for pair in args.map),
    )
    print(
        f"serving models {', '.join(models) or 'none'}, rerankers {', '.join(rerankers) or 'none'}, sparse models "
        f"{', '.join(sparse_models) or 'none'}, multi-vector models {', '.join(multivector_models) or 'none'} and indexes {', '.join(indexes) or 'none'} on "
        f"http://{args.host}:{args.port}"
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _loaded(names: list[str | None], load: Callable[[str | None], Any]) -> dict[str, Any]:
    """Served name -> model loaded by ``load``: a path's last part as given, the model's own name for None."""
    loaded = {}
    for name in names:
        model = load(name)
        loaded[Path(name).name if name else model.name] = model
    return loaded


def _named_folder(pair: str) -> tuple[str, Path]:
    """``NAME=DIR`` of --map as (name, folder)."""
    name, sep, folder = pair.partition("=")
    if not (sep and name and folder):
        raise ValueError(f"--map {pair!r}: write NAME=DIR (a gpte analyze output folder)")
    return name, Path(folder)
