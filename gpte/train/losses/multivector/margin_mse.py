"""ColBERT MarginMSE (sentence-transformers' MultiVectorMarginMSELoss).

Rows (query, positive, negative_1..negative_K) with the teacher's view as scores, in one of three forms:

    (rows,)       the margin t(q, p) - t(q, n), only with K = 1
    (rows, K + 1) raw teacher scores [t(q, p), t(q, n_1), ...], turned into margins t(q, p) - t(q, n_k)
    (rows, K)     the margins themselves

With s the student's MaxSim scores,

    L = mean_{i,k} ( (s(q_i, p_i) - s(q_i, n_ik)) - margin_ik )^2

Reference: Hofstaetter et al. 2020, "Improving efficient neural ranking models with cross-architecture knowledge
distillation".
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from gpte.train.losses.base import TrainingBatch
from gpte.train.losses.multivector.base import MultiVectorLoss
from gpte.train.losses.multivector.tokens import TokenColumn


class ColBERTMarginMSELoss(MultiVectorLoss):
    """MarginMSE on MaxSim scores; see the module docstring for the score forms.

    Args:
        model: the multi-vector model.
        similarity: ``maxsim`` or ``meanmaxsim`` (None: the model's).
    """

    name = "colbert_margin_mse"
    min_columns = 3
    needs_scores = True

    def from_columns(self, embeddings: list[TokenColumn], batch: TrainingBatch | None) -> Tensor:
        scores = self.candidate_scores(embeddings)
        margins = scores[:, :1] - scores[:, 1:]
        return F.mse_loss(margins, self.teacher_margins(batch.scores, margins).to(margins.dtype))

    def teacher_margins(self, scores: Tensor, margins: Tensor) -> Tensor:
        """The teacher's (rows, K) margins from ``scores`` in any of the three forms."""
        rows, negatives = margins.shape
        if scores.ndim == 1 and negatives == 1:
            scores = scores.unsqueeze(1)
        if tuple(scores.shape) == (rows, negatives + 1):
            scores = scores[:, :1] - scores[:, 1:]
        if tuple(scores.shape) != (rows, negatives):
            raise ValueError(
                f"{self.name}: with {negatives} negative column(s) the scores must be margins {(rows, negatives)}, "
                f"raw teacher scores {(rows, negatives + 1)}"
                + (f" or one margin per row {(rows,)}" if negatives == 1 else "")
                + f"; got {tuple(scores.shape)}"
            )
        return scores.detach()
