"""Multi-vector (ColBERT) retrieval quality on Cranfield, with the query split of ../shared/data/README.md (odd
``_id`` trains, even tests; the same split, mined negatives and training settings as benchmarks/sparse_quality.py).

1. ColBERT trained by gpte from all-MiniLM-L6-v2's transformer (a new 128-d projection, queries padded with [MASK] to
   32 tokens at least, punctuation skipped in documents): ``colbert_infonce`` (in-batch + hard negatives on MaxSim
   scores, scale 1) on (query, positive, 2 mined negatives) rows of the odd queries.
2. The dense model trained the same way (``infonce``, same rows and settings) and the untrained ones.
3. The trained ColBERT through gpte's compressed multi-vector index (``gpte.search.multivector``) against exact
   MaxSim, and with documents' tokens pooled (hierarchical token pooling, factor 2).
4. Hybrid: reciprocal rank fusion (k = 60) of the trained dense and ColBERT top-100.

Printed per system: nDCG@10 on the even queries (gpte's trec_eval measures, mteb's numbers), token vectors stored per
document, bytes per stored token and the query latency (exact MaxSim over the whole collection vs the index).

    python benchmarks/multivector_quality.py [--out runs/sparse] [--epochs 1] [--learning-rate 1e-4]
                                             [--max-seq-length 128] [--parts colbert dense index pooling]

Trained models are kept under ``--out`` (a rerun reuses them; pointing it at benchmarks/sparse_quality.py's folder
reuses its split, negatives and dense model). Not a test: the figures go in the README.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sparse_quality import cpu_line, cranfield_training, ndcg10, rankings_from_scores, report, train

from gpte import Embedder
from gpte.data.mteb_folders import read_beir
from gpte.evaluate.tasktypes.retrieval import judged_queries
from gpte.models.multivector import TokenVectors, load_multivector_encoder
from gpte.models.multivector.token_pooling import HierarchicalTokenPooling
from gpte.search.fusion import fuse

TOP = 100
COLBERT_OPTIONS = (
    "{dimension: 128, query_expansion: {length: 32, strategy: min}, query_length: 128, skiplist: punctuation}"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/multivector"))
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--max-seq-length", type=int, default=128, help="tokens per text in training (CPU time)")
    parser.add_argument("--parts", nargs="+", default=["colbert", "dense", "index", "pooling"])
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(cpu_line())
    data, even = cranfield_training(out, Embedder.load(device="cpu"))
    test = read_beir(even, "test")
    queries = judged_queries(test)
    query_ids, query_texts = list(queries), list(queries.values())
    doc_ids, doc_texts = list(test.corpus), list(test.corpus.values())
    print(f"Cranfield even half: {len(query_ids)} judged queries, {len(doc_ids)} documents")

    def score(rankings) -> float:
        return ndcg10(rankings, query_ids, doc_ids, test.qrels)

    systems = {}
    untrained = Embedder.load(device="cpu")
    systems["dense untrained"] = dense_rankings(untrained, query_texts, doc_texts)
    report("dense all-MiniLM-L6-v2", score(systems["dense untrained"]), "")
    length, rate = args.max_seq_length, args.learning_rate
    if "dense" in args.parts:
        name = f"dense-lr{rate:g}-e{args.epochs:g}-len{length}"
        folder = train(out, name, "dense", "infonce", data, args.epochs, rate, length)
        systems["dense trained"] = dense_rankings(Embedder.load(folder, device="cpu"), query_texts, doc_texts)
        report("dense trained (infonce)", score(systems["dense trained"]), "")
    start = load_multivector_encoder(None, device="cpu", **colbert_settings())
    colbert_system("ColBERT untrained (MiniLM + new projection)", start, query_texts, doc_texts, score)
    if "colbert" not in args.parts:
        return
    name = f"colbert-lr{rate:g}-e{args.epochs:g}-len{length}"
    folder = train(out, name, "multivector", "colbert_infonce", data, args.epochs, rate, length, COLBERT_OPTIONS)
    colbert = load_multivector_encoder(folder, device="cpu")
    systems["colbert"], queries_tv, documents_tv = colbert_system(
        "ColBERT trained (colbert_infonce)", colbert, query_texts, doc_texts, score
    )
    if "dense trained" in systems:
        fused = [fuse([a, b], "rrf", TOP) for a, b in zip(systems["dense trained"], systems["colbert"])]
        report("hybrid dense trained + ColBERT (RRF)", score(fused), "")
    if "index" in args.parts:
        index_system(queries_tv, documents_tv, score)
    if "pooling" in args.parts:
        pooled = colbert.encode(doc_texts, role="document", token_pooling=HierarchicalTokenPooling(pool_factor=2))
        scores = colbert.similarity(queries_tv, pooled)
        detail = f"tokens/doc {pooled.lengths.mean():.1f} (of {documents_tv.lengths.mean():.1f})"
        report("ColBERT trained, tokens pooled x2", score(rankings_from_scores(scores)), detail)


def colbert_settings() -> dict:
    """The untrained model's settings: those the recipe's ``model_options`` give (``COLBERT_OPTIONS``)."""
    import string

    expansion = {"length": 32, "strategy": "min"}
    return {"dimension": 128, "query_expansion": expansion, "query_length": 128, "skiplist": list(string.punctuation)}


def dense_rankings(model: Embedder, query_texts: list[str], doc_texts: list[str]):
    q = model.encode(query_texts, role="query", normalize=True)
    d = model.encode(doc_texts, role="document", normalize=True)
    return rankings_from_scores(q @ d.T)


def colbert_system(name, model, query_texts, doc_texts, score) -> tuple[list, TokenVectors, TokenVectors]:
    """Exact MaxSim over the whole collection: the rankings, the query and document token vectors."""
    queries = model.encode(query_texts, role="query")
    documents = model.encode(doc_texts, role="document")
    started = time.perf_counter()
    scores = model.similarity(queries, documents)
    per_query = (time.perf_counter() - started) / len(query_texts) * 1e3
    rankings = rankings_from_scores(scores)
    detail = (
        f"tokens/doc {documents.lengths.mean():.1f}, tokens/query {queries.lengths.mean():.1f}; float32 "
        f"{documents.data.nbytes / 1e6:.2f} MB ({4 * documents.dim} B/token); exact MaxSim {per_query:.2f} ms/query"
    )
    report(name, score(rankings), detail)
    return rankings, queries, documents


def index_system(queries: TokenVectors, documents: TokenVectors, score) -> None:
    """The compressed index (MUVERA candidates, then MaxSim from the float vectors or from the token codes) against
    exact MaxSim: nDCG@10, resident bytes per token, latency per query, for a few candidate counts."""
    from gpte.search.multivector import MultiVectorSearcher

    started = time.perf_counter()
    searcher = MultiVectorSearcher.from_vectors(documents)
    built = time.perf_counter() - started
    resident = searcher.nbytes / len(documents.data)
    print(f"  (index built in {built:.1f} s; {resident:.1f} B/token resident without the float vectors' 512)")
    for candidates, rescore in ((1024, "vectors"), (200, "vectors"), (100, "vectors"), (200, "codes")):
        searcher.candidates, searcher.rescore = candidates, rescore
        started = time.perf_counter()
        rankings = searcher.search(queries, TOP)
        per_query = (time.perf_counter() - started) / len(queries) * 1e3
        name = f"ColBERT trained, index {candidates} cand., {rescore}"
        report(name, score(rankings), f"{per_query:.2f} ms/query")


if __name__ == "__main__":
    main()
