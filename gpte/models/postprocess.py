"""Steps after pooling: Matryoshka truncation, L2 normalization and output precision, and the checks of the
arguments every dense model's ``encode`` shares (texts, batch size, truncate_dim, precision, convert_to).

Quantization follows sentence-transformers' ``quantize_embeddings`` exactly, so stored vectors are
interchangeable: int8/uint8 map each dimension's [min, max] (over ``ranges``, or over the embeddings
themselves) onto 256 buckets, q = clip(floor((x - min) / ((max - min) / 255)), 0, 255), minus 128 for
int8; binary/ubinary pack the sign bits (x > 0) eight per byte, minus 128 for binary.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gpte.errors import NonFiniteVectorsError
from gpte.models.choices import PRECISIONS

CONVERT_TO = ("numpy", "torch")


def check_texts(texts: Any) -> tuple[list[str], bool]:
    """The texts as a list, and whether a single string was given.

    Raises:
        TypeError: ``texts`` is None, not a string or sequence, or holds a non-string (index named).
    """
    if isinstance(texts, str):
        return [texts], True
    if texts is None or not isinstance(texts, (Sequence, np.ndarray)):
        raise TypeError(f"texts must be a string or a sequence of strings, got {type(texts).__name__}")
    text_list = list(texts)
    for index, text in enumerate(text_list):
        if not isinstance(text, str):
            raise TypeError(f"texts[{index}] is {type(text).__name__}, not a string: {text!r:.80}")
    return text_list, False


def check_encode_options(
    batch_size: int, truncate_dim: int | None, precision: str, convert_to: str, dimension: int
) -> None:
    """ValueError naming the allowed values for a bad batch size, truncate_dim (1..dimension), precision or
    convert_to."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if truncate_dim is not None and (
        not isinstance(truncate_dim, int) or isinstance(truncate_dim, bool) or not 1 <= truncate_dim <= dimension
    ):
        raise ValueError(
            f"truncate_dim must be an integer from 1 to the model's dimension {dimension}, got {truncate_dim!r}"
        )
    check_precision(precision)
    if convert_to not in CONVERT_TO:
        raise ValueError(f"unknown convert_to {convert_to!r}; choose one of: {', '.join(CONVERT_TO)}")


def require_finite(vectors: torch.Tensor, model_name: str) -> None:
    """Raise NonFiniteVectorsError naming ``model_name`` and the first text whose vector (a row of ``vectors``) holds
    NaN or inf: such vectors would silently break every similarity computed from them."""
    bad = ~torch.isfinite(vectors).all(dim=1)
    if bad.any():
        rows = torch.nonzero(bad).flatten()
        raise NonFiniteVectorsError(
            f"model {model_name} produced NaN or infinite values for {len(rows)} of {len(vectors)} texts (the first: "
            f"text {int(rows[0])}); its weights may be corrupt or overflow: gpte info {model_name} counts non-finite "
            "weights"
        )


def non_finite_count(parameters: Iterable[torch.Tensor]) -> int:
    """How many values of ``parameters`` (a model's weights) are NaN or infinite (``gpte info``)."""
    return sum(int((~torch.isfinite(p.detach())).sum()) for p in parameters if p.is_floating_point())


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


def vector_ranges(vectors: np.ndarray, what: str = "ranges", block: int = 65_536) -> np.ndarray:
    """Per-dimension ranges (2, d): row 0 the minimum, row 1 the maximum over ``vectors`` (n, d), read ``block``
    rows at a time (a memory-mapped file stays out of memory). The one place gpte computes int8/uint8 ranges:
    ``quantize`` without ranges, calibration (``gpte.runtime.quantization.calibrate``) and streamed quantization.

    Raises:
        ValueError: not a 2-D array, or fewer than two vectors (``what`` names the use in the message).
    """
    if np.ndim(vectors) != 2 or len(vectors) < 2:
        raise ValueError(
            f"{what} cannot be computed from an array of shape {np.shape(vectors)}: they need a 2-D array of at least "
            "two vectors; encode more texts in one call, or give explicit ranges"
        )
    blocks = [np.asarray(vectors[start : start + block]) for start in range(0, len(vectors), block)]
    return np.vstack(
        (np.min([b.min(axis=0) for b in blocks], axis=0), np.max([b.max(axis=0) for b in blocks], axis=0))
    ).astype(np.float32)


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
        ranges = vector_ranges(embeddings, f"{precision} ranges")
    ranges = np.asarray(ranges, dtype=np.float32)
    if ranges.shape != (2, embeddings.shape[1]):
        raise ValueError(f"ranges must have shape (2, {embeddings.shape[1]}), got {ranges.shape}")
    starts = ranges[0]
    steps = (ranges[1] - starts) / 255
    steps = np.where(steps == 0, 1, steps)
    buckets = np.clip(np.floor((embeddings - starts) / steps), 0, 255)
    return buckets.astype(np.uint8) if precision == "uint8" else (buckets - 128).astype(np.int8)


def convert(vectors: torch.Tensor, precision: str, convert_to: str) -> np.ndarray | torch.Tensor:
    """float32 CPU vectors in ``precision`` (``quantize``), as a numpy array or a torch tensor."""
    if precision == "float32":
        return vectors.numpy() if convert_to == "numpy" else vectors
    array = quantize(vectors.numpy(), precision)
    return array if convert_to == "numpy" else torch.from_numpy(array)
