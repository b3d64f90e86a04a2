"""Encode a large input straight to a vector file, in chunks: memory stays flat, and a killed run resumes
from its last finished chunk.

The vectors are written into a hidden ``.NAME.partial.npy`` beside the output, one chunk of
``chunk_size`` texts at a time (plain file writes at the chunk's offset, not a memory map, so the
written pages do not count against the process), and after each chunk a progress file
``.NAME.progress.json`` records the chunk's sha256. A new run with the same input, model and options
verifies the recorded chunks against the partial file (a chunk whose bytes do not match is encoded
again, as is everything after it) and encodes only the rest. Chunk boundaries do not depend on where a
run stopped, so the finished file is byte-identical to an uninterrupted run's. Only then is it renamed
to the output name (``.npy``), or converted chunk by chunk into the output parquet file.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from gpte.atomic import atomic_path
from gpte.data.readers import dataset_fingerprint, is_hf_dataset, iter_texts
from gpte.errors import extra_needed
from gpte.locking import one_writer
from gpte.models.choices import CHUNK_TEXTS
from gpte.models.fingerprint import file_sha256
from gpte.models.postprocess import check_precision, quantize, vector_ranges
from gpte.models.protocol import DenseModel
from gpte.runtime.output import PARQUET_COLUMN, check_output

STATE_VERSION = 1
FILE_LAYOUT = ("chunks", "dim", "dtype", "offset")  # progress entries describing the file, not the job


@dataclass
class StreamReport:
    """What ``encode_to`` did: texts and columns written, chunks encoded now and chunks kept from an earlier run."""

    n_texts: int
    n_columns: int
    n_chunks: int
    n_resumed_chunks: int
    n_truncated: int
    seconds: float


@one_writer("output")  # two runs writing one output: the second fails at once, naming the first
def encode_to(
    embedder: DenseModel,
    texts: Sequence[str] | str | Path,
    output: str | Path,
    *,
    field: str | None = None,
    chunk_size: int = CHUNK_TEXTS,
    precision: str = "float32",
    ranges: np.ndarray | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    **encode_options: Any,
) -> StreamReport:
    """Encode ``texts`` (a list, or a text file path read as it goes) into ``output`` (.npy or .parquet).

    Args:
        embedder: a gpte dense model (``Embedder``, ``StaticEmbedder``).
        texts: strings, or the path of a txt/md/jsonl/csv/tsv/parquet file (``field`` names its column).
        output: the vector file; it appears only when complete.
        chunk_size: texts per chunk (the unit of memory and of resumption).
        precision: as in ``Embedder.encode``. int8/uint8 use ``ranges`` when given (calibrated beforehand,
            see ``gpte.runtime.quantization``); without them, as in ``Embedder.encode``, the ranges of all
            the vectors: float32 vectors are streamed to a hidden file first, then quantized chunk by chunk.
        ranges: (2, d) int8/uint8 calibration ranges.
        overwrite: replace an existing output.
        encode_options: role, prompt, task, batch_size, normalize, truncate_dim (``Embedder.encode``).

    Raises:
        FileExistsError: the output exists and ``overwrite`` is False.
        ValueError: a bad chunk_size, precision or output format.
    """
    started = time.perf_counter()
    output = check_output(output, overwrite)
    _check_stream_options(chunk_size, precision)
    if precision in ("int8", "uint8") and ranges is None:
        return _encode_then_quantize(
            embedder, texts, output, field, chunk_size, precision, show_progress, started, encode_options
        )
    source = TextSource(texts, field)
    state = {
        "version": STATE_VERSION,
        "input_sha256": source.fingerprint,
        "n": source.count,
        "chunk_size": chunk_size,
        "model": embedder.fingerprint,
        "options": json.loads(json.dumps({"precision": precision, **encode_options}, default=str)),
        "ranges_sha256": None
        if ranges is None
        else hashlib.sha256(np.asarray(ranges, np.float32).tobytes()).hexdigest(),
    }
    partial = _PartialFile(output)
    done = partial.resume(state)
    n_chunks = -(-source.count // chunk_size)
    n_truncated = 0
    with tqdm(
        total=source.count,
        initial=min(done * chunk_size, source.count),
        unit="text",
        disable=not show_progress,
        desc="encode",
    ) as bar:
        if source.count == 0:  # the file still gets the model's columns, as encode([]) does: (0, dimension)
            vectors, _ = _encode_chunk(embedder, [], encode_options)
            partial.write_chunk(0, quantize(vectors, precision, ranges) if precision != "float32" else vectors)
        for number, chunk in enumerate(source.chunks(chunk_size, skip=done), start=done):
            vectors, truncated = _encode_chunk(embedder, chunk, encode_options)
            n_truncated += truncated
            partial.write_chunk(number, quantize(vectors, precision, ranges) if precision != "float32" else vectors)
            bar.update(len(chunk))
    n_columns = partial.finish(output)
    return StreamReport(source.count, n_columns, n_chunks - done, done, n_truncated, time.perf_counter() - started)


def _encode_chunk(embedder: DenseModel, texts: list[str], options: dict[str, Any]) -> tuple[np.ndarray, int]:
    """float32 vectors of one chunk and how many of its texts were truncated."""
    result = embedder.encode_with_report(texts, precision="float32", show_progress=False, **options)
    return np.asarray(result.vectors, dtype=np.float32), result.report.n_truncated


def _check_stream_options(chunk_size: int, precision: str) -> None:
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    check_precision(precision)


def _encode_then_quantize(
    embedder: DenseModel,
    texts: Any,
    output: Path,
    field: str | None,
    chunk_size: int,
    precision: str,
    show_progress: bool,
    started: float,
    encode_options: dict[str, Any],
) -> StreamReport:
    """int8/uint8 with the ranges of all vectors: stream float32 to a hidden (resumable) file, take the
    per-dimension min/max chunk by chunk, then write the quantized output chunk by chunk."""
    floats = output.with_name(f".{output.name}.float32.npy")
    report = encode_to(
        embedder,
        texts,
        floats,
        field=field,
        chunk_size=chunk_size,
        overwrite=True,
        show_progress=show_progress,
        **encode_options,
    )
    vectors = np.load(floats, mmap_mode="r")
    blocks = range(0, len(vectors), chunk_size)
    ranges = vector_ranges(vectors, f"{precision} ranges", chunk_size) if len(vectors) >= 2 else None
    partial = _PartialFile(output)
    partial.resume({"n": len(vectors), "chunk_size": chunk_size, "job": "quantize"})
    for number, start in enumerate(blocks):
        partial.write_chunk(number, quantize(np.asarray(vectors[start : start + chunk_size]), precision, ranges))
    del vectors
    partial.finish(output)
    floats.unlink()
    report.seconds = time.perf_counter() - started
    return report


class TextSource:
    """The input texts: their count, a fingerprint, and chunks read as they are needed."""

    def __init__(self, texts: Sequence[str] | str | Path, field: str | None) -> None:
        self.path = Path(texts) if isinstance(texts, (str, Path)) else None
        if self.path is not None:
            self.field = field
            self.count, blank, first_blank = 0, 0, None
            for text in iter_texts(self.path, field):  # one pass, constant memory
                if not text.strip():
                    blank += 1
                    first_blank = self.count if first_blank is None else first_blank
                self.count += 1
            source = dataset_fingerprint(str(self.path)) if is_hf_dataset(self.path) else file_sha256(self.path)
            self.fingerprint = f"{source}:{field}"
            if blank:
                warnings.warn(
                    f"{self.path}: {blank} of {self.count} texts are empty or blank (the first is text "
                    f"{first_blank}); each still gets a vector, in its place",
                    stacklevel=3,
                )
        else:
            if not isinstance(texts, Sequence):
                raise TypeError(f"texts must be a sequence of strings or a file path, got {type(texts).__name__}")
            self.texts = texts
            self.count = len(texts)
            self.fingerprint = _texts_sha256(texts)

    def chunks(self, size: int, skip: int) -> Iterator[list[str]]:
        """Chunks of ``size`` texts, the first ``skip`` chunks passed over without being kept."""
        stream: Iterable[str] = iter_texts(self.path, self.field) if self.path is not None else self.texts
        iterator = itertools.islice(iter(stream), skip * size, None)
        while chunk := list(itertools.islice(iterator, size)):
            yield chunk


def _texts_sha256(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"texts must hold strings, found {type(text).__name__}: {text!r:.80}")
        encoded = text.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little") + encoded)
    return digest.hexdigest()


class _PartialFile:
    """The hidden .npy being filled and its progress record."""

    def __init__(self, output: Path) -> None:
        self.path = output.with_name(f".{output.name}.partial.npy")
        self.progress = output.with_name(f".{output.name}.progress.json")
        self.state: dict[str, Any] = {}

    def resume(self, state: dict[str, Any]) -> int:
        """How many leading chunks of an earlier run with the same ``state`` are verified and kept."""
        self.state = {**state, "chunks": []}
        earlier = self._read_progress()
        same_job = earlier is not None and {k: v for k, v in earlier.items() if k not in FILE_LAYOUT} == state
        if not same_job or "offset" not in earlier or not self.path.exists():
            self._remove()
            return 0
        self.state.update(dim=earlier["dim"], dtype=earlier["dtype"], offset=earlier["offset"])
        for number, recorded in enumerate(earlier["chunks"]):
            if self._chunk_sha256(number) != recorded:
                break
            self.state["chunks"].append(recorded)
        return len(self.state["chunks"])

    def write_chunk(self, number: int, vectors: np.ndarray) -> None:
        """Write chunk ``number`` at its place (creating the file on the first chunk), then record it."""
        if not self.path.exists() or "dim" not in self.state:
            self._create(vectors.shape[1], vectors.dtype)
        expected = (self.state["dim"], self.state["dtype"])
        if (vectors.shape[1], str(vectors.dtype)) != expected:
            raise ValueError(
                f"chunk {number} has {vectors.shape[1]} {vectors.dtype} columns, the file {expected[0]} {expected[1]}"
            )
        data = np.ascontiguousarray(vectors).tobytes()
        with open(self.path, "r+b") as handle:
            handle.seek(self._offset(number * self.state["chunk_size"]))
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        del self.state["chunks"][number:]
        self.state["chunks"].append(hashlib.sha256(data).hexdigest())
        with atomic_path(self.progress, overwrite=True) as temporary:
            temporary.write_text(json.dumps(self.state), encoding="utf-8")

    def finish(self, output: Path) -> int:
        """Move the completed file into place as ``output`` (.npy), or convert it into parquet; returns its columns."""
        if not self.path.exists():
            self._create(0, np.dtype(np.float32))
        if output.suffix.lower() == ".npy":
            os.replace(self.path, output)
        else:
            self._to_parquet(output)
        self._remove()
        return self.state["dim"]

    def _create(self, dim: int, dtype: np.dtype) -> None:
        self.state.update(dim=int(dim), dtype=str(np.dtype(dtype)))
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False,
            "shape": (self.state["n"], int(dim)),
        }
        with open(self.path, "wb") as handle:
            np.lib.format.write_array_header_2_0(handle, header)
            self.state["offset"] = handle.tell()
            handle.truncate(self.state["offset"] + self.state["n"] * int(dim) * np.dtype(dtype).itemsize)

    def _offset(self, row: int) -> int:
        return self.state["offset"] + row * self.state["dim"] * np.dtype(self.state["dtype"]).itemsize

    def _chunk_bytes(self, number: int) -> bytes:
        size = self.state["chunk_size"]
        rows = max(0, min(size, self.state["n"] - number * size))
        with open(self.path, "rb") as handle:
            handle.seek(self._offset(number * size))
            return handle.read(rows * self.state["dim"] * np.dtype(self.state["dtype"]).itemsize)

    def _chunk_sha256(self, number: int) -> str:
        return hashlib.sha256(self._chunk_bytes(number)).hexdigest()

    def _to_parquet(self, output: Path) -> None:
        with extra_needed("parquet"):
            import pyarrow as pa
            import pyarrow.parquet as pq

        dim, dtype = self.state["dim"], np.dtype(self.state["dtype"])
        schema = pa.schema([(PARQUET_COLUMN, pa.list_(pa.from_numpy_dtype(dtype), dim))])
        with atomic_path(output, overwrite=True) as temporary, pq.ParquetWriter(temporary, schema) as writer:
            for number in range(-(-self.state["n"] // self.state["chunk_size"])):
                flat = pa.array(np.frombuffer(self._chunk_bytes(number), dtype=dtype))
                writer.write_table(
                    pa.table({PARQUET_COLUMN: pa.FixedSizeListArray.from_arrays(flat, dim)}, schema=schema)
                )

    def _read_progress(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.progress.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def _remove(self) -> None:
        for path in (self.path, self.progress):
            path.unlink(missing_ok=True)
