"""Multi-vector models (``gpte.models.protocol.MultiVectorModel``, ``output_kind`` ``"multivector"``: ColBERT) in
evaluation.

A multi-vector model gives each text one unit vector per token (``gpte.models.multivector.TokenVectors``) and no
vector for the whole text, so it is evaluated on the task types that only need a score between two texts, and that
score is the model's own ``similarity`` / ``similarity_pairwise``, as mteb's ``MultiVectorWrapper`` scores one:
MaxSim (for query tokens q_i and document tokens d_j, ``sum_i max_j q_i . d_j``), or MeanMaxSim (divided by the
query's token count). The first text of a pair is the query side (MaxSim is not symmetric).

- Retrieval, Reranking (the types mteb takes a multi-vector model on): queries (role ``query``) against documents
  (role ``document``); a corpus is encoded and scored ``CORPUS_CHUNK`` documents at a time, keeping each query's
  top k, and the model scores a chunk in blocks (``gpte.models.multivector.maxsim.maxsim_matrix``), so the score
  memory stays bounded.
- STS, PairClassification: the model's score of each pair: ``pearson``/``spearman`` (STS), ``similarity_*`` and
  ``max_*`` (PairClassification). Cosine, dot, Euclidean and Manhattan scores need one vector per text and are
  left out.
- BitextMining: each ``sentence1`` matched to the ``sentence2`` it scores highest against.
- Summarization: a machine summary's score is its highest score against the human summaries (``spearman``,
  ``pearson``).
- Classification, Clustering: refused (they fit a model on one vector per text; mteb refuses them too).

Where a type's main score needs one vector per text (STS and Summarization: ``cosine_spearman``), the model's own
score stands in (``spearman``; ``MAIN_SCORES``) and the result's ``main_score`` names it.

Each result gives the mean number of token vectors stored per distinct text, per role (``tokens``: ``query_tokens``,
``document_tokens``, or ``tokens`` for texts without a role; ``TokenCounter``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gpte.evaluate.figures import DistinctTexts, role_means
from gpte.models.multivector.vectors import TokenVectors

MULTIVECTOR_TYPES = ("Retrieval", "Reranking", "STS", "PairClassification", "BitextMining", "Summarization")
# task type -> the main score of a multi-vector model where the type's own needs one vector per text
MAIN_SCORES = {"STS": "spearman", "Summarization": "spearman"}


def is_multivector_model(model: Any) -> bool:
    """Whether ``model`` gives token vectors (``output_kind`` ``"multivector"``)."""
    return getattr(model, "output_kind", None) == "multivector"


def is_token_vectors(vectors: Any) -> bool:
    """Whether ``vectors`` are ``TokenVectors`` (a multi-vector model's)."""
    return isinstance(vectors, TokenVectors)


def row_count(vectors: Any) -> int:
    """The number of texts in ``vectors``: ``TokenVectors``, a numpy array or a sparse matrix."""
    return len(vectors) if is_token_vectors(vectors) else int(vectors.shape[0])


def check_task_type(task_type: str, task_name: str) -> None:
    """Refuse a task type a multi-vector model is not evaluated on.

    Raises:
        ValueError: ``task_type`` is not in ``MULTIVECTOR_TYPES`` (the message names them).
    """
    if task_type not in MULTIVECTOR_TYPES:
        raise ValueError(
            f"task {task_name}: a multi-vector model (one vector per token, scored by MaxSim) is evaluated on "
            f"{', '.join(MULTIVECTOR_TYPES)} tasks, not on {task_type}, which fits a model on one vector per text "
            "(mteb refuses it too)"
        )


def main_score(task_type: str, main: str) -> str:
    """The main score of a multi-vector model's result: ``MAIN_SCORES`` for its type, else the task's ``main``."""
    return MAIN_SCORES.get(task_type, main)


def checked_token_vectors(vectors: Any, texts: Sequence[str], dimension: int | None, task_name: str) -> TokenVectors:
    """A multi-vector model's output for ``texts`` as ``TokenVectors`` float32, checked.

    Args:
        vectors: ``TokenVectors``, or one (tokens, dimension) array or tensor per text.
        dimension: the model's token vector length (None: not checked).

    Raises:
        ValueError: not one matrix per text, the wrong dimension, or a NaN or infinity (the text index named).
    """
    if not is_token_vectors(vectors):
        if isinstance(vectors, np.ndarray) or not isinstance(vectors, Sequence):
            raise ValueError(
                f"task {task_name}: a multi-vector model must return TokenVectors or one (tokens, dimension) "
                f"matrix per text, got {type(vectors).__name__}"
            )
        vectors = TokenVectors.from_list(list(vectors), dimension)
    if len(vectors) != len(texts) or (dimension and len(vectors.data) and vectors.dim != dimension):
        raise ValueError(
            f"task {task_name}: the multi-vector model returned {len(vectors)} texts of {vectors.dim}-d token vectors "
            f"for {len(texts)} texts; expected {len(texts)}{f' of {dimension}-d' if dimension else ''}"
        )
    data = np.asarray(vectors.data, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(data).all(axis=1))
    if len(bad):
        text = int(np.searchsorted(vectors.offsets, bad[0], side="right") - 1)
        raise ValueError(
            f"task {task_name}: the model returned NaN or infinity for text index {text}: {texts[text]!r:.80}"
        )
    return vectors if data is vectors.data else TokenVectors(data, vectors.offsets)


def checked_scores(scores: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A multi-vector model's similarity scores as a float32 array of ``shape``, checked.

    Raises:
        ValueError: another shape, or a NaN.
    """
    scores = np.asarray(scores.cpu() if hasattr(scores, "cpu") else scores, dtype=np.float32)
    if scores.shape != shape:
        raise ValueError(f"the multi-vector model's similarity returned shape {scores.shape}, expected {shape}")
    if np.isnan(scores).any():
        raise ValueError("the multi-vector model's similarity returned NaN")
    return scores


class TokenCounter(DistinctTexts):
    """The token vectors stored for the distinct texts a task encoded for one role (``total``: their sum)."""

    def add(self, texts: list[str], vectors: TokenVectors) -> None:
        """Count the token vectors of the texts not counted yet (``vectors``: one matrix per text of ``texts``)."""
        self.total += int(vectors.lengths[self.new(texts)].sum())


def token_figures(counters: dict[str | None, TokenCounter]) -> dict[str, float]:
    """The ``tokens`` of a task's result: ``{role}_tokens``, the mean token vectors stored per distinct text, per role
    the task encoded (``tokens`` for texts without a role)."""
    return role_means(counters, "tokens")
