"""Dense search over a snapshot's chunk vectors, with FAISS for the approximate and binary indexes.

- ``exact``: the model's own similarity (``gpte.similarity``) against every chunk, in blocks of documents,
  exactly as ``gpte.evaluate`` scores retrieval, so its rankings reproduce evaluate's numbers.
- ``hnsw``: a FAISS HNSW graph over inner products (cosine: on normalized vectors); ``ef_search`` trades
  speed for recall. The returned scores are the exact similarities of the found chunks.
- ``int8``: FAISS's 8-bit scalar quantizer (per-dimension ranges trained on the vectors, 4x less memory),
  searched brute force over inner products (cosine: normalized), the ``rescore`` x k best rescored as below.
- ``binary``: sign bits (32x less memory than float32) searched by Hamming distance with FAISS, then the
  ``rescore`` x k best rescored with the float vectors, read from the memory-mapped file.

FAISS (over usearch, LanceDB, Milvus Lite) because it is the reference ANN library, ships CPU wheels,
runs in-process with no server, and covers flat, HNSW, IVF and binary indexes with ID-selector filters.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import torch

from gpte.search.ranking import DocumentLayout, Ranking, merge_rankings, rank_candidates, rank_chunk_scores
from gpte.similarity import similarity

DENSE_MODES = ("exact", "hnsw", "binary", "int8")
ANN_SIMILARITIES = ("cosine", "dot")
BLOCK_ROWS = 50_000  # chunk rows scored at a time in exact mode (as gpte.evaluate's CORPUS_CHUNK)
HNSW_NEIGHBORS = 32
HNSW_EF_CONSTRUCTION = 200
BINARY_CODES = "binary.npy"  # a generation's sign bits, written at build time


def check_mode(mode: str) -> None:
    if mode not in DENSE_MODES:
        raise ValueError(f"unknown dense search mode {mode!r}; choose one of {', '.join(DENSE_MODES)}")


def build_hnsw(vectors: np.ndarray, similarity_name: str) -> faiss.Index:
    """An HNSW graph over ``vectors`` (normalized first for cosine)."""
    if similarity_name not in ANN_SIMILARITIES:
        raise ValueError(
            f"approximate search supports models with {' or '.join(ANN_SIMILARITIES)} similarity, not {similarity_name!r}; use exact search"
        )
    index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_NEIGHBORS, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.add(_ann_vectors(vectors, similarity_name))
    return index


def save_hnsw(index: faiss.Index, path: Path) -> None:
    faiss.write_index(index, str(path))


def load_hnsw(path: Path) -> faiss.Index:
    return faiss.read_index(str(path))


def binary_codes(vectors: np.ndarray) -> np.ndarray:
    """Sign bits of ``vectors`` packed 8 per byte (uint8, (n, ceil(dim/8)))."""
    return np.packbits(np.asarray(vectors) > 0, axis=1)


def build_int8(vectors: np.ndarray, similarity_name: str) -> faiss.IndexScalarQuantizer:
    """An 8-bit scalar-quantized flat index over ``vectors`` (normalized first for cosine)."""
    if similarity_name not in ANN_SIMILARITIES:
        raise ValueError(
            f"int8 search supports models with {' or '.join(ANN_SIMILARITIES)} similarity, not {similarity_name!r}; use exact search"
        )
    array = _ann_vectors(vectors, similarity_name)
    index = faiss.IndexScalarQuantizer(array.shape[1], faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    index.train(array)
    index.add(array)
    return index


def save_binary_codes(vectors: np.ndarray, path: Path) -> None:
    """Write the sign bits of ``vectors`` (``binary_codes``) as an .npy file."""
    with path.open("wb") as handle:
        np.save(handle, binary_codes(vectors))


def _ann_vectors(vectors: np.ndarray, similarity_name: str) -> np.ndarray:
    array = np.array(vectors, dtype=np.float32, copy=True)
    if similarity_name == "cosine":
        faiss.normalize_L2(array)
    return array


class DenseSearcher:
    """Search chunk vectors and rank documents (best chunk per document)."""

    def __init__(
        self,
        vectors: np.ndarray,
        layout: DocumentLayout,
        similarity_name: str,
        hnsw: faiss.Index | None = None,
        codes: np.ndarray | None = None,
    ) -> None:
        """``codes``: the vectors' sign bits saved at build time (else computed at the first binary search)."""
        self.vectors = vectors
        self.layout = layout
        self.similarity_name = similarity_name
        self.hnsw = hnsw
        self._codes = codes
        self._binary: faiss.IndexBinaryFlat | None = None
        self._int8: faiss.IndexScalarQuantizer | None = None
        self._doc_of_chunk = layout.doc_of_chunk

    def search(
        self,
        queries: np.ndarray,
        top: int,
        mode: str = "exact",
        allowed: np.ndarray | None = None,
        ef_search: int = 128,
        rescore: int = 10,
    ) -> list[Ranking]:
        """The ``top`` documents for each query vector (rows of ``queries``); ``allowed`` (a boolean mask
        over chunks) restricts the search to those chunks."""
        check_mode(mode)
        if mode == "exact":
            return self._exact(queries, top, allowed)
        candidates = max(top, 1) * 4  # chunks fetched per wanted document (several chunks may share one)
        if mode == "hnsw":
            return self._hnsw(queries, top, candidates, allowed, ef_search)
        if mode == "int8":
            return self._int8_rescored(queries, top, candidates * rescore, allowed)
        return self._binary_rescored(queries, top, candidates * rescore, allowed)

    def _exact(self, queries: np.ndarray, top: int, allowed: np.ndarray | None) -> list[Ranking]:
        query_tensor = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
        rankings = [Ranking.empty() for _ in range(len(queries))]
        for first_doc, end_doc in self.layout.doc_blocks(BLOCK_ROWS):
            start = int(self.layout.first_rows[first_doc])
            end = int(self.layout.first_rows[end_doc - 1] + self.layout.counts[end_doc - 1])
            block = torch.from_numpy(
                np.array(self.vectors[start:end], dtype=np.float32)
            )  # a copy: the memory map is read-only
            scores = similarity(query_tensor, block, self.similarity_name).numpy()
            if allowed is not None:
                scores = np.where(allowed[start:end], scores, -np.inf).astype(np.float32)
            for q, row in enumerate(scores):
                rankings[q] = merge_rankings(
                    rankings[q], rank_chunk_scores(row, self.layout, (first_doc, end_doc), top), top
                )
        return rankings

    def _hnsw(
        self, queries: np.ndarray, top: int, candidates: int, allowed: np.ndarray | None, ef_search: int
    ) -> list[Ranking]:
        if self.hnsw is None:
            raise ValueError(
                "this index was built without an HNSW graph; rebuild it with ann='hnsw' or search in exact mode"
            )
        selector = _selector(allowed)  # kept alive for the search: FAISS holds no reference to it
        params = faiss.SearchParametersHNSW(efSearch=max(ef_search, candidates), sel=selector)
        _, rows = self.hnsw.search(_ann_vectors(queries, self.similarity_name), candidates, params=params)
        return [self._rescored(query, hits, top) for query, hits in zip(queries, rows)]

    def _binary_rescored(
        self, queries: np.ndarray, top: int, candidates: int, allowed: np.ndarray | None
    ) -> list[Ranking]:
        if self._binary is None:
            codes = np.ascontiguousarray(self._codes if self._codes is not None else binary_codes(self.vectors))
            self._binary = faiss.IndexBinaryFlat(codes.shape[1] * 8)
            self._binary.add(codes)
        selector = _selector(allowed)
        _, rows = self._binary.search(binary_codes(queries), candidates, params=faiss.SearchParameters(sel=selector))
        return [self._rescored(query, hits, top) for query, hits in zip(queries, rows)]

    def _int8_rescored(
        self, queries: np.ndarray, top: int, candidates: int, allowed: np.ndarray | None
    ) -> list[Ranking]:
        if self._int8 is None:
            self._int8 = build_int8(self.vectors, self.similarity_name)
        selector = _selector(allowed)
        _, rows = self._int8.search(
            _ann_vectors(queries, self.similarity_name), candidates, params=faiss.SearchParameters(sel=selector)
        )
        return [self._rescored(query, hits, top) for query, hits in zip(queries, rows)]

    def _rescored(self, query: np.ndarray, rows: np.ndarray, top: int) -> Ranking:
        """Rank the documents of the candidate chunk ``rows`` by the exact similarity of their float vectors."""
        rows = rows[rows >= 0]
        ordered = np.sort(rows)  # memory-mapped reads in file order
        block = torch.from_numpy(np.array(self.vectors[ordered], dtype=np.float32))
        scores = similarity(
            torch.from_numpy(np.asarray(query, dtype=np.float32)[None]), block, self.similarity_name
        ).numpy()[0]
        return rank_candidates(ordered, scores, self._doc_of_chunk, top)

    def document_scores(self, query: np.ndarray, docs: np.ndarray) -> np.ndarray:
        """The exact score of each document position in ``docs`` for one query vector: its best chunk's
        similarity, as in the rankings."""
        counts = self.layout.counts[docs]
        rows = (
            np.concatenate(
                [np.arange(first, first + count) for first, count in zip(self.layout.first_rows[docs], counts)]
            )
            if len(docs)
            else np.empty(0, np.int64)
        )
        block = torch.from_numpy(np.array(self.vectors[rows], dtype=np.float32))
        scores = similarity(
            torch.from_numpy(np.asarray(query, dtype=np.float32)[None]), block, self.similarity_name
        ).numpy()[0]
        return np.maximum.reduceat(scores, np.cumsum(counts) - counts) if len(docs) else np.empty(0, np.float32)

    @property
    def binary_bytes(self) -> int:
        """Memory of the binary codes (after the first binary search)."""
        return 0 if self._binary is None else self._binary.ntotal * self._binary.code_size

    @property
    def int8_bytes(self) -> int:
        """Memory of the int8 codes (after the first int8 search)."""
        return 0 if self._int8 is None else self._int8.ntotal * self._int8.code_size


def _selector(allowed: np.ndarray | None) -> faiss.IDSelector | None:
    return None if allowed is None else faiss.IDSelectorBatch(np.flatnonzero(allowed).astype(np.int64))
