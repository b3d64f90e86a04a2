"""Verbs that run one model: ``gpte encode``, ``gpte distill-static``, ``gpte info``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gpte.atomic import check_destination, refuse_existing
from gpte.cli import options
from gpte.data.readers import TEXT_FORMATS
from gpte.locking import exclusive_output
from gpte.models.choices import CHUNK_TEXTS, PRECISIONS
from gpte.runtime.output import VECTOR_FORMATS, check_output


def register(verbs: Any) -> None:
    encode = verbs.add_parser("encode", help="embed the texts of a file and write the vectors")
    encode.add_argument("input", help=f"texts: {', '.join(TEXT_FORMATS)} (txt/md: one text per line)")
    options.add_output(
        encode,
        f"vectors: {', '.join(VECTOR_FORMATS)}; sparse vectors: .npz, .jsonl (token: weight); token vectors "
        "(--kind multivector): a folder of tokens.npy + offsets.npy; chunk vectors (--chunk): a folder of tokens.npy "
        "+ offsets.npy + spans.npy",
    )
    options.add_model(encode)
    encode.add_argument(
        "--kind",
        default=None,
        choices=("dense", "sparse", "multivector"),
        help="sparse: one weight per vocabulary token (SPLADE; 'promptreps' as --model: PromptReps on SmolLM2); "
        "multivector: one vector per token (ColBERT); default: the model folder's kind, else dense",
    )
    encode.add_argument("--top-k", type=int, default=None, help="sparse: weights kept per vector (default: all)")
    encode.add_argument("--threshold", type=float, default=None, help="sparse: drop weights at or below this")
    encode.add_argument("--field", default=None, help="text field/column for jsonl, csv, tsv, parquet (default: text)")
    encode.add_argument("--role", default=None, help="query, document, or a prompt name of the model")
    encode.add_argument("--prompt", default=None, help="a prompt name, a template with {text}, or a prefix")
    encode.add_argument("--task", default=None, help="fills the prompt's {task} slot")
    options.add_batch_size(encode)
    encode.add_argument("--truncate-dim", type=int, default=None, help="keep the first D dimensions (Matryoshka)")
    encode.add_argument("--precision", default="float32", choices=PRECISIONS)
    encode.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None, help="default: the model's")
    options.add_device(encode)
    options.add_backend(encode)
    encode.add_argument(
        "--ranges", default=None, help="int8/uint8 calibration ranges (.npy from gpte.runtime.quantization.save_ranges)"
    )
    encode.add_argument(
        "--chunk-size",
        type=int,
        default=CHUNK_TEXTS,
        help="texts per chunk written (and resumed) at a time (not --chunk's chunks of a text)",
    )
    encode.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    options.add_no_progress(encode)
    options.add_llm_options(encode)
    options.add_chunking(
        encode,
        "one vector per chunk of each text (dense models): OUTPUT is a folder of tokens.npy (the chunk vectors, "
        "float32, as the model normalizes them), offsets.npy (text i's chunks are rows offsets[i]:offsets[i+1]) "
        "and spans.npy (each chunk's characters start, end in its text); not with --precision, --truncate-dim, "
        "--normalize or --ranges",
    )
    encode.set_defaults(run=_encode)

    distill = verbs.add_parser("distill-static", help="distil a static (model2vec-style) token table from a model")
    options.add_model(distill, "the model distilled")
    options.add_output(distill, "the static model folder to write")
    distill.add_argument("--pca-dims", type=int, default=256, help="PCA dimensions (0: keep the model's)")
    distill.add_argument("--sif", type=float, default=1e-4, help="SIF coefficient of the Zipf weighting (0: none)")
    options.add_device(distill)
    distill.add_argument("--overwrite", action="store_true")
    options.add_no_progress(distill)
    distill.set_defaults(run=_distill_static)

    info = verbs.add_parser("info", help="describe a model: backbone, parameters, dimension, pooling, prompts")
    info.add_argument("model", nargs="?", default=None, help=options.MODEL_HELP)
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=_info)


def _encode(args: argparse.Namespace) -> int:
    from gpte.runtime.quantization import load_ranges
    from gpte.runtime.streaming import encode_to

    kind = options.model_kind(args)
    if kind == "sparse":
        return _encode_sparse(args)
    if kind == "multivector":
        return _encode_multivector(args)
    if args.top_k is not None or args.threshold is not None:
        raise ValueError("--top-k and --threshold apply to sparse models (--kind sparse)")
    if options.chunking_options(args):
        return _encode_chunked(args)
    output = check_output(args.output, args.overwrite)
    embedder = options.load_dense_model(args)
    encode_options = {"role": args.role, "normalize": args.normalize}
    if not options.is_static_model(embedder):  # a static model keeps its own batch size and takes no prompt
        encode_options |= {
            "prompt": args.prompt,
            "task": args.task,
            "batch_size": args.batch_size,
            "truncate_dim": args.truncate_dim,
        }
    ranges = load_ranges(args.ranges) if args.ranges else None
    report = encode_to(
        embedder,
        args.input,
        output,
        field=args.field,
        chunk_size=args.chunk_size,
        precision=args.precision,
        ranges=ranges,
        overwrite=args.overwrite,
        show_progress=not args.no_progress,
        **encode_options,
    )
    resumed = f", {report.n_resumed_chunks} chunks kept from an interrupted run" if report.n_resumed_chunks else ""
    print(
        f"wrote {report.n_texts} vectors of {report.n_columns} {args.precision} values to {output} "
        f"({report.n_truncated} truncated to the model's maximum length{resumed}, {report.seconds:.1f} s)"
    )
    return 0


def _encode_sparse(args: argparse.Namespace) -> int:
    from gpte.data.readers import read_texts
    from gpte.models.sparse import active_dimensions
    from gpte.runtime.sparse_output import check_sparse_output, write_sparse_vectors

    _refuse_dense_options(args, "sparse")
    output = check_sparse_output(args.output, args.overwrite)
    with exclusive_output(output):  # a second run writing OUTPUT fails at once, not after its encoding
        model = options.load_sparse_model(args)
        result = model.encode_with_report(
            read_texts(args.input, args.field),
            role=args.role,
            prompt=args.prompt,
            task=args.task,
            batch_size=args.batch_size,
            top_k=args.top_k,
            threshold=args.threshold,
            show_progress=not args.no_progress,
        )
        write_sparse_vectors(result.vectors, output, model.decode, args.overwrite)
    report = result.report
    print(
        f"wrote {report.n_texts} sparse vectors ({active_dimensions(result.vectors):.1f} active of "
        f"{model.vocab_size} dimensions on average) to {output} ({report.n_truncated} truncated to the model's "
        f"maximum length, {report.seconds:.1f} s)"
    )
    return 0


def _encode_multivector(args: argparse.Namespace) -> int:
    from gpte.runtime.token_output import encode_tokens_to

    _refuse_dense_options(args, "multivector")
    if args.top_k is not None or args.threshold is not None:
        raise ValueError("--top-k and --threshold apply to sparse models (--kind sparse)")
    check_destination(args.output, args.overwrite, folder=True)  # before the model loads
    model = options.load_multivector_model(args)
    report = encode_tokens_to(
        model,
        args.input,
        args.output,
        field=args.field,
        chunk_size=args.chunk_size,
        overwrite=args.overwrite,
        show_progress=not args.no_progress,
        role=args.role,
        prompt=args.prompt,
        task=args.task,
        batch_size=args.batch_size,
    )
    resumed = f", {report.n_resumed_chunks} chunks kept from an interrupted run" if report.n_resumed_chunks else ""
    print(
        f"wrote {report.n_tokens} token vectors of {report.dimension} float32 values for {report.n_texts} texts "
        f"({report.n_tokens / max(report.n_texts, 1):.1f} per text) to {args.output}/tokens.npy and offsets.npy "
        f"({report.n_truncated} truncated to the model's maximum length{resumed}, {report.seconds:.1f} s)"
    )
    return 0


def _encode_chunked(args: argparse.Namespace) -> int:
    """``gpte encode --chunk``: the chunk vectors of a dense model (``ChunkedEncoder.encode_chunks``) written by the
    resumable token writer with each chunk's character span (``gpte.runtime.token_output.CHUNK_VECTORS``).

    Raises:
        ValueError: an option that shapes one vector per text (--precision other than float32, --truncate-dim,
            --normalize, --ranges), or one ``options.chunked_model`` refuses.
    """
    from gpte.runtime.token_output import CHUNK_VECTORS, SPANS_FILE, encode_tokens_to

    given = _vector_options(args)
    if given:
        raise ValueError(
            f"{', '.join(given)} apply to one vector per text, not to chunk vectors (--chunk writes the model's own "
            "vectors: float32, all dimensions, normalized as the model does); leave them out"
        )
    check_destination(args.output, args.overwrite, folder=True)  # before the model loads
    model = options.chunked_model(options.load_dense_model(args), args)
    report = encode_tokens_to(
        model,
        args.input,
        args.output,
        field=args.field,
        chunk_size=args.chunk_size,
        overwrite=args.overwrite,
        show_progress=not args.no_progress,
        encoding=CHUNK_VECTORS,
        role=args.role,
        prompt=args.prompt,
        task=args.task,
        batch_size=args.batch_size,
    )
    resumed = (
        f", {report.n_resumed_chunks} chunks of texts kept from an interrupted run" if report.n_resumed_chunks else ""
    )
    late = "late " if model.late else ""
    size = f"at most {model.chunk_tokens} tokens" if model.chunk_tokens else "whole texts"
    print(
        f"wrote {report.n_tokens} {late}chunk vectors ({size}) of {report.dimension} float32 values for "
        f"{report.n_texts} texts ({report.n_tokens / max(report.n_texts, 1):.1f} per text) to {args.output}/tokens.npy, "
        f"offsets.npy and {SPANS_FILE} ({report.n_truncated} chunks truncated to the model's maximum length{resumed}, "
        f"{report.seconds:.1f} s)"
    )
    return 0


def _vector_options(args: argparse.Namespace) -> list[str]:
    """The options given that shape one dense vector per text: --truncate-dim, --normalize, --ranges, and
    --precision other than float32."""
    shaping = {"--truncate-dim": args.truncate_dim, "--normalize": args.normalize, "--ranges": args.ranges}
    given = [name for name, value in shaping.items() if value is not None]
    return given + ([f"--precision {args.precision}"] if args.precision != "float32" else [])


def _refuse_dense_options(args: argparse.Namespace, kind: str) -> None:
    """ValueError naming the dense-only options (the vector options, --backend, the chunk options) given to a
    ``--kind`` ``kind`` encode."""
    given = _vector_options(args) + ([f"--backend {args.backend}"] if args.backend != "torch" else [])
    given += options.chunking_options(args)
    if given:
        raise ValueError(f"{', '.join(given)} apply to dense models, not --kind {kind}")


def _distill_static(args: argparse.Namespace) -> int:
    from gpte.models.embedder import Embedder
    from gpte.models.static import distill_static

    refuse_existing(Path(args.output), args.overwrite)  # before the minutes of distillation, not after
    static = distill_static(
        Embedder.load(args.model, device=args.device), args.pca_dims or None, args.sif or None, not args.no_progress
    )
    static.save(args.output, overwrite=args.overwrite)
    print(f"wrote a static model of {len(static.table)} tokens x {static.dimension} dimensions to {args.output}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from gpte.models.loading import is_multivector_folder, is_sparse_folder, load_model

    if args.model == "promptreps" or is_sparse_folder(args.model):
        from gpte.models.sparse import load_sparse_encoder

        info = load_sparse_encoder(args.model).info()
    elif is_multivector_folder(args.model):
        from gpte.models.multivector import load_multivector_encoder

        info = load_multivector_encoder(args.model).info()
    else:
        info = load_model(args.model).info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(len(key) for key in info)
        for key, value in info.items():
            shown = f"{value:,}" if key == "parameters" and isinstance(value, int) else value
            print(f"{key:<{width}}  {shown}")
    return 0
