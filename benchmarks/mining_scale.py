"""Hard-negative mining at corpus scale: peak memory and time of ``gpte mine`` for a large corpus.

The corpus is ``--docs`` synthetic documents, each three real English sentences of ../shared/data drawn at
random (``english_sentences`` of benchmarks/search.py); the queries are ``--queries`` of those documents'
first sentences, each with its document as the positive. The model is a static (model2vec-style) table
distilled from all-MiniLM-L6-v2 (``--static FOLDER`` from ``gpte distill-static``), so that a 1M-document
corpus can be embedded on a CPU; the mining code path (corpus index, chunked retrieval and selection) is
the one every model takes. Printed: seconds and peak RSS of building the corpus index and of mining with
the index kept, each measured in a process of its own; rows written and negatives per row.

    python benchmarks/mining_scale.py --static runs/static-minilm [--docs 1000000] [--queries 10000]

Not a test: run it by hand and record the figures in the README.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search import english_sentences

from gpte.datagen.corpus_index import open_corpus_index
from gpte.datagen.mining import mine_hard_negatives
from gpte.datagen.negatives import NegativeRules
from gpte.models.static import StaticEmbedder


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_corpus(path: Path, sentences: list[str], count: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for number in range(count):
            handle.write(json.dumps({"_id": str(number), "text": " ".join(rng.sample(sentences, 3))}) + "\n")


def write_pairs(corpus: Path, path: Path, count: int, total: int, seed: int = 1) -> None:
    wanted = set(random.Random(seed).sample(range(total), count))
    with corpus.open(encoding="utf-8") as rows, path.open("w", encoding="utf-8") as handle:
        for number, line in enumerate(rows):
            if number in wanted:
                row = json.loads(line)
                first = row["text"].split(". ")[0]
                handle.write(json.dumps({"query": first, "positive_id": row["_id"]}) + "\n")


def build_phase(static: str, folder: str) -> tuple[float, float]:
    """Build the corpus index (in its own process); returns (seconds, the process's peak RSS in MiB)."""
    started = time.perf_counter()
    open_corpus_index(
        Path(folder) / "corpus.jsonl",
        Path(folder) / "index",
        StaticEmbedder.load(static),
        "static",
        batch_size=4096,
        show_progress=False,
    )
    return time.perf_counter() - started, peak_rss_mib()


def mining_phase(static: str, folder: str) -> tuple[float, float, str]:
    """Mine with the index kept (in its own process); returns (seconds, peak RSS in MiB, a summary)."""
    started = time.perf_counter()
    folder = Path(folder)
    report = mine_hard_negatives(
        folder / "pairs.jsonl",
        folder / "corpus.jsonl",
        folder / "mined.jsonl",
        embedder=StaticEmbedder.load(static),
        model="static",
        rules=NegativeRules(num_negatives=3, range_max=30, relative_margin=0.05),
        index_dir=folder / "index",
        batch_size=4096,
        show_progress=False,
    )
    summary = f"{report.written:,} rows ({report.negatives / max(report.written, 1):.1f} negatives each, {report.too_few_negatives:,} with too few)"
    return time.perf_counter() - started, peak_rss_mib(), summary


def in_own_process(function, *args):
    """``function(*args)`` in a fresh process, so that its peak RSS is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--static", required=True, help="a static model folder (gpte distill-static)")
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--workdir", default=None, help="where the corpus and index go (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        started = time.perf_counter()
        write_corpus(Path(tmp) / "corpus.jsonl", english_sentences(), args.docs)
        write_pairs(Path(tmp) / "corpus.jsonl", Path(tmp) / "pairs.jsonl", args.queries, args.docs)
        print(
            f"corpus of {args.docs:,} documents and {args.queries:,} pairs written: {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        seconds, peak = in_own_process(build_phase, args.static, tmp)
        print(f"corpus index built: {seconds:.0f} s, peak RSS {peak:,.0f} MiB", flush=True)
        seconds, peak, summary = in_own_process(mining_phase, args.static, tmp)
        print(
            f"mined {summary} for {args.queries:,} queries, index kept: {seconds:.0f} s, peak RSS {peak:,.0f} MiB",
            flush=True,
        )


if __name__ == "__main__":
    main()
