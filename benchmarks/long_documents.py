"""Long documents: LongEmbed's synthetic tasks by length, and Cranfield made of long multi-topic documents.

1. ``longembed``: passkey and needle retrieval (``gpte.data.long_context``: built locally and deterministically as
   LongEmbed builds them; lengths counted in all-MiniLM-L6-v2 tokens; main score nDCG@1 = top-1 accuracy, mteb's
   ``LEMBPasskeyRetrieval``/``LEMBNeedleRetrieval``) at 256 ... 8192 tokens, a table of nDCG@1 by length for
   all-MiniLM-L6-v2 (256-token context: truncation, chunks scored by their best chunk, late chunking) and
   SmolLM2-135M-Instruct (8k context, whole documents: PromptEOL and echo, causal and bidirectional attention,
   untrained). Echo doubles the text, so it runs only where both copies fit the context.
2. ``cranfield``: Cranfield's documents concatenated 8 at a time into 175 long multi-topic documents
   (``long_cranfield``; a query's grade for a long document is the best grade of its parts), nDCG@10 of
   all-MiniLM-L6-v2 with plain truncation, chunk-max and chunk-mean, late chunking, and contextual chunks (each
   chunk prefixed with its document's titles, or with a one-line summary SmolLM2 wrote:
   ``gpte.datagen.summaries``).

    python benchmarks/long_documents.py [--parts longembed cranfield] [--llm-variants prompteol echo ...]
        [--documents 50 --queries 25] [--llm-documents 20 --llm-queries 10] [--llm-max-length 8192]
        [--no-minilm-rows] [--work runs/long_documents]

Task folders and the LLM summaries are kept under ``--work`` (a rerun reuses them). Not a test: the figures go in
the README.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from sparse_quality import cpu_line

from gpte import Embedder
from gpte.data.long_context import LENGTHS, long_cranfield, longembed_tasks, write_retrieval_task
from gpte.data.mteb_folders import read_beir
from gpte.datagen.generators import load_generator
from gpte.datagen.summaries import document_summaries
from gpte.evaluate.runner import evaluate
from gpte.evaluate.tasks import Task, load_task
from gpte.models.chunked import ChunkedEncoder

CRANFIELD = Path(__file__).resolve().parents[2] / "shared" / "data" / "retrieval" / "cranfield"
LLM = "smollm2-135m-instruct"
# name -> (extraction, attention)
LLM_VARIANTS = {
    "prompteol": ("prompteol", "causal"),
    "echo": ("echo", "causal"),
    "prompteol-bidirectional": ("prompteol", "bidirectional"),
    "echo-bidirectional": ("echo", "bidirectional"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=["longembed", "cranfield"])
    parser.add_argument("--work", type=Path, default=Path("runs/long_documents"))
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--documents", type=int, default=50, help="documents per length (all-MiniLM-L6-v2 rows)")
    parser.add_argument("--queries", type=int, default=25)
    parser.add_argument("--llm-documents", type=int, default=20, help="documents per length (SmolLM2 rows)")
    parser.add_argument("--llm-queries", type=int, default=10)
    parser.add_argument("--llm-variants", nargs="*", default=list(LLM_VARIANTS), choices=list(LLM_VARIANTS))
    parser.add_argument("--llm-max-length", type=int, default=8192, help="longest length the SmolLM2 rows run")
    parser.add_argument("--no-minilm-rows", action="store_true", help="LongEmbed: only the SmolLM2 rows")
    parser.add_argument("--kinds", nargs="+", default=["passkey", "needle"], choices=["passkey", "needle"])
    args = parser.parse_args()
    work = args.work.resolve()
    print(cpu_line(), flush=True)
    minilm = Embedder.load(device="cpu")
    if "longembed" in args.parts:
        longembed(args, work, minilm)
    if "cranfield" in args.parts:
        cranfield(work, minilm)


# ----------------------------------------------------------------- LongEmbed


def longembed(args: argparse.Namespace, work: Path, minilm: Embedder) -> None:
    haystack = list(read_beir(CRANFIELD, "test").corpus.values())
    minilm_rows = {
        "all-MiniLM-L6-v2, truncated to 256 tokens": minilm,
        "all-MiniLM-L6-v2, chunks (best chunk)": ChunkedEncoder(minilm),
        "all-MiniLM-L6-v2, late chunking (best chunk)": ChunkedEncoder(minilm, late=True),
    }
    for kind in args.kinds:
        tasks = (
            {}
            if args.no_minilm_rows
            else synthetic_tasks(work, kind, args.lengths, args.documents, args.queries, minilm, haystack)
        )
        print(f"\n{kind} retrieval, nDCG@1 (x100) by length, {args.documents} documents / {args.queries} queries")
        print(header(args.lengths))
        for name, model in {} if args.no_minilm_rows else minilm_rows.items():
            print(row(name, model, tasks, args.lengths), flush=True)
        if not args.llm_variants:
            continue
        llm_lengths = [length for length in args.lengths if length <= args.llm_max_length]
        llm_tasks = synthetic_tasks(work, kind, llm_lengths, args.llm_documents, args.llm_queries, minilm, haystack)
        print(f"SmolLM2 rows: {args.llm_documents} documents / {args.llm_queries} queries per length")
        for variant in args.llm_variants:
            extraction, attention = LLM_VARIANTS[variant]
            model = Embedder.load(LLM, extraction=extraction, attention=attention, device="cpu")
            # echo repeats the text: it runs where both copies fit; PromptEOL runs every length (a document a few
            # tokens over the context in SmolLM2's tokens is truncated, and counted)
            fitting = [n for n in llm_lengths if extraction != "echo" or 2 * n + 64 <= model.max_seq_length]
            print(row(f"SmolLM2-135M-Instruct, {variant}", model, llm_tasks, args.lengths, fitting), flush=True)


def synthetic_tasks(
    work: Path, kind: str, lengths: list[int], documents: int, queries: int, counter: Embedder, haystack: list[str]
) -> dict[int, Task]:
    """The ``kind`` task of each length as a task folder under ``work`` (built once, then reused)."""
    folders = {length: work / f"{kind}-{documents}x{queries}" / f"test_{length}" for length in lengths}
    missing = [length for length, folder in folders.items() if not folder.exists()]
    if missing:
        built = longembed_tasks(
            kind,
            missing,
            count_tokens=counter.count_tokens,
            haystack=haystack if kind == "needle" else None,
            n_documents=documents,
            n_queries=queries,
        )
        for length, data in built.items():
            meta = {"main_score": "ndcg_at_1", "language": "en", "counted_with": "all-MiniLM-L6-v2 tokens"}
            write_retrieval_task(folders[length], data, f"test_{length}", meta)
    return {length: load_task(folder, f"{kind}/test_{length}") for length, folder in folders.items()}


def header(lengths: list[int]) -> str:
    return f"{'system':<48}" + "".join(f"{length:>8}" for length in lengths) + f"{'seconds':>9}"


def row(name: str, model: Any, tasks: dict[int, Task], lengths: list[int], run: list[int] | None = None) -> str:
    """One table row: nDCG@1 x 100 per length ("-" where not run or failed) and the seconds it took."""
    started = time.perf_counter()
    cells = []
    for length in lengths:
        if length not in tasks or (run is not None and length not in run):
            cells.append(f"{'-':>8}")
            continue
        result = evaluate(model, [tasks[length]])
        value = result.results.get(tasks[length].name, {}).get("main_score_value")
        cells.append(f"{100 * value:>8.1f}" if value is not None else f"{'fail':>8}")
        for failure in result.failures.values():
            print(f"  {name} at {length}: {failure}")
    return f"{name:<48}" + "".join(cells) + f"{time.perf_counter() - started:>9.0f}"


# ----------------------------------------------------------------- long Cranfield


def cranfield(work: Path, minilm: Embedder) -> None:
    folder = work / "long-cranfield"
    titles = {
        row["_id"]: row.get("title") or ""
        for row in map(json.loads, (CRANFIELD / "corpus.jsonl").read_text(encoding="utf-8").splitlines())
    }
    data = read_beir(CRANFIELD, "test")
    long_data, long_titles = long_cranfield(data, titles, parts=8)
    if not folder.exists():
        write_retrieval_task(folder, long_data, "test", {"language": "en", "parts": 8})
    task = load_task(folder, "long-cranfield")
    lengths = minilm.count_tokens(list(long_data.corpus.values()))
    print(
        f"\nlong Cranfield: {len(long_data.corpus)} documents of 8 Cranfield documents each "
        f"(median {sorted(lengths)[len(lengths) // 2]} tokens, all-MiniLM-L6-v2 reads 256), "
        f"{len(long_data.qrels)} judged queries; nDCG@10 x 100"
    )
    by_text = {long_data.corpus[doc]: title for doc, title in long_titles.items()}
    summaries = document_summaries(
        load_generator(LLM), list(long_data.corpus.values()), cache=work / "long-cranfield-summaries.jsonl"
    )
    example = next(iter(long_data.corpus.values()))
    print(f"  a summary by SmolLM2: {summaries[example]!r}")
    systems = {
        "truncated to 256 tokens": minilm,
        "chunks of 254 tokens, best chunk": ChunkedEncoder(minilm),
        "chunks of 254 tokens, mean of chunks": ChunkedEncoder(minilm, aggregate="mean"),
        "late chunking, 254-token chunks, best chunk": ChunkedEncoder(minilm, late=True),
        "chunks of 128 tokens, best chunk": ChunkedEncoder(minilm, 128),
        "late chunking, 128-token chunks, best chunk": ChunkedEncoder(minilm, 128, late=True),
        "contextual chunks (titles), 128 tokens": ChunkedEncoder(minilm, 128, context=by_text),
        "contextual chunks (SmolLM2 summary), 128 tokens": ChunkedEncoder(minilm, 128, context=summaries),
    }
    for name, model in systems.items():
        started = time.perf_counter()
        result = evaluate(model, [task])
        value = result.results.get("long-cranfield", {}).get("main_score_value")
        shown = f"{100 * value:.2f}" if value is not None else f"failed: {result.failures}"
        print(f"  {name:<52} {shown:>7}   ({time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
