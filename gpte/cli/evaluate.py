"""Verbs that measure models: ``gpte evaluate``, ``gpte report``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gpte.cli import options


def register(verbs: Any) -> None:
    evaluate = verbs.add_parser("evaluate", help="score a model on MTEB-style task folders")
    options.add_model(evaluate)
    evaluate.add_argument(
        "--data", required=True, help="a task folder, or a folder whose task folders (with meta.json) are found"
    )
    chosen = evaluate.add_mutually_exclusive_group()
    chosen.add_argument(
        "--tasks", nargs="+", default=None, help="only these tasks (full names, last parts, or glob patterns)"
    )
    chosen.add_argument(
        "--suite",
        default=None,
        help="a named suite (all, english, sts-multilingual, tatoeba, quick) or a .json file of task names",
    )
    options.add_output(evaluate, "folder for result files (default: results)", default="results")
    options.add_batch_size(evaluate)
    options.add_device(evaluate)
    options.add_backend(evaluate)
    evaluate.add_argument("--overwrite", action="store_true", help="recompute tasks that already have a result file")
    evaluate.add_argument(
        "--cache",
        default=None,
        help="a folder keeping text vectors across runs (texts found there are not encoded again)",
    )
    options.add_llm_options(evaluate)
    evaluate.set_defaults(run=_evaluate)

    report = verbs.add_parser("report", help="compare result folders: table, per-type means, bar chart")
    report.add_argument("folders", nargs="+", help="result folders (one per model)")
    report.add_argument("--plot", default=None, help="write a bar chart of per-type means to this PNG")
    report.set_defaults(run=_report)


def _evaluate(args: argparse.Namespace) -> int:
    from gpte.evaluate import discover_tasks, evaluate, select_tasks
    from gpte.evaluate.report import format_table
    from gpte.evaluate.suites import suite_patterns

    tasks = select_tasks(discover_tasks(args.data), suite_patterns(args.suite) if args.suite else args.tasks)
    model = options.load_dense_model(args)
    run = evaluate(model, tasks, args.output, overwrite=args.overwrite, batch_size=args.batch_size, cache=args.cache)
    if run.results:
        print(format_table({model.name: run.results}))
    for name, error in run.failures.items():
        print(f"gpte: task {name} failed: {error}", file=sys.stderr)
    return 1 if run.failures else 0


def _report(args: argparse.Namespace) -> int:
    from gpte.evaluate.report import bar_chart, collect, format_table

    table = collect([Path(folder) for folder in args.folders])
    print(format_table(table))
    if args.plot:
        print(f"wrote {bar_chart(table, Path(args.plot))}")
    return 0
