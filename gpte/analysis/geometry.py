"""The shape of an embedding space: anisotropy, effective rank, variance in the top directions.

anisotropy      mean cosine over distinct pairs = (|sum_i u_i|^2 - n) / (n (n - 1)),  u_i = x_i / |x_i|
                (Ethayarajh 2019: near 0 for an isotropic space, near 1 when all vectors share a direction)
effective rank  exp(H(p)),  p_k = s_k / sum_j s_j  over the singular values s of the centred matrix
                (Roy & Vetterli 2007): how many directions the vectors really use
top variance    share of the total variance in the first k principal directions (PCA)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOP_DIRECTIONS = (1, 10)


@dataclass
class Geometry:
    """Geometry figures of one set of vectors (see the module docstring for the formulas)."""

    n_vectors: int
    dimension: int
    anisotropy: float
    effective_rank: float
    top_variance: dict[int, float]


def check_vectors(vectors: np.ndarray, minimum: int = 2) -> np.ndarray:
    """``vectors`` as a float64 (n, d) array with n >= ``minimum``, finite.

    Raises:
        ValueError: not 2-D, too few rows, or NaN/infinite values.
    """
    array = np.asarray(vectors, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"vectors must be a 2-D (n, d) array, got shape {array.shape}")
    if len(array) < minimum:
        raise ValueError(f"need at least {minimum} vectors, got {len(array)}")
    if not np.isfinite(array).all():
        raise ValueError("vectors hold NaN or infinite values")
    return array


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row divided by its L2 norm (zero rows stay zero)."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def anisotropy(vectors: np.ndarray) -> float:
    """Mean cosine similarity over all distinct pairs (i != j), computed exactly in O(n d)."""
    units = unit_rows(check_vectors(vectors))
    n = len(units)
    total = float(np.square(units.sum(axis=0)).sum())
    return (total - float(np.square(units).sum())) / (n * (n - 1))


def singular_values(vectors: np.ndarray) -> np.ndarray:
    """Singular values of the mean-centred matrix, largest first."""
    array = check_vectors(vectors)
    return np.linalg.svd(array - array.mean(axis=0), compute_uv=False)


def effective_rank(vectors: np.ndarray) -> float:
    """exp(entropy of the normalized singular values) of the centred vectors (1 .. min(n, d))."""
    return _effective_rank(singular_values(vectors))


def top_variance(vectors: np.ndarray, k: int) -> float:
    """Share of the total variance in the first ``k`` principal directions."""
    return _top_variance(singular_values(vectors), k)


def describe(vectors: np.ndarray, top: tuple[int, ...] = TOP_DIRECTIONS) -> Geometry:
    """All geometry figures of ``vectors`` (n, d), from one SVD."""
    array = check_vectors(vectors)
    values = singular_values(array)
    return Geometry(
        len(array),
        array.shape[1],
        anisotropy(array),
        _effective_rank(values),
        {k: _top_variance(values, k) for k in top},
    )


def _effective_rank(values: np.ndarray) -> float:
    p = values / values.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def _top_variance(values: np.ndarray, k: int) -> float:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    variances = np.square(values)
    return float(variances[:k].sum() / variances.sum())
