"""Long documents as chunk vectors: a dense model seen as a multi-vector model whose "tokens" are chunks.

``ChunkedEncoder`` splits each document into chunks (``gpte.models.chunking``) and gives it one vector per chunk:

- ``plain``: each chunk encoded on its own (the chunk's text, or ``context + "\\n" + text`` with a context prefix);
- ``late``: late chunking (``gpte.models.late_chunking``): the whole document encoded, each chunk's span pooled;
- ``context`` (contextual chunk embeddings, the simple form): each chunk prefixed with a line about its document
  (its title, or a one-line summary an LLM wrote: ``gpte.datagen.summaries``), given as a mapping from the document's
  text to that line; chunks shrink by the line's tokens so that nothing is truncated.

Queries (role ``query``) are not chunked: one vector each. A document's score against a query is the best (``max``)
or the mean (``mean``) of the query's similarities to the document's chunks, under the model's own similarity
(``similarity``: for two chunked texts, over all their chunk pairs). As an ``output_kind`` ``"multivector"`` model it
runs through evaluation like ColBERT (``gpte.evaluate.multivector``: Retrieval, Reranking, STS, ...).

    chunked = ChunkedEncoder(load_model(), chunk_tokens=128, late=True)
    docs = chunked.encode(long_documents, role="document")    # TokenVectors: one row per chunk
    scores = chunked.similarity(chunked.encode(queries, role="query"), docs)   # (queries, documents)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpte.models.choices import AGGREGATES, BOUNDARIES, DEFAULT_AGGREGATE, DEFAULT_BOUNDARY
from gpte.models.chunking import ChunkSpan, chunk_spans, resolve_chunk_tokens, resolve_overlap
from gpte.models.embedder import Embedder
from gpte.models.late_chunking import encode_late_chunks
from gpte.models.multivector.vectors import TokenVectors
from gpte.models.postprocess import check_texts
from gpte.models.protocol import EncodeReport, EncodeResult
from gpte.similarity import similarity

CONTEXT_SEPARATOR = "\n"
MIN_CHUNK_TOKENS = 16  # the fewest text tokens a context prefix may leave a chunk


@dataclass
class ChunkedVectors:
    """Chunk vectors of many documents, in document order.

    Attributes:
        vectors: (chunks, dimension) float32.
        document: (chunks,) int64, the index of each chunk's document.
        spans: (chunks, 2) int64, each chunk's characters ``start:end`` in its document.
    """

    vectors: np.ndarray
    document: np.ndarray
    spans: np.ndarray

    def token_vectors(self, n_documents: int) -> TokenVectors:
        """The vectors grouped by document (document i: its chunks' rows)."""
        counts = np.bincount(self.document, minlength=n_documents)
        return TokenVectors(self.vectors, np.concatenate([[0], np.cumsum(counts)]))


class ChunkedEncoder:
    """A dense ``Embedder`` giving one vector per chunk of each document (see the module docstring).

    Args:
        model: the dense model.
        chunk_tokens: text tokens per chunk (None: the model's default size, ``resolve_chunk_tokens``).
        overlap: tokens shared by consecutive chunks (None: an eighth of the chunk).
        boundary: ``token`` or ``sentence`` chunk boundaries (``gpte.models.chunking``).
        late: late chunking instead of encoding each chunk on its own.
        aggregate: ``max`` or ``mean``, how a document's chunk scores make its score.
        context: document text -> a line prefixed to each of its chunks (contextual chunks); not with ``late``.
        window_overlap: for late chunking, tokens shared by the windows of a document longer than the model.

    Raises:
        ValueError: a bad size, overlap, boundary or aggregate (the allowed values named), context with late chunking,
            or a pooling late chunking cannot use.
    """

    output_kind = "multivector"

    def __init__(
        self,
        model: Embedder,
        chunk_tokens: int | None = None,
        overlap: int | None = None,
        boundary: str = DEFAULT_BOUNDARY,
        late: bool = False,
        aggregate: str = DEFAULT_AGGREGATE,
        context: Mapping[str, str] | None = None,
        window_overlap: int | None = None,
    ) -> None:
        if not isinstance(model, Embedder):
            raise TypeError(
                f"ChunkedEncoder takes a transformer Embedder (it reads token offsets and, for late chunking, token "
                f"states), got {type(model).__name__}"
            )
        if window_overlap is not None and not (
            isinstance(window_overlap, int) and 0 <= window_overlap < model.max_seq_length
        ):
            raise ValueError(
                f"window_overlap must be a whole number in [0, {model.max_seq_length}), got {window_overlap!r}"
            )
        if boundary not in BOUNDARIES:
            raise ValueError(f"unknown chunk boundary {boundary!r}; choose one of: {', '.join(BOUNDARIES)}")
        if aggregate not in AGGREGATES:
            raise ValueError(f"unknown chunk aggregate {aggregate!r}; choose one of: {', '.join(AGGREGATES)}")
        if late and context is not None:
            raise ValueError("late chunking and a context prefix are two ways to give chunks context; choose one")
        if late and not model.pooler.reduces_span:
            raise ValueError(
                f"late chunking pools each chunk's tokens, but {model.pooler.name} pooling reads one fixed token; "
                "use a pooling that reduces a span (mean, weighted_mean, span_mean, ...)"
            )
        self.model = model
        self.chunk_tokens = resolve_chunk_tokens(model, chunk_tokens)
        self.overlap = resolve_overlap(self.chunk_tokens, overlap)
        self.boundary, self.late, self.aggregate = boundary, bool(late), aggregate
        self.context = dict(context) if context is not None else None
        self.window_overlap = window_overlap
        way = "late" if late else "context" if context else "plain"
        window = f"-w{window_overlap}" if window_overlap is not None else ""
        self.name = f"{model.name}+{way}-chunks-{self.chunk_tokens}t-{self.overlap}o-{boundary}-{aggregate}{window}"
        self.similarity_name = f"chunk_{aggregate}"

    # ----------------------------------------------------------------- the model contract

    @property
    def dimension(self) -> int:
        return self.model.dimension

    @property
    def max_seq_length(self) -> int:
        return self.model.max_seq_length

    @property
    def prompts(self) -> Any:
        return self.model.prompts

    @property
    def fingerprint(self) -> str:
        """sha256 of the model's fingerprint and the chunking settings (the context lines included)."""
        settings = json.dumps(self.settings(), sort_keys=True)
        context = json.dumps(sorted(self.context.items())) if self.context is not None else ""
        return hashlib.sha256(f"{self.model.fingerprint}\n{settings}\n{context}".encode()).hexdigest()

    def settings(self) -> dict[str, Any]:
        """The chunking settings (JSON-able)."""
        return {
            "chunk_tokens": self.chunk_tokens,
            "overlap": self.overlap,
            "boundary": self.boundary,
            "late": self.late,
            "aggregate": self.aggregate,
            "context": self.context is not None,
            "window_overlap": self.window_overlap,
        }

    def info(self) -> dict[str, Any]:
        return {**self.model.info(), "name": self.name, "chunking": self.settings()}

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.model.count_tokens(texts)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return self.model.token_offsets(text)

    def text_token_budget(self, role: str | None = None, prompt: Any = None, task: str | None = None) -> int:
        return self.model.text_token_budget(role, prompt, task)

    # ----------------------------------------------------------------- encoding

    def encode(
        self,
        texts: str | Sequence[str],
        role: str | None = None,
        prompt: Any = None,
        batch_size: int = 32,
        show_progress: bool | None = None,
        task: str | None = None,
    ) -> TokenVectors:
        """``TokenVectors``: a query's one vector (role ``query``), else one vector per chunk of each text."""
        return self.encode_with_report(texts, role, prompt, batch_size, show_progress, task).vectors

    def encode_with_report(
        self,
        texts: str | Sequence[str],
        role: str | None = None,
        prompt: Any = None,
        batch_size: int = 32,
        show_progress: bool | None = None,
        task: str | None = None,
    ) -> EncodeResult:
        """``encode``'s vectors and an ``EncodeReport`` (chunks truncated by the model, which chunking prevents)."""
        text_list, _ = check_texts(texts)
        if role == "query":
            result = self.model.encode_with_report(
                text_list, role, prompt, batch_size, show_progress=show_progress, task=task
            )
            vectors = TokenVectors(result.vectors, np.arange(len(text_list) + 1))
            return EncodeResult(vectors, result.report)
        chunks, report = self.encode_chunks(text_list, role, prompt, batch_size, show_progress, task)
        return EncodeResult(chunks.token_vectors(len(text_list)), report)

    def encode_chunks(
        self,
        texts: Sequence[str],
        role: str | None = "document",
        prompt: Any = None,
        batch_size: int = 32,
        show_progress: bool | None = None,
        task: str | None = None,
    ) -> tuple[ChunkedVectors, EncodeReport]:
        """The chunk vectors of ``texts`` with each chunk's document and characters, and the encode report.

        Raises:
            ValueError: a context line that leaves fewer than ``MIN_CHUNK_TOKENS`` tokens per chunk.
        """
        text_list, _ = check_texts(texts)
        spans = [self.spans(text, role, prompt, task) for text in text_list]
        document = np.repeat(np.arange(len(text_list)), [len(s) for s in spans]).astype(np.int64)
        flat = np.asarray([(s.start, s.end) for chunks in spans for s in chunks], dtype=np.int64).reshape(-1, 2)
        if self.late:
            late = encode_late_chunks(
                self.model, text_list, spans, role, prompt, max(1, batch_size // 4), None, self.window_overlap,
                show_progress, task,
            )  # fmt: skip
            vectors = np.concatenate(late) if late else np.zeros((0, self.dimension), np.float32)
            report = EncodeReport(len(text_list), len(text_list))
        else:
            chunk_texts = [self._chunk_text(text_list[d], start, end) for d, (start, end) in zip(document, flat)]
            result = self.model.encode_with_report(
                chunk_texts, role, prompt, batch_size, show_progress=show_progress, task=task
            )
            vectors, report = np.asarray(result.vectors, dtype=np.float32), result.report
        return ChunkedVectors(vectors.reshape(-1, self.dimension), document, flat), report

    def spans(
        self, text: str, role: str | None = "document", prompt: Any = None, task: str | None = None
    ) -> list[ChunkSpan]:
        """The chunks of ``text``: at most ``chunk_tokens`` tokens, fewer where the role's prompt or the context
        line leaves less room."""
        room = self.model.text_token_budget(role, prompt, task)
        if self.context is not None:
            line = self.context.get(text, "")
            room -= self.model.count_tokens([line + CONTEXT_SEPARATOR])[0] + 1 if line else 0
            if room < MIN_CHUNK_TOKENS:
                raise ValueError(
                    f"the context line {line[:60]!r} leaves {room} tokens per chunk (fewer than {MIN_CHUNK_TOKENS}); "
                    "shorten it or raise max_seq_length"
                )
        size = min(self.chunk_tokens, room)
        return chunk_spans(text, self.model, size, min(self.overlap, size - 1), self.boundary)

    def _chunk_text(self, text: str, start: int, end: int) -> str:
        line = self.context.get(text, "") if self.context is not None else ""
        return f"{line}{CONTEXT_SEPARATOR}{text[start:end]}" if line else text[start:end]

    # ----------------------------------------------------------------- scoring

    def similarity(self, a: TokenVectors, b: TokenVectors) -> np.ndarray:
        """Scores (len(a), len(b)) float32: the ``aggregate`` of the model's similarity over the chunk pairs."""
        scores = np.asarray(similarity(a.data, b.data, self.model.similarity_name), dtype=np.float32)
        return _reduce(_reduce(scores, b.offsets, 1, self.aggregate), a.offsets, 0, self.aggregate)

    def similarity_pairwise(self, a: TokenVectors, b: TokenVectors) -> np.ndarray:
        """Scores (n,) float32 of ``a[i]`` against ``b[i]`` (``similarity``'s rule)."""
        if len(a) != len(b):
            raise ValueError(f"pairwise similarity needs as many texts on each side, got {len(a)} and {len(b)}")
        return np.asarray(
            [self.similarity(a[i : i + 1], b[i : i + 1])[0, 0] for i in range(len(a))], dtype=np.float32
        ).reshape(len(a))


def _reduce(scores: np.ndarray, offsets: np.ndarray, axis: int, aggregate: str) -> np.ndarray:
    """``scores`` reduced over the groups ``offsets[i]:offsets[i+1]`` along ``axis`` (every group non-empty)."""
    starts = offsets[:-1]
    if len(starts) == 0:
        shape = list(scores.shape)
        shape[axis] = 0
        return np.zeros(shape, dtype=np.float32)
    if aggregate == "max":
        return np.maximum.reduceat(scores, starts, axis=axis)
    counts = np.diff(offsets).astype(np.float32)
    return np.add.reduceat(scores, starts, axis=axis) / (counts[:, None] if axis == 0 else counts[None, :])
