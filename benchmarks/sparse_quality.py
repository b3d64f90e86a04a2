"""Sparse retrieval quality on Cranfield, with the query split of ../shared/data/README.md (odd ``_id`` trains, even
tests; the same split, mined negatives and training settings as benchmarks/reranker_quality.py).

1. SPLADE trained by gpte from all-MiniLM-L6-v2's transformer (a masked-LM head tied to its word embeddings):
   ``splade`` loss = in-batch InfoNCE (dot product, scale 1) + FLOPS on documents and queries (quadratic warm-up), on
   (query, positive, 2 mined negatives) rows of the odd queries.
2. The dense model trained the same way (``infonce``, same rows and settings) and the untrained one.
3. BM25 (bm25s, the index's lexical retriever) and PromptReps on SmolLM2-135M-Instruct (training-free).
4. Hybrid: reciprocal rank fusion (k = 60, ``gpte.search.fusion``) of the trained dense and SPLADE top-100.

Printed per system: nDCG@10 on the even queries (gpte's trec_eval measures, mteb's numbers), average active
dimensions per query and per document, and the index size (CSR bytes for sparse, float32 vectors for dense, bm25s'
score matrix for BM25).

    python benchmarks/sparse_quality.py [--out runs/sparse] [--epochs 1] [--learning-rate 5e-5]
                                        [--dense-learning-rate R] [--max-seq-length 128] [--promptreps-length 512]
                                        [--parts splade dense promptreps]

Trained models are kept under ``--out`` (a rerun reuses them). Not a test: the figures go in the README.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from interleaved_timing import cpu_description
from reranker_quality import cranfield_training

from gpte import Embedder
from gpte.data.mteb_folders import read_beir
from gpte.evaluate.tasktypes.retrieval import judged_queries, retrieval_scores
from gpte.models.sparse import active_dimensions, load_sparse_encoder
from gpte.search.fusion import fuse
from gpte.search.lexical import bm25_scores, build_bm25
from gpte.search.ranking import Ranking
from gpte.train.recipe import load_recipe, run_recipe

TOP = 100


def train(
    out: Path,
    name: str,
    kind: str,
    loss: str,
    data: list[dict],
    epochs: float,
    learning_rate: float,
    length: int,
    model_options: str = "{}",
) -> Path:
    """A one-stage recipe from all-MiniLM-L6-v2 (texts cut to ``length`` tokens; ``model_options`` a YAML mapping);
    returns the model folder."""
    recipe = out / f"{name}.yaml"
    recipe.write_text(
        f"kind: {kind}\noutput: {out / name}\nstages:\n  - name: {name}\n    model_options: {model_options}\n"
        f"    data: {json.dumps(data)}\n"
        f"    loss: {loss}\n    training: {{epochs: {epochs}, batch_size: 16, learning_rate: {learning_rate:.2e}, "
        f"max_seq_length: {length}}}\n",
        encoding="utf-8",
    )
    started = time.perf_counter()
    (folder,) = run_recipe(load_recipe(recipe))
    print(f"  trained {name} in {time.perf_counter() - started:.0f} s -> {folder}")
    return folder


def rankings_from_scores(scores: np.ndarray) -> list[Ranking]:
    """One ``Ranking`` (top ``TOP`` documents) per row of a (queries, documents) score matrix."""
    result = []
    for row in scores:
        top = np.argsort(-row, kind="stable")[:TOP]
        result.append(Ranking(top.astype(np.int64), row[top].astype(np.float64), top.astype(np.int64)))
    return result


def ndcg10(rankings: list[Ranking], query_ids: list[str], doc_ids: list[str], qrels: dict) -> float:
    run = {
        query: {doc_ids[d]: float(s) for d, s in zip(r.docs.tolist(), r.scores.tolist())}
        for query, r in zip(query_ids, rankings)
    }
    return 100 * retrieval_scores(qrels, run)["ndcg_at_10"]


def report(name: str, score: float, detail: str) -> None:
    print(f"  {name:<34} nDCG@10 {score:6.2f}   {detail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/sparse"))
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--dense-learning-rate", type=float, default=None, help="default: --learning-rate")
    parser.add_argument("--document-regularizer", type=float, default=3e-5)
    parser.add_argument("--query-regularizer", type=float, default=5e-5)
    parser.add_argument("--max-seq-length", type=int, default=128, help="tokens per text in training (CPU time)")
    parser.add_argument(
        "--promptreps-length", type=int, default=512, help="PromptReps' tokens per input, prompt included (CPU time)"
    )
    parser.add_argument("--parts", nargs="+", default=["splade", "dense", "promptreps"])
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(cpu_description())
    bi_encoder = Embedder.load(device="cpu")
    data, even = cranfield_training(out, bi_encoder)
    test = read_beir(even, "test")
    queries = judged_queries(test)
    query_ids, query_texts = list(queries), list(queries.values())
    doc_ids, doc_texts = list(test.corpus), list(test.corpus.values())
    print(f"Cranfield even half: {len(query_ids)} judged queries, {len(doc_ids)} documents")

    bm25 = build_bm25(doc_texts)
    bm25_rankings = rankings_from_scores(np.stack([bm25_scores(bm25, q) for q in query_texts]))
    bm25_bytes = sum(array.nbytes for array in bm25.scores.values() if isinstance(array, np.ndarray))
    report("BM25 (bm25s)", ndcg10(bm25_rankings, query_ids, doc_ids, test.qrels), f"index {bm25_bytes / 1e6:.2f} MB")

    def dense_rankings(model: Embedder) -> list[Ranking]:
        q = model.encode(query_texts, role="query", normalize=True)
        d = model.encode(doc_texts, role="document", normalize=True)
        return rankings_from_scores(q @ d.T)

    dense_bytes = len(doc_texts) * bi_encoder.dimension * 4
    untrained = dense_rankings(bi_encoder)
    report(
        "dense all-MiniLM-L6-v2", ndcg10(untrained, query_ids, doc_ids, test.qrels), f"index {dense_bytes / 1e6:.2f} MB"
    )
    length = args.max_seq_length
    sparse_rankings = None
    if "splade" in args.parts:
        untrained_splade = load_sparse_encoder(None, max_seq_length=256)
        sparse_system(
            "SPLADE untrained (MiniLM + new head)", untrained_splade, query_texts, doc_texts, query_ids, doc_ids, test
        )
        loss = (  # YAML reads 3e-05 as a string: floats need their dot
            f"{{name: splade, document_regularizer_weight: {args.document_regularizer:.2e}, "
            f"query_regularizer_weight: {args.query_regularizer:.2e}}}"
        )
        name = (
            f"splade-lr{args.learning_rate:g}-e{args.epochs:g}-d{args.document_regularizer:g}"
            f"-q{args.query_regularizer:g}-len{length}"
        )
        splade = load_sparse_encoder(train(out, name, "sparse", loss, data, args.epochs, args.learning_rate, length))
        sparse_rankings = sparse_system(
            "SPLADE (gpte-trained)", splade, query_texts, doc_texts, query_ids, doc_ids, test
        )
        fused = [fuse([a, b], "rrf", TOP) for a, b in zip(bm25_rankings, sparse_rankings)]
        report("hybrid BM25 + SPLADE (RRF)", ndcg10(fused, query_ids, doc_ids, test.qrels), "")
    dense_systems = {"untrained": untrained}
    if "dense" in args.parts:
        rate = args.dense_learning_rate or args.learning_rate
        folder = train(
            out, f"dense-lr{rate:g}-e{args.epochs:g}-len{length}", "dense", "infonce", data, args.epochs, rate, length
        )
        dense_systems["trained"] = dense_rankings(Embedder.load(folder, device="cpu"))
        report("dense trained (infonce)", ndcg10(dense_systems["trained"], query_ids, doc_ids, test.qrels), "")
    for label, dense in dense_systems.items() if sparse_rankings is not None else ():
        fused = [fuse([a, b], "rrf", TOP) for a, b in zip(dense, sparse_rankings)]
        report(f"hybrid dense {label} + SPLADE (RRF)", ndcg10(fused, query_ids, doc_ids, test.qrels), "")

    if "promptreps" in args.parts:
        started = time.perf_counter()
        promptreps = load_sparse_encoder("promptreps", max_seq_length=args.promptreps_length)
        sparse_system(
            "PromptReps (SmolLM2, no training)", promptreps, query_texts, doc_texts, query_ids, doc_ids, test, 8
        )
        print(f"  (PromptReps encoded the collection in {time.perf_counter() - started:.0f} s)")


def sparse_system(name, model, query_texts, doc_texts, query_ids, doc_ids, test, batch_size: int = 32) -> list[Ranking]:
    queries = model.encode(query_texts, role="query", batch_size=batch_size)
    documents = model.encode(doc_texts, role="document", batch_size=batch_size)
    scores = np.asarray((queries @ documents.T).todense())
    rankings = rankings_from_scores(scores)
    size = documents.data.nbytes + documents.indices.nbytes + documents.indptr.nbytes
    detail = (
        f"active dims: query {active_dimensions(queries):.1f}, document {active_dimensions(documents):.1f}; "
        f"index {size / 1e6:.2f} MB (CSR)"
    )
    report(name, ndcg10(rankings, query_ids, doc_ids, test.qrels), detail)
    return rankings


if __name__ == "__main__":
    main()
