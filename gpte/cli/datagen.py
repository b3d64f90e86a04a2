"""Verbs that make training data: ``gpte mine``, ``gpte synth``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gpte.cli import options


def register(verbs: Any) -> None:
    mine = verbs.add_parser(
        "mine", help="mine hard negatives for (query, positive) pairs from a corpus (output: gpte train's format)"
    )
    mine.add_argument(
        "pairs", help="a jsonl/csv/tsv/parquet file (query + positive_id | positive_ids | positive) or a BEIR folder"
    )
    mine.add_argument(
        "--corpus",
        default=None,
        help="documents (_id/id, text, optional title); default: PAIRS/corpus.jsonl for a BEIR folder",
    )
    options.add_output(mine, "the jsonl file to write")
    options.add_model(mine, "the retriever")
    mine.add_argument("--mode", default="dense", help="candidates from dense, lexical (BM25) or hybrid retrieval")
    mine.add_argument("--num-negatives", type=int, default=3, help="negatives per pair")
    mine.add_argument("--range-min", type=int, default=0, help="skip the best N candidates")
    mine.add_argument("--range-max", type=int, default=50, help="consider the best N candidates")
    mine.add_argument("--max-score", type=float, default=None, help="keep candidates scored at most this")
    mine.add_argument("--min-score", type=float, default=None, help="keep candidates scored at least this")
    mine.add_argument("--absolute-margin", type=float, default=None, help="keep candidates scored <= positive - margin")
    mine.add_argument(
        "--relative-margin",
        type=float,
        default=None,
        help="keep candidates scored <= positive * (1 - margin); NV-Retriever: 0.05",
    )
    mine.add_argument("--sampling", default="top", help="top (the best remaining) or random (a sample of them)")
    mine.add_argument(
        "--cross-encoder", default=None, metavar="MODEL", help="rescore candidates and positives with a reranker"
    )
    mine.add_argument("--split", default="train", help="the qrels split of a BEIR folder")
    mine.add_argument("--field", default="text", help="text field of the corpus rows")
    mine.add_argument(
        "--index-dir", default=None, help="the corpus index folder (default: OUTPUT.index, reused by later runs)"
    )
    mine.add_argument("--seed", type=int, default=12345)
    _add_job_options(mine)
    mine.set_defaults(run=_mine)

    synth = verbs.add_parser(
        "synth", help="synthesize training data with an LLM: queries, e5 (task → JSON triples) or paraphrase"
    )
    synth.add_argument("recipe", help="queries (InPars/Promptagator), e5 (E5-mistral two-step) or paraphrase (SynCSE)")
    synth.add_argument(
        "source",
        nargs="?",
        default=None,
        help="queries: a corpus; paraphrase: sentences; e5: a task file (default: brainstormed)",
    )
    options.add_output(synth, "the jsonl file to write")
    synth.add_argument(
        "--generator",
        default=None,
        help="a causal LM (name, folder, .gguf) or openai:BASE_URL#MODEL (default: smollm2-135m-instruct)",
    )
    synth.add_argument("--field", default="text", help="text field of jsonl/csv/parquet sources")
    synth.add_argument("--limit", type=int, default=None, help="use the first N inputs")
    synth.add_argument("--tasks", type=int, default=20, help="e5 without a task file: tasks to brainstorm")
    synth.add_argument("--per-task", type=int, default=1, help="e5: examples per task")
    synth.add_argument(
        "--examples", default=None, help="queries: few-shot examples, a jsonl file with document and query fields"
    )
    synth.add_argument("--max-attempts", type=int, default=3, help="tries per input before it counts as unparsable")
    synth.add_argument("--max-new-tokens", type=int, default=None)
    synth.add_argument("--temperature", type=float, default=0.7)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--generator-batch-size", type=int, default=16)
    synth.add_argument("--min-words", type=int, default=2)
    synth.add_argument("--max-words", type=int, default=1024)
    synth.add_argument("--language", default="en", help="keep texts identified as this ISO 639-1 language ('' for any)")
    synth.add_argument("--no-dedup", action="store_true")
    synth.add_argument(
        "--round-trip-k",
        type=int,
        default=10,
        help="queries: keep a query when its document ranks in the top K (0: no round trip)",
    )
    options.add_model(synth, "the round-trip retriever")
    synth.add_argument("--index-dir", default=None, help="queries: the corpus index folder (default: OUTPUT.index)")
    _add_job_options(synth)
    synth.set_defaults(run=_synth)


def _add_job_options(parser: argparse.ArgumentParser) -> None:
    """Options of the chunked, resumable data jobs (``gpte.datagen.resumable``)."""
    options.add_batch_size(parser)
    parser.add_argument("--chunk-size", type=int, default=None, help="inputs per finished (resumable) chunk")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument(
        "--restart", action="store_true", help="discard an interrupted run's progress instead of resuming it"
    )
    options.add_no_progress(parser)


def _mine(args: argparse.Namespace) -> int:
    """``gpte mine``: ``mine_hard_negatives``, which checks the mode, pairs and output, and locks the output, before a
    model loads."""
    from gpte.datagen.mining import CHUNK_QUERIES, mine_hard_negatives
    from gpte.datagen.negatives import NegativeRules

    corpus = args.corpus or (Path(args.pairs) / "corpus.jsonl" if Path(args.pairs).is_dir() else None)
    if corpus is None:
        raise ValueError("--corpus is needed unless PAIRS is a BEIR folder with a corpus.jsonl")
    rules = NegativeRules(
        args.num_negatives,
        args.range_min,
        args.range_max,
        args.max_score,
        args.min_score,
        args.absolute_margin,
        args.relative_margin,
        args.sampling,
        args.seed,
    )
    report = mine_hard_negatives(
        args.pairs,
        corpus,
        args.output,
        model=args.model,
        rules=rules,
        mode=args.mode,
        cross_encoder=args.cross_encoder,
        split=args.split,
        text_field=args.field,
        index_dir=args.index_dir,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size or CHUNK_QUERIES,
        overwrite=args.overwrite,
        restart=args.restart,
        show_progress=not args.no_progress,
    )
    missing = f" (e.g. {'; '.join(report.missing_examples)})" if report.missing_examples else ""
    print(
        f"mined {report.negatives} negatives for {report.written} pairs of {report.queries} queries into {args.output}; "
        f"skipped {report.missing_positive} pairs whose positive is not in the corpus{missing} and {report.too_few_negatives} "
        f"with fewer than {rules.num_negatives} negatives passing the rules; {report.resumed_chunks} chunks resumed, {report.seconds:.1f} s"
    )
    return 0


def _synth(args: argparse.Namespace) -> int:
    """``gpte synth``: ``synthesize``, which checks the options, source and output, and locks the output, before the
    generator loads."""
    from gpte.datagen.synthesis import CHUNK_ITEMS, read_examples, synthesize
    from gpte.datagen.synthesis_filters import SynthesisFilters
    from gpte.models.causal_lm import DEFAULT_LLM

    filters = SynthesisFilters(
        args.min_words, args.max_words, args.language or None, not args.no_dedup, args.round_trip_k or None
    )
    examples = read_examples(args.examples) if args.examples else None
    report = synthesize(
        args.recipe,
        args.output,
        args.source,
        args.generator or DEFAULT_LLM,
        text_field=args.field,
        limit=args.limit,
        tasks=args.tasks,
        per_task=args.per_task,
        examples=examples,
        filters=filters,
        model=args.model,
        index_dir=args.index_dir,
        max_attempts=args.max_attempts,
        chunk_size=args.chunk_size or CHUNK_ITEMS,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        seed=args.seed,
        overwrite=args.overwrite,
        restart=args.restart,
        show_progress=not args.no_progress,
        generator_batch_size=args.generator_batch_size,
    )
    removed = ", ".join(f"{count} {reason}" for reason, count in sorted(report.removed.items())) or "none"
    print(
        f"{args.recipe}: {report.items} inputs, {report.parsed} parsed answers, kept {report.kept} in {args.output}; "
        f"removed: {removed}; {report.generator_calls} generator calls, {report.resumed_chunks} chunks resumed, {report.seconds:.1f} s"
    )
    return 0
