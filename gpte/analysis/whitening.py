"""Post-hoc whitening (Su et al. 2021, "Whitening sentence representations for better semantics and faster
retrieval", arXiv:2103.15316), fitted on a corpus and kept in the model as a linear step.

    mu = mean(x),  Sigma = cov(x) = U diag(s) U^T,  W = U[:, :k] diag(1 / sqrt(s[:k]))
    x~ = (x - mu) W          (k = d: full whitening; k < d: whitening + PCA reduction to k dimensions)

After it, the corpus has mean 0 and identity covariance, so its mean pairwise cosine is ~0. The step is a
sentence-transformers ``Dense`` module with an identity activation (weight W^T, bias -mu W): a whitened
model saves in the sentence-transformers layout and gives the same vectors there. It is inserted after
pooling and the model's own projections, before normalization, so it sees the vectors Su et al. whiten.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gpte.analysis.geometry import check_vectors
from gpte.models.dense import Dense
from gpte.models.embedder import Embedder

IDENTITY = "torch.nn.modules.linear.Identity"
EPSILON = 1e-9  # floor on eigenvalues: directions with no variance are not blown up


@dataclass
class Whitening:
    """A fitted whitening map x -> (x - mean) @ matrix.

    Attributes:
        mean: (d,) corpus mean.
        matrix: (d, k) whitening matrix.
    """

    mean: np.ndarray
    matrix: np.ndarray

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """(n, d) -> (n, k) whitened vectors (float32)."""
        return ((np.asarray(vectors, dtype=np.float64) - self.mean) @ self.matrix).astype(np.float32)

    def as_dense(self) -> Dense:
        """The map as a sentence-transformers Dense module: weight = matrix^T, bias = -mean @ matrix."""
        d, k = self.matrix.shape
        dense = Dense(d, k, bias=True, activation=IDENTITY)
        with torch.no_grad():
            dense.linear.weight.copy_(torch.from_numpy(self.matrix.T.astype(np.float32)))
            dense.linear.bias.copy_(torch.from_numpy((-self.mean @ self.matrix).astype(np.float32)))
        return dense


def fit_whitening(vectors: np.ndarray, n_components: int | None = None) -> Whitening:
    """Fit Su et al.'s whitening on ``vectors`` (n, d), keeping ``n_components`` dimensions (default d).

    Raises:
        ValueError: fewer than 2 vectors, or n_components outside 1..d.
    """
    array = check_vectors(vectors)
    dimension = array.shape[1]
    k = dimension if n_components is None else n_components
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= dimension:
        raise ValueError(f"n_components must be an integer from 1 to the dimension {dimension}, got {n_components!r}")
    mean = array.mean(axis=0)
    covariance = np.cov(array - mean, rowvar=False)
    u, s, _ = np.linalg.svd(covariance)
    return Whitening(mean, u[:, :k] / np.sqrt(np.maximum(s[:k], EPSILON)))


def add_whitening(embedder: Embedder, whitening: Whitening) -> Embedder:
    """A new model: ``embedder`` with ``whitening`` appended to its projections (after pooling, before
    normalization). It shares ``embedder``'s weights (none are copied); ``embedder`` itself is unchanged.
    Its model card says how it was whitened.

    Raises:
        ValueError: the whitening was fitted on vectors of another dimension.
    """
    if whitening.matrix.shape[0] != embedder.dimension:
        raise ValueError(
            f"the whitening reads {whitening.matrix.shape[0]}-dimensional vectors; the model makes {embedder.dimension}"
        )
    whitened = embedder.with_dense(whitening.as_dense().to(embedder.device))
    d, k = whitening.matrix.shape
    step = f"Whitened (Su et al. 2021, arXiv:2103.15316): a linear step keeping {k} of {d} dimensions."
    whitened.card_notes = embedder.card_notes.derived(embedder.name, step)
    return whitened


def whiten_model(
    embedder: Embedder,
    texts: Sequence[str],
    n_components: int | None = None,
    batch_size: int = 32,
    show_progress: bool | None = None,
) -> tuple[Embedder, Whitening]:
    """Fit whitening on ``texts`` encoded by ``embedder`` (before normalization); returns the whitened model
    (``add_whitening``: ``embedder`` is unchanged; ``save`` keeps the step) and the fitted map.

    Raises:
        ValueError: fewer than 2 texts, or a bad n_components.
    """
    vectors = embedder.encode(list(texts), batch_size=batch_size, normalize=False, show_progress=show_progress)
    whitening = fit_whitening(vectors, n_components)
    return add_whitening(embedder, whitening), whitening
