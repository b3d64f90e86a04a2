"""A search index over a document collection: build (incremental, resumable, crash-safe), open, search.

    report = build_index("my-index", "docs/", overlap=32)  # chunks sized to fit the model   # again later: only changes embedded
    index = Index.open("my-index")
    hits = index.search("how do wings stall?", k=5, mode="hybrid")

Documents come from ``gpte.data.documents``, chunks from ``gpte.search.chunking``, snapshots are stored by
``gpte.search.store``, dense search is ``gpte.search.dense`` and lexical search ``gpte.search.lexical``;
this module ties them together.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from gpte.data.documents import read_documents
from gpte.models.protocol import DenseModel
from gpte.search import dense, lexical
from gpte.search.changes import (
    BuildReport,
    Plan,
    build_settings,
    check_same_settings,
    embed_new_chunks,
    load_build_model,
    open_model,
    plan_changes,
)
from gpte.search.distributed import read_vectors
from gpte.search.fusion import fuse
from gpte.search.query import (
    Hit,
    Reranker,
    check_search,
    normalize_filters,
    query_embeddings,
    rerank_hits,
    search_depth,
)
from gpte.search.ranking import DocumentLayout, Ranking, rank_chunk_scores
from gpte.search.store import ChunkTable, Snapshot, current_generation, read_snapshot, text_hash, write_generation

ANN_KINDS = ("hnsw", None)
MASK_CACHE = 64  # filter masks kept per opened index
INDEX_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def index_path(name: str, root: str | Path | None = None) -> Path:
    """The folder of the index called ``name``: under ``root``, else ``$GPTE_INDEXES``, else
    ``~/.cache/gpte/indexes``. Names are letters, digits, ``.``, ``_`` and ``-``."""
    check_index_name(name)
    base = root or os.environ.get("GPTE_INDEXES") or Path.home() / ".cache" / "gpte" / "indexes"
    return Path(base) / name


def check_index_name(name: str) -> None:
    """Raise ValueError unless ``name`` is letters, digits, ``.``, ``_`` and ``-``, not starting with a sign."""
    if not isinstance(name, str) or not INDEX_NAME.fullmatch(name):
        raise ValueError(
            f"index name {name!r} is not allowed; use letters, digits, '.', '_' and '-' (not starting with '.', '_' or '-')"
        )


def build_index(
    path: str | Path,
    source: str | Path,
    embedder: DenseModel | None = None,
    model: str | None = None,
    chunk_tokens: int | None = None,
    overlap: int | None = None,
    ann: str | None = "hnsw",
    text_field: str = "text",
    batch_size: int = 32,
    rebuild: bool = False,
    show_progress: bool = True,
    vectors_from: str | Path | None = None,
) -> BuildReport:
    """Build the index at ``path`` from ``source``, or bring an existing one up to date.

    Args:
        path: the index folder (created if missing).
        source: a document file or folder (``gpte.data.documents``).
        embedder: the model; default ``Embedder.load(model)`` (an existing index: the model it was built with).
        model: the model's name or folder, recorded so that ``Index.open`` loads it again.
        chunk_tokens, overlap: chunk size and overlap in tokens. None: the existing index's, else for the chunk size
            the model's (at most 256, and never more than fits the model with its document prompt and special
            tokens: ``gpte.search.chunking.resolve_chunk_tokens``) and for the overlap an eighth of the chunk size;
            chunk size 0: whole documents, truncated by the model (counted on the report).
        ann: "hnsw" builds an approximate graph beside the exact vectors; None builds none.
        rebuild: start from nothing instead of reusing the existing index's unchanged documents.
        vectors_from: ready-made chunk vectors (``gpte.search.distributed.embed_corpus_ray``'s folder, same
            model and chunking); only chunks missing there are embedded.

    Unchanged documents (same text and metadata) keep their vectors; new and changed ones are embedded,
    deleted ones dropped. When nothing changed, the live generation stays and nothing is written. Vectors are kept in parts while embedding, so a killed build resumes; the new
    generation becomes live only when complete.

    Raises:
        ValueError: bad chunking or ann settings, an index built with another model or chunking (use
            ``rebuild``), duplicate document ids, no documents.
    """
    started = time.perf_counter()
    root = Path(path)
    if ann not in ANN_KINDS:
        raise ValueError(f"unknown ann index {ann!r}; choose 'hnsw' or None (exact search only)")
    previous = None if rebuild else _open_snapshot(root)
    embedder, model = load_build_model(
        embedder,
        model,
        previous.manifest["model"] if previous else None,
        previous.manifest.get("backend", "torch") if previous else "torch",
    )
    if previous is not None:  # unset chunking: the existing index's
        chunk_tokens = previous.manifest["chunk_tokens"] if chunk_tokens is None else chunk_tokens
        overlap = previous.manifest["overlap"] if overlap is None else overlap
    settings = build_settings(embedder, model, chunk_tokens, overlap)
    if previous is not None:
        check_same_settings(str(root), previous.manifest, settings)
    documents = read_documents(source, text_field)
    plan = plan_changes(
        documents,
        {d: v[0] for d, v in previous.documents.items()} if previous else {},
        embedder,
        settings["chunk_tokens"],
        settings["overlap"],
    )
    if _nothing_to_do(plan, previous, ann):
        return BuildReport(
            previous.folder.name,
            len(documents),
            0,
            0,
            0,
            len(documents),
            len(previous.chunks),
            0,
            0,
            time.perf_counter() - started,
        )
    new = embed_new_chunks(
        plan.new_texts,
        embedder,
        root,
        settings["model_key"],
        batch_size,
        show_progress,
        read_vectors(vectors_from, settings) if vectors_from else None,
    )
    vectors, chunks, hashes = _assemble(plan, previous, new.by_hash, embedder.dimension)
    extras = {
        "bm25": lambda folder: lexical.save_bm25(lexical.build_bm25(chunks.texts), folder),
        dense.BINARY_CODES: lambda file: dense.save_binary_codes(vectors, file),
    }
    if ann == "hnsw" and len(vectors):
        extras["hnsw.faiss"] = lambda file: dense.save_hnsw(dense.build_hnsw(vectors, embedder.similarity_name), file)
    manifest = {**settings, "ann": ann, "documents": len(documents), "chunks": len(chunks)}
    generation = write_generation(root, manifest, vectors, chunks, hashes, extras)
    new.pending.clear()
    return BuildReport(
        generation.name,
        len(documents),
        plan.added,
        plan.changed,
        plan.removed,
        len(plan.unchanged),
        len(chunks),
        len(set(plan.new_texts)) - new.resumed - new.ready,
        new.resumed,
        time.perf_counter() - started,
        new.ready,
        new.truncated,
    )


def _nothing_to_do(plan: Plan, previous: Snapshot | None, ann: str | None) -> bool:
    """Whether the live generation already is what this build would write: same documents in the same
    order, none changed, same approximate index (then no new generation is written)."""
    return (
        previous is not None
        and not (plan.added or plan.changed or plan.removed)
        and previous.manifest.get("ann") == ann
        and list(previous.documents) == [doc.id for doc in plan.documents]
    )


def _open_snapshot(root: Path) -> Snapshot | None:
    folder = current_generation(root) if root.is_dir() else None
    return read_snapshot(folder) if folder else None


def _assemble(
    plan: Plan, previous: Snapshot | None, vectors_by_hash: dict[str, np.ndarray], dimension: int
) -> tuple[np.ndarray, ChunkTable, dict[str, str]]:
    """The new generation's vectors, chunks (documents in source order, each one's chunks contiguous) and hashes."""
    tables, blocks = [], []
    for doc in plan.documents:
        if doc.id in plan.unchanged:
            _, first, count = previous.documents[doc.id]
            tables.append(previous.chunks.take(list(range(first, first + count))))
            blocks.append(np.asarray(previous.vectors[first : first + count], dtype=np.float32))
            continue
        chunks = plan.new_chunks[doc.id]
        tables.append(
            ChunkTable(
                [doc.id] * len(chunks),
                [c[0] for c in chunks],
                [c[1] for c in chunks],
                [c[2] for c in chunks],
                [doc.metadata] * len(chunks),
            )
        )
        blocks.append(np.stack([vectors_by_hash[text_hash(text)] for text, _, _ in chunks]).astype(np.float32))
    vectors = np.concatenate(blocks) if blocks else np.empty((0, dimension), np.float32)
    return vectors, ChunkTable.concat(tables), {doc.id: doc.content_hash() for doc in plan.documents}


class Index:
    """An opened index: search it with dense, lexical or hybrid retrieval, filters and reranking."""

    def __init__(self, snapshot: Snapshot, embedder: DenseModel) -> None:
        self.snapshot = snapshot
        self.embedder = embedder
        self.doc_ids = list(snapshot.documents)  # document positions, in chunk-row order
        counts = np.array([snapshot.documents[d][2] for d in self.doc_ids], dtype=np.int64)
        firsts = np.array([snapshot.documents[d][1] for d in self.doc_ids], dtype=np.int64)
        self.layout = DocumentLayout(firsts, counts)
        folder = snapshot.folder
        hnsw = dense.load_hnsw(folder / "hnsw.faiss") if (folder / "hnsw.faiss").is_file() else None
        codes = folder / dense.BINARY_CODES
        self.dense = dense.DenseSearcher(
            snapshot.vectors,
            self.layout,
            snapshot.manifest["similarity"],
            hnsw,
            np.load(codes, mmap_mode="r") if codes.is_file() else None,
        )
        self._bm25: Any = None  # loaded on the first lexical search (dense-only users never pay for it)
        self._bm25_lock = threading.Lock()
        self._masks: dict[tuple, np.ndarray] = {}
        self._masks_lock = threading.Lock()
        self._positions: dict[str, int] | None = None  # document id -> position, made on first use

    @classmethod
    def open(cls, path: str | Path, embedder: DenseModel | None = None) -> Index:
        """Open the live generation at ``path``; ``embedder`` defaults to the model the index was built with,
        and a different model is refused (its vectors would not match the index's)."""
        root = Path(path)
        folder = current_generation(root) if root.is_dir() else None
        if folder is None:
            raise FileNotFoundError(
                f"no index at {root}; build one with gpte index SOURCE --name NAME (or build_index)"
            )
        snapshot = read_snapshot(folder)
        return cls(snapshot, open_model(embedder, snapshot.manifest, str(root)))

    def __len__(self) -> int:
        return len(self.snapshot.documents)

    @property
    def bm25(self) -> Any:
        """The generation's BM25 index, read from disk on first use."""
        with self._bm25_lock:
            if self._bm25 is None:
                self._bm25 = lexical.load_bm25(self.snapshot.folder / "bm25")
            return self._bm25

    def search(
        self,
        queries: str | list[str],
        k: int = 10,
        mode: str = "dense",
        dense_mode: str = "exact",
        filters: dict[str, Any] | None = None,
        fusion: str = "rrf",
        weights: list[float] | None = None,
        candidates: int = 100,
        ef_search: int = 128,
        rescore: int = 10,
        reranker: Reranker | None = None,
        batch_size: int = 32,
        query_vectors: np.ndarray | None = None,
    ) -> list[Hit] | list[list[Hit]]:
        """Rank the index's documents for each query.

        Args:
            queries: one query (returns a list of hits) or a list (returns one list per query).
            k: hits per query.
            mode: "dense" (the model), "lexical" (BM25) or "hybrid" (both, fused).
            dense_mode: "exact", "hnsw", "binary" or "int8" (quantized codes, rescored with float vectors).
            filters: metadata equality filters, ``{field: value or [allowed values]}``.
            fusion, weights: hybrid fusion ("rrf" or "weighted") and the weights of (dense, lexical).
            candidates: documents each retriever passes to fusion and reranking.
            reranker: rescores the top ``candidates`` (query, best chunk) pairs; hits are ordered by it.
            query_vectors: the queries' vectors (``role="query"``) when the caller has embedded them already
                (the server batches them across requests); default: embedded here.

        Raises:
            ValueError: an empty query, unknown mode/dense_mode/fusion, k < 1.
        """
        single = isinstance(queries, str)
        query_list = [queries] if single else list(queries)
        check_search(query_list, k, mode, fusion)
        dense.check_mode(dense_mode)
        depth = search_depth(k, candidates, mode, reranker)
        allowed = self._allowed(filters)
        rankings = self._rankings(
            query_list, depth, mode, dense_mode, allowed, fusion, weights, ef_search, rescore, batch_size, query_vectors
        )
        results = [rerank_hits(query, self._hits(ranking), k, reranker) for query, ranking in zip(query_list, rankings)]
        return results[0] if single else results

    def document_scores(self, query_vector: np.ndarray, doc_ids: list[str]) -> np.ndarray:
        """The dense score of each of ``doc_ids`` for one query vector (``role="query"``): its best chunk's
        similarity, the score exact dense search ranks by.

        Raises:
            KeyError: an id that is not in the index.
        """
        if self._positions is None:
            self._positions = {doc_id: position for position, doc_id in enumerate(self.doc_ids)}
        missing = [doc_id for doc_id in doc_ids if doc_id not in self._positions]
        if missing:
            raise KeyError(f"document id(s) not in the index: {', '.join(map(repr, missing[:5]))}")
        positions = np.array([self._positions[doc_id] for doc_id in doc_ids], dtype=np.int64)
        return self.dense.document_scores(query_vector, positions)

    def _rankings(
        self,
        queries: list[str],
        depth: int,
        mode: str,
        dense_mode: str,
        allowed: np.ndarray | None,
        fusion: str,
        weights: list[float] | None,
        ef_search: int,
        rescore: int,
        batch_size: int,
        query_vectors: np.ndarray | None,
    ) -> list[Ranking]:
        dense_rankings = lexical_rankings = None
        if mode in ("dense", "hybrid"):
            vectors = query_embeddings(self.embedder, queries, query_vectors, batch_size)
            dense_rankings = self.dense.search(vectors, depth, dense_mode, allowed, ef_search, rescore)
        if mode in ("lexical", "hybrid"):
            lexical_rankings = [self._lexical(query, depth, allowed) for query in queries]
        if mode == "dense":
            return dense_rankings
        if mode == "lexical":
            return lexical_rankings
        return [
            fuse([dense, lexical], fusion, depth, weights) for dense, lexical in zip(dense_rankings, lexical_rankings)
        ]

    def _lexical(self, query: str, depth: int, allowed: np.ndarray | None) -> Ranking:
        scores = lexical.bm25_scores(self.bm25, query, allowed)
        scores = np.where(scores > 0, scores, -np.inf).astype(np.float32)  # no shared term: not a hit
        return (
            rank_chunk_scores(scores, self.layout, (0, len(self.layout.counts)), depth)
            if len(scores)
            else Ranking.empty()
        )

    def _allowed(self, filters: dict[str, Any] | None) -> np.ndarray | None:
        """Boolean mask over chunks whose document metadata match every filter (None: no filter); the last
        MASK_CACHE masks are kept, so a server answering the same filter scans the metadata once."""
        wanted = normalize_filters(filters)
        if not wanted:
            return None
        key = tuple(sorted((name, tuple(sorted(map(repr, values)))) for name, values in wanted.items()))
        with self._masks_lock:  # the server searches from several threads
            if key not in self._masks:
                if len(self._masks) >= MASK_CACHE:
                    self._masks.pop(next(iter(self._masks)))
                self._masks[key] = np.array(
                    [
                        all(meta.get(name) in values for name, values in wanted.items())
                        for meta in self.snapshot.chunks.metadata
                    ],
                    dtype=bool,
                )
            return self._masks[key]

    def _hits(self, ranking: Ranking) -> list[Hit]:
        chunks = self.snapshot.chunks
        return [
            Hit(
                self.doc_ids[doc],
                float(score),
                chunks.texts[row],
                chunks.starts[row],
                chunks.ends[row],
                chunks.metadata[row],
            )
            for doc, score, row in zip(ranking.docs.tolist(), ranking.scores.tolist(), ranking.chunks.tolist())
        ]
