"""LambdaLoss (Wang et al. 2018, "The LambdaLoss framework for ranking metric optimization"): weighted pairwise
logistic loss over each query's candidates; sentence-transformers' ``cross_encoder.losses.LambdaLoss``.

Rows are (query, document_1..n) with labels as for ListNet (graded (rows, n) scores, -1 padded; or 1 for
the positive, 0 for the others). Sort each query's candidates by (activated) logit s; with y the labels
in that order, gain G_j = (2^y_j - 1) / maxDCG@k, discount D_j = log2(1 + j) and weights w_jl from the
weighting scheme (default NDCGLoss2++: mu * NDCGLoss2 + LambdaRank),

    L = -mean_{(j, l): y_j > y_l, j <= k or l <= k} w_jl * log_b sigmoid(sigma * (s_j - s_l))

with b = 2 for ``reduction_log="binary"`` and e for ``"natural"``. ``weighting="ndcg_loss1"`` keeps every
pair of unpadded candidates. RankNet (Burges et al. 2005) is the unweighted case; sentence-transformers'
``cross_encoder.losses.RankNetLoss``.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpte.train.losses.base import TrainingBatch, check_choice, check_positive
from gpte.train.losses.reranker.base import PairScoreLoss, candidate_labels
from gpte.train.losses.reranker.list_net import PADDED_LOGIT

REDUCTION_LOGS = ("binary", "natural")


def no_weights(gain: Tensor, discount: Tensor) -> Tensor:
    """RankNet: every pair weighs 1."""
    return torch.ones((), device=gain.device)


def ndcg_loss1_weights(gain: Tensor, discount: Tensor) -> Tensor:
    """NDCGLoss1: G_j / D_j, (rows, n, 1)."""
    return (gain / discount)[:, :, None]


def ndcg_loss2_weights(gain: Tensor, discount: Tensor) -> Tensor:
    """NDCGLoss2: |1/D_|j-l| - 1/D_(|j-l|+1)| * |G_j - G_l|, (rows, n, n), zero on the diagonal."""
    positions = torch.arange(1, gain.shape[1] + 1, device=gain.device)
    distances = (positions[:, None] - positions[None, :]).abs()
    deltas = (discount[0, distances - 1].abs().pow(-1.0) - discount[0, distances].abs().pow(-1.0)).abs()
    return deltas.fill_diagonal_(0)[None] * gain_differences(gain)


def lambdarank_weights(gain: Tensor, discount: Tensor) -> Tensor:
    """LambdaRank: |1/D_j - 1/D_l| * |G_j - G_l|, (rows, n, n)."""
    return (discount[:, :, None].pow(-1.0) - discount[:, None, :].pow(-1.0)).abs() * gain_differences(gain)


def ndcg_loss2pp_weights(gain: Tensor, discount: Tensor, mu: float) -> Tensor:
    """NDCGLoss2++: mu * NDCGLoss2 + LambdaRank."""
    return mu * ndcg_loss2_weights(gain, discount) + lambdarank_weights(gain, discount)


def gain_differences(gain: Tensor) -> Tensor:
    return (gain[:, :, None] - gain[:, None, :]).abs()


WEIGHTINGS = {
    "ndcg_loss2pp": ndcg_loss2pp_weights,
    "ndcg_loss2": ndcg_loss2_weights,
    "lambdarank": lambdarank_weights,
    "ndcg_loss1": ndcg_loss1_weights,
    "none": no_weights,
}


class LambdaLoss(PairScoreLoss):
    """Pairwise logistic loss weighted by the ranking metric's change (``weighting``; ``mu`` for ndcg_loss2pp).

    Args:
        k: only pairs with a candidate in the predicted top k count (None: all).
        sigma: slope of the pairwise sigmoid.
        eps: floor of maxDCG.
        reduction_log: ``"binary"`` (log2) or ``"natural"``.
    """

    name = "lambdaloss"

    def __init__(
        self,
        model: nn.Module,
        weighting: str = "ndcg_loss2pp",
        mu: float = 10.0,
        k: int | None = None,
        sigma: float = 1.0,
        eps: float = 1e-10,
        reduction_log: str = "binary",
        activation: str = "identity",
    ) -> None:
        super().__init__(model, activation)
        check_choice("weighting", weighting, tuple(WEIGHTINGS))
        check_choice("reduction_log", reduction_log, REDUCTION_LOGS)
        for option, value in (("mu", mu), ("sigma", sigma), ("eps", eps)):
            check_positive(option, value)
        if k is not None and (not isinstance(k, int) or k < 1):
            raise ValueError(f"k must be a positive integer or None, got {k!r}")
        self.weighting = weighting
        self.weights = partial(ndcg_loss2pp_weights, mu=mu) if weighting == "ndcg_loss2pp" else WEIGHTINGS[weighting]
        self.k, self.sigma, self.eps, self.reduction_log = k, sigma, eps, reduction_log

    def compute(self, scores: Tensor, batch: TrainingBatch) -> Tensor:
        labels = candidate_labels(scores, batch)
        sorted_scores, order = scores.masked_fill(labels.isneginf(), PADDED_LOGIT).sort(descending=True, dim=-1)
        labels_by_score = labels.gather(1, order)
        differences = (sorted_scores[:, :, None] - sorted_scores[:, None, :]).clamp(min=-1e8, max=1e8)
        losses = self.weights(*self.gain_discount(labels, labels_by_score)) * F.logsigmoid(
            self.sigma * differences.nan_to_num(nan=0.0)
        )
        if self.reduction_log == "binary":
            losses = losses / math.log(2)
        kept = losses[self.kept_pairs(labels_by_score)]
        return -kept.sum() / max(kept.numel(), 1)

    def gain_discount(self, labels: Tensor, labels_by_score: Tensor) -> tuple[Tensor, Tensor]:
        """Gains G (rows, n) in predicted order, (2^y - 1) / maxDCG@k, and discounts D = log2(1 + position) (1, n);
        padded labels count as 0."""
        n = labels.shape[1]
        discount = torch.log2(1.0 + torch.arange(1, n + 1, device=labels.device).float())[None, :]
        ideal = labels.sort(descending=True, dim=-1).values.clamp(min=0.0)
        max_dcg = ((2**ideal - 1) / discount)[:, : self.k or n].sum(dim=-1).clamp(min=self.eps)
        return (2 ** labels_by_score.clamp(min=0.0) - 1) / max_dcg[:, None], discount

    def kept_pairs(self, labels_by_score: Tensor) -> Tensor:
        """(rows, n, n) mask of the pairs (j, l) that count: both unpadded, y_j > y_l (any order for ndcg_loss1),
        and j or l in the predicted top k."""
        n = labels_by_score.shape[1]
        differences = labels_by_score[:, :, None] - labels_by_score[:, None, :]
        kept = differences.isfinite()
        if self.weighting != "ndcg_loss1":
            kept &= differences > 0
        in_top_k = torch.zeros((n, n), dtype=torch.bool, device=labels_by_score.device)
        in_top_k[: self.k or n, :] = in_top_k[:, : self.k or n] = True
        return kept & in_top_k
