"""One text -> vector store: the vectors one model made for texts encoded one way (a role and a prompt), kept in
memory and, given a folder, on disk so a later or interrupted run does not encode a text again.

Users: evaluation (each distinct text encoded once per role and prompt across tasks, and across runs with
``evaluate(cache=...)``), search builds (the chunks of an unfinished build, so a killed ``gpte index`` resumes) and
the analysis views (many views of one model's vectors).

On disk: ``FOLDER/part-<uuid>.npz``, each holding ``keys`` (the sha256 of each text, an (n, 32) uint8 array) and
``vectors`` (float32). Parts are only added, each written under a temporary name and renamed when complete, so an
interrupted run loses at most the part it was writing and never leaves a damaged one. ``store_folder`` names the
folder of one (model fingerprint, role, prompt), so a changed model never reads another model's vectors.

Sparse vectors (``SparseVectorStore``, a sparse model's rows over its vocabulary, kept as rows, never densified) go
in ``FOLDER/sparse-part-<uuid>.npz`` parts (``keys``, and the CSR arrays ``indptr``, ``indices``, ``data``,
``shape``), and a multi-vector model's token vectors (``TokenVectorStore``, each text's (tokens, dimension) matrix,
kept ragged) in ``FOLDER/token-part-<uuid>.npz`` parts (``keys``, ``offsets``, ``data``): each kind of store reads its
own parts only, so the kinds cannot mix even in one folder.

Streaming (``gpte.runtime.streaming``) resumes by position instead: its unit is a chunk of an input file written at
its offset, byte-identical to an uninterrupted run, with memory flat in the input's size, which a store that looks
vectors up by text cannot give.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gpte.atomic import atomic_path

KEY_BYTES = 32


def text_key(text: str) -> bytes:
    """sha256 of the text's UTF-8 bytes: its key in a store."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def store_folder(root: str | Path, model_key: str, role: str | None = None, prompt: str | None = None) -> Path:
    """``ROOT/<model key[:32]>/<sha256 of [role, prompt], 32 hex>``: the folder of one model's vectors made one way."""
    partition = hashlib.sha256(json.dumps([role, prompt]).encode()).hexdigest()[:32]
    return Path(root) / model_key[:32] / partition


class VectorStore:
    """Vectors by text for one model and one way of encoding.

    Args:
        folder: where parts are kept (None: memory only); read when first used, created when first written.
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = None if folder is None else Path(folder)
        self._vectors: dict[bytes, np.ndarray] | None = None
        self._lock = threading.Lock()

    def get(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of those ``texts`` that have one, by text."""
        stored = self._loaded()
        found = {}
        for text in texts:
            vector = stored.get(text_key(text))
            if vector is not None:
                found[text] = vector
        return found

    def add(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Keep ``vectors`` (n, d) of ``texts``; on disk as one new part."""
        if not len(texts):
            return
        keys = [text_key(text) for text in texts]
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.folder is not None:
            _write_part(self.folder, "part", keys, {"vectors": vectors})
        with self._lock:
            self._loaded().update(zip(keys, vectors))

    def vectors(self, texts: Sequence[str], encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """(n, d) float32 vectors of ``texts`` in order: stored ones looked up, the others (each distinct text
        once) made by ``encode`` and kept. An empty ``texts`` gives (0, d) with d from the store (0 when empty)."""
        distinct = list(dict.fromkeys(texts))
        known = self.get(distinct)
        missing = [text for text in distinct if text not in known]
        if missing:
            self.add(missing, np.asarray(encode(missing), dtype=np.float32))
        found = self.get(texts)
        if not texts:
            stored = self._loaded()
            return np.zeros((0, len(next(iter(stored.values()))) if stored else 0), dtype=np.float32)
        return np.stack([found[text] for text in texts])

    def clear(self) -> None:
        """Forget every vector and delete the folder (a finished search build no longer needs its pending ones)."""
        with self._lock:
            self._vectors = {}
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __len__(self) -> int:
        return len(self._loaded())

    def _loaded(self) -> dict[bytes, np.ndarray]:
        if self._vectors is None:
            stored: dict[bytes, np.ndarray] = {}
            for part in _parts(self.folder, "part"):
                with np.load(part) as arrays:
                    stored.update(zip(_keys(arrays), arrays["vectors"]))
            self._vectors = stored
        return self._vectors


class _RowStore:
    """What the stores of rows of unequal size share (``SparseVectorStore``, ``TokenVectorStore``): one row per text
    by its key, parts ``FOLDER/{PREFIX}-<uuid>.npz`` (``keys`` and the subclass's arrays), rows of one dimension.

    A subclass says how vectors become part arrays and rows (``_pack``), how a part's arrays become rows again
    (``_unpack``) and how rows become the vectors ``vectors`` returns (``_assemble``).

    Args:
        folder: where parts are kept (None: memory only); read when first used, created when first written.
        dimension: the vectors' length; vectors or parts of another length are refused (None: the first seen).
    """

    PREFIX = ""  # the parts' file name prefix
    KIND = ""  # how errors name the vectors

    def __init__(self, folder: str | Path | None = None, dimension: int | None = None) -> None:
        self.folder = None if folder is None else Path(folder)
        self.dimension = dimension
        self._rows: dict[bytes, Any] | None = None
        self._lock = threading.Lock()

    def add(self, texts: Sequence[str], vectors: Any) -> None:
        """Keep the rows of ``vectors`` for ``texts``; on disk as one new part.

        Raises:
            ValueError: ``vectors`` has another number of rows than ``texts`` or another dimension than the store.
        """
        if not len(texts):
            return
        arrays, rows, dimension = self._pack(vectors)
        if len(rows) != len(texts):
            raise ValueError(f"{len(rows)} {self.KIND} vectors for {len(texts)} texts")
        self._check_dimension(dimension, "vectors")
        keys = [text_key(text) for text in texts]
        if self.folder is not None:
            _write_part(self.folder, self.PREFIX, keys, arrays)
        with self._lock:
            self._loaded().update(zip(keys, rows))

    def vectors(self, texts: Sequence[str], encode: Callable[[list[str]], Any]) -> Any:
        """The vectors of ``texts`` in order (``_assemble``): stored rows looked up, the others (each distinct text
        once) made by ``encode`` and kept."""
        distinct = list(dict.fromkeys(texts))
        stored = self._loaded()
        missing = [text for text in distinct if text_key(text) not in stored]
        if missing:
            self.add(missing, encode(missing))
        return self._assemble([stored[text_key(text)] for text in texts])

    def clear(self) -> None:
        """Forget every vector and delete the folder."""
        with self._lock:
            self._rows = {}
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __len__(self) -> int:
        return len(self._loaded())

    def _pack(self, vectors: Any) -> tuple[dict[str, np.ndarray], list[Any], int]:
        """``vectors`` as (the arrays of a part, one row per text, the dimension)."""
        raise NotImplementedError

    def _unpack(self, arrays: Any) -> tuple[list[Any], int]:
        """A part's arrays as (one row per key, the dimension)."""
        raise NotImplementedError

    def _assemble(self, rows: list[Any]) -> Any:
        """Rows (of the store's dimension) as the vectors ``vectors`` returns."""
        raise NotImplementedError

    def _check_dimension(self, dimension: int, what: str) -> None:
        if self.dimension is None:
            self.dimension = dimension
        elif dimension != self.dimension:
            raise ValueError(f"{what} have {dimension} dimensions, the {self.KIND} store {self.dimension}")

    def _loaded(self) -> dict[bytes, Any]:
        if self._rows is None:
            stored: dict[bytes, Any] = {}
            for part in _parts(self.folder, self.PREFIX):
                with np.load(part) as arrays:
                    rows, dimension = self._unpack(arrays)
                    self._check_dimension(dimension, f"the vectors of {part}")
                    stored.update(zip(_keys(arrays), rows))
            self._rows = stored
        return self._rows


SparseRow = tuple[np.ndarray, np.ndarray]  # (column indices int32, weights float32) of one vector, indices sorted


class SparseVectorStore(_RowStore):
    """``VectorStore`` for sparse vectors: CSR rows by text for one model and one way of encoding.

    ``add`` takes a sparse matrix (n, dimension) (or anything ``scipy.sparse.csr_matrix`` takes); ``vectors`` gives
    a ``scipy.sparse.csr_matrix`` (n, dimension) float32 (sorted indices, no repeats). Parts: ``sparse-part-*.npz``
    with the CSR arrays ``indptr``, ``indices``, ``data``, ``shape``.

    Args:
        folder: where parts are kept (None: memory only); read when first used, created when first written.
        dimension: the vectors' length (a sparse model's vocabulary size); parts of another length are refused.
    """

    PREFIX, KIND = "sparse-part", "sparse"

    def _pack(self, vectors: Any) -> tuple[dict[str, np.ndarray], list[SparseRow], int]:
        import scipy.sparse  # scipy comes with the eval extra; dense stores never need it

        matrix = scipy.sparse.csr_matrix(vectors, dtype=np.float32, copy=True)
        matrix.sum_duplicates()  # canonical: sorted indices, no repeats
        arrays = {
            "indptr": matrix.indptr.astype(np.int64),
            "indices": matrix.indices.astype(np.int32),
            "data": matrix.data,
            "shape": np.array(matrix.shape, dtype=np.int64),
        }
        return arrays, _split_rows(matrix), matrix.shape[1]

    def _unpack(self, arrays: Any) -> tuple[list[SparseRow], int]:
        import scipy.sparse

        shape = tuple(int(n) for n in arrays["shape"])
        matrix = scipy.sparse.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
        return _split_rows(matrix), shape[1]

    def _assemble(self, rows: list[SparseRow]) -> Any:
        import scipy.sparse

        lengths = np.array([len(indices) for indices, _ in rows], dtype=np.int64)
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        indices = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, dtype=np.int32)
        data = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0, dtype=np.float32)
        return scipy.sparse.csr_matrix((data, indices, indptr), shape=(len(rows), self.dimension or 0))


class TokenVectorStore(_RowStore):
    """``VectorStore`` for a multi-vector model's token vectors: each text's (tokens, dimension) float32 matrix, kept
    ragged (a text of no token keeps an empty matrix).

    ``add`` takes ``gpte.models.multivector.TokenVectors`` (or one (tokens, dimension) array per text); ``vectors``
    gives ``TokenVectors``. Parts: ``token-part-*.npz`` with ``offsets`` (texts + 1,) int64 and ``data`` (tokens,
    dimension) float32, text i's rows ``offsets[i]:offsets[i + 1]`` (the layout of ``TokenVectors``). Memory: 4 bytes
    x dimension per stored token.

    Args:
        folder: where parts are kept (None: memory only); read when first used, created when first written.
        dimension: the token vectors' length; vectors or parts of another length are refused.
    """

    PREFIX, KIND = "token-part", "token"

    def _pack(self, vectors: Any) -> tuple[dict[str, np.ndarray], list[np.ndarray], int]:
        from gpte.models.multivector.vectors import TokenVectors

        tokens = vectors if isinstance(vectors, TokenVectors) else TokenVectors.from_list(list(vectors))
        data = np.ascontiguousarray(tokens.data, dtype=np.float32)
        return {"offsets": tokens.offsets, "data": data}, _split_ragged(data, tokens.offsets), tokens.dim

    def _unpack(self, arrays: Any) -> tuple[list[np.ndarray], int]:
        data = arrays["data"]
        return _split_ragged(data, arrays["offsets"]), int(data.shape[1])

    def _assemble(self, rows: list[np.ndarray]) -> Any:
        from gpte.models.multivector.vectors import TokenVectors

        return TokenVectors.from_list(rows, self.dimension)


def _write_part(folder: Path, prefix: str, keys: list[bytes], arrays: dict[str, np.ndarray]) -> None:
    """One new part ``folder/{prefix}-<uuid>.npz`` holding ``keys`` ((n, 32) uint8) and ``arrays``, written under a
    temporary name and renamed when complete."""
    key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), KEY_BYTES)
    with atomic_path(folder / f"{prefix}-{uuid.uuid4().hex}.npz") as temporary, open(temporary, "wb") as out:
        np.savez(out, keys=key_array, **arrays)


def _parts(folder: Path | None, prefix: str) -> list[Path]:
    """The parts ``folder/{prefix}-*.npz``, sorted (none when there is no folder)."""
    return sorted(folder.glob(f"{prefix}-*.npz")) if folder is not None and folder.exists() else []


def _keys(arrays: Any) -> list[bytes]:
    return [row.tobytes() for row in arrays["keys"]]


def _split_rows(matrix: Any) -> list[SparseRow]:
    """Each row's (indices int32, data float32): views of one copy of ``matrix``'s arrays."""
    indices, data, bounds = matrix.indices.astype(np.int32), matrix.data.astype(np.float32), matrix.indptr
    return [(indices[bounds[i] : bounds[i + 1]], data[bounds[i] : bounds[i + 1]]) for i in range(len(bounds) - 1)]


def _split_ragged(data: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Each text's rows ``data[offsets[i]:offsets[i + 1]]`` (views)."""
    return [data[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
