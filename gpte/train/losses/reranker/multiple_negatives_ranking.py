"""Multiple negatives ranking for cross-encoders: in-batch and hard negatives; sentence-transformers'
``cross_encoder.losses.MultipleNegativesRankingLoss``.

Rows are (query, positive, hard negatives...). Each query is also paired with ``num_negatives`` documents
of the other rows (any column), drawn at random without replacement (all of them when ``num_negatives`` is
None or at least their number). With s_ij the logits of query i's candidates (its positive first), f the
activation (sigmoid by default) and ``scale`` the multiplier,

    L = -mean_i log softmax(scale * f(s_i))_0
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpte.train.losses.base import TrainingBatch, check_positive
from gpte.train.losses.reranker.base import PairScoreLoss


class MultipleNegativesRankingLoss(PairScoreLoss):
    """Cross-entropy picking each query's positive among its hard negatives and sampled in-batch documents."""

    name = "mnrl"

    def __init__(
        self, model: nn.Module, num_negatives: int | None = 4, scale: float = 10.0, activation: str = "sigmoid"
    ) -> None:
        super().__init__(model, activation)
        if num_negatives is not None and (not isinstance(num_negatives, int) or num_negatives < 1):
            raise ValueError(f"num_negatives must be a positive integer or None, got {num_negatives!r}")
        check_positive("scale", scale)
        self.num_negatives = num_negatives
        self.scale = float(scale)

    def pairs(self, batch: TrainingBatch) -> tuple[list[str], list[str]]:
        """Each query with its own documents, then with its in-batch negatives."""
        return super().pairs(replace(batch, texts=batch.texts + self.in_batch_negatives(batch.texts[1:])))

    def in_batch_negatives(self, columns: list[list[str]]) -> list[list[str]]:
        """Columns of documents from the other rows, one document per row and column (sentence-transformers'
        draw: ``torch.multinomial`` over the other rows' documents, taken column by column)."""
        rows, candidates = len(columns[0]), [text for column in columns for text in column]
        others = ~torch.eye(rows, dtype=torch.bool).repeat(1, len(columns))
        if self.num_negatives is not None and self.num_negatives < len(candidates) - len(columns):
            indices = torch.multinomial(others.float(), self.num_negatives)
        else:
            indices = others.nonzero()[:, 1].reshape(rows, -1)
        return [[candidates[i] for i in column] for column in indices.T.tolist()]

    def compute(self, scores: Tensor, batch: TrainingBatch) -> Tensor:
        targets = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
        return F.cross_entropy(scores * self.scale, targets)
