"""Token vector files: what ``gpte encode --kind multivector`` (and ``--chunk``) writes, chunk by chunk and resumable.

The output is a folder (``gpte.models.multivector.TokenVectors.save``'s layout): ``tokens.npy`` (every text's token
vectors end to end, (total tokens, dimension) float32) and ``offsets.npy`` ((texts + 1,) int64: text i's vectors are
rows ``offsets[i]:offsets[i+1]``); ``TokenVectors.load(folder, mmap=True)`` reads it without loading the tokens. An
encoding may add arrays with one row per vector (``ExtraArray``), each its own ``NAME.npy``: chunk vectors
(``CHUNK_VECTORS``, a ``gpte.models.chunked.ChunkedEncoder``: ``tokens.npy`` holds one vector per chunk of each text)
add ``spans.npy``, (total chunks, 2) int64, each chunk's characters ``start:end`` in its text, so that row r of text
i is the vector of ``texts[i][start:end]``.

Texts are encoded ``chunk_size`` at a time into a hidden ``.NAME.partial/`` folder beside the output, each chunk a
finished folder of the same layout (written under a temporary name, then renamed), with ``state.json`` naming the job
(input, model, options, chunk size, extra arrays). A run killed midway resumes from its finished chunks when it is
started again with the same job; a different job starts over. Once every chunk is there they are joined into the
output folder, which appears only complete; the partial folder is then removed.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from gpte.atomic import atomic_path, check_destination
from gpte.locking import one_writer
from gpte.models.multivector.vectors import OFFSETS_FILE, TOKENS_FILE, TokenVectors
from gpte.models.protocol import MultiVectorModel
from gpte.runtime.streaming import CHUNK_TEXTS, TextSource

STATE_FILE = "state.json"
STATE_VERSION = 1
SPANS_FILE = "spans.npy"


@dataclass
class TokenReport:
    """What ``encode_tokens_to`` did: texts and token vectors written, chunks encoded now and kept from before."""

    n_texts: int
    n_tokens: int
    dimension: int
    n_chunks: int
    n_resumed_chunks: int
    n_truncated: int
    seconds: float


@dataclass(frozen=True)
class ExtraArray:
    """An array written beside ``tokens.npy`` with one row per vector: ``name``.npy, rows of ``shape``, ``dtype``."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def file(self) -> str:
        return f"{self.name}.npy"


@dataclass
class EncodedTexts:
    """One chunk of texts encoded: its vectors grouped by text, the texts truncated, and the extra arrays by name
    (row r of each goes with ``vectors.data[r]``)."""

    vectors: TokenVectors
    n_truncated: int
    extras: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenEncoding:
    """How a chunk of texts is encoded: ``encode(model, texts, **encode_options) -> EncodedTexts``, and the extra
    arrays it gives (``extras``)."""

    encode: Callable[..., EncodedTexts]
    extras: tuple[ExtraArray, ...] = ()


def _token_vectors(model: MultiVectorModel, texts: list[str], **encode_options: Any) -> EncodedTexts:
    """``model.encode_with_report``'s token vectors (no extra arrays)."""
    result = model.encode_with_report(texts, show_progress=False, **encode_options)
    return EncodedTexts(result.vectors, result.report.n_truncated)


def _chunk_vectors(model: Any, texts: list[str], **encode_options: Any) -> EncodedTexts:
    """A ``ChunkedEncoder``'s chunk vectors (``encode_chunks``), with each chunk's character span (``spans``)."""
    chunks, report = model.encode_chunks(texts, show_progress=False, **encode_options)
    return EncodedTexts(chunks.token_vectors(len(texts)), report.n_truncated, {"spans": chunks.spans})


TOKEN_VECTORS = TokenEncoding(_token_vectors)
CHUNK_VECTORS = TokenEncoding(_chunk_vectors, (ExtraArray("spans", (2,), "int64"),))


@one_writer("output")  # two runs writing one output: the second fails at once, naming the first
def encode_tokens_to(
    model: MultiVectorModel,
    texts: Any,
    output: str | Path,
    *,
    field: str | None = None,
    chunk_size: int = CHUNK_TEXTS,
    overwrite: bool = False,
    show_progress: bool = True,
    encoding: TokenEncoding = TOKEN_VECTORS,
    **encode_options: Any,
) -> TokenReport:
    """Encode ``texts`` (strings, or a txt/md/jsonl/csv/tsv/parquet path with ``field``) into the folder ``output``.

    Args:
        model: a multi-vector model (``TOKEN_VECTORS``), or a ``ChunkedEncoder`` with ``encoding=CHUNK_VECTORS``.
        chunk_size: texts encoded (and kept for a resumed run) at a time.
        encoding: how a chunk of texts is encoded and which extra arrays are written (see the module docstring).
        encode_options: role, prompt, task, batch_size (``MultiVectorEncoder.encode``, ``ChunkedEncoder.encode_chunks``).

    Returns:
        A ``TokenReport`` (``n_tokens``: the rows of ``tokens.npy``, chunk vectors for ``CHUNK_VECTORS``).

    Raises:
        FileExistsError: ``output`` exists and ``overwrite`` is False.
        ValueError: a bad ``chunk_size``; an extra array whose rows, shape or dtype differ from its declaration.
    """
    started = time.perf_counter()
    output = Path(output)
    check_destination(output, overwrite, folder=True)
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    source = TextSource(texts, field)
    job = {
        "version": STATE_VERSION,
        "input_sha256": source.fingerprint,
        "n": source.count,
        "chunk_size": chunk_size,
        "model": model.fingerprint,
        "options": encode_options,
        "extras": [asdict(extra) for extra in encoding.extras],
    }
    state = json.loads(json.dumps(job, default=str))  # as state.json reads back (tuples as lists)
    partial = _partial_folder(output, state)
    done = sum(1 for _ in partial.glob("chunk-*"))
    n_truncated = 0
    with tqdm(
        total=source.count,
        initial=min(done * chunk_size, source.count),
        unit="text",
        disable=not show_progress,
        desc="encode",
    ) as bar:
        for number, chunk in enumerate(source.chunks(chunk_size, skip=done), start=done):
            encoded = encoding.encode(model, chunk, **encode_options)
            _save_chunk(encoded, encoding.extras, partial / f"chunk-{number:06d}")
            n_truncated += encoded.n_truncated
            bar.update(len(chunk))
    n_chunks = -(-source.count // chunk_size)
    n_tokens = _join_chunks(partial, n_chunks, model.dimension, encoding.extras, output, overwrite)
    shutil.rmtree(partial)
    seconds = time.perf_counter() - started
    return TokenReport(source.count, n_tokens, model.dimension, n_chunks - done, done, n_truncated, seconds)


def _partial_folder(output: Path, state: dict[str, Any]) -> Path:
    """The hidden folder of ``output``'s chunks, kept when it was made for the same job, else started anew."""
    partial = output.with_name(f".{output.name}.partial")
    saved = partial / STATE_FILE
    if partial.is_dir() and (not saved.is_file() or json.loads(saved.read_text(encoding="utf-8")) != state):
        shutil.rmtree(partial)
    if not partial.is_dir():
        with atomic_path(partial) as temporary:
            temporary.mkdir()
            (temporary / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
    return partial


def _save_chunk(encoded: EncodedTexts, extras: tuple[ExtraArray, ...], folder: Path) -> None:
    """Write one chunk's vectors and extra arrays into ``folder``, which appears only complete.

    Raises:
        ValueError: an extra array missing, unexpected, or not of ``(rows, *shape)`` and ``dtype`` (both named).
    """
    rows = len(encoded.vectors.data)
    if set(encoded.extras) != {extra.name for extra in extras}:
        raise ValueError(
            f"the encoding gave extra arrays {sorted(encoded.extras)}; it declares {sorted(e.name for e in extras)}"
        )
    with atomic_path(folder) as temporary:
        encoded.vectors.save(temporary)
        for extra in extras:
            values = encoded.extras[extra.name]
            if values.shape != (rows, *extra.shape) or values.dtype != np.dtype(extra.dtype):
                raise ValueError(
                    f"extra array {extra.name!r} is {values.dtype} {values.shape}; expected {extra.dtype} "
                    f"{(rows, *extra.shape)} (one row per vector)"
                )
            np.save(temporary / extra.file, values)


def _join_chunks(
    partial: Path, n_chunks: int, dimension: int, extras: tuple[ExtraArray, ...], output: Path, overwrite: bool
) -> int:
    """Write the chunks one after another into ``output`` (a ``TokenVectors`` folder and the extra arrays); returns
    the token count."""
    folders = [partial / f"chunk-{number:06d}" for number in range(n_chunks)]
    chunks = [TokenVectors.load(folder, mmap=True) for folder in folders]
    n_tokens = sum(len(chunk.data) for chunk in chunks)
    layouts = {TOKENS_FILE: ((dimension,), np.dtype(np.float32))}
    layouts |= {extra.file: (extra.shape, np.dtype(extra.dtype)) for extra in extras}
    with atomic_path(output, overwrite) as temporary:
        temporary.mkdir()
        arrays = {
            file: np.lib.format.open_memmap(temporary / file, mode="w+", dtype=dtype, shape=(n_tokens, *shape))
            for file, (shape, dtype) in layouts.items()
        }
        offsets, row = [np.zeros(1, dtype=np.int64)], 0
        for folder, chunk in zip(folders, chunks):
            for file, array in arrays.items():
                array[row : row + len(chunk.data)] = np.load(folder / file, mmap_mode="r")
            offsets.append(chunk.offsets[1:] + row)
            row += len(chunk.data)
        for array in arrays.values():
            array.flush()
        del arrays, array  # the memory maps closed before the folder moves into place
        np.save(temporary / OFFSETS_FILE, np.concatenate(offsets))
    return n_tokens
