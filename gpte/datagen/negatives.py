"""Which retrieved candidates become hard negatives: rank range, absolute thresholds and positive-aware
margins, then the top ones or a random sample (``gpte.datagen.mining`` retrieves the candidates).

The rules follow sentence-transformers' ``mine_hard_negatives`` (same names, meanings and order of
application; with ``sampling="top"`` the same negatives, tested) and
NV-Retriever's positive-aware mining (Moreira et al. 2024, arXiv:2407.15831), whose best method,
TopK-PercPos, keeps a candidate only when its score is below 95 % of the positive's score
(``relative_margin=0.05``): candidates scored nearly as high as the labelled positive are likely unlabelled
positives -- false negatives -- rather than hard negatives.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

SAMPLINGS = ("top", "random")


@dataclass(frozen=True)
class NegativeRules:
    """How negatives are picked from one query's ranked candidates (its positives already removed).

    Attributes:
        num_negatives: negatives per (query, positive) pair.
        range_min: skip the best ``range_min`` candidates (sampling from the middle of the ranking).
        range_max: consider the best ``range_max`` candidates (the retrieval depth).
        max_score, min_score: keep candidates with ``min_score <= score <= max_score``.
        absolute_margin: keep candidates with ``score <= positive_score - absolute_margin``.
        relative_margin: keep candidates with ``score <= positive_score - |positive_score| * relative_margin``,
            i.e. ``positive_score * (1 - relative_margin)`` for a positive score (NV-Retriever TopK-PercPos: 0.05).
        sampling: "top" (the best-ranked remaining candidates) or "random" (a uniform sample of them).
        seed: the random sampling's seed.
    """

    num_negatives: int = 3
    range_min: int = 0
    range_max: int = 50
    max_score: float | None = None
    min_score: float | None = None
    absolute_margin: float | None = None
    relative_margin: float | None = None
    sampling: str = "top"
    seed: int = 12345

    def __post_init__(self) -> None:
        for name in ("num_negatives", "range_max"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {getattr(self, name)!r}")
        if not isinstance(self.range_min, int) or not 0 <= self.range_min < self.range_max:
            raise ValueError(
                f"range_min must be a whole number in [0, range_max={self.range_max}), got {self.range_min!r}"
            )
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {self.sampling!r}; choose one of {', '.join(SAMPLINGS)}")
        for name in ("absolute_margin", "relative_margin"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.relative_margin is not None and self.relative_margin >= 1:
            raise ValueError(
                f"relative_margin must be below 1 (a share of the positive's score), got {self.relative_margin!r}"
            )

    @property
    def positive_aware(self) -> bool:
        """Whether the positive's score is needed (a margin is set)."""
        return self.absolute_margin is not None or self.relative_margin is not None

    def ceiling(self, positive_score: float | None) -> float:
        """The highest score a negative may have when the positive scores ``positive_score``."""
        limits = [self.max_score] if self.max_score is not None else []
        if self.absolute_margin is not None:
            limits.append(positive_score - self.absolute_margin)
        if self.relative_margin is not None:  # |positive|: the cap stays below a negative positive score too
            limits.append(positive_score - abs(positive_score) * self.relative_margin)
        return min(limits, default=float("inf"))


def select_negatives(
    candidates: Sequence[str],
    scores: Sequence[float],
    positives: set[str],
    positive_score: float | None,
    rules: NegativeRules,
    rng: random.Random,
) -> list[tuple[str, float]]:
    """The negatives for one query, best-ranked first, chosen as sentence-transformers' ``mine_hard_negatives`` does.

    Args:
        candidates: document ids, best first (the query's retrieval ranking).
        scores: each candidate's score on the scale of ``positive_score`` (the model's similarity or a
            cross-encoder's logit).
        positives: the query's known positives, never returned.
        positive_score: the score margins compare to (the query's lowest-scored positive; needed by margins).
        rules: the selection rules.
        rng: the random source of ``sampling="random"``.

    Returns:
        Up to ``rules.num_negatives`` (id, score) pairs. The candidates that are not positives and lie within
        the score limits are kept in rank order; of those, ranks [range_min, range_max) are the window; the
        window's first ones are returned ("top") or a random sample of it in rank order ("random").
    """
    if rules.positive_aware and positive_score is None:
        raise ValueError("absolute_margin and relative_margin need the positive's score")
    ceiling = rules.ceiling(positive_score)
    floor = rules.min_score if rules.min_score is not None else float("-inf")
    passing = [
        (doc, float(score))
        for doc, score in zip(candidates, scores)
        if doc not in positives and floor <= score <= ceiling
    ]
    window = passing[: rules.range_max][rules.range_min :]
    if rules.sampling == "top" or len(window) <= rules.num_negatives:
        return window[: rules.num_negatives]
    picked = sorted(rng.sample(range(len(window)), rules.num_negatives))
    return [window[i] for i in picked]


def false_negative_rate(rows: Sequence[dict], qrels: dict[str, dict[str, int]]) -> float:
    """The share of mined negatives that are judged relevant (grade > 0) to their query in ``qrels``.

    Args:
        rows: mined rows with ``query_id`` and ``negative_ids`` (``gpte mine``'s output).
        qrels: graded relevance, ``qrels[query_id][doc_id]``.
    """
    judged = [
        doc in {d for d, grade in qrels.get(row["query_id"], {}).items() if grade > 0}
        for row in rows
        for doc in row["negative_ids"]
    ]
    return sum(judged) / len(judged) if judged else 0.0
