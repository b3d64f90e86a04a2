"""Reranker throughput: gpte's ``CrossEncoder.predict`` against sentence-transformers' ``CrossEncoder.predict`` on the
same cross-encoder folder, pairs, batch size and threads, in one run.

The cross-encoder is all-MiniLM-L6-v2's transformer with a one-logit head (``--model`` names a trained one instead;
the head's weights do not change the cost). Pairs from ../shared/data: TREC QA test (each question with its candidate
answer sentences: short pairs) and Cranfield (each query with documents: long pairs, up to the 512-token limit).
For each set: pairs/s (median over ``--repeats`` interleaved rounds after a warm-up), the ratio gpte / ST, the
largest score difference, and the tokens the transformer runs, padding included, for gpte's batches (sorted by
tokens) and sentence-transformers' (sorted by characters). The CPU's model name and SIMD flags are printed first.

    python benchmarks/rerank_throughput.py [--batch-size 32] [--threads N] [--repeats 3] [--model FOLDER]
                                           [--long-pairs 2000]

Not a test: run it by hand on a quiet machine and record the ratios in the README.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from interleaved_timing import cpu_description, measure

from gpte.models.batching import length_sorted_batches
from gpte.models.cross_encoder import CrossEncoder

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def trecqa_pairs() -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in (SHARED / "reranking" / "trecqa" / "test.jsonl").open(encoding="utf-8")]
    return [(row["query"], text) for row in rows for text in row["positive"] + row["negative"]]


def cranfield_pairs(limit: int) -> list[tuple[str, str]]:
    folder = SHARED / "retrieval" / "cranfield"
    queries = [json.loads(line)["text"] for line in (folder / "queries.jsonl").open(encoding="utf-8")]
    documents = [json.loads(line) for line in (folder / "corpus.jsonl").open(encoding="utf-8")]
    texts = [f"{d.get('title', '')} {d['text']}".strip() for d in documents]
    return [(queries[i % len(queries)], texts[(7 * i) % len(texts)]) for i in range(limit)]


def padded_tokens(model: CrossEncoder, pairs: list[tuple[str, str]], batch_size: int) -> tuple[int, int]:
    """Tokens run including padding: gpte's batches (sorted by tokens) and sentence-transformers' (by characters)."""
    ids, _, _ = model.tokenize_pairs([q for q, _ in pairs], [t for _, t in pairs])
    lengths = np.array([len(x) for x in ids])
    ours = sum(len(rows) * lengths[rows].max() for rows in length_sorted_batches(lengths.tolist(), batch_size))
    by_chars = np.argsort([-(len(q) + len(t)) for q, t in pairs], kind="stable")
    theirs = sum(
        len(rows) * lengths[rows].max()
        for rows in (by_chars[s : s + batch_size] for s in range(0, len(pairs), batch_size))
    )
    return int(ours), int(theirs)


def run(name: str, pairs: list[tuple[str, str]], ours: CrossEncoder, theirs, args: argparse.Namespace) -> None:
    runners = {
        "gpte": lambda batch: ours.predict(batch, batch_size=args.batch_size, show_progress=False),
        "sentence-transformers": lambda batch: theirs.predict(
            batch, batch_size=args.batch_size, show_progress_bar=False
        ),
    }
    rates, scores = measure(runners, pairs, args.repeats)
    gpte_tokens, st_tokens = padded_tokens(ours, pairs, args.batch_size)
    difference = float(np.abs(scores["gpte"] - scores["sentence-transformers"]).max())
    print(f"\n{name}: {len(pairs)} pairs, batch size {args.batch_size}")
    print(f"  padded tokens: gpte {gpte_tokens}, sentence-transformers {st_tokens} ({st_tokens / gpte_tokens:.2f}x)")
    for runner, rate in rates.items():
        print(f"  {runner:22s} {rate:8.1f} pairs/s  {rate / rates['sentence-transformers']:.2f}x ST")
    print(f"  largest score difference: {difference:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None, help="a cross-encoder folder (default: MiniLM with a new head)")
    parser.add_argument("--long-pairs", type=int, default=2000)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from sentence_transformers import CrossEncoder as STCrossEncoder

    print(f"{cpu_description()}; torch threads: {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as folder:
        model_folder = args.model
        if model_folder is None:
            torch.manual_seed(0)
            model_folder = str(CrossEncoder.load(None, num_labels=1).save(Path(folder) / "ce"))
        ours = CrossEncoder.load(model_folder, device="cpu")
        theirs = STCrossEncoder(model_folder, device="cpu")
        run("TREC QA test (short pairs)", trecqa_pairs(), ours, theirs, args)
        run("Cranfield (long pairs)", cranfield_pairs(args.long_pairs), ours, theirs, args)


if __name__ == "__main__":
    main()
