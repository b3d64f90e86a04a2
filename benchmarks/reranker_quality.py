"""Reranker quality, measured on ../shared/data: cross-encoders trained with gpte from all-MiniLM-L6-v2's transformer,
and the SmolLM2 yes/no reranker, against the all-MiniLM-L6-v2 bi-encoder they start from.

1. STS + TREC QA: a cross-encoder trained (``bce``) on STS-B en train (scores / 5) and TREC QA's judged train
   questions (each positive and the first 10 negatives a (question, sentence, 0|1) row); STS-B en test Spearman of its scores, and TREC QA
   test MAP (mteb's ``map_at_1000``) reranking each question's candidates, beside the bi-encoder's.
2. Cranfield, with the query split of ../shared/data/README.md (odd ``_id`` trains, even tests): negatives mined for
   the odd queries' judged documents with the bi-encoder (``gpte.datagen.mining``: 2 a row, sampled from ranks
   10-50, which tests/test_data_real.py measures at a 4.4 % false-negative rate; TopK-PercPos leaves too few), a
   cross-encoder trained on (query, positive, negatives) cut to 128 tokens a pair with ``--cranfield-loss``
   (listnet), reading 128 tokens a pair at test time too; nDCG@10 on the even queries of the
   dense top-``--top-k`` reranked, beside dense alone and BM25 alone.
3. SmolLM2-135M-Instruct as a yes/no reranker (``gpte.models.llm_reranker``): TREC QA test MAP.

    python benchmarks/reranker_quality.py [--out runs/rerankers] [--epochs 1] [--learning-rate 2e-5]
                                          [--cranfield-loss listnet] [--top-k 100] [--parts sts cranfield llm]

Trained models are kept under ``--out`` (a rerun reuses them). Not a test: the figures go in the README.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from scipy.stats import spearmanr

from gpte import Embedder
from gpte.data.mteb_folders import read_beir
from gpte.datagen.mining import mine_hard_negatives
from gpte.datagen.negatives import NegativeRules
from gpte.evaluate import evaluate, load_task
from gpte.models.cross_encoder import CrossEncoder
from gpte.models.loading import load_reranker
from gpte.train.recipe import load_recipe, run_recipe

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
STSB = SHARED / "sts" / "stsb-en"
TRECQA = SHARED / "reranking" / "trecqa"
CRANFIELD = SHARED / "retrieval" / "cranfield"
TREC_NEGATIVES = 10  # of each train question's judged negatives (4,277 in all), to keep CPU training short
CRANFIELD_NEGATIVES = 2


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8")]


def write_rows(path: Path, items: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    return path


def main_score(model, task_folder: Path, **options) -> float:
    run = evaluate(model, [load_task(task_folder)], **options)
    if run.failures:
        raise RuntimeError(run.failures)
    return next(iter(run.results.values()))["main_score_value"]


def train_reranker(
    out: Path, name: str, data: list[dict], loss: str, epochs: float, learning_rate: float, extra: str = ""
) -> Path:
    """Train a cross-encoder from all-MiniLM-L6-v2 with a one-stage recipe; returns the model folder."""
    recipe = out / f"{name}.yaml"
    recipe.write_text(
        f"kind: reranker\noutput: {out / name}\nstages:\n  - name: {name}\n    data: {json.dumps(data)}\n"
        f"    loss: {loss}\n    training: {{epochs: {epochs}, batch_size: 16, learning_rate: {learning_rate:.2e}, "
        f"no_duplicates: false{extra}}}\n",
        encoding="utf-8",
    )
    started = time.perf_counter()
    (folder,) = run_recipe(load_recipe(recipe))
    print(f"  trained {name} in {time.perf_counter() - started:.0f} s -> {folder}")
    return folder


def sts_and_trecqa(out: Path, epochs: float, learning_rate: float, bi_encoder: Embedder) -> None:
    print("\n1. STS-B en + TREC QA train -> cross-encoder (bce)")
    trec_rows = [
        {"query": row["query"], "text": text, "label": label}
        for row in rows(TRECQA / "train.jsonl")
        for label, texts in ((1.0, row["positive"]), (0.0, row["negative"][:TREC_NEGATIVES]))
        for text in texts
    ]
    data = [
        {
            "path": str(STSB / "train.jsonl"),
            "columns": ["sentence1", "sentence2"],
            "score": "score",
            "score_range": [0, 5],
        },
        {
            "path": str(write_rows(out / "trecqa-pointwise.jsonl", trec_rows)),
            "columns": ["query", "text"],
            "score": "label",
        },
    ]
    folder = train_reranker(out, f"sts-trecqa-lr{learning_rate:g}-e{epochs:g}", data, "bce", epochs, learning_rate)
    cross = CrossEncoder.load(folder)
    test = rows(STSB / "test.jsonl")
    gold = [row["score"] for row in test]
    cross_sts = spearmanr(cross.predict([(r["sentence1"], r["sentence2"]) for r in test]), gold).statistic
    bi_sts = main_score(bi_encoder, STSB)
    cross_map, bi_map = main_score(cross, TRECQA), main_score(bi_encoder, TRECQA)
    print(f"  STS-B en test Spearman: cross-encoder {100 * cross_sts:.2f}, bi-encoder {100 * bi_sts:.2f}")
    print(f"  TREC QA test MAP:       cross-encoder {100 * cross_map:.2f}, bi-encoder {100 * bi_map:.2f}")


def split_cranfield(out: Path) -> tuple[Path, Path]:
    """BEIR folders of Cranfield's odd-id (train) and even-id (test) queries, same corpus, qrels filtered."""
    halves = []
    for name, keep in (("odd", 1), ("even", 0)):
        folder = out / f"cranfield-{name}"
        (folder / "qrels").mkdir(parents=True, exist_ok=True)
        for file in ("corpus.jsonl", "meta.json"):
            if not (folder / file).exists():
                shutil.copy(CRANFIELD / file, folder / file)
        queries = [q for q in rows(CRANFIELD / "queries.jsonl") if int(q["_id"]) % 2 == keep]
        write_rows(folder / "queries.jsonl", queries)
        ids = {q["_id"] for q in queries}
        lines = (CRANFIELD / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()
        kept = [lines[0]] + [line for line in lines[1:] if line.split("\t")[0] in ids]
        (folder / "qrels" / "test.tsv").write_text("\n".join(kept) + "\n", encoding="utf-8")
        halves.append(folder)
    return halves[0], halves[1]


def cranfield_training(out: Path, bi_encoder: Embedder) -> tuple[list[dict], Path]:
    """The split under ``out``: the odd queries' training rows (query, positive, ``CRANFIELD_NEGATIVES`` negatives
    mined with ``bi_encoder`` from ranks 10-50, mined once) as a recipe's data section, and the even half's folder."""
    odd, even = split_cranfield(out)
    mined = out / "cranfield-odd-negatives.jsonl"
    if not mined.exists():
        mine_hard_negatives(
            odd,
            odd / "corpus.jsonl",
            mined,
            embedder=bi_encoder,
            rules=NegativeRules(num_negatives=CRANFIELD_NEGATIVES, range_min=10, range_max=50, sampling="random"),
            split="test",
            show_progress=False,
        )
    data = [{"path": str(mined), "columns": ["query", "positive"], "negatives": "negatives"}]
    return data, even


def cranfield(out: Path, epochs: float, learning_rate: float, loss: str, top_k: int, bi_encoder: Embedder) -> None:
    print(f"\n2. Cranfield odd queries + mined negatives -> cross-encoder ({loss}); rerank dense top-{top_k} of even")
    data, even = cranfield_training(out, bi_encoder)
    name = f"cranfield-{loss}-lr{learning_rate:g}-e{epochs:g}"
    folder = train_reranker(out, name, data, loss, epochs, learning_rate, ", max_seq_length: 128")
    cross = CrossEncoder.load(folder)  # 128 tokens a pair, as trained (CPU time)
    dense = main_score(bi_encoder, even)
    reranked = main_score(cross, even, first_stage=bi_encoder, top_k=top_k)
    print(f"  even queries nDCG@10: dense {100 * dense:.2f}, dense top-{top_k} reranked {100 * reranked:.2f}")
    print(f"  ({len(read_beir(even, 'test').queries)} test queries; BM25 alone: see `gpte evaluate --model bm25`)")


def llm(bi_encoder: Embedder) -> None:
    print("\n3. SmolLM2-135M-Instruct yes/no reranker (Qwen3-Reranker template), TREC QA test")
    started = time.perf_counter()
    reranker = load_reranker("llm", max_length=512)
    score = main_score(reranker, TRECQA, batch_size=8)
    print(f"  MAP: SmolLM2 {100 * score:.2f}, bi-encoder {100 * main_score(bi_encoder, TRECQA):.2f}")
    print(f"  ({time.perf_counter() - started:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/rerankers"))
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--cranfield-loss", default="listnet")
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--parts", nargs="+", default=["sts", "cranfield", "llm"])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    bi_encoder = Embedder.load(device="cpu")
    if "sts" in args.parts:
        sts_and_trecqa(args.out.resolve(), args.epochs, args.learning_rate, bi_encoder)
    if "cranfield" in args.parts:
        cranfield(args.out.resolve(), args.epochs, args.learning_rate, args.cranfield_loss, args.top_k, bi_encoder)
    if "llm" in args.parts:
        llm(bi_encoder)


if __name__ == "__main__":
    main()
