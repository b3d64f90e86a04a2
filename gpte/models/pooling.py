"""Poolers: token states -> one vector per text. Each is a small module with a name and a config.

Every pooler first selects the tokens it pools (:meth:`Pooler.selection`): all real tokens, or with
``include_prompt=False`` all but the prompt template's tokens and the leading special tokens (the
sentence-transformers semantics: leading CLS/BOS and prompt tokens are dropped, a trailing SEP/EOS is
kept, also for an empty text). Then it reduces the selected token states. A text with no selected
token gets a zero vector.

Formulas (h_i: token state, m_i: selection, 1/0):
    cls            h_first, the first selected token
    mean           sum_i m_i h_i / sum_i m_i
    mean_sqrt_len  sum_i m_i h_i / sqrt(sum_i m_i)
    max            max_i over selected tokens, per dimension
    weighted_mean  sum_i m_i p_i h_i / sum_i m_i p_i, p_i = position among real tokens, 1-based (SGPT,
                   Muennighoff 2022, arXiv:2202.08904; equals sentence-transformers' ``weightedmean``)
    last           h_last, the last selected token (right under left or right padding)
    span_mean      mean over the tokens of one copy of the text (default the last: echo embeddings,
                   Springer et al. 2024, arXiv:2402.15449)
    multi_layer    the mean of the top-k layers' states, then a token pooler
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from gpte.models.tokenization import PROMPT, SPECIAL


@dataclass
class TokenStates:
    """What poolers read.

    Attributes:
        hidden: last layer states, (batch, length, dim).
        attention_mask: 1 for real tokens, 0 for padding, (batch, length).
        layers: every layer's states (embeddings first), present when a pooler asks for them.
        segments: token segment labels (see ``gpte.models.tokenization``), present when asked for.
    """

    hidden: Tensor
    attention_mask: Tensor
    layers: tuple[Tensor, ...] | None = None
    segments: Tensor | None = None


class Pooler(nn.Module):
    """Base class. Subclasses set ``name`` and implement :meth:`reduce`."""

    name: ClassVar[str]
    needs_layers: ClassVar[bool] = False

    def __init__(self, include_prompt: bool = True) -> None:
        super().__init__()
        if not isinstance(include_prompt, bool):
            raise TypeError(f"include_prompt must be True or False, got {include_prompt!r}")
        self.include_prompt = include_prompt

    @property
    def needs_segments(self) -> bool:
        return not self.include_prompt

    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this pooler (saved with the model)."""
        return {"include_prompt": self.include_prompt}

    def suffix_ids(self, tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
        """Token ids to append to every text before the model runs (none by default)."""
        return ()

    def selection(self, states: TokenStates) -> Tensor:
        """The tokens to pool, (batch, length) of 0/1 in the hidden states' dtype."""
        mask = states.attention_mask.bool()
        if not self.include_prompt:
            segments = states.segments
            leading = (segments >= PROMPT).long().cumsum(dim=1) == 0  # before the first non-special token
            mask = mask & (segments != PROMPT) & ~((segments == SPECIAL) & leading)
        return mask.to(states.hidden.dtype)

    def forward(self, states: TokenStates) -> Tensor:
        return self.reduce(states.hidden, self.selection(states), states)

    def reduce(self, hidden: Tensor, mask: Tensor, states: TokenStates) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.config().items())


def _gather_position(hidden: Tensor, mask: Tensor, index: Tensor) -> Tensor:
    """hidden[b, index[b]], zero for rows with no selected token."""
    picked = hidden.gather(1, index.view(-1, 1, 1).expand(-1, 1, hidden.size(-1))).squeeze(1)
    return picked * (mask.sum(dim=1, keepdim=True) > 0).to(hidden.dtype)


def masked_mean(hidden: Tensor, mask: Tensor) -> Tensor:
    """sum_i m_i h_i / sum_i m_i over the length axis (zero where nothing is selected)."""
    weights = mask.unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class ClsPooler(Pooler):
    name = "cls"

    def reduce(self, hidden: Tensor, mask: Tensor, states: TokenStates) -> Tensor:
        return _gather_position(hidden, mask, mask.argmax(dim=1))


class LastTokenPooler(Pooler):
    """The last selected token; ``append_eos=True`` appends the tokenizer's EOS token to every text."""

    name = "last"

    def __init__(self, include_prompt: bool = True, append_eos: bool = False) -> None:
        super().__init__(include_prompt)
        self.append_eos = bool(append_eos)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "append_eos": self.append_eos}

    def suffix_ids(self, tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
        if not self.append_eos:
            return ()
        if tokenizer.eos_token_id is None:
            raise ValueError("append_eos=True but the tokenizer has no EOS token")
        return (int(tokenizer.eos_token_id),)

    def reduce(self, hidden: Tensor, mask: Tensor, states: TokenStates) -> Tensor:
        last = mask.size(1) - 1 - mask.flip(dims=[1]).argmax(dim=1)
        return _gather_position(hidden, mask, last)


class MeanPooler(Pooler):
    name = "mean"

    def reduce(self, hidden: Tensor, mask: Tensor, states: TokenStates) -> Tensor:
        return masked_mean(hidden, mask)


class MeanSqrtLenPooler(Pooler):
    name = "mean_sqrt_len"

    def reduce(self, hidden: Tensor, mask: Tensor, states: TokenStates) -> Tensor:
        weights = mask.unsqueeze(-1)
        return (hidden * weights).sum(dim=1) / torch.sqrt(weights.sum(dim=1).clamp(min=1e-9))


class MaxPooler(Pooler):
    name = "max"

    def reduce(self, hidden: Tensor, mask: Tensor, states: TokenStates) -> Tensor:
        selected = mask.unsqueeze(-1).bool()
        values = hidden.masked_fill(~selected, float("-inf")).max(dim=1).values
        return torch.where(selected.any(dim=1), values, torch.zeros_like(values))


class WeightedMeanPooler(Pooler):
    name = "weighted_mean"

    def reduce(self, hidden: Tensor, mask: Tensor, states: TokenStates) -> Tensor:
        positions = states.attention_mask.to(hidden.dtype).cumsum(dim=1)
        return masked_mean(hidden, mask * positions)


class SpanMeanPooler(Pooler):
    """Mean over the tokens of one copy of the text in the prompt; ``copy=-1`` is the last copy."""

    name = "span_mean"

    def __init__(self, copy: int = -1) -> None:
        super().__init__(include_prompt=False)
        if not isinstance(copy, int) or copy == 0:
            raise ValueError(f"copy must be a non-zero integer (1 = first copy, -1 = last), got {copy!r}")
        self.copy = copy

    def config(self) -> dict[str, Any]:
        return {"copy": self.copy}

    def selection(self, states: TokenStates) -> Tensor:
        segments = states.segments
        if self.copy > 0:
            wanted = torch.full_like(segments[:, :1], self.copy)
        else:
            wanted = segments.max(dim=1, keepdim=True).values + 1 + self.copy
        return ((segments == wanted) & (wanted > 0)).to(states.hidden.dtype)

    def reduce(self, hidden: Tensor, mask: Tensor, states: TokenStates) -> Tensor:
        return masked_mean(hidden, mask)


class MultiLayerPooler(Pooler):
    """Average the last ``layers`` layers' token states, then pool them with ``token_pooling``."""

    name = "multi_layer"
    needs_layers = True

    def __init__(self, layers: int = 4, token_pooling: str = "mean", **token_pooling_options: Any) -> None:
        inner = build_pooler(token_pooling, **token_pooling_options)
        if isinstance(inner, MultiLayerPooler):
            raise ValueError("multi_layer cannot wrap another multi_layer pooler")
        super().__init__(inner.include_prompt)
        if not isinstance(layers, int) or layers < 1:
            raise ValueError(f"layers must be a positive integer, got {layers!r}")
        self.layers = layers
        self.token_pooling = inner

    @property
    def needs_segments(self) -> bool:
        return self.token_pooling.needs_segments

    def config(self) -> dict[str, Any]:
        return {"layers": self.layers, "token_pooling": self.token_pooling.name, **self.token_pooling.config()}

    def suffix_ids(self, tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
        return self.token_pooling.suffix_ids(tokenizer)

    def forward(self, states: TokenStates) -> Tensor:
        available = len(states.layers) - 1
        if self.layers > available:
            raise ValueError(f"multi_layer asks for the top {self.layers} layers but the model has {available}")
        averaged = torch.stack(states.layers[-self.layers :]).mean(dim=0)
        return self.token_pooling(TokenStates(averaged, states.attention_mask, segments=states.segments))


POOLERS: dict[str, type[Pooler]] = {
    cls.name: cls
    for cls in (
        ClsPooler,
        MeanPooler,
        MeanSqrtLenPooler,
        MaxPooler,
        WeightedMeanPooler,
        LastTokenPooler,
        SpanMeanPooler,
        MultiLayerPooler,
    )
}


def build_pooler(name: str, **options: Any) -> Pooler:
    """Build the pooler called ``name`` with its options.

    Raises:
        ValueError: unknown name (the choices are listed) or an option the pooler does not take.
    """
    if name not in POOLERS:
        raise ValueError(f"unknown pooling {name!r}; choose one of: {', '.join(POOLERS)}")
    try:
        return POOLERS[name](**options)
    except TypeError as error:
        raise ValueError(f"bad options for pooling {name!r}: {options} ({error})") from None
