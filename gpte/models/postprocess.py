"""Steps after pooling: Matryoshka truncation, L2 normalization and output precision.

Quantization follows sentence-transformers' ``quantize_embeddings`` exactly, so stored vectors are
interchangeable: int8/uint8 map each dimension's [min, max] (over ``ranges``, or over the embeddings
themselves) onto 256 buckets, q = clip(floor((x - min) / ((max - min) / 255)), 0, 255), minus 128 for
int8; binary/ubinary pack the sign bits (x > 0) eight per byte, minus 128 for binary.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PRECISIONS = ("float32", "float16", "int8", "uint8", "binary", "ubinary")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")


def truncate_and_normalize(vectors: torch.Tensor, truncate_dim: int | None, normalize: bool) -> torch.Tensor:
    """Keep the first ``truncate_dim`` dimensions (Matryoshka), then L2-normalize if ``normalize``.

    Normalizing after truncation keeps truncated vectors unit-length, so dot product equals cosine.
    """
    if truncate_dim is not None:
        vectors = vectors[:, :truncate_dim]
    return F.normalize(vectors, p=2, dim=1) if normalize else vectors


def quantize(embeddings: np.ndarray, precision: str, ranges: np.ndarray | None = None) -> np.ndarray:
    """Convert float embeddings (n, d) to ``precision``.

    Args:
        embeddings: float array (n, d).
        precision: one of ``PRECISIONS``.
        ranges: (2, d) per-dimension [min; max] for int8/uint8; None computes them from ``embeddings``.

    Returns:
        float32/float16 (n, d); int8/uint8 (n, d); binary (int8)/ubinary (uint8) (n, ceil(d / 8)).

    Raises:
        ValueError: unknown precision, or int8/uint8 ranges asked of fewer than two embeddings.
    """
    check_precision(precision)
    if precision in ("float32", "float16"):
        return embeddings.astype(precision)
    if precision.endswith("binary"):
        packed = np.packbits(embeddings > 0, axis=-1)
        return (packed - 128).astype(np.int8) if precision == "binary" else packed
    if ranges is None:
        if len(embeddings) == 0:
            return np.zeros(embeddings.shape, dtype=np.uint8 if precision == "uint8" else np.int8)
        if len(embeddings) < 2:
            raise ValueError(
                f"{precision} ranges cannot be computed from {len(embeddings)} embedding(s); "
                "encode more texts in one call, or quantize with explicit ranges"
            )
        ranges = np.vstack((embeddings.min(axis=0), embeddings.max(axis=0)))
    ranges = np.asarray(ranges, dtype=np.float32)
    if ranges.shape != (2, embeddings.shape[1]):
        raise ValueError(f"ranges must have shape (2, {embeddings.shape[1]}), got {ranges.shape}")
    starts = ranges[0]
    steps = (ranges[1] - starts) / 255
    steps = np.where(steps == 0, 1, steps)
    buckets = np.clip(np.floor((embeddings - starts) / steps), 0, 255)
    return buckets.astype(np.uint8) if precision == "uint8" else (buckets - 128).astype(np.int8)
