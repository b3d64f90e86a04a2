"""RankNet (Burges et al. 2005, "Learning to rank using gradient descent"): pairwise logistic loss over each
query's candidates; sentence-transformers' ``cross_encoder.losses.RankNetLoss``.

LambdaLoss without weights: with s the (activated) logits and y the labels (as for ListNet),

    L = -mean_{(j, l): y_j > y_l, j <= k or l <= k} log_b sigmoid(sigma * (s_j - s_l))

the pairs and k ranked by s, b = 2 for ``reduction_log="binary"`` and e for ``"natural"``.
"""

from __future__ import annotations

from torch import nn

from gpte.train.losses.reranker.lambda_loss import LambdaLoss


class RankNetLoss(LambdaLoss):
    """LambdaLoss with every pair weighing 1."""

    name = "ranknet"

    def __init__(
        self,
        model: nn.Module,
        k: int | None = None,
        sigma: float = 1.0,
        eps: float = 1e-10,
        reduction_log: str = "binary",
        activation: str = "identity",
    ) -> None:
        super().__init__(model, "none", k=k, sigma=sigma, eps=eps, reduction_log=reduction_log, activation=activation)
