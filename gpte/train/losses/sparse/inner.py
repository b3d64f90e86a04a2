"""The inner (ranking) loss of a sparse wrapper loss, built by name with defaults for sparse vectors.

Sparse vectors are compared with the plain dot product at temperature 1 (sentence-transformers'
SparseMultipleNegativesRankingLoss: dot, scale 1; SparseMarginMSELoss and SparseDistillKLDivLoss: dot), so
a name or section without these options gets them; options the section names win.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from gpte.train.losses.base import EmbeddingLoss

SPARSE_DEFAULTS: dict[str, dict[str, Any]] = {
    "infonce": {"similarity": "dot", "temperature": 1.0},
    "margin_mse": {"similarity": "dot"},
    "kl_distillation": {"similarity": "dot", "temperature": 1.0, "teacher_temperature": 1.0, "contrastive_weight": 0.0},
}
NOT_INNER = ("splade", "csr")


def build_inner(spec: EmbeddingLoss | str | dict[str, Any], model: nn.Module, owner: str) -> EmbeddingLoss:
    """The inner loss of ``owner`` (a built loss, a name, or ``{"name": ..., options...}``) for ``model``.

    Raises:
        ValueError: the spec names a wrapper or a loss that cannot sit inside ``owner``, or is malformed.
    """
    if isinstance(spec, EmbeddingLoss):
        return _checked(spec, owner)
    from gpte.train.losses import LOSSES, WRAPPERS, build_loss  # here: gpte.train.losses imports this package

    if not isinstance(spec, (str, dict)):
        raise ValueError(f"{owner}: 'loss' must be a loss name or a mapping with a 'name', got {spec!r}")
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = spec.get("name")
    if name in NOT_INNER:
        raise ValueError(f"{owner}: {name!r} cannot be the inner loss; use a ranking loss such as infonce")
    if getattr(LOSSES.get(name), "token_level", False):
        raise ValueError(f"{owner}: the inner loss {name!r} does not compute on embeddings")
    wrappers = [key for key in WRAPPERS if key in spec]
    if wrappers:
        raise ValueError(f"{owner}: put {', '.join(wrappers)} on the {owner} section, not on its inner loss")
    return _checked(build_loss({**SPARSE_DEFAULTS.get(name, {}), **spec}, model), owner)


def _checked(loss: EmbeddingLoss, owner: str) -> EmbeddingLoss:
    if getattr(loss, "token_level", False) or type(loss).compute is EmbeddingLoss.compute:
        raise ValueError(f"{owner}: the inner loss {loss.name!r} does not compute on embeddings")
    return loss
