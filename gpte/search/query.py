"""What every index back-end shares at query time: the hit returned, argument checks, metadata filters and
the reranking of the candidates."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from gpte.models.protocol import DenseModel, best_first
from gpte.search.fusion import FUSIONS

RETRIEVERS = ("dense", "sparse", "multivector", "lexical")  # dense vectors, sparse vectors, token vectors, BM25
RETRIEVER_NEEDS = {"dense": "a dense model", "sparse": "a sparse model", "multivector": "a multi-vector model"}
# A mode names one retriever or several joined by "+" (always in RETRIEVERS' order), fused with
# ``gpte.search.fusion.fuse``; "hybrid" is "dense+lexical". Fusion weights follow the retrievers' order in the mode.
SEARCH_MODES = (
    "dense",
    "lexical",
    "hybrid",
    "sparse",
    "dense+lexical",
    "dense+sparse",
    "sparse+lexical",
    "dense+sparse+lexical",
    *(
        "+".join(combination)
        for size in range(1, len(RETRIEVERS) + 1)
        for combination in itertools.combinations(RETRIEVERS, size)
        if "multivector" in combination
    ),
)


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


def mode_retrievers(mode: str) -> tuple[str, ...]:
    """The retrievers a search ``mode`` runs, in fusion order: ``"dense+sparse"`` -> ("dense", "sparse"),
    "hybrid" -> ("dense", "lexical"). Raises ValueError naming SEARCH_MODES for an unknown mode."""
    if not isinstance(mode, str) or mode not in SEARCH_MODES:
        raise ValueError(f"unknown search mode {mode!r}; choose one of {', '.join(SEARCH_MODES)}")
    return ("dense", "lexical") if mode == "hybrid" else tuple(mode.split("+"))


def check_search(
    queries: list[str],
    k: int,
    mode: str,
    fusion: str,
    available: tuple[str, ...] = ("dense", "lexical", "hybrid"),
    where: str | None = None,
) -> None:
    """Raise ValueError for an unknown mode or fusion, k < 1 or an empty query (its position named).

    ``available``: the modes the back-end can run. Without ``where`` any other mode is unknown (the available ones
    named: Milvus); with it (the on-disk index, whose modes depend on what it was built with) an unknown mode names
    every SEARCH_MODES, and a known one the index cannot run names what it was built without and its modes."""
    if mode not in available:
        if where is None or not isinstance(mode, str) or mode not in SEARCH_MODES:
            choices = available if where is None else SEARCH_MODES
            raise ValueError(f"unknown search mode {mode!r}; choose one of {', '.join(choices)}")
        raise ValueError(
            f"{where} cannot search in mode {mode!r} (built without {_missing(mode, available)}); "
            f"its modes: {', '.join(available)}"
        )
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a whole number >= 1, got {k!r}")
    for number, query in enumerate(queries):
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"query {number} is empty; give a non-empty text")


def _missing(mode: str, available: tuple[str, ...]) -> str:
    have = {retriever for name in available for retriever in mode_retrievers(name)}
    missing = [retriever for retriever in mode_retrievers(mode) if retriever not in have]
    return " and ".join(RETRIEVER_NEEDS.get(retriever, "BM25") for retriever in missing)


def available_modes(retrievers: set[str]) -> tuple[str, ...]:
    """The SEARCH_MODES whose retrievers are all in ``retrievers``."""
    return tuple(mode for mode in SEARCH_MODES if set(mode_retrievers(mode)) <= retrievers)


def search_depth(k: int, candidates: int, mode: str, reranker: Reranker | None) -> int:
    """Documents each retriever returns: ``k``, or ``max(k, candidates)`` when fusion or reranking follows."""
    return max(k, candidates) if (len(mode_retrievers(mode)) > 1 or reranker is not None) else k


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


FILTER_SCALARS = (str, int, float, bool, type(None))  # what metadata equality filters compare


def normalize_filters(filters: dict[str, Any] | None) -> dict[str, set[Any]]:
    """Metadata equality filters ``{field: value or [allowed values]}`` as ``{field: allowed set}``."""
    if not filters:
        return {}
    if not isinstance(filters, dict):
        raise ValueError(f"filters must be a mapping {{field: value or [values]}}, got {type(filters).__name__}")
    wanted = {}
    for key, value in filters.items():
        values = list(value) if isinstance(value, (list, tuple, set)) else [value]
        if not isinstance(key, str) or not all(isinstance(one, FILTER_SCALARS) for one in values):
            raise ValueError(
                f"filter {key!r}: {value!r} is not allowed; a filter value is a string, number, boolean or null, or a "
                "list of them"
            )
        wanted[key] = set(values)
    return wanted


def rerank_hits(query: str, hits: list[Hit], k: int, reranker: Reranker | None) -> list[Hit]:
    """The best ``k`` of ``hits``: as ranked, or ordered by the reranker's scores of (query, hit text),
    which then become the hits' scores."""
    if reranker is None or not hits:
        return hits[:k]
    scores = np.asarray(reranker.score(query, [hit.text for hit in hits]), dtype=np.float64)
    order = best_first(scores, k)
    return [replace(hits[i], score=float(scores[i])) for i in order.tolist()]
