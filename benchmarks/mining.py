"""Hard-negative mining: gpte's ``mine_hard_negatives`` beside sentence-transformers' in one run, on Cranfield.

Each query keeps one labelled positive (its highest-graded qrel); both libraries mine ``--negatives`` from
the top ``--range-max`` with the same rules (plain top-k, then NV-Retriever's TopK-PercPos, relative
margin 0.05) with all-MiniLM-L6-v2. Printed per rule: wall seconds for gpte with a new corpus index
(embedding included), gpte with the index kept from the previous run, and sentence-transformers (which
embeds the corpus on every call), the ratios, the false-negative rate of each output (negatives judged
relevant in the qrels), and whether the two libraries chose the same negatives.

    python benchmarks/mining.py [--negatives 5] [--range-max 30] [--rounds 1]

Not a test: run it by hand and record the figures in the README.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from gpte import Embedder
from gpte.data.mteb_folders import read_beir
from gpte.datagen.mining import mine_hard_negatives
from gpte.datagen.negatives import NegativeRules, false_negative_rate
from gpte.models.sources import resolve_model

CRANFIELD = Path(__file__).resolve().parents[2] / "shared" / "data" / "retrieval" / "cranfield"


def _pairs(data, path: Path) -> list[tuple[str, str]]:
    pairs = [(q, max(rel, key=lambda d: rel[d])) for q, rel in data.qrels.items()]
    path.write_text(
        "".join(json.dumps({"query_id": q, "query": data.queries[q], "positive_id": d}) + "\n" for q, d in pairs)
    )
    return pairs


def _gpte(pairs_file: Path, embedder, rules: NegativeRules, out: Path, index: Path) -> tuple[float, list[dict]]:
    started = time.perf_counter()
    mine_hard_negatives(
        pairs_file,
        CRANFIELD / "corpus.jsonl",
        out,
        embedder=embedder,
        rules=rules,
        index_dir=index,
        overwrite=True,
        show_progress=False,
    )
    return time.perf_counter() - started, [json.loads(line) for line in out.read_text().splitlines()]


def _sentence_transformers(data, pairs, model, rules: NegativeRules) -> tuple[float, dict[str, list[str]]]:
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives as st_mine

    started = time.perf_counter()
    mined = st_mine(
        Dataset.from_dict(
            {"query": [data.queries[q] for q, _ in pairs], "positive": [data.corpus[d] for _, d in pairs]}
        ),
        model,
        corpus=list(data.corpus.values()),
        num_negatives=rules.num_negatives,
        range_max=rules.range_max,
        relative_margin=rules.relative_margin,
        output_format="triplet",
        verbose=False,
    )
    seconds = time.perf_counter() - started
    negatives: dict[str, list[str]] = {}
    for row in mined:
        negatives.setdefault(row["query"], []).append(row["negative"])
    return seconds, negatives


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--negatives", type=int, default=5)
    parser.add_argument("--range-max", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=1, help="repetitions of each timing (medians printed)")
    args = parser.parse_args()
    from sentence_transformers import SentenceTransformer

    data = read_beir(CRANFIELD, "test")
    embedder = Embedder.load(device="cpu")
    st_model = SentenceTransformer(str(resolve_model(None).folder), device="cpu")
    by_text = {text: doc for doc, text in data.corpus.items()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pairs = _pairs(data, tmp / "pairs.jsonl")
        for name, margin in (("plain top-k", None), ("TopK-PercPos 95%", 0.05)):
            rules = NegativeRules(num_negatives=args.negatives, range_max=args.range_max, relative_margin=margin)
            cold, warm, st = [], [], []
            for round_number in range(args.rounds):
                index = tmp / f"index-{name[:5]}-{round_number}"
                seconds, rows = _gpte(tmp / "pairs.jsonl", embedder, rules, tmp / "out.jsonl", index)
                cold.append(seconds)
                warm.append(_gpte(tmp / "pairs.jsonl", embedder, rules, tmp / "out.jsonl", index)[0])
                seconds, theirs = _sentence_transformers(data, pairs, st_model, rules)
                st.append(seconds)
            st_rows = [
                {"query_id": q, "negative_ids": [by_text[t] for t in theirs.get(data.queries[q], [])]}
                for q, _ in pairs
                if len(theirs.get(data.queries[q], [])) == args.negatives
            ]
            same = sum(row["negatives"] == theirs.get(row["query"]) for row in rows)
            cold_s, warm_s, st_s = (statistics.median(values) for values in (cold, warm, st))
            print(
                f"{name}: gpte new index {cold_s:.1f} s ({st_s / cold_s:.2f}x sentence-transformers), kept index {warm_s:.1f} s "
                f"({st_s / warm_s:.2f}x), sentence-transformers {st_s:.1f} s; pairs with {args.negatives} negatives: gpte {len(rows)}, "
                f"ST {len(st_rows)}; same negatives for {same}; false-negative rate gpte {false_negative_rate(rows, data.qrels):.3f}, "
                f"ST {false_negative_rate(st_rows, data.qrels):.3f}"
            )


if __name__ == "__main__":
    main()
