"""MarginMSE distillation on (query, positive, negative_1..k) rows; sentence-transformers'
``cross_encoder.losses.MarginMSELoss``.

The score column holds the teacher's margins t(q, p) - t(q, n_j): (rows,) for one negative or (rows, k);
or the teacher's scores [t(q, p), t(q, n_1), ..., t(q, n_k)] as (rows, k + 1), turned into margins. With s
the student's (activated) logits,

    L = mean_{i,j} ((s(q_i, p_i) - s(q_i, n_ij)) - margin_ij)^2
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from gpte.train.losses.base import TrainingBatch
from gpte.train.losses.reranker.base import PairScoreLoss


class MarginMSELoss(PairScoreLoss):
    """MSE between the student's and the teacher's positive-minus-negative margins."""

    name = "margin_mse"
    min_columns = 3
    needs_scores = True

    def compute(self, scores: Tensor, batch: TrainingBatch) -> Tensor:
        margins = scores[:, :1] - scores[:, 1:]
        return F.mse_loss(margins, teacher_margins(batch.scores, margins.shape).to(margins))


def teacher_margins(labels: Tensor, shape: tuple[int, int]) -> Tensor:
    """(rows, k) teacher margins from labels of shape (rows, k + 1) (scores), (rows, k) or, for k = 1, (rows,).

    Raises:
        ValueError: the labels fit none of these shapes.
    """
    rows, k = shape
    labels = labels.detach()
    if labels.shape == (rows, k + 1):
        return labels[:, :1] - labels[:, 1:]
    if labels.shape == (rows,):
        labels = labels[:, None]
    if labels.shape != (rows, k):
        raise ValueError(
            f"loss 'margin_mse': labels of shape {tuple(labels.shape)} fit neither the {k} margins (positive minus"
            f" each negative) nor the {k + 1} teacher scores (positive, negatives) of each of the {rows} rows"
        )
    return labels
