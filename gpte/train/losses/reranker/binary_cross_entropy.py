"""Pointwise binary cross-entropy on (query, document, label) rows; sentence-transformers'
``cross_encoder.losses.BinaryCrossEntropyLoss``.

With s_i the (activated) logit of pair i, y_i its label (1/0, or graded in [0, 1]) and w the ``pos_weight``
(1 by default),

    L = -mean_i (w * y_i * log sigmoid(s_i) + (1 - y_i) * log(1 - sigmoid(s_i)))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpte.train.losses.base import TrainingBatch, check_positive
from gpte.train.losses.reranker.base import PairScoreLoss


class BinaryCrossEntropyLoss(PairScoreLoss):
    """BCE with logits on (query, document) rows labelled by the score column."""

    name = "bce"
    max_columns = 2
    needs_scores = True

    def __init__(self, model: nn.Module, pos_weight: float | None = None, activation: str = "identity") -> None:
        super().__init__(model, activation)
        if pos_weight is not None:
            check_positive("pos_weight", pos_weight)
        self.pos_weight = pos_weight

    def compute(self, scores: Tensor, batch: TrainingBatch) -> Tensor:
        logits = scores.reshape(-1)
        if batch.scores.numel() != logits.numel():
            raise ValueError(f"loss 'bce' takes one label per row, got labels of shape {tuple(batch.scores.shape)}")
        labels = batch.scores.reshape(-1).to(logits)
        pos_weight = None if self.pos_weight is None else torch.tensor(self.pos_weight, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight)
