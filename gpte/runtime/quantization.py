"""Quantized vectors for storage and search: int8 with calibration ranges kept in a file, and binary
vectors searched by Hamming distance and then rescored with float queries.

int8/uint8 use sentence-transformers' scheme (``gpte.models.postprocess.quantize``): each dimension's
[min, max] over a calibration set is cut into 256 buckets. Calibrating once and saving the ranges makes
every later batch (and every chunk of a streamed file) use the same buckets.

Binary rescoring follows sentence-transformers' ``semantic_search_faiss``/``quantization`` recipe
(Shakir, Aarsen and Lee, 2024, "Binary and Scalar Embedding Quantization"): retrieve
``top_k * rescore_multiplier`` candidates by Hamming distance between sign-bit codes, then order them by
the dot product of the float query with the candidates' int8 or float vectors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gpte.atomic import atomic_path
from gpte.models.postprocess import vector_ranges

SEARCH_CHUNK = 8_192  # corpus rows compared at a time: bounds memory (queries x rows x bytes) for large corpora


def calibrate(vectors: np.ndarray) -> np.ndarray:
    """Per-dimension ranges (2, d) of calibration ``vectors`` (n, d), n >= 2: row 0 the minimum, row 1 the maximum
    (``gpte.models.postprocess.vector_ranges``).

    Raises:
        ValueError: fewer than two vectors, or not a 2-D array.
    """
    return vector_ranges(np.asarray(vectors, dtype=np.float32), "calibration ranges")


def save_ranges(path: str | Path, ranges: np.ndarray, overwrite: bool = False) -> Path:
    """Write calibration ranges as a .npy file (atomically)."""
    path = Path(path)
    with atomic_path(path, overwrite) as temporary, open(temporary, "wb") as handle:
        np.save(handle, np.asarray(ranges, dtype=np.float32))
    return path


def load_ranges(path: str | Path) -> np.ndarray:
    """Read ranges written by ``save_ranges``.

    Raises:
        ValueError: the file does not hold a (2, d) array.
    """
    ranges = np.load(path)
    if ranges.ndim != 2 or ranges.shape[0] != 2:
        raise ValueError(f"{path}: calibration ranges must have shape (2, d), got {ranges.shape}")
    return ranges


def binary_rescore_search(
    queries: np.ndarray,
    corpus_bits: np.ndarray,
    corpus_vectors: np.ndarray,
    top_k: int = 10,
    rescore_multiplier: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k search on binary codes with float rescoring.

    Args:
        queries: float query vectors (q, d).
        corpus_bits: the corpus as packed sign bits, (n, ceil(d / 8)), ``ubinary`` or ``binary`` precision.
        corpus_vectors: the corpus as int8 or float vectors (n, d), used only for the rescored candidates.
        top_k: results per query.
        rescore_multiplier: candidates per result taken from the Hamming ranking.

    Returns:
        (scores, indices), each (q, min(top_k, n)): dot products of the float query with the candidates'
        ``corpus_vectors`` rows, best first, and the corpus rows they belong to.
    """
    queries = np.asarray(queries, dtype=np.float32)
    if queries.ndim != 2 or corpus_vectors.shape[1] != queries.shape[1] or len(corpus_bits) != len(corpus_vectors):
        raise ValueError(
            f"shapes do not fit: queries {queries.shape}, corpus bits {corpus_bits.shape}, corpus vectors {corpus_vectors.shape}"
        )
    bits = corpus_bits if corpus_bits.dtype == np.uint8 else (corpus_bits.astype(np.int16) + 128).astype(np.uint8)
    query_bits = np.packbits(queries > 0, axis=-1)
    n_candidates = min(len(bits), top_k * rescore_multiplier)
    candidates = _hamming_top(query_bits, bits, n_candidates)
    rescored = np.einsum("qd,qkd->qk", queries, corpus_vectors[candidates].astype(np.float32))
    order = np.argsort(-rescored, axis=1, kind="stable")[:, : min(top_k, len(bits))]
    return np.take_along_axis(rescored, order, 1), np.take_along_axis(candidates, order, 1)


def _hamming_top(query_bits: np.ndarray, corpus_bits: np.ndarray, k: int) -> np.ndarray:
    """Indices (q, k) of the corpus codes nearest each query code by Hamming distance, nearest first."""
    best_distance = np.full((len(query_bits), 0), 0, dtype=np.int64)
    best_index = np.full((len(query_bits), 0), 0, dtype=np.int64)
    for start in range(0, len(corpus_bits), SEARCH_CHUNK):
        block = corpus_bits[start : start + SEARCH_CHUNK]
        distance = np.bitwise_count(query_bits[:, None, :] ^ block[None, :, :]).sum(axis=2, dtype=np.int64)
        merged_distance = np.concatenate([best_distance, distance], axis=1)
        merged_index = np.concatenate(
            [best_index, np.broadcast_to(np.arange(start, start + len(block)), distance.shape)], axis=1
        )
        keep = np.argsort(merged_distance, axis=1, kind="stable")[:, :k]
        best_distance, best_index = (
            np.take_along_axis(merged_distance, keep, 1),
            np.take_along_axis(merged_index, keep, 1),
        )
    return best_index
