"""The timing protocol every encode benchmark here shares, importable without gpte (``st_backends.py`` runs
in a second Python that lacks it): a warm-up call per runner, then ``repeats`` rounds in which each runner
encodes all texts in turn, so drifts in machine speed touch every runner alike; each runner's median rate."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np


def measure(
    name_to_encode: dict[str, Callable], texts: list[str], repeats: int
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Median texts/s of each runner over ``repeats`` interleaved rounds after a 64-text warm-up, and each
    runner's vectors from its last round."""
    for encode in name_to_encode.values():
        encode(texts[:64])
    rates: dict[str, list[float]] = {name: [] for name in name_to_encode}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for name, encode in name_to_encode.items():
            start = time.perf_counter()
            vectors[name] = np.asarray(encode(texts))
            rates[name].append(len(texts) / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}, vectors
