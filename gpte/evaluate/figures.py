"""Figures about the vectors one task encoded, per role, each distinct text counted once: a sparse model's active
dimensions (``gpte.evaluate.sparse.SparsityCounter``), a multi-vector model's stored token vectors
(``gpte.evaluate.multivector.TokenCounter``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

ROLES = ("query", "document", None)


class DistinctTexts:
    """A per-text figure summed over the distinct texts seen (a text seen again is not counted again).

    Attributes:
        texts: distinct texts counted.
        total: the sum of their figures (what a subclass adds up).
    """

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.texts = 0
        self.total = 0

    def new(self, texts: Sequence[str]) -> list[int]:
        """The positions in ``texts`` of texts not counted before (a repeat within ``texts`` counts once); they are
        counted now."""
        fresh = [i for i, text in enumerate(texts) if not (text in self.seen or self.seen.add(text))]
        self.texts += len(fresh)
        return fresh

    @property
    def mean(self) -> float:
        """``total / texts`` (0 when nothing was counted)."""
        return self.total / self.texts if self.texts else 0.0


def role_means(counters: Mapping[str | None, DistinctTexts], name: str) -> dict[str, float]:
    """``{role}_{name}`` (``name`` for texts without a role) -> the counter's mean, for each role in ``ROLES`` order
    that counted a text."""
    return {
        (f"{role}_{name}" if role else name): counters[role].mean
        for role in ROLES
        if role in counters and counters[role].texts
    }
