"""The FLOPS regulariser of learned sparse vectors (Paria et al. 2020, "Minimizing FLOPs to learn efficient
sparse representations", eq. 4): for weights w (rows N, vocabulary V),

    FLOPS(w) = sum_{j in V} ( 1/N sum_i w_ij )^2

the squared L2 norm of the mean vector, a smooth proxy of the expected number of multiplications of a
sparse dot product (for SPLADE's non-negative weights the mean equals the paper's mean of |w_ij|). With a
``threshold`` (FLOPS with L0 masking; Geng et al. 2025, arXiv:2504.14839), rows with at most
``threshold`` non-zero weights are zeroed first and still count in N. Equals sentence-transformers'
``FlopsLoss.compute_loss_from_embeddings``.
"""

from __future__ import annotations

from torch import Tensor, nn


def flops(weights: Tensor, threshold: float | None = None) -> Tensor:
    """sum over the vocabulary of (mean over rows of ``weights``)^2; rows with <= ``threshold`` actives masked."""
    if threshold is not None:
        active = (weights != 0).sum(dim=1)
        weights = weights * (active > threshold).to(weights.dtype).unsqueeze(1)
    return weights.mean(dim=0).pow(2).sum()


class FlopsLoss(nn.Module):
    """``flops(weights, threshold)`` as a module: a regulariser of one (rows, vocab) block, not a training loss.

    Args:
        threshold: ignore (zero) rows with at most this many non-zero weights; None keeps every row.
    """

    def __init__(self, threshold: float | None = None) -> None:
        super().__init__()
        check_threshold("threshold", threshold)
        self.threshold = threshold

    def forward(self, weights: Tensor) -> Tensor:
        return flops(weights, self.threshold)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}"


def check_threshold(name: str, value: float | None) -> None:
    if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0):
        raise ValueError(f"{name} must be None or a number >= 0 (active dimensions), got {value!r}")
