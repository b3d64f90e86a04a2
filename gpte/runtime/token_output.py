"""Token vector files: what ``gpte encode --kind multivector`` writes, chunk by chunk and resumable.

The output is a folder (``gpte.models.multivector.TokenVectors.save``'s layout): ``tokens.npy`` (every text's token
vectors end to end, (total tokens, dimension) float32) and ``offsets.npy`` ((texts + 1,) int64: text i's vectors are
rows ``offsets[i]:offsets[i+1]``); ``TokenVectors.load(folder, mmap=True)`` reads it without loading the tokens.

Texts are encoded ``chunk_size`` at a time into a hidden ``.NAME.partial/`` folder beside the output, each chunk a
finished ``TokenVectors`` folder (written under a temporary name, then renamed), with ``state.json`` naming the job
(input, model, options, chunk size). A run killed midway resumes from its finished chunks when it is started again
with the same job; a different job starts over. Once every chunk is there they are joined into the output folder,
which appears only complete; the partial folder is then removed.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from gpte.atomic import atomic_path, refuse_existing
from gpte.models.multivector.vectors import OFFSETS_FILE, TOKENS_FILE, TokenVectors
from gpte.models.protocol import MultiVectorModel
from gpte.runtime.streaming import CHUNK_TEXTS, TextSource

STATE_FILE = "state.json"
STATE_VERSION = 1


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


def encode_tokens_to(
    model: MultiVectorModel,
    texts: Any,
    output: str | Path,
    *,
    field: str | None = None,
    chunk_size: int = CHUNK_TEXTS,
    overwrite: bool = False,
    show_progress: bool = True,
    **encode_options: Any,
) -> TokenReport:
    """Encode ``texts`` (strings, or a txt/md/jsonl/csv/tsv/parquet path with ``field``) into the folder ``output``.

    Args:
        encode_options: role, prompt, task, batch_size (``MultiVectorEncoder.encode``).

    Raises:
        FileExistsError: ``output`` exists and ``overwrite`` is False.
        ValueError: a bad ``chunk_size``.
    """
    started = time.perf_counter()
    output = Path(output)
    refuse_existing(output, overwrite)
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    source = TextSource(texts, field)
    state = {
        "version": STATE_VERSION,
        "input_sha256": source.fingerprint,
        "n": source.count,
        "chunk_size": chunk_size,
        "model": model.fingerprint,
        "options": json.loads(json.dumps(encode_options, default=str)),
    }
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
            result = model.encode_with_report(chunk, show_progress=False, **encode_options)
            result.vectors.save(partial / f"chunk-{number:06d}")
            n_truncated += result.report.n_truncated
            bar.update(len(chunk))
    n_chunks = -(-source.count // chunk_size)
    n_tokens = _join_chunks(partial, n_chunks, model.dimension, output, overwrite)
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


def _join_chunks(partial: Path, n_chunks: int, dimension: int, output: Path, overwrite: bool) -> int:
    """Write the chunks one after another into ``output`` (a ``TokenVectors`` folder); returns the token count."""
    chunks = [TokenVectors.load(partial / f"chunk-{number:06d}", mmap=True) for number in range(n_chunks)]
    n_tokens = sum(len(chunk.data) for chunk in chunks)
    with atomic_path(output, overwrite) as temporary:
        temporary.mkdir()
        tokens = np.lib.format.open_memmap(
            temporary / TOKENS_FILE, mode="w+", dtype=np.float32, shape=(n_tokens, dimension)
        )
        offsets, row = [np.zeros(1, dtype=np.int64)], 0
        for chunk in chunks:
            tokens[row : row + len(chunk.data)] = chunk.data
            offsets.append(chunk.offsets[1:] + row)
            row += len(chunk.data)
        tokens.flush()
        del tokens
        np.save(temporary / OFFSETS_FILE, np.concatenate(offsets))
    return n_tokens
