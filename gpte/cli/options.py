"""Options shared by several verbs, spelled once: every verb that takes ``--model``, ``--device``, ``--backend``,
``--batch-size``, ``-o/--output`` or ``--no-progress`` adds it here, so the flags, help and defaults agree
(tests/test_cli.py walks the parsers to hold them to it). Also the helpers those options feed: loading the model
a verb runs, the decoder-LLM options, and opening a named index on disk or in Milvus."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from gpte.models.backends import BACKENDS

MODEL_HELP = "model name, folder, .gguf file or hub id (default: all-MiniLM-L6-v2)"
DEVICE_HELP = "cpu, cuda, ... (default: cuda when available)"
BACKEND_CHOICES = (*BACKENDS, "static")
BACKEND_HELP = "how the model runs (static: a distill-static folder)"
BATCH_SIZE = 32
BATCH_SIZE_HELP = f"texts per batch (default: {BATCH_SIZE})"
NO_PROGRESS_HELP = "hide the progress bar"
MILVUS_HELP = "keep the index in Milvus: http://host:19530 (a server or cluster) or a Milvus Lite path ending in .db"
ROOT_HELP = "folder of indexes (default: $GPTE_INDEXES or ~/.cache/gpte/indexes)"


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
