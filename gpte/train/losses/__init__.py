"""Training losses, built by name from a recipe's ``loss`` section.

    build_loss({"name": "infonce", "temperature": 0.05, "matryoshka": {"dims": [384, 96]},
                "gradcache": {"mini_batch_size": 32}}, model)

Each loss is one module; wrappers (``matryoshka``, ``matryoshka_2d``, ``gradcache``) are keys of the same
section and apply in that order (GradCache outermost). The sparse losses (``splade``, ``csr``) take their
ranking loss as a nested section: ``{"name": "splade", "loss": {"name": "margin_mse"}, ...}``. A multi-vector
(ColBERT) model trains with the ``colbert_*`` losses (``gpte.train.losses.multivector``) and only those; a loss
given the wrong kind of model raises TypeError.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from gpte.train.losses.base import EmbeddingLoss, TrainingBatch
from gpte.train.losses.distillation import KLDistillationLoss, MarginMSELoss
from gpte.train.losses.gist import GISTLoss
from gpte.train.losses.gradcache import CachedLoss
from gpte.train.losses.infonce import InfoNCELoss
from gpte.train.losses.matryoshka import Matryoshka2dLoss, MatryoshkaLoss
from gpte.train.losses.mntp import MNTPLoss
from gpte.train.losses.multivector import (
    MULTIVECTOR_LOSSES,
    ColBERTInfoNCELoss,
    ColBERTKLDistillationLoss,
    ColBERTMarginMSELoss,
    MultiVectorLoss,
)
from gpte.train.losses.multivector.base import MULTIVECTOR_KIND
from gpte.train.losses.ranking import AnglELoss, CoSENTLoss, CosineMSELoss
from gpte.train.losses.simcse import SimCSELoss
from gpte.train.losses.sparse import CSRLoss, SpladeLoss
from gpte.train.losses.triplet import TripletLoss

LOSSES: dict[str, type[EmbeddingLoss]] = {
    loss.name: loss
    for loss in (
        InfoNCELoss,
        CoSENTLoss,
        AnglELoss,
        CosineMSELoss,
        TripletLoss,
        MarginMSELoss,
        KLDistillationLoss,
        SimCSELoss,
        GISTLoss,
        MNTPLoss,
        SpladeLoss,
        CSRLoss,
        ColBERTInfoNCELoss,
        ColBERTKLDistillationLoss,
        ColBERTMarginMSELoss,
    )
}
WRAPPERS = ("matryoshka", "matryoshka_2d", "gradcache")


def build_loss(spec: str | dict[str, Any], model: nn.Module, guide: Any = None) -> EmbeddingLoss:
    """The loss described by ``spec`` (a name, or ``{"name": ..., options..., wrappers...}``) for ``model``.

    Args:
        spec: loss name and options; wrapper keys take their own option dicts.
        model: the embedder being trained.
        guide: the guide embedder for ``gist`` (a loaded model; recipes name it with ``guide:``).

    Raises:
        ValueError: an unknown loss name or option (the message lists the allowed ones), or bad option values.
        TypeError: a loss for another kind of model (a ``colbert_*`` loss for a single-vector model, or the reverse).
    """
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = spec.pop("name", None)
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
    wrappers = {key: spec.pop(key) for key in WRAPPERS if key in spec}
    _check_model_kind(LOSSES[name], name, model)
    if name == "gist":
        if guide is None:
            raise ValueError("loss 'gist' needs a guide model (recipe: guide: MODEL)")
        spec["guide"] = guide
    loss = _construct(LOSSES[name], name, model, spec)
    if wrappers and getattr(loss, "token_level", False):
        raise ValueError(f"loss {name!r} works on tokens, not embeddings: {', '.join(wrappers)} cannot wrap it")
    if wrappers and getattr(loss, "needs_model_outputs", False):
        raise ValueError(f"loss {name!r} reads the model's intermediate outputs: {', '.join(wrappers)} cannot wrap it")
    refused = [key for key in wrappers if key not in getattr(loss, "wrappers", WRAPPERS)]
    if refused:
        raise ValueError(
            f"{', '.join(refused)} cannot wrap loss {name!r}; it takes: {', '.join(getattr(loss, 'wrappers', ()))}"
        )
    if "matryoshka" in wrappers and "matryoshka_2d" in wrappers:
        raise ValueError("choose one of matryoshka and matryoshka_2d (2D includes the dimension nesting)")
    if "matryoshka" in wrappers:
        loss = _construct(MatryoshkaLoss, "matryoshka", loss, wrappers["matryoshka"])
    if "matryoshka_2d" in wrappers:
        loss = _construct(Matryoshka2dLoss, "matryoshka_2d", loss, wrappers["matryoshka_2d"])
    if "gradcache" in wrappers:
        loss = _construct(CachedLoss, "gradcache", loss, wrappers["gradcache"])
    return loss


def _check_model_kind(cls: type, name: str, model: nn.Module) -> None:
    """Raise TypeError if ``model`` is a multi-vector model and ``cls`` is not one of its losses (the reverse is
    checked by ``MultiVectorLoss`` itself)."""
    if getattr(model, "output_kind", None) == MULTIVECTOR_KIND and not issubclass(cls, MultiVectorLoss):
        raise TypeError(
            f"loss {name!r} trains one vector per text; a multi-vector model (output_kind 'multivector') trains with "
            f"one of: {', '.join(loss.name for loss in MULTIVECTOR_LOSSES)}"
        )


def _construct(cls: type, name: str, first: Any, options: Any) -> Any:
    """``cls(first, **options)`` after checking the option names against its constructor."""
    if not isinstance(options, dict):
        raise ValueError(f"{name}: options must be a mapping, got {options!r}")
    allowed = _parameters(cls)
    if cls is GISTLoss:
        allowed += [p for p in _parameters(InfoNCELoss) if p != "symmetric"]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    return cls(first, **options)


def _parameters(cls: type) -> list[str]:
    """Named constructor parameters after the model/base loss."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    keyword_kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in parameters if p.kind in keyword_kinds and p.name not in ("self", "model", "base")]


__all__ = [
    "LOSSES",
    "WRAPPERS",
    "EmbeddingLoss",
    "TrainingBatch",
    "build_loss",
    *[cls.__name__ for cls in LOSSES.values()],
]
__all__ += ["MatryoshkaLoss", "Matryoshka2dLoss", "CachedLoss", "MultiVectorLoss"]
