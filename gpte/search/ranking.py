"""Document rankings built from chunk scores: a document scores as its best chunk (MaxP), and the best
chunk is the snippet shown. Chunks of one document are contiguous rows, so per-document maxima are
``np.maximum.reduceat`` over the chunk scores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Ranking:
    """Documents of one query, best first: document positions, scores and each one's best chunk row."""

    docs: np.ndarray
    scores: np.ndarray
    chunks: np.ndarray

    def __len__(self) -> int:
        return len(self.docs)

    @classmethod
    def empty(cls) -> Ranking:
        return cls(np.empty(0, np.int64), np.empty(0, np.float32), np.empty(0, np.int64))

    @classmethod
    def from_best(cls, best: dict[int, tuple[float, int]], top: int) -> Ranking:
        """The ``top`` documents of ``best`` (document -> (score, chunk row)), best first, ties by position."""
        ordered = sorted(best.items(), key=lambda item: (-item[1][0], item[0]))[:top]
        return cls(
            np.array([doc for doc, _ in ordered], dtype=np.int64),
            np.array([score for _, (score, _) in ordered], dtype=np.float32),
            np.array([row for _, (_, row) in ordered], dtype=np.int64),
        )

    def top(self, k: int) -> Ranking:
        return Ranking(self.docs[:k], self.scores[:k], self.chunks[:k])


@dataclass
class DocumentLayout:
    """Where each document's chunks are: ``first_rows[d]`` and ``counts[d]`` for document position d."""

    first_rows: np.ndarray
    counts: np.ndarray

    @property
    def doc_of_chunk(self) -> np.ndarray:
        """Document position of every chunk row."""
        return np.repeat(np.arange(len(self.counts)), self.counts)

    def doc_blocks(self, max_rows: int) -> list[tuple[int, int]]:
        """Document ranges [start, end) whose chunks span at most ``max_rows`` rows (or one document)."""
        blocks, start, rows = [], 0, 0
        for doc, count in enumerate(self.counts.tolist()):
            if rows and rows + count > max_rows:
                blocks.append((start, doc))
                start, rows = doc, 0
            rows += count
        blocks.append((start, len(self.counts)))
        return blocks


def rank_chunk_scores(scores: np.ndarray, layout: DocumentLayout, docs: tuple[int, int], top: int) -> Ranking:
    """Rank the documents ``docs = (start, end)`` by their chunks' ``scores`` (1-D: the contiguous chunk
    rows of those documents); documents scoring -inf (filtered out) are dropped. Ties: lower position first."""
    first_doc, end_doc = docs
    local = layout.first_rows[first_doc:end_doc] - layout.first_rows[first_doc]
    doc_scores = np.maximum.reduceat(scores, local)
    order = _top_positions(doc_scores, top)
    order = order[np.lexsort((order, -doc_scores[order]))]
    order = order[np.isfinite(doc_scores[order])]
    counts = layout.counts[first_doc:end_doc]
    best = [local[d] + int(np.argmax(scores[local[d] : local[d] + counts[d]])) for d in order.tolist()]
    return Ranking(
        order + first_doc, doc_scores[order], np.asarray(best, dtype=np.int64) + layout.first_rows[first_doc]
    )


def _top_positions(scores: np.ndarray, top: int) -> np.ndarray:
    """Positions of the ``top`` highest ``scores`` (unordered), ties at the cut broken by lower position."""
    if top >= len(scores):
        return np.arange(len(scores))
    if top <= 0:
        return np.empty(0, np.int64)
    kth = np.partition(scores, len(scores) - top)[len(scores) - top]  # the top-th highest score
    above = np.flatnonzero(scores > kth)
    return np.concatenate([above, np.flatnonzero(scores == kth)[: top - len(above)]])


def rank_candidates(chunk_rows: np.ndarray, scores: np.ndarray, doc_of_chunk: np.ndarray, top: int) -> Ranking:
    """Rank the documents of candidate chunks (an ANN or binary search's hits; row -1 = no hit)."""
    best: dict[int, tuple[float, int]] = {}
    for row, score in zip(chunk_rows.tolist(), scores.tolist()):
        if row < 0:
            continue
        doc = int(doc_of_chunk[row])
        if doc not in best or score > best[doc][0]:
            best[doc] = (score, row)
    return Ranking.from_best(best, top)


def merge_rankings(first: Ranking, second: Ranking, top: int) -> Ranking:
    """The best ``top`` of two rankings over disjoint documents."""
    docs = np.concatenate([first.docs, second.docs])
    scores = np.concatenate([first.scores, second.scores])
    chunks = np.concatenate([first.chunks, second.chunks])
    order = np.lexsort((docs, -scores))[:top]
    return Ranking(docs[order], scores[order], chunks[order])
