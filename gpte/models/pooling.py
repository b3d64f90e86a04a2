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
    latent_attention  trainable: token states attend to a latent array, an MLP follows, then the mean
                   (NV-Embed, Lee et al. 2024, arXiv:2405.17428)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from gpte.models.tokenization import PROMPT, SPECIAL
from gpte.prompts import TEXT_SLOT, PromptTemplate


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
    reduces_span: ClassVar[bool] = True  # pools any set of tokens (late chunking); False: reads one fixed token
    needs_layers: ClassVar[bool] = False
    needs_dimension: ClassVar[bool] = False  # takes ``dimension``; the Embedder fills in its backbone's

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

    def check_prompt(self, template: PromptTemplate | None) -> None:
        """Raise ValueError if this pooler cannot pool texts placed in ``template`` (default: any prompt works)."""

    def check_segments(self, segments: list[list[int]], template: PromptTemplate | None, texts: list[str]) -> None:
        """Raise ValueError if a tokenized text lacks the tokens this pooler reads (default: nothing to check)."""

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

    def pool_within(self, states: TokenStates, within: Tensor) -> Tensor:
        """Pool only the tokens where ``within`` (batch, length) is 1, as if the others were padding: the vector of
        a span of a longer text (late chunking). ``within`` all ones gives ``forward``'s vectors; positions
        (weighted_mean) count from the span's first token."""
        within = within.to(states.attention_mask.dtype)
        restricted = TokenStates(states.hidden, states.attention_mask * within, states.layers, states.segments)
        return self.reduce(states.hidden, self.selection(restricted) * within.to(states.hidden.dtype), restricted)

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
    reduces_span = False

    def reduce(self, hidden: Tensor, mask: Tensor, states: TokenStates) -> Tensor:
        return _gather_position(hidden, mask, mask.argmax(dim=1))


class LastTokenPooler(Pooler):
    """The last selected token; ``append_eos=True`` appends the tokenizer's EOS token to every text."""

    name = "last"
    reduces_span = False

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

    def _wanted_copy(self, template: PromptTemplate | None) -> int:
        """The 1-based copy pooled for ``template``; ValueError (template shown) if it has too few copies."""
        shown = template.template if template is not None else TEXT_SLOT
        copies = shown.count(TEXT_SLOT)
        if abs(self.copy) > copies:
            raise ValueError(
                f"span_mean pooling reads copy {self.copy} of the text, but the prompt {shown!r} holds {copies}; "
                f"use a template that repeats {TEXT_SLOT}, e.g. 'Rewrite the sentence: {TEXT_SLOT}, rewritten sentence: {TEXT_SLOT}'"
            )
        return self.copy if self.copy > 0 else copies + 1 + self.copy

    def check_prompt(self, template: PromptTemplate | None) -> None:
        self._wanted_copy(template)

    def check_segments(self, segments: list[list[int]], template: PromptTemplate | None, texts: list[str]) -> None:
        wanted = self._wanted_copy(template)
        for labels, text in zip(segments, texts):
            if text and wanted not in labels:  # an empty text has an empty span: zero vector, as for every pooler
                shown = template.template if template is not None else TEXT_SLOT
                raise ValueError(
                    f"span_mean pooling: copy {wanted} of the text {text if len(text) <= 60 else text[:57] + '...'!r} in prompt {shown!r} has no tokens "
                    "(the copy was cut off at max_seq_length, or the tokenizer drops the text)"
                )

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

    @property
    def reduces_span(self) -> bool:  # type: ignore[override]
        return self.token_pooling.reduces_span

    def config(self) -> dict[str, Any]:
        return {"layers": self.layers, "token_pooling": self.token_pooling.name, **self.token_pooling.config()}

    def suffix_ids(self, tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
        return self.token_pooling.suffix_ids(tokenizer)

    def check_prompt(self, template: PromptTemplate | None) -> None:
        self.token_pooling.check_prompt(template)

    def check_segments(self, segments: list[list[int]], template: PromptTemplate | None, texts: list[str]) -> None:
        self.token_pooling.check_segments(segments, template, texts)

    def forward(self, states: TokenStates) -> Tensor:
        return self.token_pooling(self._averaged(states))

    def pool_within(self, states: TokenStates, within: Tensor) -> Tensor:
        return self.token_pooling.pool_within(self._averaged(states), within)

    def _averaged(self, states: TokenStates) -> TokenStates:
        """The states with the mean of the top ``layers`` layers as hidden states."""
        available = len(states.layers) - 1
        if self.layers > available:
            raise ValueError(f"multi_layer asks for the top {self.layers} layers but the model has {available}")
        averaged = torch.stack(states.layers[-self.layers :]).mean(dim=0)
        return TokenStates(averaged, states.attention_mask, segments=states.segments)


class LatentAttentionPooler(Pooler):
    """NV-Embed's latent-attention pooling, a trainable pooler (Lee et al. 2024, arXiv:2405.17428).

    The token states H (queries) attend to a trainable latent array L (r x d; keys = values), then an MLP
    (two linear layers, GELU) follows, each with a residual connection, and the selected tokens are averaged:

        O = H + MultiHead(Q = H, K = L, V = L)      Y = O + MLP(O)      vector = sum_i m_i Y_i / sum_i m_i

    The attention and MLP output layers start at zero, so an untrained pooler is exactly mean pooling and
    training moves away from it. Its weights are saved with the model (``gpte_pooler.safetensors``).

    Args:
        dimension: token state size d (the Embedder fills in its backbone's when left out).
        latents: r, rows of the latent array (NV-Embed: 512).
        heads: attention heads (NV-Embed: 8); must divide ``dimension``.
        include_prompt: as for every pooler (instruction tokens are attended to but not averaged when False).
    """

    name = "latent_attention"
    needs_dimension = True

    def __init__(self, dimension: int, latents: int = 512, heads: int = 8, include_prompt: bool = True) -> None:
        super().__init__(include_prompt)
        for label, value in (("dimension", dimension), ("latents", latents), ("heads", heads)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"latent_attention {label} must be a positive integer, got {value!r}")
        if dimension % heads:
            raise ValueError(f"latent_attention heads ({heads}) must divide the dimension ({dimension})")
        self.dimension, self.n_latents, self.heads = dimension, latents, heads
        self.latents = nn.Parameter(torch.randn(latents, dimension) * dimension**-0.5)
        self.attention = nn.MultiheadAttention(dimension, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dimension, dimension), nn.GELU(), nn.Linear(dimension, dimension))
        for layer in (self.attention.out_proj, self.mlp[2]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "dimension": self.dimension, "latents": self.n_latents, "heads": self.heads}

    def reduce(self, hidden: Tensor, mask: Tensor, states: TokenStates) -> Tensor:
        hidden = hidden.to(self.latents.dtype)
        latents = self.latents.unsqueeze(0).expand(hidden.size(0), -1, -1)
        attended = hidden + self.attention(hidden, latents, latents, need_weights=False)[0]
        return masked_mean(attended + self.mlp(attended), mask.to(hidden.dtype))


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
        LatentAttentionPooler,
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
