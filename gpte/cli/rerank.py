"""``gpte rerank``: order each row's candidates by a reranker's score of (query, candidate).

Input: rows ``{"query": str, "candidates": [str | {"id": ..., "text": str}], ...}``, one JSON object a line of a
jsonl file (or the rows of a parquet file: ``gpte.data.readers.iter_records``); a bad row (a malformed line, a file
that is not UTF-8, a text with a lone surrogate) is refused, its line named, and a bad output path, before the model
loads. The model is ``gpte.models.loading.load_reranker``'s, and the pairs of every row are scored in
one ``predict_with_report`` call.
Output: the same rows (every field kept) with ``"ranking": [{"index" | "id", "score"}]`` added, best first: a
candidate given as an object with an ``id`` is named by it, any other by its position in ``candidates``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from gpte.atomic import atomic_path, check_destination
from gpte.cli import options
from gpte.data.readers import iter_records
from gpte.locking import exclusive_output

if TYPE_CHECKING:
    import numpy as np


def register(verbs: Any) -> None:
    rerank = verbs.add_parser("rerank", help="rank each row's candidates for its query with a reranker")
    rerank.add_argument(
        "input", help='a jsonl (or parquet) file of {"query": str, "candidates": [str | {"id", "text"}]} rows'
    )
    options.add_model(
        rerank,
        "here a reranker: a cross-encoder folder or hub id, an LLM folder or .gguf (its yes/no answer), or llm "
        "(the packaged SmolLM2, used when --model is not given)",
    )
    options.add_output(rerank, "the jsonl file to write (default: print the rows)", default="-")
    rerank.add_argument("--top-k", type=int, default=None, help="keep the K best candidates of each row (default: all)")
    options.add_batch_size(rerank)
    rerank.add_argument(
        "--raw-scores", action="store_true", help="raw logits instead of the activated scores (same order)"
    )
    rerank.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    rerank.set_defaults(run=_rerank)


def _rerank(args: argparse.Namespace) -> int:
    if args.top_k is not None and args.top_k < 1:
        raise ValueError(f"--top-k must be a positive integer, got {args.top_k}")
    if args.output == "-":
        return _rerank_into(args, None)
    output = check_destination(args.output, args.overwrite)  # before the model loads
    with exclusive_output(output):  # a second run writing OUTPUT fails at once, not after its scoring
        return _rerank_into(args, output)


def _rerank_into(args: argparse.Namespace, output: Path | None) -> int:
    """Read and check the rows, load the reranker, score, and write the ranked rows to ``output`` (atomically) or
    to stdout (None)."""
    from gpte.models.loading import load_reranker

    rows = _read_rows(Path(args.input))
    reranker = load_reranker(args.model)
    labels = getattr(reranker, "num_labels", 1)
    if labels != 1:
        raise ValueError(f"{args.model} gives {labels} scores a pair; gpte rerank takes a one-score reranker")
    pairs = [(row["query"], text) for row, candidates in rows for _, text in candidates]
    result = reranker.predict_with_report(pairs, batch_size=args.batch_size, activation=not args.raw_scores)
    ranked = _add_rankings(rows, result.scores, args.top_k)
    if output is None:
        _write_rows(ranked, sys.stdout)
    else:
        with atomic_path(output, args.overwrite) as temporary, temporary.open("w", encoding="utf-8") as handle:
            _write_rows(ranked, handle)
    summary = f"reranked {len(rows)} rows, {len(pairs)} pairs ({result.report.n_truncated} cut to fit the reranker)"
    print(summary if output is None else f"{summary} -> {output}", file=sys.stderr if output is None else sys.stdout)
    return 0


def _read_rows(path: Path) -> list[tuple[dict[str, Any], list[tuple[dict[str, Any], str]]]]:
    """Each row of ``path`` with its candidates (``_read_candidates``).

    Raises:
        ValueError: naming the file and line, a malformed or bad row, a line that is not UTF-8 text or a lone
            surrogate (``iter_records``).
    """
    return [(row, _read_candidates(row, where)) for where, row in iter_records(path)]


def _read_candidates(row: dict[str, Any], where: str) -> list[tuple[dict[str, Any], str]]:
    """``({"index": i} | {"id": id}, text)`` of each candidate of ``row``.

    Raises:
        ValueError: naming ``where`` (the file and line), for a missing or empty query, candidates that are not a
            list, or a candidate that is neither a string nor an object with a string ``text``.
    """
    query, candidates = row.get("query"), row.get("candidates")
    if not isinstance(query, str) or not query:
        raise ValueError(f"{where}: query must be a non-empty string, got {query!r:.80}")
    if not isinstance(candidates, list):
        raise ValueError(
            f"{where}: candidates must be a list of strings or {{'id', 'text'}} objects, got {candidates!r:.80}"
        )
    return [_candidate(candidate, i, where) for i, candidate in enumerate(candidates)]


def _candidate(candidate: Any, index: int, where: str) -> tuple[dict[str, Any], str]:
    if isinstance(candidate, str):
        return {"index": index}, candidate
    if isinstance(candidate, dict) and isinstance(candidate.get("text"), str):
        return ({"id": candidate["id"]} if "id" in candidate else {"index": index}), candidate["text"]
    raise ValueError(
        f"{where}: candidate {index} must be a string or an object with a string text field, got {candidate!r:.80}"
    )


def _add_rankings(
    rows: list[tuple[dict[str, Any], list[tuple[dict[str, Any], str]]]], scores: np.ndarray, top_k: int | None
) -> list[dict[str, Any]]:
    """Each row with its ``ranking`` (best first, ties in input order, the first ``top_k``) from ``scores``, the
    scores of every row's candidates in turn."""
    from gpte.models.protocol import best_first

    ranked, start = [], 0
    for row, candidates in rows:
        row_scores = scores[start : start + len(candidates)]
        start += len(candidates)
        order = best_first(row_scores, top_k)
        ranked.append({**row, "ranking": [{**candidates[i][0], "score": float(row_scores[i])} for i in order]})
    return ranked


def _write_rows(rows: list[dict[str, Any]], handle: TextIO) -> None:
    for row in rows:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
