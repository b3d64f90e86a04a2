"""Texts to token ids: prompts applied, truncation counted, prompt/text tokens marked, batches padded.

Token segments (computed only when a pooler needs them) label every token of a formatted text:
``k >= 1`` for a token of the k-th copy of the user's text, ``PROMPT`` for a token of the prompt
template, ``SPECIAL`` for a special token the tokenizer added (CLS, SEP, BOS, EOS), ``PAD`` for padding.
They come from the fast tokenizer's character offsets, so they hold whatever the tokenizer does at the
boundary between prompt and text (a token straddling the boundary counts as text).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from gpte.prompts import FormattedText, PromptTemplate

PAD, SPECIAL, PROMPT = -2, -1, 0
PADDING_SIDES = ("right", "left")


@dataclass
class TokenizedTexts:
    """Token ids of a list of texts (unpadded).

    Attributes:
        input_ids: one list of ids per text, special tokens included, after truncation.
        truncated: per text, whether it was cut to the maximum length.
        segments: per text and token, its segment label (see module docstring), or None when not asked for.
    """

    input_ids: list[list[int]]
    truncated: list[bool]
    segments: list[list[int]] | None = None

    @property
    def n_truncated(self) -> int:
        return sum(self.truncated)


@dataclass
class TokenBatch:
    """A padded batch ready for the backbone; ``segments`` is None unless the pooler asked for them; ``role``: the
    role the texts were tokenized for, where a model encodes roles differently (an asymmetric sparse model)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    segments: torch.Tensor | None = None
    role: str | None = None

    def select(self, rows: torch.Tensor | slice) -> TokenBatch:
        """The batch's ``rows``, with padding columns no selected row uses removed (either padding side)."""
        mask = self.attention_mask[rows]
        used = mask.any(dim=0).nonzero().flatten()
        columns = slice(int(used[0]), int(used[-1]) + 1) if len(used) else slice(0, 1)
        return TokenBatch(
            self.input_ids[rows][:, columns],
            mask[:, columns],
            self.position_ids[rows][:, columns],
            None if self.segments is None else self.segments[rows][:, columns],
            self.role,
        )

    def to(self, device: torch.device | str) -> TokenBatch:
        return TokenBatch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.position_ids.to(device),
            None if self.segments is None else self.segments.to(device),
            self.role,
        )


class TextTokenizer:
    """Tokenizes texts for an embedder.

    Args:
        tokenizer: a Hugging Face *fast* tokenizer (character offsets are needed for prompt spans).
        max_length: maximum number of tokens per text, special tokens and ``suffix_ids`` included.
        lowercase: lowercase prompt and text first (sentence-transformers' ``do_lower_case``).
        padding_side: ``"right"`` or ``"left"``; vectors do not depend on it (positions come from the mask).
        add_special_tokens: add the tokenizer's special tokens (CLS/SEP, BOS); False for models that read the text's
            own tokens only (inference-free sparse queries).
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int,
        lowercase: bool = False,
        padding_side: str = "right",
        add_special_tokens: bool = True,
    ) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(
                f"{type(tokenizer).__name__} is a slow tokenizer; gpte needs a fast (Rust) tokenizer for "
                "character offsets. Save the model with a tokenizer.json, or load it with use_fast=True."
            )
        if padding_side not in PADDING_SIDES:
            raise ValueError(f"unknown padding_side {padding_side!r}; choose one of {', '.join(PADDING_SIDES)}")
        if not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.lowercase = lowercase
        self.padding_side = padding_side
        self.add_special_tokens = add_special_tokens
        self.pad_id = _first_id(tokenizer, ("pad_token_id", "eos_token_id", "unk_token_id"), default=0)
        self.empty_fallback_id = _first_id(
            tokenizer, ("bos_token_id", "eos_token_id", "cls_token_id", "pad_token_id", "unk_token_id"), default=0
        )

    def tokenize(
        self,
        texts: list[str],
        prompt: PromptTemplate | None = None,
        suffix_ids: tuple[int, ...] = (),
        with_segments: bool = False,
    ) -> TokenizedTexts:
        """Tokenize ``texts`` placed in ``prompt``, append ``suffix_ids`` (e.g. EOS), truncate to max_length.

        A text that yields no token at all (an empty string with a tokenizer that adds no special
        tokens) gets one token, the BOS (else EOS, CLS, PAD, UNK) token, so that every text has a vector.
        """
        template = prompt or PromptTemplate.parse("")
        formatted = [template.format(text, self.lowercase) for text in texts]
        budget = self.max_length - len(suffix_ids)
        if budget < 1:
            raise ValueError(f"max_length {self.max_length} leaves no room for the {len(suffix_ids)} suffix tokens")
        encoded = self.tokenizer(
            [f.text for f in formatted],
            truncation=True,
            max_length=budget,
            add_special_tokens=self.add_special_tokens,
            return_overflowing_tokens=True,
            return_offsets_mapping=with_segments,
            return_special_tokens_mask=with_segments,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        first_rows, truncated = _first_row_per_text(encoded["overflow_to_sample_mapping"], len(texts))
        input_ids, segments = [], [] if with_segments else None
        for text_index, row in enumerate(first_rows):
            ids = list(encoded["input_ids"][row])
            labels = segment_labels(encoded, row, formatted[text_index]) if with_segments else None
            if suffix_ids and (not ids or ids[-1] != suffix_ids[-1]):
                ids += suffix_ids
                labels = labels + [SPECIAL] * len(suffix_ids) if labels is not None else None
            if not ids:
                ids, labels = [self.empty_fallback_id], [SPECIAL] if labels is not None else None
            input_ids.append(ids)
            if segments is not None:
                segments.append(labels)
        return TokenizedTexts(input_ids, truncated, segments)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text on its own (lowercased if the model lowercases), without special tokens."""
        texts = [text.lower() for text in texts] if self.lowercase else list(texts)
        if not texts:  # the fast tokenizer fails on an empty batch
            return []
        encoded = self.tokenizer(texts, add_special_tokens=False, return_attention_mask=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character ``(start, end)`` of each token of ``text`` on its own, without special tokens."""
        encoded = self.tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False, verbose=False
        )
        return [tuple(pair) for pair in encoded["offset_mapping"]]

    def text_budget(self, prompt: PromptTemplate | None = None, suffix_ids: tuple[int, ...] = ()) -> int:
        """The most text tokens that fit in ``max_length`` once ``prompt``, the special tokens and ``suffix_ids``
        are added: ``(max_length - tokens of the prompt with an empty text) // copies of the text in the prompt``.

        The prompt's tokens are counted with the text left empty; a text joined to the prompt by the tokenizer
        (a BPE merge across the boundary) can shift that by a token, so callers that must never truncate check
        the encode report as well.
        """
        formatted = (prompt or PromptTemplate.parse("")).format("", self.lowercase)
        encoded = self.tokenizer(
            formatted.text, add_special_tokens=self.add_special_tokens, return_attention_mask=False
        )
        overhead = len(encoded["input_ids"]) + len(suffix_ids)
        return max(0, (self.max_length - overhead) // max(1, len(formatted.text_spans)))

    def pad(self, tokenized: TokenizedTexts, rows: np.ndarray | list[int]) -> TokenBatch:
        """Pad the texts at ``rows`` to their longest length; positions count real tokens only."""
        sequences = [tokenized.input_ids[i] for i in rows]
        width = max(len(ids) for ids in sequences)
        input_ids = np.full((len(sequences), width), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(sequences), width), dtype=np.int64)
        segments = np.full((len(sequences), width), PAD, dtype=np.int64) if tokenized.segments is not None else None
        for r, (i, ids) in enumerate(zip(rows, sequences)):
            cols = slice(0, len(ids)) if self.padding_side == "right" else slice(width - len(ids), width)
            input_ids[r, cols] = ids
            attention_mask[r, cols] = 1
            if segments is not None:
                segments[r, cols] = tokenized.segments[i]
        mask = torch.from_numpy(attention_mask)
        position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
        return TokenBatch(
            torch.from_numpy(input_ids), mask, position_ids, None if segments is None else torch.from_numpy(segments)
        )


def _first_id(tokenizer: PreTrainedTokenizerBase, attributes: tuple[str, ...], default: int) -> int:
    for attribute in attributes:
        value = getattr(tokenizer, attribute, None)
        if value is not None:
            return int(value)
    return default


def _first_row_per_text(sample_mapping: list[int], n_texts: int) -> tuple[list[int], list[bool]]:
    """From the fast tokenizer's overflow mapping, the first row of each text and whether it overflowed."""
    first_rows, counts = [-1] * n_texts, [0] * n_texts
    for row, text_index in enumerate(sample_mapping):
        if counts[text_index] == 0:
            first_rows[text_index] = row
        counts[text_index] += 1
    return first_rows, [count > 1 for count in counts]


def segment_labels(encoded, row: int, formatted: FormattedText) -> list[int]:
    """Label each token of one row: text copy number (1-based), PROMPT or SPECIAL."""
    labels = []
    for (start, end), special in zip(encoded["offset_mapping"][row], encoded["special_tokens_mask"][row]):
        if special:
            labels.append(SPECIAL)
            continue
        copy = next((k for k, (s, e) in enumerate(formatted.text_spans, 1) if start < e and end > s), PROMPT)
        labels.append(copy)
    return labels


def tokenizer_limit(tokenizer: Any, model: Any) -> int:
    """sentence-transformers' rule: the tokenizer's ``model_max_length`` capped by ``max_position_embeddings``."""
    limits = [getattr(tokenizer, "model_max_length", None), getattr(model.config, "max_position_embeddings", None)]
    usable = [limit for limit in limits if isinstance(limit, int) and 0 < limit < 1_000_000]
    return min(usable) if usable else 512
