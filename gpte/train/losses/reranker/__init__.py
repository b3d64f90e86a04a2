"""Reranker (cross-encoder) training losses, built by name from a recipe's ``loss`` section.

    build_reranker_loss({"name": "lambdaloss", "weighting": "ndcg_loss2pp"}, cross_encoder)

Each equals the sentence-transformers cross-encoder loss named beside it on the same logits:

- ``bce``: pointwise (query, document, label) rows; ``BinaryCrossEntropyLoss``.
- ``margin_mse``: (query, positive, negatives...) with teacher margins or scores; ``MarginMSELoss``.
- ``listnet``: (query, documents...) with graded labels or positive-first; ``ListNetLoss``.
- ``mnrl``: (query, positive, hard negatives...) plus sampled in-batch negatives; ``MultipleNegativesRankingLoss``.
- ``ranknet``: pairwise logistic over a query's candidates; ``RankNetLoss``.
- ``lambdaloss``: the same weighted by the metric change (NDCGLoss2++ by default); ``LambdaLoss``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from gpte.train.losses.reranker.base import PairScoreLoss
from gpte.train.losses.reranker.binary_cross_entropy import BinaryCrossEntropyLoss
from gpte.train.losses.reranker.lambda_loss import LambdaLoss
from gpte.train.losses.reranker.list_net import ListNetLoss
from gpte.train.losses.reranker.margin_mse import MarginMSELoss
from gpte.train.losses.reranker.multiple_negatives_ranking import MultipleNegativesRankingLoss
from gpte.train.losses.reranker.rank_net import RankNetLoss

RERANKER_LOSSES: dict[str, type[PairScoreLoss]] = {
    loss.name: loss
    for loss in (
        BinaryCrossEntropyLoss,
        MarginMSELoss,
        ListNetLoss,
        MultipleNegativesRankingLoss,
        RankNetLoss,
        LambdaLoss,
    )
}


def build_reranker_loss(spec: str | dict[str, Any], model: nn.Module) -> PairScoreLoss:
    """The reranker loss described by ``spec`` (a name, or ``{"name": ..., options...}``) for ``model``.

    Args:
        spec: loss name and options.
        model: the cross-encoder being trained (``forward_pairs(queries, documents) -> logits``).

    Raises:
        ValueError: an unknown loss name or option (the message lists the allowed ones), or bad option values.
    """
    from gpte.train.losses import _construct  # here, not above: gpte.train.losses may import this package

    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = spec.pop("name", None)
    if name not in RERANKER_LOSSES:
        raise ValueError(f"unknown reranker loss {name!r}; choose one of: {', '.join(RERANKER_LOSSES)}")
    return _construct(RERANKER_LOSSES[name], name, model, spec)


__all__ = ["RERANKER_LOSSES", "PairScoreLoss", "build_reranker_loss", *[c.__name__ for c in RERANKER_LOSSES.values()]]
