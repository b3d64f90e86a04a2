"""ListNet: listwise softmax cross-entropy over each query's candidates; sentence-transformers'
``cross_encoder.losses.ListNetLoss``.

Rows are (query, document_1..n); labels y come from the score column (rows, n), graded, -1 marking a padded
slot, or without one are 1 for the positive (column 1) and 0 for the other candidates. With s the
(activated) logits, padded slots excluded,

    L = -mean_i sum_j softmax(y_i)_j * log softmax(s_i)_j

(the labels go through a softmax too, as in ListNet and sentence-transformers: binary labels give the
positive the weight e / (e + n - 1), not 1).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from gpte.train.losses.base import TrainingBatch
from gpte.train.losses.reranker.base import PairScoreLoss, candidate_labels

PADDED_LOGIT = -1e16


class ListNetLoss(PairScoreLoss):
    """Cross-entropy between the softmax of the labels and the softmax of the scores, per query."""

    name = "listnet"

    def compute(self, scores: Tensor, batch: TrainingBatch) -> Tensor:
        labels = candidate_labels(scores, batch)
        scores = scores.masked_fill(labels.isneginf(), PADDED_LOGIT)
        return F.cross_entropy(scores, labels.softmax(dim=1))
