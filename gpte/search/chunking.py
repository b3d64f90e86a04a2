"""Split documents into chunks of at most N tokens with an overlap, counted with the model's own tokenizer.

N comes from the model (``resolve_chunk_tokens``): at most what its ``text_token_budget`` leaves once its document
prompt and special tokens are added, so a chunk is never truncated by the model and its stored text is exactly
what its vector saw. Chunk boundaries come from the tokenizer's character offsets (``token_offsets``), so a chunk
is an exact slice of the document's text (``text[start:end]``). A text of at most N tokens is one chunk: the whole
text.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpte.models.protocol import TextModel

DEFAULT_CHUNK_TOKENS = 256  # the chunk size when none is asked for, if the model fits that many
OVERLAP_SHARE = 8  # the overlap when none is asked for: an eighth of the chunk (32 of 256 tokens)


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


def chunk_spans(text: str, model: TextModel, max_tokens: int, overlap: int) -> list[ChunkSpan]:
    """Character spans of the chunks of ``text``.

    Args:
        text: the document.
        model: the model whose tokens are counted (its ``token_offsets``).
        max_tokens: text tokens per chunk (prompt and special tokens not counted: see ``resolve_chunk_tokens``);
            0 keeps the whole text as one chunk.
        overlap: tokens shared by consecutive chunks (windows start every ``max_tokens - overlap`` tokens).

    Returns:
        One span per chunk, in order; ``[ChunkSpan(0, len(text))]`` when the text fits (or is empty).
    """
    check_chunking(max_tokens, overlap)
    if not max_tokens or not text:
        return [ChunkSpan(0, len(text))]
    offsets = model.token_offsets(text)
    if len(offsets) <= max_tokens:
        return [ChunkSpan(0, len(text))]
    spans = []
    step = max_tokens - overlap
    for first in range(0, len(offsets), step):
        window = offsets[first : first + max_tokens]
        spans.append(ChunkSpan(window[0][0], window[-1][1]))
        if first + max_tokens >= len(offsets):
            break
    return spans
