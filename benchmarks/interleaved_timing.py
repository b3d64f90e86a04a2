"""The timing protocol every encode benchmark here shares, importable without gpte (``st_backends.py`` runs
in a second Python that lacks it): a warm-up call per runner, then ``repeats`` rounds in which each runner
encodes all texts in turn, so drifts in machine speed touch every runner alike; each runner's median rate."""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

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


def cpu_description() -> str:
    """The CPU model, core count and its AVX2/AVX-512/AMX flags (from /proc/cpuinfo)."""
    model, flags = platform.processor() or "unknown", []
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = re.search(r"^model name\s*:\s*(.+)$", text, re.M).group(1).strip()
        flags = sorted(
            flag
            for flag in re.search(r"^flags\s*:\s*(.+)$", text, re.M).group(1).split()
            if flag == "avx2" or flag.startswith(("avx512", "amx"))
        )
    except (OSError, AttributeError):
        pass
    return f"CPU: {model}; {os.cpu_count()} logical cores; flags: {' '.join(flags) or 'none of avx2/avx512*/amx*'}"
