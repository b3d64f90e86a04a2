"""Split documents into chunks of at most N tokens with an overlap, counted with the model's own tokenizer.

N comes from the model (``resolve_chunk_tokens``): at most what its ``text_token_budget`` leaves once its document
prompt and special tokens are added, so a chunk is never truncated by the model and its stored text is exactly
what its vector saw. Chunk boundaries come from the tokenizer's character offsets (``token_offsets``), so a chunk
is an exact slice of the document's text (``text[start:end]``). A text of at most N tokens is one chunk: the whole
text.

Boundaries (``BOUNDARIES``): ``token`` windows start every ``N - overlap`` tokens; ``sentence`` windows end after the
last sentence that ends in their second half (a token ending in ``.``, ``!`` or ``?`` before whitespace, or one
followed by a line break), and the next window starts at the first sentence that begins in the overlap, so chunks
hold whole sentences wherever sentences are shorter than half a chunk. Either way a chunk's own tokenization is
checked against N (a byte-level BPE can split a word cut from its leading space into more tokens) and the chunk
shortened until it fits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpte.models.choices import BOUNDARIES
from gpte.models.protocol import TextModel

DEFAULT_CHUNK_TOKENS = 256  # the chunk size when none is asked for, if the model fits that many
OVERLAP_SHARE = 8  # the overlap when none is asked for: an eighth of the chunk (32 of 256 tokens)
SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")  # a token's text ending a sentence (closing quotes, brackets after)


@dataclass(frozen=True)
class ChunkSpan:
    """Characters ``start:end`` of a document."""

    start: int
    end: int


def check_chunking(max_tokens: int, overlap: int) -> None:
    """ValueError unless ``max_tokens >= 0`` (0: no chunking) and ``0 <= overlap < max_tokens``."""
    if not isinstance(max_tokens, int) or max_tokens < 0:
        raise ValueError(f"chunk size must be a whole number of tokens >= 0 (0: whole documents), got {max_tokens!r}")
    if max_tokens and not (isinstance(overlap, int) and 0 <= overlap < max_tokens):
        raise ValueError(f"chunk overlap must be a whole number in [0, {max_tokens}), got {overlap!r}")


def resolve_chunk_tokens(model: TextModel, chunk_tokens: int | None) -> int:
    """The chunk size for ``model``: ``chunk_tokens`` if it fits, None for ``min(DEFAULT_CHUNK_TOKENS, budget)``,
    0 for whole documents; the budget is ``model.text_token_budget(role="document")``.

    Raises:
        ValueError: ``chunk_tokens`` is not a whole number >= 0, or more than the model's budget (named, with why), or
            a budget of 0 (the document prompt leaves no room for text).
    """
    budget = model.text_token_budget(role="document")
    if budget == 0:  # None's chunk size would be 0, i.e. whole documents, every one truncated
        raise ValueError(
            f"{model.name or 'the model'}'s document prompt and special tokens fill its max_seq_length of "
            f"{model.max_seq_length} tokens: no text fits; shorten the prompt or raise max_seq_length"
        )
    if chunk_tokens is None:
        return DEFAULT_CHUNK_TOKENS if budget is None else min(DEFAULT_CHUNK_TOKENS, budget)
    check_chunking(chunk_tokens, 0)
    if budget is not None and chunk_tokens > budget:
        raise ValueError(
            f"chunks of {chunk_tokens} tokens do not fit {model.name or 'the model'}: its max_seq_length of "
            f"{model.max_seq_length} tokens leaves {budget} for text after its document prompt and special tokens; "
            f"use at most {budget} (or leave the chunk size unset)"
        )
    return chunk_tokens


def resolve_overlap(chunk_tokens: int, overlap: int | None) -> int:
    """``overlap``, or ``chunk_tokens // OVERLAP_SHARE`` when None (checked by ``check_chunking``)."""
    overlap = chunk_tokens // OVERLAP_SHARE if overlap is None else overlap
    check_chunking(chunk_tokens, overlap)
    return overlap


def chunk_spans(text: str, model: TextModel, max_tokens: int, overlap: int, boundary: str = "token") -> list[ChunkSpan]:
    """Character spans of the chunks of ``text``.

    Args:
        text: the document.
        model: the model whose tokens are counted (its ``token_offsets`` and ``count_tokens``).
        max_tokens: text tokens per chunk (prompt and special tokens not counted: see ``resolve_chunk_tokens``);
            0 keeps the whole text as one chunk.
        overlap: tokens shared by consecutive chunks (``token`` windows start every ``max_tokens - overlap`` tokens).
        boundary: ``token`` or ``sentence`` (see the module docstring).

    Returns:
        One span per chunk, in order, each of at most ``max_tokens`` tokens when tokenized on its own;
        ``[ChunkSpan(0, len(text))]`` when the text fits (or is empty).

    Raises:
        ValueError: a bad size, overlap or boundary (the allowed values named).
    """
    check_chunking(max_tokens, overlap)
    if boundary not in BOUNDARIES:
        raise ValueError(f"unknown chunk boundary {boundary!r}; choose one of: {', '.join(BOUNDARIES)}")
    if not max_tokens or not text:
        return [ChunkSpan(0, len(text))]
    offsets = model.token_offsets(text)
    if len(offsets) <= max_tokens:
        return [ChunkSpan(0, len(text))]
    ends = _sentence_ends(text, offsets) if boundary == "sentence" else None
    spans, first = [], 0
    while True:
        stop = _fitting_stop(
            text, model, offsets, first, _window_stop(first, len(offsets), max_tokens, ends), max_tokens
        )
        spans.append(ChunkSpan(offsets[first][0], offsets[stop - 1][1]))
        if stop >= len(offsets):
            return spans
        first = max(_next_first(stop, overlap, ends), first + 1)


def _sentence_ends(text: str, offsets: list[tuple[int, int]]) -> list[bool]:
    """Per token, whether a sentence ends with it: its text ends in ``.!?`` (closing quotes or brackets allowed)
    and whitespace or the end follows, or a line break follows it."""
    ends = []
    for i, (start, end) in enumerate(offsets):
        gap = text[end : offsets[i + 1][0]] if i + 1 < len(offsets) else " "
        punctuated = bool(SENTENCE_END.search(text[start:end])) and (gap[:1].isspace() or not gap)
        ends.append(punctuated or "\n" in gap)
    return ends


def _window_stop(first: int, n: int, max_tokens: int, sentence_ends: list[bool] | None) -> int:
    """The end (exclusive) of the window starting at token ``first`` of ``n``: ``max_tokens`` on, or after the last
    sentence ending in the window's second half."""
    stop = min(first + max_tokens, n)
    if sentence_ends is None or stop == n:
        return stop
    ends = [i + 1 for i in range(first + max_tokens // 2, stop) if sentence_ends[i]]
    return ends[-1] if ends else stop


def _next_first(stop: int, overlap: int, sentence_ends: list[bool] | None) -> int:
    """Where the window after one ending at ``stop`` starts: ``overlap`` tokens back, or at the first sentence that
    begins in those tokens."""
    if sentence_ends is None or not overlap:
        return stop - overlap
    starts = [i + 1 for i in range(max(stop - overlap - 1, 0), stop - 1) if sentence_ends[i]]
    return starts[0] if starts else stop - overlap


def _fitting_stop(
    text: str, model: TextModel, offsets: list[tuple[int, int]], first: int, stop: int, max_tokens: int
) -> int:
    """``stop``, moved back a token at a time while ``text``'s slice from token ``first`` to ``stop`` tokenizes on
    its own into more than ``max_tokens`` tokens."""
    while stop - first > 1 and model.count_tokens([text[offsets[first][0] : offsets[stop - 1][1]]])[0] > max_tokens:
        stop -= 1
    return stop
