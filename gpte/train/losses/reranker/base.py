"""What every reranker (cross-encoder) loss shares: a batch of texts in, (query, document) logits, a scalar out.

A ``PairScoreLoss`` gets the same ``TrainingBatch`` as the embedding losses: column 0 holds the queries,
columns 1.. the documents of each query (the positive first, then negatives; or one document for pointwise
losses), and ``scores`` is None, (rows,) labels or (rows, k) labels. ``forward`` pairs each query with its
documents, scores the pairs with ``model.forward_pairs(queries, documents)`` (raw logits, shape (n,)),
applies the loss's activation (in float32, or float64 for float64 logits) and calls ``compute(scores, batch)`` with the (rows, n_documents) scores:
the math, written once per loss.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from gpte.train.losses.base import EmbeddingLoss, TrainingBatch, check_choice

ACTIVATIONS = {"identity": lambda logits: logits, "sigmoid": torch.sigmoid}
PAD_LABEL = -1.0


class PairScoreLoss(nn.Module):
    """Base class: ``forward(batch)`` scores the batch's (query, document) pairs and returns ``compute``.

    Class attributes say what data a loss accepts, as for ``EmbeddingLoss``: ``min_columns``/``max_columns``
    text columns (the query column included) and whether it ``needs_scores``.

    Args:
        model: a pair scorer with ``forward_pairs(queries, documents) -> Tensor`` (raw logits, shape (n,)).
        activation: applied to the logits before the loss, ``"identity"`` or ``"sigmoid"``
            (sentence-transformers' ``activation_fn``).
    """

    name: ClassVar[str] = ""
    min_columns: ClassVar[int] = 2
    max_columns: ClassVar[int | None] = None
    needs_scores: ClassVar[bool] = False
    check_columns = EmbeddingLoss.check_columns

    def __init__(self, model: nn.Module, activation: str = "identity") -> None:
        super().__init__()
        check_choice("activation", activation, tuple(ACTIVATIONS))
        self.model = model
        self.activation = activation

    def forward(self, batch: TrainingBatch) -> Tensor:
        queries, documents = self.pairs(batch)
        logits = self.model.forward_pairs(queries, documents)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        scores = ACTIVATIONS[self.activation](logits).reshape(batch.n_rows, -1)
        return self.compute(scores, batch)

    def pairs(self, batch: TrainingBatch) -> tuple[list[str], list[str]]:
        """The (query, document) pairs to score, row by row: each row's query with each of its documents."""
        rows = list(zip(*batch.texts))
        return [row[0] for row in rows for _ in row[1:]], [document for row in rows for document in row[1:]]

    def compute(self, scores: Tensor, batch: TrainingBatch) -> Tensor:
        """The loss from the (rows, n_documents) activated pair scores; ``batch`` gives the labels."""
        raise NotImplementedError


def candidate_labels(scores: Tensor, batch: TrainingBatch) -> Tensor:
    """(rows, n_documents) labels of each query's candidates, padded slots as -inf.

    Without a score column the positive (column 1) gets 1 and the other candidates (mined negatives) 0;
    a (rows, n_documents) score column gives graded labels, where ``PAD_LABEL`` (-1) marks a padded slot
    (sentence-transformers pads a query's shorter document list with -inf labels).

    Raises:
        ValueError: the score column's shape is not (rows, n_documents).
    """
    if batch.scores is None:
        labels = torch.zeros_like(scores)
        labels[:, 0] = 1.0
        return labels
    if batch.scores.shape != scores.shape:
        raise ValueError(
            f"labels of shape {tuple(batch.scores.shape)} do not match the {tuple(scores.shape)} (rows, documents)"
            " of the batch: give one label per document"
        )
    labels = batch.scores.to(scores.device, scores.dtype)
    return labels.masked_fill(labels == PAD_LABEL, float("-inf"))
