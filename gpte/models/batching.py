"""Batch planning for inference: each distinct text once, batches of similar token length.

Sorting by token length (longest first, as FlagEmbedding does) keeps padding small; sorting by
tokens rather than characters (sentence-transformers sorts by characters) groups texts exactly by
the work they cost. The longest batch runs first, so an out-of-memory error shows at once.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def deduplicate(texts: Sequence[Hashable]) -> tuple[list, np.ndarray]:
    """Distinct texts (or (query, text) pairs) in first-seen order, and for each input the index of its distinct
    one."""
    positions: dict[str, int] = {}
    inverse = np.fromiter(
        (positions.setdefault(text, len(positions)) for text in texts), dtype=np.int64, count=len(texts)
    )
    return list(positions), inverse


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Indices into ``lengths`` grouped in batches of ``batch_size``, longest texts first (stable)."""
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
