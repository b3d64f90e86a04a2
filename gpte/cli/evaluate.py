"""Verbs that measure models: ``gpte evaluate``, ``gpte report``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gpte.cli import options


def register(verbs: Any) -> None:
    evaluate = verbs.add_parser("evaluate", help="score a model on MTEB-style task folders")
    options.add_model(
        evaluate,
        "a sparse model folder (SPLADE) or promptreps is evaluated as a sparse model, a multi-vector folder "
        "(ColBERT) as a multi-vector model, a reranker folder or llm as a reranker",
    )
    kind = evaluate.add_mutually_exclusive_group()
    kind.add_argument(
        "--sparse",
        action="store_true",
        help="evaluate --model as a sparse model: a plain encoder folder becomes SPLADE with a new masked-LM head "
        "(a sparse model folder and promptreps are sparse without it)",
    )
    kind.add_argument(
        "--multivector",
        action="store_true",
        help="evaluate --model as a multi-vector model (ColBERT, scored by MaxSim on Retrieval, Reranking, STS, "
        "PairClassification, BitextMining, Summarization): a plain encoder folder gets a new 128-d token projection "
        "(a MultiVectorEncoder or PyLate folder is multi-vector without it)",
    )
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
    evaluate.add_argument(
        "--overwrite",
        action="store_true",
        help="recompute every task, even one whose result file could be kept (without it, a result file is kept "
        "only when it was computed by the same model weights and settings on the same task data; others are "
        "recomputed and the log says why)",
    )
    evaluate.add_argument(
        "--cache",
        default=None,
        help="a folder keeping text vectors across runs (texts found there are not encoded again)",
    )
    options.add_llm_options(evaluate)
    evaluate.add_argument(
        "--first-stage",
        default=None,
        metavar="MODEL|bm25",
        help="with a reranker --model: what retrieves the documents it reranks on Retrieval tasks, a dense model "
        "(folder or hub id) or bm25",
    )
    evaluate.add_argument(
        "--top-k",
        type=int,
        default=None,
        help="with a reranker --model and --first-stage: first-stage documents reranked per query (default: 100)",
    )
    options.add_chunking(
        evaluate,
        "dense models: score each document by its chunks' vectors, the max or mean (--chunk-aggregate) of the "
        "query's similarities to them (queries are not chunked); on the task types a multi-vector model is "
        "evaluated on (Retrieval, Reranking, STS, ...)",
        aggregate=True,
    )
    evaluate.set_defaults(run=_evaluate)

    report = verbs.add_parser("report", help="compare models' results: table, per-type means, bar chart")
    report.add_argument(
        "folders",
        nargs="+",
        help="result folders: gpte evaluate outputs or model folders in them; one column per model (the same "
        "model in two folders: two columns, named NAME (FOLDER))",
    )
    report.add_argument(
        "--plot", default=None, help="write a bar chart of per-type means (one bar per model) to this PNG"
    )
    report.set_defaults(run=_report)


def _evaluate(args: argparse.Namespace) -> int:
    """Evaluate the model on the tasks into ``--output``: each task's line in the log says whether its result was
    kept or (re)computed and why; another ``gpte evaluate`` of the same model into the same folder is refused
    (``gpte.locking.OutputLockedError``, naming it)."""
    from gpte.evaluate import discover_tasks, evaluate, select_tasks
    from gpte.evaluate.report import format_table
    from gpte.evaluate.reranker import DEFAULT_TOP_K
    from gpte.evaluate.suites import suite_patterns

    tasks = select_tasks(discover_tasks(args.data), suite_patterns(args.suite) if args.suite else args.tasks)
    model, first_stage = _models(args)
    run = evaluate(
        model,
        tasks,
        args.output,
        overwrite=args.overwrite,
        batch_size=args.batch_size,
        cache=args.cache,
        first_stage=first_stage,
        top_k=args.top_k or DEFAULT_TOP_K,
    )
    if run.results:
        print(format_table({model.name: run.results}))
    for task, error in run.failures.items():
        print(f"gpte: task {task} failed: {error}", file=sys.stderr)
    return 1 if run.failures else 0


def _models(args: argparse.Namespace) -> tuple[Any, Any]:
    """The evaluated model and its first stage: a reranker folder (``is_reranker_folder``) or ``llm`` (the packaged
    SmolLM2 yes/no reranker) loads as a reranker with ``--first-stage`` (None without it); a sparse model folder,
    ``promptreps`` or any model with ``--sparse`` as a sparse model; a multi-vector folder or any model with
    ``--multivector`` as a multi-vector model; anything else as a dense model (the last three refuse
    ``--first-stage`` and ``--top-k``)."""
    from gpte.models.loading import is_reranker_folder, load_reranker

    reranker = args.model == "llm" or is_reranker_folder(args.model)
    if reranker and options.chunking_options(args):
        raise ValueError(
            f"{', '.join(options.chunking_options(args))} apply to a dense --model; {args.model} is a reranker "
            "(a cross-encoder or the llm yes/no reranker), which reads each document whole"
        )
    for flag, kind in (("sparse", "a sparse model (SPLADE)"), ("multivector", "a multi-vector model (ColBERT)")):
        if getattr(args, flag) and reranker:
            raise ValueError(
                f"--{flag} loads an encoder as {kind}; {args.model} is a reranker (a cross-encoder or the llm yes/no "
                f"reranker), evaluated as one without --{flag}"
            )
    if not reranker:
        for name, value in (("--first-stage", args.first_stage), ("--top-k", args.top_k)):
            if value is not None:
                raise ValueError(
                    f"{name} applies to a reranker --model; {args.model or 'the default model'} is not one"
                )
        return _encoder(args, args.model), None
    model = load_reranker(args.model)
    if args.device:
        model.to(args.device)
    if args.first_stage is None:
        return model, None
    if args.first_stage == "bm25":
        from gpte.search.lexical import BM25FirstStage

        return model, BM25FirstStage()
    first_stage_args = argparse.Namespace(**{**vars(args), "sparse": False, "multivector": False})
    return model, _encoder(first_stage_args, args.first_stage)


def _encoder(args: argparse.Namespace, name: str | None) -> Any:
    """The model ``name`` on ``--device`` as a sparse model (``--sparse``, a sparse model folder or ``promptreps``)
    or a multi-vector model (``--multivector`` or a multi-vector folder), else as a dense one with ``--backend`` and
    the LLM options, wrapped in a ``ChunkedEncoder`` when chunk options are given (the other two refuse all these)."""
    from gpte.models.loading import is_multivector_folder, is_sparse_folder

    args = argparse.Namespace(**{**vars(args), "model": name})
    if args.sparse or name == "promptreps" or is_sparse_folder(name):
        kind, load = "a sparse model", options.load_sparse_model
    elif args.multivector or is_multivector_folder(name):
        kind, load = "a multi-vector model", options.load_multivector_model
    else:
        model = options.load_dense_model(args)
        return options.chunked_model(model, args) if options.chunking_options(args) else model
    dense_only = [f"--{option}" for option in options.llm_options(args)]
    dense_only += [f"--backend {args.backend}"] if args.backend != "torch" else []
    dense_only += options.chunking_options(args)
    if dense_only:
        raise ValueError(f"{', '.join(dense_only)} apply to dense models; {name} is evaluated as {kind}")
    return load(args)


def _report(args: argparse.Namespace) -> int:
    from gpte.evaluate.report import bar_chart, collect, format_table

    table = collect([Path(folder) for folder in args.folders])
    print(format_table(table))
    if args.plot:
        print(f"wrote {bar_chart(table, Path(args.plot))}")
    return 0
