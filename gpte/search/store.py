"""On-disk snapshots of an index: immutable generation folders switched atomically, and the pending
vectors of an unfinished build.

Layout of an index folder::

    CURRENT                 the name of the live generation (replaced atomically, last step of a build)
    gen-000003/
        manifest.json       model, settings, counts (sparse model, which retrievers the index has)
        vectors.npy         float32 (chunks, dim), read as a memory map (absent in an index without a dense model)
        chunks.parquet      doc_id, text, start, end, metadata (JSON) per chunk, in vector order
        documents.parquet   doc_id, content hash, first chunk row, chunk count
        bm25/, hnsw.faiss   lexical and approximate indexes of this generation (each optional)
        binary.npy          sign bits of the vectors (binary search), 1/32 of vectors.npy
        sparse/             the sparse model's chunk vectors as an inverted index (``gpte.search.sparse``)
    pending-<model key>/    vectors embedded by an unfinished build, in parts keyed by chunk-text hash (late chunking: by
                            document text, span and window overlap; gpte.search.changes.Plan.dense_key)
    pending-sparse-<key>/   the same for the sparse model's vectors

A build writes a new generation under a temporary name, renames it, then points CURRENT at it; an
interrupted build leaves CURRENT and its generation untouched, and the next build reuses the pending parts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gpte.atomic import atomic_path

CURRENT = "CURRENT"
MANIFEST = "manifest.json"
FORMAT_VERSION = 1


@dataclass
class ChunkTable:
    """Per-chunk columns, in vector order."""

    doc_ids: list[str]
    texts: list[str]
    starts: list[int]
    ends: list[int]
    metadata: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.doc_ids)

    def take(self, rows: list[int]) -> ChunkTable:
        """The chunks at ``rows``, in that order."""
        return ChunkTable(
            *(
                [column[row] for row in rows]
                for column in (self.doc_ids, self.texts, self.starts, self.ends, self.metadata)
            )
        )

    @classmethod
    def concat(cls, tables: list[ChunkTable]) -> ChunkTable:
        """The chunks of ``tables`` one after the other."""
        columns: list[list[Any]] = [[], [], [], [], []]
        for table in tables:
            for column, values in zip(columns, (table.doc_ids, table.texts, table.starts, table.ends, table.metadata)):
                column.extend(values)
        return cls(*columns)


@dataclass
class Snapshot:
    """One generation, opened: manifest, vectors (memory-mapped), chunks and documents."""

    folder: Path
    manifest: dict[str, Any]
    vectors: np.ndarray | None  # None: an index without a dense model
    chunks: ChunkTable
    documents: dict[str, tuple[str, int, int]]  # doc_id -> (content hash, first chunk row, chunk count)


def current_generation(root: Path) -> Path | None:
    """The live generation folder of the index at ``root``, or None when it has none yet."""
    pointer = root / CURRENT
    if not pointer.is_file():
        return None
    folder = root / pointer.read_text(encoding="utf-8").strip()
    if not (folder / MANIFEST).is_file():
        raise FileNotFoundError(
            f"{root}: CURRENT names {folder.name}, which is missing or incomplete; rebuild the index"
        )
    return folder


def read_snapshot(folder: Path) -> Snapshot:
    """Open the generation at ``folder``."""
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{folder}: index format {manifest.get('format_version')!r}, this gpte reads {FORMAT_VERSION}; rebuild the index"
        )
    vectors = np.load(folder / "vectors.npy", mmap_mode="r") if (folder / "vectors.npy").is_file() else None
    table = pq.read_table(folder / "chunks.parquet").to_pydict()
    chunks = ChunkTable(
        table["doc_id"], table["text"], table["start"], table["end"], [json.loads(m) for m in table["metadata"]]
    )
    docs = pq.read_table(folder / "documents.parquet").to_pydict()
    documents = {d: (h, f, n) for d, h, f, n in zip(docs["doc_id"], docs["hash"], docs["first_row"], docs["n_chunks"])}
    return Snapshot(folder, manifest, vectors, chunks, documents)


def write_generation(
    root: Path,
    manifest: dict[str, Any],
    vectors: np.ndarray | None,
    chunks: ChunkTable,
    hashes: dict[str, str],
    extras: dict[str, Any],
) -> Path:
    """Write a new generation (vectors unless None, chunks, documents, manifest and ``extras``: name -> writer
    called with the file path), make it CURRENT, and delete older generations. Returns its folder."""
    previous = current_generation(root)
    number = int(previous.name.split("-")[1]) + 1 if previous else 1
    final = root / f"gen-{number:06d}"
    with atomic_path(final, overwrite=True) as folder:
        folder.mkdir()
        if vectors is not None:
            np.save(folder / "vectors.npy", np.ascontiguousarray(vectors, dtype=np.float32))
        _write_chunks(folder / "chunks.parquet", chunks)
        _write_documents(folder / "documents.parquet", chunks, hashes)
        for name, writer in extras.items():
            writer(folder / name)
        (folder / MANIFEST).write_text(
            json.dumps({**manifest, "format_version": FORMAT_VERSION}, indent=2), encoding="utf-8"
        )
    _point_current(root, final.name)
    for old in root.glob("gen-*"):
        if old.name != final.name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def _write_chunks(path: Path, chunks: ChunkTable) -> None:
    table = pa.table(
        {
            "doc_id": pa.array(chunks.doc_ids, pa.string()),
            "text": pa.array(chunks.texts, pa.string()),
            "start": pa.array(chunks.starts, pa.int64()),
            "end": pa.array(chunks.ends, pa.int64()),
            "metadata": pa.array([json.dumps(m, ensure_ascii=False) for m in chunks.metadata], pa.string()),
        }
    )
    pq.write_table(table, path)


def _write_documents(path: Path, chunks: ChunkTable, hashes: dict[str, str]) -> None:
    first: dict[str, int] = {}
    counts: dict[str, int] = {}
    for row, doc_id in enumerate(chunks.doc_ids):
        first.setdefault(doc_id, row)
        counts[doc_id] = counts.get(doc_id, 0) + 1
    ids = list(first)
    pq.write_table(
        pa.table(
            {
                "doc_id": pa.array(ids, pa.string()),
                "hash": pa.array([hashes[d] for d in ids], pa.string()),
                "first_row": pa.array([first[d] for d in ids], pa.int64()),
                "n_chunks": pa.array([counts[d] for d in ids], pa.int64()),
            }
        ),
        path,
    )


def _point_current(root: Path, name: str) -> None:
    temporary = root / f".{CURRENT}.partial-{os.getpid()}"
    temporary.write_text(name + "\n", encoding="utf-8")
    os.replace(temporary, root / CURRENT)


def text_hash(text: str) -> str:
    """sha256 of a chunk's text: the key of its pending vector."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def pending_folder(root: Path, model_key: str, kind: str = "") -> Path:
    """Where an unfinished build keeps the vectors it embedded (``gpte.runtime.vector_store.VectorStore`` parts, each
    written atomically, so a killed build loses at most the part it was embedding): ``root/pending-<model key>``;
    ``kind`` "sparse": ``root/pending-sparse-<model key>`` (``gpte.search.sparse.SparsePending`` parts)."""
    return root / f"pending-{kind + '-' if kind else ''}{model_key[:16]}"
