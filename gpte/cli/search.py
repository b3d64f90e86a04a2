"""Verbs of search indexes: ``gpte index``, ``gpte embed-corpus``, ``gpte search``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gpte.cli import options
from gpte.models.choices import BOUNDARIES

DOCUMENTS_HELP = "a document file or folder (txt, md, jsonl, csv, tsv, parquet)"
FIELD_HELP = "text field/column of jsonl, csv, tsv, parquet rows"
CHUNK_TOKENS_HELP = (
    "tokens per chunk (default: an existing index's, else as many as fit the model, at most 256; 0: whole documents)"
)
OVERLAP_HELP = "tokens shared by consecutive chunks (default: an existing index's, else an eighth of the chunk)"
CHUNK_BOUNDARY_HELP = (
    "where chunks end: token (every --chunk-tokens tokens) or sentence (after the last sentence ending in a chunk's "
    "second half); default: an existing index's, else token"
)
LATE_CHUNKING_HELP = (
    "late chunking: run each whole document through the model (in overlapping windows beyond its context) and pool "
    "each chunk's tokens, so a chunk's vector sees its document (needs a pooling that reduces a span: mean, max, ...; "
    "not cls or last); default: an existing index's, else off"
)
WINDOW_OVERLAP_HELP = (
    "with --late-chunking: tokens shared by the windows of a document longer than the model's context (default: an "
    "existing index's, else a quarter of a window)"
)


def register(verbs: Any) -> None:
    index = verbs.add_parser("index", help="build or update a search index from document files")
    index.add_argument("source", help=DOCUMENTS_HELP)
    index.add_argument("--name", required=True, help="the index name")
    options.add_model(index, "an existing index keeps the model it was built with")
    options.add_device(index)
    options.add_backend(index)
    index.add_argument("--field", default="text", help=FIELD_HELP)
    index.add_argument("--chunk-tokens", type=int, default=None, help=CHUNK_TOKENS_HELP)
    index.add_argument("--overlap", type=int, default=None, help=OVERLAP_HELP)
    _add_late_chunking(index)
    index.add_argument("--no-ann", action="store_true", help="no HNSW graph (exact and binary search only)")
    index.add_argument("--rebuild", action="store_true", help="re-embed everything instead of updating")
    index.add_argument(
        "--sparse",
        default=None,
        metavar="MODEL",
        help="also index a sparse model's vectors (a SparseEncoder folder, promptreps, or an encoder as SPLADE); "
        "an existing index keeps its own",
    )
    index.add_argument(
        "--multivector",
        default=None,
        metavar="MODEL",
        help="also index a multi-vector model's token vectors (a MultiVectorEncoder or PyLate folder: ColBERT), "
        "searched with --mode multivector; an existing index keeps its own",
    )
    index.add_argument("--no-dense", action="store_true", help="no dense vectors (needs --sparse or --multivector)")
    index.add_argument("--no-lexical", action="store_true", help="no BM25")
    options.add_batch_size(index)
    options.add_index_location(index)
    index.add_argument(
        "--vectors-from", default=None, metavar="DIR", help="ready-made chunk vectors from gpte embed-corpus"
    )
    options.add_no_progress(index)
    index.set_defaults(run=_index)

    corpus = verbs.add_parser(
        "embed-corpus",
        help="embed a document collection's chunks with a Ray Data pipeline (for gpte index --vectors-from)",
    )
    corpus.add_argument("source", help=DOCUMENTS_HELP)
    options.add_output(corpus, "folder for the Parquet shards")
    options.add_model(corpus)
    corpus.add_argument("--field", default="text", help=FIELD_HELP)
    corpus.add_argument("--chunk-tokens", type=int, default=None, help=CHUNK_TOKENS_HELP + "; as the index's")
    corpus.add_argument("--overlap", type=int, default=None, help=OVERLAP_HELP + "; as the index's")
    _add_late_chunking(corpus, "; as the index's")
    options.add_batch_size(corpus)
    corpus.add_argument("--concurrency", type=int, default=1, help="embedding actors")
    corpus.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per actor")
    corpus.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per actor")
    corpus.add_argument("--ray-address", default=None, help="a Ray cluster to run on (default: a local Ray)")
    corpus.add_argument("--overwrite", action="store_true")
    corpus.set_defaults(run=_embed_corpus)

    search = verbs.add_parser("search", help="search an index: ranked hits with scores and snippets")
    search.add_argument("name", help="the index name")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=10, help="hits to show")
    search.add_argument(
        "--mode",
        default=None,
        help="dense, sparse, multivector, lexical, hybrid (dense+lexical), or retrievers joined by + in that order "
        "(dense+sparse, sparse+lexical, dense+multivector, dense+sparse+multivector+lexical, ...); default: the "
        "first of dense, sparse, multivector the index has",
    )
    search.add_argument(
        "--dense-mode",
        default=None,
        help="exact, hnsw, binary or int8 (quantized codes, float rescoring); default: exact (Milvus: its index)",
    )
    search.add_argument("--fusion", default="rrf", help="hybrid fusion: rrf or weighted")
    search.add_argument(
        "--filter", action="append", default=[], metavar="FIELD=VALUE", help="metadata filter (repeatable)"
    )
    search.add_argument(
        "--rerank",
        nargs="?",
        const="llm",
        default=None,
        metavar="MODEL",
        help="rerank the top candidates with a cross-encoder folder, an LLM (folder or .gguf: its yes/no answer), "
        "or 'llm' (the default, packaged SmolLM2)",
    )
    search.add_argument("--json", action="store_true", help="print JSON")
    options.add_index_location(search)
    search.set_defaults(run=_search)


def _add_late_chunking(parser: argparse.ArgumentParser, note: str = "") -> None:
    """``--chunk-boundary``, ``--late-chunking``/``--no-late-chunking`` and ``--window-overlap`` (unset: None)."""
    parser.add_argument("--chunk-boundary", choices=BOUNDARIES, default=None, help=CHUNK_BOUNDARY_HELP + note)
    parser.add_argument(
        "--late-chunking", action=argparse.BooleanOptionalAction, default=None, help=LATE_CHUNKING_HELP + note
    )
    parser.add_argument("--window-overlap", type=int, default=None, metavar="N", help=WINDOW_OVERLAP_HELP + note)


def _chunking(args: argparse.Namespace) -> dict[str, Any]:
    """The chunking options given (None where unset)."""
    return {
        "chunk_tokens": args.chunk_tokens,
        "overlap": args.overlap,
        "chunk_boundary": args.chunk_boundary,
        "late_chunking": args.late_chunking,
        "window_overlap": args.window_overlap,
    }


def _index(args: argparse.Namespace) -> int:
    from gpte.search.index import build_index, index_path
    from gpte.search.milvus import build_milvus_index

    # The default backend and device: the index loads the model itself (an existing index: the one it was built
    # with); any other: loaded here, and recorded under the --model name.
    chosen = args.backend != "torch" or args.device is not None
    build_options = {
        "embedder": options.load_dense_model(args) if chosen else None,
        "model": args.model,
        **_chunking(args),
        "ann": None if args.no_ann else "hnsw",
        "text_field": args.field,
        "batch_size": args.batch_size,
        "rebuild": args.rebuild,
        "show_progress": not args.no_progress,
        "vectors_from": args.vectors_from,
        "sparse_model": args.sparse,
    }
    if args.milvus and (args.no_dense or args.no_lexical or args.multivector):
        raise ValueError(
            "--no-dense, --no-lexical and --multivector apply to on-disk indexes (--root), not to --milvus"
        )
    if args.milvus:
        where = f"Milvus {args.milvus}"
        report = build_milvus_index(args.milvus, args.name, args.source, **build_options)
    else:
        where = index_path(args.name, args.root)
        retrievers = {"dense": False if args.no_dense else None, "lexical": False if args.no_lexical else None}
        report = build_index(where, args.source, **build_options, **retrievers, multivector_model=args.multivector)
    print(
        f"index {args.name} ({where}): {report.documents} documents ({report.added} added, {report.changed} changed, "
        f"{report.removed} removed, {report.unchanged} unchanged), {report.chunks} chunks; embedded {report.embedded}, "
        f"kept {report.resumed} from an interrupted run, took {report.ready} ready-made, {report.truncated} truncated "
        f"by the model; {report.seconds:.1f} s"
        + (f"; sparse: encoded {report.sparse_encoded}, {report.sparse_truncated} truncated" if args.sparse else "")
        + (
            f"; multi-vector: encoded {report.multivector_encoded}, {report.multivector_truncated} truncated"
            if args.multivector
            else ""
        )
    )
    return 0


def _embed_corpus(args: argparse.Namespace) -> int:
    from gpte.search.distributed import embed_corpus_ray

    if args.ray_address:
        import ray

        ray.init(address=args.ray_address)
    count = embed_corpus_ray(
        args.source,
        args.output,
        model=args.model,
        **{key: value for key, value in _chunking(args).items() if value is not None},  # unset: embed_corpus_ray's
        text_field=args.field,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        overwrite=args.overwrite,
    )
    print(
        f"{count} chunks embedded into {args.output}; build the index with gpte index {args.source} --name NAME --vectors-from {args.output}"
    )
    return 0


def _search(args: argparse.Namespace) -> int:
    index = options.open_index(args.name, args)
    chosen = {"dense_mode": args.dense_mode} if args.dense_mode else {}
    chosen |= {"mode": args.mode} if args.mode else {}  # none: the index's default
    hits = index.search(
        args.query,
        k=args.k,
        fusion=args.fusion,
        filters=_filters(args.filter),
        reranker=_reranker(args),
        **chosen,
    )
    if args.json:
        print(json.dumps([hit.__dict__ for hit in hits], ensure_ascii=False, indent=2))
        return 0
    for rank, hit in enumerate(hits, 1):
        snippet = " ".join(hit.text.split())
        print(f"{rank:>3}. {hit.score:8.4f}  {hit.doc_id}\n     {snippet[:200]}{'...' if len(snippet) > 200 else ''}")
    return 0


def _filters(pairs: list[str]) -> dict[str, Any] | None:
    """``FIELD=VALUE`` pairs as filters; a VALUE that parses as JSON (1960, true, [1, 2]) is taken as such."""
    filters: dict[str, Any] = {}
    for pair in pairs:
        field, sep, value = pair.partition("=")
        if not sep or not field:
            raise ValueError(f"--filter {pair!r}: write FIELD=VALUE")
        try:
            filters[field] = json.loads(value)
        except json.JSONDecodeError:
            filters[field] = value
    return filters or None


def _reranker(args: argparse.Namespace) -> Any:
    from gpte.models.loading import load_reranker

    return load_reranker(args.rerank) if args.rerank else None
