"""Options shared by several verbs, spelled once: every verb that takes ``--model``, ``--device``, ``--backend``,
``--batch-size``, ``-o/--output`` or ``--no-progress`` adds it here, so the flags, help and defaults agree
(tests/test_cli.py walks the parsers to hold them to it). Also the helpers those options feed: loading the model
a verb runs, the decoder-LLM options, the long-document (chunking) options of encode and evaluate, and opening a
named index on disk or in Milvus."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from gpte.models.choices import (
    AGGREGATES,
    BACKENDS,
    BOUNDARIES,
    DEFAULT_AGGREGATE,
    DEFAULT_BOUNDARY,
)

MODEL_HELP = "model name, folder, .gguf file or hub id (default: all-MiniLM-L6-v2)"
DEVICE_HELP = "cpu, cuda, ... (default: cuda when available)"
BACKEND_CHOICES = (*BACKENDS, "static")
BACKEND_HELP = "how the model runs (static: a distill-static folder)"
BATCH_SIZE = 32
BATCH_SIZE_HELP = f"texts per batch (default: {BATCH_SIZE})"
NO_PROGRESS_HELP = "hide the progress bar"
MILVUS_HELP = "keep the index in Milvus: http://host:19530 (a server or cluster) or a Milvus Lite path ending in .db"
ROOT_HELP = "folder of indexes (default: $GPTE_INDEXES or ~/.cache/gpte/indexes)"
CHUNK_FLAGS = {  # the long-document options: their dest and flag
    "chunk": "--chunk",
    "chunk_tokens": "--chunk-tokens",
    "chunk_overlap": "--chunk-overlap",
    "chunk_boundary": "--chunk-boundary",
    "late_chunking": "--late-chunking",
    "window_overlap": "--window-overlap",
    "chunk_aggregate": "--chunk-aggregate",
}


def add_model(parser: argparse.ArgumentParser, note: str | None = None, repeatable: bool = False) -> None:
    """``--model``: MODEL_HELP, then ``note`` (what the model is for in this verb) after a semicolon."""
    parser.add_argument(
        "--model",
        default=None,
        action="append" if repeatable else "store",
        help=MODEL_HELP + (f"; {note}" if note else ""),
    )


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help=DEVICE_HELP)


def add_backend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="torch", choices=BACKEND_CHOICES, help=BACKEND_HELP)


def add_batch_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=BATCH_SIZE_HELP)


def add_output(parser: argparse.ArgumentParser, help: str, default: str | None = None) -> None:
    """``-o/--output``: required unless the verb has a ``default``; ``help`` says what is written there."""
    parser.add_argument("-o", "--output", required=default is None, default=default, help=help)


def add_no_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)


def add_llm_options(parser: argparse.ArgumentParser) -> None:
    """Options that turn a decoder LLM into an embedder (``gpte.models.attention``, ``gpte.models.extraction``)."""
    parser.add_argument("--attention", default=None, help="decoders: causal or bidirectional (default: the model's)")
    parser.add_argument(
        "--extraction",
        default=None,
        help="a named prompt + pooling for LLMs: prompteol, echo, ... (gpte.models.extraction)",
    )


def llm_options(args: argparse.Namespace) -> dict[str, str]:
    """The decoder-LLM options given on the command line (none when the verb has no such options)."""
    return {name: getattr(args, name) for name in ("attention", "extraction") if getattr(args, name, None)}


def add_chunking(parser: argparse.ArgumentParser, chunked: str, aggregate: bool = False) -> None:
    """The long-document options (``gpte.models.chunked.ChunkedEncoder``, dense models only): ``--chunk``,
    ``--chunk-tokens``, ``--chunk-overlap``, ``--chunk-boundary``, ``--late-chunking``, ``--window-overlap``, and with
    ``aggregate`` ``--chunk-aggregate``; ``chunked`` says what ``--chunk`` does in this verb."""
    group = parser.add_argument_group("long documents (dense models; see gpte.models.chunked)")
    group.add_argument("--chunk", action="store_true", help=chunked)
    group.add_argument(
        "--chunk-tokens",
        type=int,
        default=None,
        metavar="N",
        help="text tokens per chunk, implies --chunk (default: as many as fit the model, at most 256; 0: whole texts)",
    )
    group.add_argument(
        "--chunk-overlap",
        type=int,
        default=None,
        metavar="N",
        help="tokens shared by consecutive chunks (default: an eighth of the chunk)",
    )
    group.add_argument(
        "--chunk-boundary",
        default=None,
        choices=BOUNDARIES,
        help="token: a chunk every N - overlap tokens; sentence: chunks end after a sentence (default: "
        f"{DEFAULT_BOUNDARY})",
    )
    group.add_argument(
        "--late-chunking",
        action="store_true",
        help="encode each text whole and pool each chunk's tokens (late chunking; implies --chunk; needs a pooling "
        "over tokens: mean, max, weighted_mean, ...)",
    )
    group.add_argument(
        "--window-overlap",
        type=int,
        default=None,
        metavar="N",
        help="with --late-chunking: tokens shared by the windows of a text longer than the model (default: a quarter "
        "of a window)",
    )
    if aggregate:
        group.add_argument(
            "--chunk-aggregate",
            default=None,
            choices=AGGREGATES,
            help=f"a document's score from its chunks' scores (default: {DEFAULT_AGGREGATE})",
        )


def chunking_options(args: argparse.Namespace) -> list[str]:
    """The long-document flags given on the command line (none when the verb has no such options)."""
    given = {dest: getattr(args, dest, None) for dest in CHUNK_FLAGS}
    return [CHUNK_FLAGS[dest] for dest, value in given.items() if value is not None and value is not False]


def chunked_model(model: Any, args: argparse.Namespace) -> Any:
    """``model`` (a dense transformer model) as a ``ChunkedEncoder`` with the verb's long-document options.

    Raises:
        ValueError: chunk options without chunking asked for (``--chunk``, ``--chunk-tokens`` or ``--late-chunking``),
            ``--window-overlap`` without ``--late-chunking``, a static model, or a value ``ChunkedEncoder`` refuses
            (a bad size, overlap, or a pooling late chunking cannot use; the allowed values named).
    """
    if not (args.chunk or args.chunk_tokens is not None or args.late_chunking):
        raise ValueError(
            f"{', '.join(chunking_options(args))} shape chunks; ask for chunking with --chunk, --chunk-tokens N or "
            "--late-chunking"
        )
    if args.window_overlap is not None and not args.late_chunking:
        raise ValueError("--window-overlap applies to --late-chunking (the windows of a text longer than the model)")
    if is_static_model(model):
        raise ValueError(
            f"chunking fits chunks to a transformer's maximum length; {model.name} is a static model, which has none "
            "(encode its texts whole, without the chunk options)"
        )
    from gpte.models.chunked import ChunkedEncoder

    chosen = {"boundary": args.chunk_boundary, "aggregate": getattr(args, "chunk_aggregate", None)}
    return ChunkedEncoder(
        model,
        args.chunk_tokens,
        args.chunk_overlap,
        late=args.late_chunking,
        window_overlap=args.window_overlap,
        **{name: value for name, value in chosen.items() if value is not None},  # else ChunkedEncoder's defaults
    )


def load_dense_model(args: argparse.Namespace) -> Any:
    """The model of a verb with ``--model``, ``--backend`` and ``--device`` (and the LLM options if it has them),
    through ``gpte.models.loading.load_model``: a static folder (``gpte distill-static``) loads as a
    ``StaticEmbedder`` whatever the backend says, anything else as an ``Embedder`` with that backend."""
    from gpte.models.loading import is_static_folder, load_model

    backend, model, device, llm = args.backend, args.model, args.device, llm_options(args)
    if backend == "static":
        if llm:
            raise ValueError("--attention and --extraction apply to transformer models, not to --backend static")
        if model is None:
            raise ValueError("--backend static needs --model FOLDER, a folder written by gpte distill-static")
    if is_static_folder(model):
        device = None  # a static model is a table on the CPU: --device does not apply
    return load_model(model, backend, device=device, **llm)


def model_kind(args: argparse.Namespace) -> str:
    """The kind a verb with ``--kind`` runs: the one asked for, else the model folder's own (``dense``, ``sparse``
    or ``multivector``)."""
    from gpte.models.loading import is_multivector_folder, is_sparse_folder

    if args.kind is not None:
        return args.kind
    if args.model == "promptreps" or is_sparse_folder(args.model):
        return "sparse"
    return "multivector" if is_multivector_folder(args.model) else "dense"


def load_sparse_model(args: argparse.Namespace) -> Any:
    """The sparse model of a verb's ``--model`` on ``--device``: a SparseEncoder folder, ``promptreps``, or an
    encoder that becomes SPLADE (``gpte.models.sparse.load_sparse_encoder``)."""
    from gpte.models.sparse import load_sparse_encoder

    return load_sparse_encoder(args.model, device=args.device)


def load_multivector_model(args: argparse.Namespace) -> Any:
    """The multi-vector model of a verb's ``--model`` on ``--device``: a MultiVectorEncoder or PyLate folder, or a
    transformer with a new projection (``gpte.models.multivector.load_multivector_encoder``)."""
    from gpte.models.multivector import load_multivector_encoder

    return load_multivector_encoder(args.model, device=args.device)


def is_static_model(model: Any) -> bool:
    from gpte.models.static import StaticEmbedder

    return isinstance(model, StaticEmbedder)


def add_index_location(parser: argparse.ArgumentParser, milvus_note: str = "") -> None:
    """``--root DIR`` or ``--milvus URI``: where the named indexes of index, search and serve live."""
    parser.add_argument("--root", default=None, help=ROOT_HELP)
    parser.add_argument("--milvus", default=None, metavar="URI", help=MILVUS_HELP + milvus_note)


def open_index(name: str, args: argparse.Namespace) -> Any:
    """The index ``name``: in Milvus with --milvus, else on disk under --root."""
    if args.milvus:
        from gpte.search.milvus import MilvusIndex

        return MilvusIndex.open(args.milvus, name)
    from gpte.search.index import Index, index_path

    return Index.open(index_path(name, args.root))


def add_verbosity(parser: argparse.ArgumentParser, default: Any = logging.INFO) -> None:
    """``-v/--verbose`` and ``-q/--quiet``: the level of gpte's log messages (``gpte.cli.logs``). The top-level
    parser has the default; each verb takes them too (``gpte encode ... -q``) with ``argparse.SUPPRESS``, so
    that a verb that is not given them keeps what came before it."""
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument(
        "-v",
        "--verbose",
        dest="log_level",
        action="store_const",
        const=logging.DEBUG,
        default=default,
        help="gpte's debug messages, and other libraries' warnings and progress bars",
    )
    chosen.add_argument(
        "-q",
        "--quiet",
        dest="log_level",
        action="store_const",
        const=logging.WARNING,
        default=default,
        help="only warnings and errors (results are still printed)",
    )
