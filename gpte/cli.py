"""The ``gpte`` command: thin verbs over the library.

    gpte encode INPUT -o OUTPUT [--model M] [--field F] [--role R] [--prompt P] [--task T]
                [--batch-size N] [--truncate-dim D] [--precision P] [--normalize | --no-normalize]
                [--device DEV] [--overwrite] [--no-progress]
    gpte evaluate --data DIR [--model M] [--tasks T ... | --suite S] [-o results] [--overwrite] [--cache DIR]
    gpte report RESULTS_DIR... [--plot chart.png]
    gpte info [MODEL]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from gpte.data.readers import TEXT_FORMATS, read_texts
from gpte.errors import GpteError
from gpte.models.postprocess import PRECISIONS
from gpte.runtime.output import VECTOR_FORMATS, check_output, write_vectors

USER_ERRORS = (GpteError, ValueError, TypeError, FileExistsError, FileNotFoundError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 success, 1 a reported error, 130 interrupted)."""
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except USER_ERRORS as error:
        print(f"gpte: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gpte: interrupted; no output was written", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpte", description="General-purpose text embeddings.")
    verbs = parser.add_subparsers(required=True, metavar="VERB")

    encode = verbs.add_parser("encode", help="embed the texts of a file and write the vectors")
    encode.add_argument("input", help=f"texts: {', '.join(TEXT_FORMATS)} (txt/md: one text per line)")
    encode.add_argument("-o", "--output", required=True, help=f"vectors: {', '.join(VECTOR_FORMATS)}")
    encode.add_argument("--model", default=None, help="model name, folder, .gguf file or hub id (default: all-MiniLM-L6-v2)")
    encode.add_argument("--field", default=None, help="text field/column for jsonl, csv, tsv, parquet (default: text)")
    encode.add_argument("--role", default=None, help="query, document, or a prompt name of the model")
    encode.add_argument("--prompt", default=None, help="a prompt name, a template with {text}, or a prefix")
    encode.add_argument("--task", default=None, help="fills the prompt's {task} slot")
    encode.add_argument("--batch-size", type=int, default=32)
    encode.add_argument("--truncate-dim", type=int, default=None, help="keep the first D dimensions (Matryoshka)")
    encode.add_argument("--precision", default="float32", choices=PRECISIONS)
    encode.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None, help="default: the model's")
    encode.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    encode.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    encode.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    encode.set_defaults(run=_encode)

    evaluate = verbs.add_parser("evaluate", help="score a model on MTEB-style task folders")
    evaluate.add_argument("--model", default=None, help="model name, folder, .gguf file or hub id (default: all-MiniLM-L6-v2)")
    evaluate.add_argument("--data", required=True, help="a task folder, or a folder whose task folders (with meta.json) are found")
    chosen = evaluate.add_mutually_exclusive_group()
    chosen.add_argument("--tasks", nargs="+", default=None, help="only these tasks (full names, last parts, or glob patterns)")
    chosen.add_argument("--suite", default=None, help="a named suite (all, english, sts-multilingual, tatoeba, quick) or a .json file of task names")
    evaluate.add_argument("-o", "--output", default="results", help="folder for result files (default: results)")
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.add_argument("--device", default=None)
    evaluate.add_argument("--overwrite", action="store_true", help="recompute tasks that already have a result file")
    evaluate.add_argument("--cache", default=None, help="a folder keeping text vectors across runs (texts found there are not encoded again)")
    evaluate.set_defaults(run=_evaluate)

    report = verbs.add_parser("report", help="compare result folders: table, per-type means, bar chart")
    report.add_argument("folders", nargs="+", help="result folders (one per model)")
    report.add_argument("--plot", default=None, help="write a bar chart of per-type means to this PNG")
    report.set_defaults(run=_report)

    info = verbs.add_parser("info", help="describe a model: backbone, parameters, dimension, pooling, prompts")
    info.add_argument("model", nargs="?", default=None, help="model name, folder, .gguf file or hub id")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=_info)
    return parser


def _encode(args: argparse.Namespace) -> int:
    from gpte.models.embedder import Embedder

    output = check_output(args.output, args.overwrite)
    texts = read_texts(args.input, args.field)
    embedder = Embedder.load(args.model, device=args.device)
    result = embedder.encode_with_report(
        texts,
        role=args.role,
        prompt=args.prompt,
        task=args.task,
        batch_size=args.batch_size,
        normalize=args.normalize,
        truncate_dim=args.truncate_dim,
        precision=args.precision,
        show_progress=False if args.no_progress else True,
    )
    write_vectors(output, result.vectors, args.overwrite)
    report = result.report
    rows, dim = result.vectors.shape
    print(
        f"wrote {rows} vectors of {dim} {args.precision} values to {output} "
        f"({report.n_unique} distinct texts, {report.n_truncated} truncated to {embedder.max_seq_length} tokens, "
        f"{report.seconds:.1f} s)"
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from gpte.evaluate import discover_tasks, evaluate, select_tasks
    from gpte.evaluate.report import format_table
    from gpte.evaluate.suites import suite_patterns
    from gpte.models.embedder import Embedder

    tasks = select_tasks(discover_tasks(args.data), suite_patterns(args.suite) if args.suite else args.tasks)
    embedder = Embedder.load(args.model, device=args.device)
    run = evaluate(embedder, tasks, args.output, overwrite=args.overwrite, batch_size=args.batch_size, cache=args.cache)
    if run.results:
        print(format_table({embedder.name: run.results}))
    for name, error in run.failures.items():
        print(f"gpte: task {name} failed: {error}", file=sys.stderr)
    return 1 if run.failures else 0


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gpte.evaluate.report import bar_chart, collect, format_table

    table = collect([Path(folder) for folder in args.folders])
    print(format_table(table))
    if args.plot:
        print(f"wrote {bar_chart(table, Path(args.plot))}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from gpte.models.embedder import Embedder

    info = Embedder.load(args.model).info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(len(key) for key in info)
        for key, value in info.items():
            shown = f"{value:,}" if key == "parameters" else value
            print(f"{key:<{width}}  {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
