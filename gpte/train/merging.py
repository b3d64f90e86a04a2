"""Model merging over checkpoints of one architecture.

    average          theta = sum_i w_i theta_i / sum_i w_i         (model soup, Wortsman et al. 2022)
    slerp            per tensor, spherical interpolation between two models at t in [0, 1]:
                     theta = sin((1-t) W)/sin W * a + sin(t W)/sin W * b, W the angle between a and b
                     (linear interpolation where a and b are nearly parallel)
    task_arithmetic  theta = base + scale * sum_i w_i (theta_i - base)   (Ilharco et al. 2023)

Tensors that are not floating point (position ids, counters) are taken from the first model. The merged
model keeps the first model's configuration (pooling, prompts, dense layers), is saved in the
sentence-transformers layout, and its model card names the merged models and the method.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from gpte.models.embedder import Embedder
from gpte.models.model_card import CardNotes

METHODS = ("average", "slerp", "task_arithmetic")
PARALLEL_EPSILON = 1e-6  # |cos W| above 1 - this: interpolate linearly


def merge_models(
    models: Sequence[str | Path],
    method: str = "average",
    weights: Sequence[float] | None = None,
    t: float = 0.5,
    base: str | Path | None = None,
    scale: float = 1.0,
) -> Embedder:
    """Merge ``models`` (folders) with ``method``; returns the merged Embedder (the first model's config).

    Args:
        models: two or more model folders (one for task arithmetic) of the same architecture.
        method: average, slerp (exactly two models) or task_arithmetic (needs ``base``).
        weights: per-model weights (average, task_arithmetic); default equal.
        t: slerp position (0 = first model, 1 = second).
        base: the model the others were fine-tuned from (task arithmetic).
        scale: task arithmetic's lambda.

    Raises:
        ValueError: an unknown method, the wrong number of models or weights, a missing base, t outside
            [0, 1], or models of different architectures (the first differing tensor is named).
    """
    if method not in METHODS:
        raise ValueError(f"unknown merge method {method!r}; choose one of: {', '.join(METHODS)}")
    minimum = {"average": 2, "slerp": 2, "task_arithmetic": 1}[method]
    if len(models) < minimum or (method == "slerp" and len(models) != 2):
        raise ValueError(
            f"{method} merges {'exactly 2' if method == 'slerp' else f'at least {minimum}'} models, got {len(models)}"
        )
    if weights is not None and len(weights) != len(models):
        raise ValueError(f"give one weight per model: {len(models)} models, {len(weights)} weights")
    if method == "task_arithmetic" and base is None:
        raise ValueError("task_arithmetic needs the base model the others were fine-tuned from (base=...)")
    if method == "slerp" and not 0.0 <= t <= 1.0:
        raise ValueError(f"slerp t must lie in [0, 1], got {t!r}")
    embedders = [Embedder.load(m, device="cpu") for m in models]
    states = [e.state_dict() for e in embedders]
    base_state = Embedder.load(base, device="cpu").state_dict() if base is not None else None
    _check_same_architecture(states + ([base_state] if base_state else []), [str(m) for m in models] + [str(base)])
    weights = list(weights) if weights is not None else [1.0] * len(models)
    merged = {}
    for key, first in states[0].items():
        tensors = [s[key] for s in states]
        if not first.is_floating_point():
            merged[key] = first
        elif method == "average":
            merged[key] = sum(w * x for w, x in zip(weights, tensors)) / sum(weights)
        elif method == "slerp":
            merged[key] = slerp(tensors[0], tensors[1], t)
        else:
            merged[key] = base_state[key] + scale * sum(w * (x - base_state[key]) for w, x in zip(weights, tensors))
    embedders[0].load_state_dict(merged)
    names = [str(model) for model in models]
    embedders[0].card_notes = CardNotes(
        base_models=tuple(names), made=(_merge_step(method, names, weights, t, base, scale),)
    )
    return embedders[0]


def _merge_step(
    method: str, names: list[str], weights: list[float], t: float, base: str | Path | None, scale: float
) -> str:
    """The model card's sentence for a merge."""
    listed = ", ".join(f"`{name}`" for name in names)
    if method == "slerp":
        return f"Merged by spherical interpolation (slerp) from {listed} at t = {t}."
    if method == "average":
        return f"Merged by weighted averaging (model soup) of {listed} with weights {weights}."
    return f"Merged by task arithmetic: `{base}` + {scale} x the sum of ({listed} - base) with weights {weights}."


def slerp(a: Tensor, b: Tensor, t: float) -> Tensor:
    """Spherical interpolation between tensors ``a`` and ``b`` (flattened) at ``t``; linear when parallel."""
    a64, b64 = a.double().flatten(), b.double().flatten()
    norm_a, norm_b = a64.norm(), b64.norm()
    if norm_a == 0 or norm_b == 0:
        return torch.lerp(a, b, t)
    cosine = torch.clamp((a64 / norm_a) @ (b64 / norm_b), -1.0, 1.0)
    if cosine.abs() > 1 - PARALLEL_EPSILON:
        return torch.lerp(a, b, t)
    angle = torch.arccos(cosine)
    merged = (torch.sin((1 - t) * angle) * a64 + torch.sin(t * angle) * b64) / torch.sin(angle)
    return merged.reshape(a.shape).to(a.dtype)


def _check_same_architecture(states: list[dict[str, Tensor]], names: list[str]) -> None:
    reference = states[0]
    for state, name in zip(states[1:], names[1:]):
        if state.keys() != reference.keys():
            different = sorted(set(state) ^ set(reference))[0]
            raise ValueError(
                f"{name} has another architecture than {names[0]}: tensor {different} is in only one of them"
            )
        for key, tensor in state.items():
            if tensor.shape != reference[key].shape:
                raise ValueError(
                    f"{name} has another architecture than {names[0]}: {key} is {tuple(tensor.shape)} vs {tuple(reference[key].shape)}"
                )
