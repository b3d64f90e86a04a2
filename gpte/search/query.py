"""What every index back-end shares at query time: the hit returned, argument checks, metadata filters and
the reranking of the candidates."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from gpte.models.protocol import DenseModel, best_first
from gpte.search.fusion import FUSIONS

SEARCH_MODES = ("dense", "lexical", "hybrid")


class Reranker(Protocol):
    """Scores (query, text) pairs, higher more relevant: every ``gpte.models.protocol.PairScorer`` (cross-encoders,
    LLM yes/no rerankers, ``gpte.models.loading.load_reranker``)."""

    def score(self, query: str, texts: list[str]) -> np.ndarray: ...


@dataclass
class Hit:
    """One ranked document: its best chunk's text and character span, and the document's metadata."""

    doc_id: str
    score: float
    text: str
    start: int
    end: int
    metadata: dict[str, Any] = field(default_factory=dict)


def check_search(queries: list[str], k: int, mode: str, fusion: str) -> None:
    """Raise ValueError for an unknown mode or fusion, k < 1 or an empty query (its position named)."""
    if mode not in SEARCH_MODES:
        raise ValueError(f"unknown search mode {mode!r}; choose one of {', '.join(SEARCH_MODES)}")
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a whole number >= 1, got {k!r}")
    for number, query in enumerate(queries):
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"query {number} is empty; give a non-empty text")


def search_depth(k: int, candidates: int, mode: str, reranker: Reranker | None) -> int:
    """Documents each retriever returns: ``k``, or ``max(k, candidates)`` when fusion or reranking follows."""
    return max(k, candidates) if (mode == "hybrid" or reranker is not None) else k


def query_embeddings(embedder: DenseModel, queries: list[str], given: np.ndarray | None, batch_size: int) -> np.ndarray:
    """The queries' vectors: ``given`` (checked: one row per query, the model's width) or ``embedder.encode``'s."""
    if given is None:
        return embedder.encode(queries, role="query", batch_size=batch_size, show_progress=False)
    given = np.asarray(given, dtype=np.float32)
    if given.shape != (len(queries), embedder.dimension):
        raise ValueError(
            f"query_vectors has shape {given.shape}; expected ({len(queries)}, {embedder.dimension}), one row per query"
        )
    return given


def normalize_filters(filters: dict[str, Any] | None) -> dict[str, set[Any]]:
    """Metadata equality filters ``{field: value or [allowed values]}`` as ``{field: allowed set}``."""
    if not filters:
        return {}
    if not isinstance(filters, dict):
        raise ValueError(f"filters must be a mapping {{field: value or [values]}}, got {type(filters).__name__}")
    return {key: set(value) if isinstance(value, (list, tuple, set)) else {value} for key, value in filters.items()}


def rerank_hits(query: str, hits: list[Hit], k: int, reranker: Reranker | None) -> list[Hit]:
    """The best ``k`` of ``hits``: as ranked, or ordered by the reranker's scores of (query, hit text),
    which then become the hits' scores."""
    if reranker is None or not hits:
        return hits[:k]
    scores = np.asarray(reranker.score(query, [hit.text for hit in hits]), dtype=np.float64)
    order = best_first(scores, k)
    return [replace(hits[i], score=float(scores[i])) for i in order.tolist()]
