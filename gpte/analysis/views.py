"""A model seen through a change of its output vectors, for measuring what the change costs.

``VectorView(model, transform)`` is a ``gpte.models.protocol.VectorEncoder``: ``gpte.evaluate.evaluate`` scores it
exactly like the model, on the transformed vectors. ``CachedEncoder`` keeps the model's vectors by
(role, prompt, text), so many views of one model encode each text once.

Transforms (float (n, d) -> float (n, d')):

    truncate(k)        first k dimensions, L2-normalized (Matryoshka)
    precision(p)       the codes of ``gpte.models.postprocess.quantize`` as floats, L2-normalized:
                       int8/uint8 bucket values (ranges from calibration vectors), binary as +-1 per bit.
                       Cosine on them ranks like the integer dot product / Hamming distance a vector
                       store computes on the stored codes.
    gaussian_noise(r)  x + e,  e ~ N(0, (r |x| / sqrt(d))^2 I): noise of norm about r |x|, seeded per vector
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gpte.analysis.geometry import unit_rows
from gpte.evaluate.encoder import as_vector_encoder
from gpte.models.postprocess import check_precision, quantize
from gpte.runtime.vector_store import VectorStore

Transform = Callable[[np.ndarray], np.ndarray]
Embed = Callable[[list[str]], np.ndarray]  # texts -> (n, d) vectors: the model under study


def truncate(dimension: int) -> Transform:
    """Keep the first ``dimension`` values, then L2-normalize."""
    if not isinstance(dimension, int) or isinstance(dimension, bool) or dimension < 1:
        raise ValueError(f"dimension must be a positive integer, got {dimension!r}")

    def apply(vectors: np.ndarray) -> np.ndarray:
        if dimension > vectors.shape[1]:
            raise ValueError(f"cannot keep {dimension} dimensions of {vectors.shape[1]}-dimensional vectors")
        return unit_rows(vectors[:, :dimension])

    return apply


def precision(name: str, ranges: np.ndarray | None = None) -> Transform:
    """Quantize to ``name`` (``gpte.models.postprocess.PRECISIONS``) and return the codes as unit float vectors.

    Args:
        ranges: (2, d) int8/uint8 calibration [min; max] per dimension, as ``gpte.runtime.quantization.calibrate``
            gives (what sentence-transformers recommends); None takes them from the vectors of each call.
    """
    check_precision(name)

    def apply(vectors: np.ndarray) -> np.ndarray:
        if name in ("float32", "float16"):
            return quantize(vectors, name).astype(np.float32)
        if name.endswith("binary"):
            return unit_rows(np.where(vectors > 0, 1.0, -1.0).astype(np.float32))
        return unit_rows(quantize(vectors, name, ranges).astype(np.float32))

    return apply


def gaussian_noise(ratio: float, seed: int = 0) -> Transform:
    """Add Gaussian noise whose norm is about ``ratio`` times each vector's norm.

    Each vector's noise is drawn from a generator seeded by ``seed`` and the vector's bytes: the same vector
    always gets the same noise (repeatable runs) and different vectors get independent noise.
    """
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or ratio < 0:
        raise ValueError(f"noise ratio must be a number >= 0, got {ratio!r}")

    def apply(vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        noise = np.stack(
            [np.random.default_rng([seed, zlib.crc32(row.tobytes())]).standard_normal(len(row)) for row in vectors]
        )
        scale = ratio * np.linalg.norm(vectors, axis=1, keepdims=True) / np.sqrt(vectors.shape[1])
        return (vectors + noise * scale).astype(np.float32)

    return apply


def identity(vectors: np.ndarray) -> np.ndarray:
    """The vectors unchanged."""
    return vectors


class CachedEncoder:
    """``model``'s vectors, each (role, prompt, text) encoded once.

    Args:
        model: a gpte model, or any object with ``encode(texts, role=...)`` (``gpte.evaluate.as_vector_encoder``).
        batch_size: passed to the model's encode.
    """

    def __init__(self, model: Any, batch_size: int = 32) -> None:
        self.model = as_vector_encoder(model)
        self.batch_size = batch_size
        self.similarity_name = self.model.similarity_name
        self.prompts = getattr(model, "prompts", None)
        self.name = self.model.name
        self._stores: dict[tuple[str | None, str | None], VectorStore] = {}

    @property
    def fingerprint(self) -> str | None:
        """The model's."""
        return self.model.fingerprint

    def encode(self, texts: Sequence[str], role: str | None = None, prompt: str | None = None, **_: Any) -> np.ndarray:
        """(n, d) float32 vectors of ``texts``; texts seen before with this role and prompt are not encoded again."""
        store = self._stores.setdefault((role, prompt), VectorStore())
        return store.vectors(
            list(texts),
            lambda missing: self.model.encode(missing, role=role, prompt=prompt, batch_size=self.batch_size),
        )


class VectorView:
    """``encoder``'s vectors passed through ``transform``; scored by ``gpte.evaluate`` like any model.

    Args:
        encoder: usually a ``CachedEncoder`` shared by several views.
        transform: a function (n, d) -> (n, d'), e.g. ``truncate(64)``.
        name: how results are filed.
    """

    def __init__(self, encoder: CachedEncoder, transform: Transform, name: str) -> None:
        self.encoder = encoder
        self.transform = transform
        self.name = name
        self.similarity_name = "cosine" if transform is not identity else encoder.similarity_name
        self.prompts = encoder.prompts

    @property
    def fingerprint(self) -> str | None:
        """sha256 of the encoder's fingerprint and the view's name (which names its transform); None without the
        former."""
        model = self.encoder.fingerprint
        return None if model is None else hashlib.sha256(f"{model}:{self.name}".encode()).hexdigest()

    def encode(self, texts: Sequence[str], role: str | None = None, prompt: str | None = None, **_: Any) -> np.ndarray:
        return self.transform(self.encoder.encode(texts, role=role, prompt=prompt))
