"""Fusion of document rankings from several retrievers (dense and BM25).

- ``rrf``: reciprocal rank fusion, score(d) = sum over rankings of 1 / (k + rank(d)), rank from 1, k = 60
  (Cormack, Clarke and Buettcher, SIGIR 2009).
- ``weighted``: sum over rankings of weight x min-max normalized score (a document missing from a ranking
  gets 0 there), as hybrid engines (Weaviate's relativeScoreFusion, Elasticsearch's linear retriever) do.
"""

from __future__ import annotations

import numpy as np

from gpte.search.ranking import Ranking

FUSIONS = ("rrf", "weighted")
RRF_K = 60


def fuse(
    rankings: list[Ranking], method: str, top: int, weights: list[float] | None = None, rrf_k: int = RRF_K
) -> Ranking:
    """One ranking of the documents in ``rankings``; each document keeps the best chunk of the first ranking
    it appears in. ``weights`` (one per ranking, default equal) apply to both methods."""
    if method not in FUSIONS:
        raise ValueError(f"unknown fusion {method!r}; choose one of {', '.join(FUSIONS)}")
    weights = weights or [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} fusion weights for {len(rankings)} rankings; give one per ranking")
    fused: dict[int, float] = {}
    chunk_of: dict[int, int] = {}
    for ranking, weight in zip(rankings, weights):
        contributions = _rrf(ranking, rrf_k) if method == "rrf" else _min_max(ranking.scores)
        for doc, chunk, value in zip(ranking.docs.tolist(), ranking.chunks.tolist(), contributions.tolist()):
            fused[doc] = fused.get(doc, 0.0) + weight * value
            chunk_of.setdefault(doc, chunk)
    return Ranking.from_best({doc: (score, chunk_of[doc]) for doc, score in fused.items()}, top)


def _rrf(ranking: Ranking, k: int) -> np.ndarray:
    return 1.0 / (k + np.arange(1, len(ranking) + 1, dtype=np.float64))


def _min_max(scores: np.ndarray) -> np.ndarray:
    scores = scores.astype(np.float64)
    if not len(scores):
        return scores
    low, high = scores.min(), scores.max()
    return np.ones_like(scores) if high == low else (scores - low) / (high - low)
