"""Attention mode of a decoder backbone: causal (as pretrained), or bidirectional on all or the last k layers.

Decoder LLMs see only earlier tokens. LLM2Vec (BehnamGhader et al. 2024, arXiv:2404.05961) replaces the
causal mask with an all-ones (padding-only) mask on every layer; BeLLM (Li & Li 2024, NAACL) does it on
the last layers only; GritLM switches per use. gpte does it without copying model classes: a forward
pre-hook on the base model remembers the 2D padding mask of each call, and a pre-hook on the
self-attention module of each chosen layer replaces the causal mask it receives with transformers' own
bidirectional mask for the model's attention implementation (``masking_utils.create_bidirectional_mask``)
and clears the module's ``is_causal`` flag (which SDPA uses when no mask is passed). Hooks sit on the
attention modules themselves, so they survive LoRA wrapping and merging.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers.masking_utils import create_bidirectional_mask

ATTENTION_MODES = ("causal", "bidirectional")
# model_type -> (attribute of the base model holding its layers, attribute of a layer holding self-attention)
SUPPORTED_ARCHITECTURES = {
    "llama": ("layers", "self_attn"),
    "mistral": ("layers", "self_attn"),
    "qwen2": ("layers", "self_attn"),
    "qwen3": ("layers", "self_attn"),
    "gpt2": ("h", "attn"),
}
SUPPORTED_IMPLEMENTATIONS = ("eager", "sdpa")


@dataclass(frozen=True)
class AttentionMode:
    """How a decoder attends.

    Attributes:
        mode: ``causal`` or ``bidirectional``.
        last_layers: with ``bidirectional``, only the top this-many layers see later tokens (BeLLM);
            None means every layer.
    """

    mode: str = "causal"
    last_layers: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in ATTENTION_MODES:
            raise ValueError(f"unknown attention mode {self.mode!r}; choose one of: {', '.join(ATTENTION_MODES)}")
        if self.last_layers is not None:
            if self.mode != "bidirectional":
                raise ValueError("last_layers applies to the bidirectional mode only")
            if not isinstance(self.last_layers, int) or isinstance(self.last_layers, bool) or self.last_layers < 1:
                raise ValueError(f"last_layers must be a positive integer or None, got {self.last_layers!r}")

    @classmethod
    def parse(cls, spec: str | dict[str, Any] | AttentionMode | None) -> AttentionMode:
        """``"causal"``, ``"bidirectional"``, ``{"mode": ..., "last_layers": k}``, an AttentionMode, or None (causal)."""
        if spec is None:
            return cls()
        if isinstance(spec, AttentionMode):
            return spec
        if isinstance(spec, str):
            return cls(spec)
        if isinstance(spec, dict) and set(spec) <= {"mode", "last_layers"}:
            return cls(**spec)
        raise ValueError(
            f"attention must be 'causal', 'bidirectional' or {{'mode': ..., 'last_layers': k}}, got {spec!r}"
        )

    def config(self) -> dict[str, Any]:
        return {"mode": self.mode, "last_layers": self.last_layers}


class AttentionSwitch:
    """Makes the chosen layers of ``model`` (a transformers base model, no LM head) attend bidirectionally.

    Args:
        model: e.g. ``LlamaModel``/``GPT2Model`` (a peft wrapper's base model is found).
        mode: the attention mode; ``causal`` installs nothing.

    Raises:
        ValueError: an architecture or attention implementation the switch does not support (the supported
            ones are named), or more ``last_layers`` than the model has.
    """

    def __init__(self, model: nn.Module, mode: AttentionMode) -> None:
        self.mode = mode
        self._handles: list[Any] = []
        self._padding_mask: torch.Tensor | None = None
        self._mask: Any = None
        if mode.mode == "causal":
            return
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self._config = base.config
        self._modules = _chosen_attention_modules(base, mode.last_layers)
        self._mask_argument = _attention_mask_position(base)
        self._handles.append(base.register_forward_pre_hook(self._remember_padding_mask, with_kwargs=True))
        for module in self._modules:
            module.is_causal = False
            self._handles.append(module.register_forward_pre_hook(self._bidirectional_mask, with_kwargs=True))

    def remove(self) -> None:
        """Restore causal attention."""
        for handle in self._handles:
            handle.remove()
        for module in getattr(self, "_modules", []):
            module.is_causal = True
        self._handles = []

    def _remember_padding_mask(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        mask = kwargs.get("attention_mask")
        if mask is None and len(args) > self._mask_argument:
            mask = args[self._mask_argument]
        self._padding_mask, self._mask = mask, None

    def _bidirectional_mask(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if self._mask is None:  # built once per forward pass, shared by the chosen layers
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            padding = self._padding_mask
            if padding is not None and padding.dim() != 2:
                raise ValueError("bidirectional attention needs a 2D padding mask (batch, length)")
            self._mask = create_bidirectional_mask(config=self._config, inputs_embeds=hidden, attention_mask=padding)
            if self._mask is None:
                self._mask = False  # no padding: no mask at all (False marks "computed")
        kwargs["attention_mask"] = self._mask if self._mask is not False else None
        return args, kwargs


def check_supported(config: Any) -> None:
    """Raise ValueError unless bidirectional attention is supported for this model config."""
    if config.model_type not in SUPPORTED_ARCHITECTURES:
        raise ValueError(
            f"bidirectional attention is not supported for {config.model_type!r} models; "
            f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    implementation = getattr(config, "_attn_implementation", None) or "eager"
    if implementation not in SUPPORTED_IMPLEMENTATIONS:
        raise ValueError(
            f"bidirectional attention supports the {', '.join(SUPPORTED_IMPLEMENTATIONS)} attention "
            f"implementations, the model uses {implementation!r}"
        )


def _chosen_attention_modules(base: nn.Module, last_layers: int | None) -> list[nn.Module]:
    check_supported(base.config)
    layers_name, attention_name = SUPPORTED_ARCHITECTURES[base.config.model_type]
    layers = list(getattr(base, layers_name))
    if last_layers is not None and last_layers > len(layers):
        raise ValueError(f"last_layers={last_layers} but the model has {len(layers)} layers")
    chosen = layers if last_layers is None else layers[-last_layers:]
    return [getattr(layer, attention_name) for layer in chosen]


def _attention_mask_position(base: nn.Module) -> int:
    """Index of ``attention_mask`` among the positional arguments of the base model's forward."""
    names = [name for name in inspect.signature(base.forward).parameters if name != "self"]
    return names.index("attention_mask") if "attention_mask" in names else len(names)
