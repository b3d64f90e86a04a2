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

Readers lease the generation they open: ``open_live_snapshot`` holds a shared ``flock`` on ``.gen-N.lease`` for as
long as the ``Snapshot`` lives (the kernel drops it when the process dies, so a killed reader never pins a
generation). A build deletes an older generation only when it can take that file's exclusive lock without waiting
(``collect_generations``), so an index update never removes files an open index still reads; a generation still
read is deleted by a later build. fcntl's flock is used directly: ``filelock`` (gpte.locking) has no shared locks.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gpte.atomic import atomic_path

logger = logging.getLogger(__name__)

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
    lease: Lease | None = field(default=None, repr=False)  # held while the snapshot is alive


class Lease:
    """A shared lock on a generation's lease file: while any lease is held, no build deletes the generation.

    The file is opened read-only (``flock`` needs no write access), so a read-only or another user's index opens too;
    where the file cannot be opened at all (an index built before leases, on a read-only disk) the reader goes on
    without a lease, and a warning says a build may then delete what it reads. Released by ``release()`` or when the
    object is garbage-collected (``weakref.finalize``), whichever is first.
    """

    def __init__(self, root: Path, generation: str) -> None:
        self.path = lease_path(root, generation)
        descriptor = _open_lease(self.path, create=(root / generation).is_dir())
        if descriptor is None:
            self._finalizer = None
            return
        fcntl.flock(descriptor, fcntl.LOCK_SH)  # waits only while a build is deleting this generation
        self._finalizer = weakref.finalize(self, os.close, descriptor)

    def release(self) -> None:
        if self._finalizer is not None:
            self._finalizer()


def _open_lease(path: Path, create: bool) -> int | None:
    """A read-only descriptor of the lease file ``path``, created first when missing and ``create`` (a generation
    written before leases existed); None when it is missing (a generation being deleted) or cannot be opened."""
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        if not create:
            return None
    except OSError as error:
        logger.warning("cannot lease %s (%s): a build may delete the generation while it is read", path, error)
        return None
    try:
        return os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError as error:
        logger.warning("cannot lease %s (%s): a build may delete the generation while it is read", path, error)
        return None


def lease_path(root: Path, generation: str) -> Path:
    """The lease file of ``generation`` (a folder name such as ``gen-000003``) in the index at ``root``."""
    return root / f".{generation}.lease"


def current_generation(root: Path) -> Path | None:
    """The live generation folder of the index at ``root`` (not leased: see ``open_live_snapshot``), or None when it
    has none yet.

    Raises:
        FileNotFoundError: CURRENT names a generation that is missing or incomplete.
    """
    name = current_name(root)
    if name is None:
        return None
    folder = root / name
    if not (folder / MANIFEST).is_file():
        raise FileNotFoundError(f"{root}: CURRENT names {name}, which is missing or incomplete; rebuild the index")
    return folder


def current_name(root: Path) -> str | None:
    """The name CURRENT gives for the live generation of the index at ``root`` (None: no CURRENT), unchecked: what a
    reader compares with the generation it has open to see whether a build has made another one live."""
    try:
        return (root / CURRENT).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None


def open_live_snapshot(root: Path) -> Snapshot | None:
    """Open and lease the live generation of the index at ``root`` (None when it has none): the returned snapshot's
    files stay on disk while it is alive, whatever builds do meanwhile.

    A build may make a newer generation live and delete this one between reading CURRENT and taking the lease;
    then CURRENT is read again.

    Raises:
        FileNotFoundError: CURRENT names a generation that is missing or incomplete (and no build replaced it).
    """
    name = current_name(root)
    while name is not None:
        lease = Lease(root, name)
        if (root / name / MANIFEST).is_file():
            return read_snapshot(root / name, lease)
        lease.release()
        now = current_name(root)
        if now == name:
            raise FileNotFoundError(f"{root}: CURRENT names {name}, which is missing or incomplete; rebuild the index")
        name = now
    return None


def read_snapshot(folder: Path, lease: Lease | None = None) -> Snapshot:
    """Open the generation at ``folder``; ``lease``: the lease the snapshot keeps (``open_live_snapshot``)."""
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
    return Snapshot(folder, manifest, vectors, chunks, documents, lease)


def write_generation(
    root: Path,
    manifest: dict[str, Any],
    vectors: np.ndarray | None,
    chunks: ChunkTable,
    hashes: dict[str, str],
    extras: dict[str, Any],
) -> Path:
    """Write a new generation (vectors unless None, chunks, documents, manifest and ``extras``: name -> writer
    called with the file path) and make it CURRENT. Returns its folder; older generations stay until
    ``collect_generations``."""
    numbers = [int(folder.name.split("-")[1]) for folder in root.glob("gen-*") if folder.name[4:].isdigit()]
    final = root / f"gen-{max(numbers, default=0) + 1:06d}"
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
    lease_path(root, final.name).touch(mode=0o644)  # readers open it read-only: a read-only index can be leased
    _point_current(root, final.name)
    return final


def collect_generations(root: Path) -> list[str]:
    """Delete the generations of the index at ``root`` that are not live and that no reader holds a lease on (each
    one's lease file locked exclusively without waiting), and lease files left without their generation; returns the
    names deleted. Generations still read, and those whose lease file cannot be opened, stay for a later call."""
    deleted = []
    for old in sorted(root.glob("gen-*")):
        if old.name != current_name(root) and _delete_unleased(root, old.name):
            deleted.append(old.name)
    for lease in root.glob(".gen-*.lease"):
        generation = lease.name[1 : -len(".lease")]
        if not (root / generation).exists():
            _delete_unleased(root, generation)
    return deleted


def _delete_unleased(root: Path, generation: str) -> bool:
    """Delete ``generation`` and its lease file if no reader holds the lease and it is not live (checked again once
    locked: a writer the lock does not exclude may have made it live meanwhile); whether it was deleted."""
    path = lease_path(root, generation)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # a reader holds it
        os.close(descriptor)
        return False
    try:
        if current_name(root) == generation:
            return False
        shutil.rmtree(root / generation, ignore_errors=True)
        path.unlink(missing_ok=True)  # a reader that opened it meanwhile finds no manifest and rereads CURRENT
        return True
    finally:
        os.close(descriptor)


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
