"""Late chunking (Günther et al. 2024, "Late Chunking: Contextual Chunk Embeddings Using Long-Context Embedding
Models", arXiv:2409.04669): run the transformer over the whole document, then pool the token states of each chunk's
span, so every chunk vector carries the context of the document around it.

    vectors = encode_late_chunks(model, [document], [chunk_spans(document, model, 256, 32)])
    vectors[0].shape    # (chunks, dimension)

A document is tokenized in its prompt without truncation. Up to ``max_seq_length`` tokens it runs in one pass;
beyond, in windows of ``max_seq_length`` tokens (the leading and trailing special tokens repeated in each) that
overlap by ``window_overlap`` tokens, each token's state taken from the window where it has at least half the overlap
as left context (the first window for the document's start). A chunk pools the text tokens inside its character
span; tokens outside the text (special tokens, the prompt) go with the chunk of the text token before them (the first
chunk for those before any text), so a document of one chunk gets exactly the vector ``encode`` gives it. The
model's pooler reduces each chunk's tokens (``Pooler.pool_within``): every pooler that reduces a span (mean,
mean_sqrt_len, max, weighted_mean with positions counted from the chunk's first token, span_mean, multi_layer,
latent_attention); cls and last read one fixed token and are refused. Dense layers and normalization follow as in
``encode``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional
from tqdm.auto import tqdm

from gpte.models.batching import length_sorted_batches
from gpte.models.chunking import ChunkSpan
from gpte.models.embedder import Embedder
from gpte.models.pooling import TokenStates
from gpte.models.postprocess import truncate_and_normalize
from gpte.models.tokenization import PAD, SPECIAL, TokenizedTexts, segment_labels
from gpte.prompts import Prompt, PromptSet, PromptTemplate

POOL_BUDGET = 1 << 24  # state values (chunks x tokens x dimension) pooled at a time


@dataclass
class _Document:
    """One document tokenized in its prompt: ids, segment labels, and per token the first and last chunk it belongs
    to (``first > last``: none); chunk c pools the tokens with ``first <= c <= last``."""

    input_ids: list[int]
    segments: list[int]
    first: np.ndarray
    last: np.ndarray
    n_chunks: int

    def members(self, chunk: int) -> np.ndarray:
        """(L,) bool: the tokens chunk ``chunk`` pools."""
        return (self.first <= chunk) & (self.last >= chunk)


def encode_late_chunks(
    model: Embedder,
    texts: Sequence[str],
    spans: Sequence[Sequence[ChunkSpan]],
    role: str | None = None,
    prompt: str | Prompt | None = None,
    batch_size: int = 8,
    normalize: bool | None = None,
    window_overlap: int | None = None,
    show_progress: bool | None = None,
    task: str | None = None,
) -> list[np.ndarray]:
    """The late-chunked vectors of each document's chunks.

    Args:
        model: a dense ``Embedder`` whose pooler reduces a span.
        texts: the documents.
        spans: per document, its chunks' character spans (``gpte.models.chunking.chunk_spans``), at least one each.
        role, prompt: the prompt the documents are placed in, as for ``Embedder.encode`` (one template, not a set).
        batch_size: documents (or windows of one long document) per forward pass.
        normalize: L2-normalize; None uses the model's default.
        window_overlap: tokens shared by consecutive windows of a document longer than ``max_seq_length``; None: a
            quarter of a window.
        show_progress: a progress bar over documents; None shows it from 64 documents on.
        task: fills the prompt's ``{task}`` slot, as for ``Embedder.encode``.

    Returns:
        One float32 array (chunks, dimension) per document, in order.

    Raises:
        ValueError: a pooler that reads one fixed token (cls, last), a prompt set, a document without chunks or with
            a number of span lists other than the texts', a bad window_overlap.
    """
    template = _template(model, prompt, role, task)
    if len(spans) != len(texts):
        raise ValueError(f"{len(spans)} lists of chunk spans for {len(texts)} documents")
    documents = [_tokenized(model, text, list(chunks), template) for text, chunks in zip(texts, spans)]
    use_normalize = model.normalize if normalize is None else bool(normalize)
    show = len(texts) >= 64 if show_progress is None else show_progress
    vectors: list[np.ndarray] = [np.empty(0)] * len(documents)
    lengths = [len(doc.input_ids) for doc in documents]
    short = [i for i, n in enumerate(lengths) if n <= model.max_seq_length]
    with torch.inference_mode(), tqdm(total=len(texts), unit="doc", disable=not show, desc="late chunking") as bar:
        for rows in length_sorted_batches([lengths[i] for i in short], batch_size):
            picked = [short[r] for r in rows]
            batch = [documents[i] for i in picked]
            for i, states in zip(
                picked, _batch_states(model, [d.input_ids for d in batch], [d.segments for d in batch])
            ):
                vectors[i] = _chunk_vectors(model, states, documents[i], use_normalize)
            bar.update(len(picked))
        for i in sorted(set(range(len(documents))) - set(short)):
            states = _windowed_states(model, documents[i], window_overlap, batch_size)
            vectors[i] = _chunk_vectors(model, states, documents[i], use_normalize)
            bar.update(1)
    return vectors


def _template(
    model: Embedder, prompt: str | Prompt | None, role: str | None, task: str | None
) -> PromptTemplate | None:
    """The one template documents are placed in; ValueError for a prompt set or a pooler that reads one token."""
    if not model.pooler.reduces_span:
        raise ValueError(
            f"late chunking pools each chunk's tokens, but {model.pooler.name} pooling reads one fixed token; use a "
            "pooling that reduces a span: mean, mean_sqrt_len, max, weighted_mean, span_mean (Embedder.load(..., "
            "pooling='mean'))"
        )
    template = model.resolve_prompt(prompt, role, task)
    if isinstance(template, PromptSet):
        raise ValueError("late chunking takes one prompt template, not a prompt set (its vectors are averaged)")
    model.pooler.check_prompt(template)
    return template


def _tokenized(model: Embedder, text: str, spans: list[ChunkSpan], template: PromptTemplate | None) -> _Document:
    """``text`` in ``template``, tokenized whole (no truncation), with each chunk's member tokens."""
    if not spans:
        raise ValueError(f"a document has no chunk spans: {text[:60]!r}")
    formatted = (template or PromptTemplate.parse("")).format(text, model.tokenizer.lowercase)
    encoded = model.backbone.tokenizer(
        [formatted.text],
        add_special_tokens=model.tokenizer.add_special_tokens,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,
    )
    ids, labels = list(encoded["input_ids"][0]), segment_labels(encoded, 0, formatted)
    offsets = np.asarray(encoded["offset_mapping"][0], dtype=np.int64).reshape(-1, 2)
    suffix = model.pooler.suffix_ids(model.backbone.tokenizer)
    if suffix and (not ids or ids[-1] != suffix[-1]):
        ids, labels = ids + list(suffix), labels + [SPECIAL] * len(suffix)
        offsets = np.concatenate([offsets, np.zeros((len(suffix), 2), dtype=np.int64)])
    if not ids:
        ids, labels = [model.tokenizer.empty_fallback_id], [SPECIAL]
        offsets = np.zeros((1, 2), dtype=np.int64)
    copy_starts = np.asarray([0] + [start for start, _ in formatted.text_spans], dtype=np.int64)
    return _Document(ids, labels, *_chunk_ranges(np.asarray(labels), offsets, copy_starts, spans), len(spans))


def _chunk_ranges(
    labels: np.ndarray, offsets: np.ndarray, copy_starts: np.ndarray, spans: list[ChunkSpan]
) -> tuple[np.ndarray, np.ndarray]:
    """Per token, the first and last chunk it belongs to: a text token, the chunks whose span its characters overlap
    (in its copy of the text; spans are in order, so they are consecutive); any other token, those of the text token
    before it, or the first chunk if none is before it. O(tokens) memory, whatever the number of chunks."""
    is_text = labels >= 1
    relative = offsets - copy_starts[np.where(is_text, labels, 0)][:, None]
    starts = np.asarray([s.start for s in spans])
    ends = np.asarray([s.end for s in spans])
    first = np.searchsorted(ends, relative[:, 0], side="right")  # the first chunk ending after the token starts
    last = np.searchsorted(starts, relative[:, 1], side="left") - 1  # the last chunk starting before it ends
    previous_text = np.maximum.accumulate(np.where(is_text, np.arange(len(labels)), -1))
    anchor = np.maximum(previous_text, 0)
    leading = previous_text < 0
    first, last = np.where(leading, 0, first[anchor]), np.where(leading, 0, last[anchor])
    return first.astype(np.int64), last.astype(np.int64)


def _batch_states(model: Embedder, input_ids: list[list[int]], segments: list[list[int]]) -> list[TokenStates]:
    """Each id sequence's token states (1, L, d), padding removed, from one padded pass over all of them."""
    states = _states(model, input_ids, segments)
    rows = []
    for row in range(len(input_ids)):
        real = states.attention_mask[row].bool()
        rows.append(
            TokenStates(
                states.hidden[row, real][None],
                states.attention_mask[row, real][None],
                None if states.layers is None else tuple(layer[row, real][None] for layer in states.layers),
                states.segments[row, real][None],
            )
        )
    return rows


def _states(model: Embedder, input_ids: list[list[int]], segments: list[list[int]]) -> TokenStates:
    """The token states of id sequences of at most ``max_seq_length`` tokens, padded to the longest."""
    tokenized = TokenizedTexts(input_ids, [False] * len(input_ids), segments)
    batch = model.tokenizer.pad(tokenized, list(range(len(input_ids)))).to(model.device)
    hidden, layers = (model._runner or model.backbone)(batch, all_layers=model.pooler.needs_layers)
    return TokenStates(hidden.float(), batch.attention_mask, None if layers is None else tuple(layers), batch.segments)


def _windowed_states(model: Embedder, doc: _Document, window_overlap: int | None, batch_size: int) -> TokenStates:
    """The token states (1, L, d) of a document longer than ``max_seq_length``, pieced together from overlapping
    windows (see the module docstring)."""
    labels = np.asarray(doc.segments)
    lead = int(np.argmax(labels != SPECIAL)) if (labels != SPECIAL).any() else 0
    trail = int(np.argmax(labels[::-1] != SPECIAL)) if (labels != SPECIAL).any() else 0
    body = len(labels) - lead - trail
    capacity = model.max_seq_length - lead - trail
    overlap = capacity // 4 if window_overlap is None else window_overlap
    if not (isinstance(overlap, int) and 0 <= overlap < capacity):
        raise ValueError(f"window_overlap must be a whole number in [0, {capacity}), got {window_overlap!r}")
    stride = capacity - overlap
    starts = list(range(0, max(body - overlap, 1), stride))
    ids, tags = doc.input_ids, doc.segments
    pieces = [ids[:lead] + ids[lead : -trail or None][s : s + capacity] + ids[len(ids) - trail :] for s in starts]
    segments = [tags[:lead] + tags[lead : -trail or None][s : s + capacity] + tags[len(tags) - trail :] for s in starts]
    windows = [
        window
        for i in range(0, len(pieces), batch_size)
        for window in _batch_states(model, pieces[i : i + batch_size], segments[i : i + batch_size])
    ]
    width = model.max_seq_length  # the last window may be shorter: bring them to one width

    def joined(parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([functional.pad(part, (0, 0, 0, width - part.size(1))) for part in parts])

    hidden = joined([w.hidden for w in windows])
    layers = None if windows[0].layers is None else [joined(list(parts)) for parts in zip(*(w.layers for w in windows))]
    body_window = np.clip((np.arange(body) - overlap // 2) // stride, 0, len(starts) - 1)
    window = np.concatenate([np.zeros(lead, np.int64), body_window, np.full(trail, len(starts) - 1)])
    column = np.concatenate(
        [
            np.arange(lead),
            lead + np.arange(body) - np.asarray(starts)[body_window],
            lead + np.minimum(capacity, body - starts[-1]) + np.arange(trail),
        ]
    )
    take = (torch.from_numpy(window), torch.from_numpy(column))
    return TokenStates(
        hidden[take][None],
        torch.ones((1, len(labels)), dtype=torch.long),
        None if layers is None else tuple(layer[take][None] for layer in layers),
        torch.tensor(doc.segments)[None],
    )


def _chunk_vectors(model: Embedder, states: TokenStates, doc: _Document, normalize: bool) -> np.ndarray:
    """Pool each chunk's member tokens of one document's states, then project and normalize: (chunks, dimension).
    Chunks are pooled a group at a time, each as the slice of tokens from its first to its last member."""
    pieces = [_ChunkSlice.of(doc, chunk) for chunk in range(doc.n_chunks)]
    pooled, group, widest = [], [], 0
    for piece in pieces:
        group.append(piece)
        widest = max(widest, piece.width)
        if len(group) * widest * states.hidden.size(-1) >= POOL_BUDGET or piece is pieces[-1]:
            pooled.append(_pool_group(model, states, group))
            group, widest = [], 0
    vectors = model._project(torch.cat(pooled).to(model.device))
    return truncate_and_normalize(vectors.float().cpu(), None, normalize).numpy()


@dataclass
class _ChunkSlice:
    """Tokens ``start:stop`` of a document, the slice holding one chunk's members, and which of them it pools."""

    start: int
    stop: int
    within: torch.Tensor

    @property
    def width(self) -> int:
        return self.stop - self.start

    @classmethod
    def of(cls, doc: _Document, chunk: int) -> _ChunkSlice:
        members = doc.members(chunk)
        found = np.flatnonzero(members)
        start, stop = (int(found[0]), int(found[-1]) + 1) if len(found) else (0, 1)
        return cls(start, stop, torch.from_numpy(members[start:stop]))


def _pool_group(model: Embedder, states: TokenStates, group: list[_ChunkSlice]) -> torch.Tensor:
    """The pooled vectors of the chunks in ``group``: each chunk's slice cut from the states, padded to the widest."""
    width = max(piece.width for piece in group)

    def padded(values: torch.Tensor, fill: float) -> torch.Tensor:
        rows = []
        for piece in group:
            part = values[0, piece.start : piece.stop]
            rows.append(functional.pad(part, (0, 0) * (part.dim() - 1) + (0, width - piece.width), value=fill))
        return torch.stack(rows)

    cut = TokenStates(
        padded(states.hidden, 0.0),
        padded(states.attention_mask, 0),
        None if states.layers is None else tuple(padded(layer, 0.0) for layer in states.layers),
        padded(states.segments, PAD),
    )
    within = torch.stack([functional.pad(piece.within, (0, width - piece.width)) for piece in group])
    return model.pooler.pool_within(cut, within.to(cut.attention_mask.device))
