"""Sparse models (``gpte.models.protocol.SparseModel``: SPLADE, inference-free SPLADE, PromptReps) in evaluation.

A sparse model is evaluated on every task type, as mteb evaluates sentence-transformers' ``SparseEncoder``
(``mteb.models.sentence_transformer_wrapper.SparseEncoderWrapper``): its vectors are compared by its similarity
(the dot product), and each task type computes the same scores as from the dense form of the vectors. Where the
scores only need similarities the vectors stay sparse (``scipy.sparse.csr_matrix``), which mteb keeps for Retrieval
only:

- Retrieval, Reranking, BitextMining, Summarization: similarity matrices by sparse products (``similarity``);
- STS, PairClassification: pair similarities row by row (``pairwise_similarity``), and scikit-learn's paired
  cosine, Euclidean and Manhattan distances, which take CSR input.

Classification (logistic regression) and Clustering (k-means) fit a model on features, so their vectors are made
dense, as mteb densifies them, but only over the columns that are non-zero in some vector that matters
(``feature_columns``; the training vectors for classification, every vector for clustering): a column that is zero
in every such vector moves no k-means distance and gets a logistic-regression weight of exactly zero, so the scores
are those of the full vectors while memory grows with the active columns, not the vocabulary.

Scores equal those of the densified vectors up to float rounding (sums in another order). Each result also gives
the mean number of active dimensions of the vectors per role (``sparsity``, see ``SparsityCounter``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse
from sklearn.preprocessing import normalize

from gpte.evaluate.figures import DistinctTexts, role_means
from gpte.similarity import check_similarity
from gpte.similarity import pairwise_similarity as dense_pairwise
from gpte.similarity import similarity as dense_matrix

PREDICT_CHUNK = 4096  # rows densified at a time to predict


def is_sparse_model(model: Any) -> bool:
    """Whether ``model`` gives sparse vectors (``output_kind`` ``"sparse"``)."""
    return getattr(model, "output_kind", None) == "sparse"


def is_sparse(vectors: Any) -> bool:
    """Whether ``vectors`` is a scipy sparse matrix."""
    return scipy.sparse.issparse(vectors)


def similarity(a: Any, b: Any, name: str) -> np.ndarray:
    """(len(a), len(b)) similarities as ``gpte.similarity.similarity`` gives them: dense numpy arrays go to it,
    sparse matrices are compared by sparse products (dot, cosine) or, for a distance, densified."""
    if not is_sparse(a):
        return dense_matrix(a, b, name)
    a, b = scipy.sparse.csr_matrix(a), scipy.sparse.csr_matrix(b)
    if name == "cosine":
        a, b = normalize(a), normalize(b)  # a zero vector stays zero, as torch's normalize leaves it
    elif name != "dot":
        return dense_matrix(a.toarray(), b.toarray(), name)
    return np.asarray((a @ b.T).toarray(), dtype=np.float32)


def pairwise_similarity(a: Any, b: Any, name: str) -> np.ndarray:
    """(n,) similarities of the row pairs (a[i], b[i]), as ``gpte.similarity.pairwise_similarity`` gives them."""
    if not is_sparse(a):
        return dense_pairwise(a, b, name)
    check_similarity(name)
    a, b = scipy.sparse.csr_matrix(a), scipy.sparse.csr_matrix(b)
    if a.shape != b.shape:
        raise ValueError(f"pairwise similarity needs equal shapes, got {a.shape} and {b.shape}")
    if name == "cosine":
        a, b = normalize(a), normalize(b)
    if name in ("cosine", "dot"):
        return _row_sums(a.multiply(b))
    difference = a - b
    if name == "manhattan":
        return -_row_sums(abs(difference))
    return -np.sqrt(_row_sums(difference.multiply(difference)))


def feature_columns(*matrices: Any) -> np.ndarray:
    """The sorted columns that hold a non-zero weight in some row of ``matrices`` (sparse): the features a model
    fitted on them can use; column 0 alone when none does (a model needs one feature, all zero)."""
    used = [scipy.sparse.csr_matrix(m) for m in matrices]
    columns = np.unique(np.concatenate([m.indices[m.data != 0] for m in used] or [np.zeros(0, dtype=np.int64)]))
    return columns if len(columns) else np.zeros(1, dtype=np.int64)


def dense_rows(matrix: Any, columns: np.ndarray) -> np.ndarray:
    """``matrix`` (sparse) as a dense float32 array of ``columns`` only."""
    return np.asarray(scipy.sparse.csr_matrix(matrix)[:, columns].toarray(), dtype=np.float32)


def predict_in_chunks(model: Any, matrix: Any, columns: np.ndarray) -> np.ndarray:
    """``model.predict`` of the rows of ``matrix`` (sparse) made dense over ``columns``, ``PREDICT_CHUNK`` at a time."""
    parts = [
        model.predict(dense_rows(matrix[start : start + PREDICT_CHUNK], columns))
        for start in range(0, matrix.shape[0], PREDICT_CHUNK)
    ]
    return np.concatenate(parts)


class SparsityCounter(DistinctTexts):
    """The active dimensions of the vectors a task encoded for one role, each distinct text counted once.

    Attributes:
        texts: distinct texts counted.
        total: their non-zero weights in all.
        columns: per vocabulary column, how many of them have a weight there.
    """

    def __init__(self, dimension: int) -> None:
        super().__init__()
        self.columns = np.zeros(dimension, dtype=np.int64)

    def add(self, texts: list[str], vectors: Any) -> None:
        """Count the rows of ``vectors`` (CSR, one per text) whose text was not counted yet."""
        new = self.new(texts)
        if not new:
            return
        rows = vectors[new]
        self.total += int(rows.nnz)
        self.columns += np.bincount(rows.indices, minlength=len(self.columns))[: len(self.columns)]

    @property
    def mean_active(self) -> float:
        """The mean number of non-zero weights per vector (``gpte.models.sparse.active_dimensions``)."""
        return self.mean


def sparsity_figures(counters: dict[str | None, SparsityCounter]) -> dict[str, float]:
    """The sparsity of a task's result: ``{role}_active_dims`` per role the task encoded (``active_dims`` for texts
    without a role), and, when it encoded queries and documents, ``flops``: the expected number of multiplications
    of a query-document dot product, sum over columns of P(query active) * P(document active) (SPLADE's FLOPS)."""
    figures = role_means(counters, "active_dims")
    query, document = counters.get("query"), counters.get("document")
    if query is not None and document is not None and query.texts and document.texts:
        figures["flops"] = float(
            (query.columns / query.texts).astype(np.float64) @ (document.columns / document.texts).astype(np.float64)
        )
    return figures


def _row_sums(matrix: Any) -> np.ndarray:
    return np.asarray(matrix.sum(axis=1), dtype=np.float32).ravel()
