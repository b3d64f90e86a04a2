"""Split documents into chunks of at most N tokens with an overlap, counted with the embedder's own
tokenizer, so that every chunk fits the model without truncation.

Chunk boundaries come from the tokenizer's character offsets, so a chunk is an exact slice of the
document's text (``text[start:end]``). A text of at most N tokens is one chunk: the whole text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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


def chunk_spans(text: str, tokenizer: Any, max_tokens: int, overlap: int) -> list[ChunkSpan]:
    """Character spans of the chunks of ``text``.

    Args:
        text: the document.
        tokenizer: a Hugging Face fast tokenizer (it must return offsets).
        max_tokens: tokens per chunk, special tokens not counted; 0 keeps the whole text as one chunk.
        overlap: tokens shared by consecutive chunks (windows start every ``max_tokens - overlap`` tokens).

    Returns:
        One span per chunk, in order; ``[ChunkSpan(0, len(text))]`` when the text fits (or is empty).
    """
    check_chunking(max_tokens, overlap)
    if not max_tokens or not text:
        return [ChunkSpan(0, len(text))]
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
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
