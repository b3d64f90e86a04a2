"""A search index over a document collection: build (incremental, resumable, crash-safe), open, search.

    report = build_index("my-index", "docs/", chunk_tokens=256, overlap=32)   # again later: only changes embedded
    index = Index.open("my-index")
    hits = index.search("how do wings stall?", k=5, mode="hybrid")

Documents come from ``gpte.search.sources``, chunks from ``gpte.search.chunking``, snapshots are stored by
``gpte.search.store``, dense search is ``gpte.search.dense`` and lexical search ``gpte.search.lexical``;
this module ties them together.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from gpte.models.fingerprint import model_key, weights_sha256
from gpte.search import dense, lexical
from gpte.search.chunking import check_chunking, chunk_spans
from gpte.search.fusion import FUSIONS, fuse
from gpte.search.ranking import DocumentLayout, Ranking, rank_chunk_scores
from gpte.search.sources import Document, read_documents
from gpte.search.store import (
    ChunkTable,
    PendingVectors,
    Snapshot,
    current_generation,
    read_snapshot,
    text_hash,
    write_generation,
)

SEARCH_MODES = ("dense", "lexical", "hybrid")
ANN_KINDS = ("hnsw", None)
SAVE_EVERY = 4096  # chunks embedded per pending part (the most a killed build loses)
INDEX_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def index_path(name: str, root: str | Path | None = None) -> Path:
    """The folder of the index called ``name``: under ``root``, else ``$GPTE_INDEXES``, else
    ``~/.cache/gpte/indexes``. Names are letters, digits, ``.``, ``_`` and ``-``."""
    if not isinstance(name, str) or not INDEX_NAME.fullmatch(name):
        raise ValueError(f"index name {name!r} is not allowed; use letters, digits, '.', '_' and '-' (not starting with '.', '_' or '-')")
    base = root or os.environ.get("GPTE_INDEXES") or Path.home() / ".cache" / "gpte" / "indexes"
    return Path(base) / name


class Reranker(Protocol):
    """Scores (query, text) pairs; higher is more relevant (``gpte.search.rerank``)."""

    def score(self, query: str, texts: list[str]) -> np.ndarray: ...


@dataclass
class Hit:
    """One ranked document: its best chunk's text and character span, and the document's metadata."""

    doc_id: str
    score: float
    text: str
    start: int
    end: int
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class BuildReport:
    """What a build did: document counts by change, chunks embedded now or reused from an interrupted run."""

    generation: str
    documents: int
    added: int
    changed: int
    removed: int
    unchanged: int
    chunks: int
    embedded: int
    resumed: int
    seconds: float


def build_index(path: str | Path, source: str | Path, embedder: Any = None, model: str | None = None,
                chunk_tokens: int = 256, overlap: int = 32, ann: str | None = "hnsw", text_field: str = "text",
                batch_size: int = 32, rebuild: bool = False, show_progress: bool = True) -> BuildReport:
    """Build the index at ``path`` from ``source``, or bring an existing one up to date.

    Args:
        path: the index folder (created if missing).
        source: a document file or folder (``gpte.search.sources``).
        embedder: the model; default ``Embedder.load(model)`` (an existing index: the model it was built with).
        model: the model's name or folder, recorded so that ``Index.open`` loads it again.
        chunk_tokens, overlap: chunk size and overlap in tokens (0: whole documents, truncated by the model).
        ann: "hnsw" builds an approximate graph beside the exact vectors; None builds none.
        rebuild: start from nothing instead of reusing the existing index's unchanged documents.

    Unchanged documents (same text and metadata) keep their vectors; new and changed ones are embedded,
    deleted ones dropped. Vectors are kept in parts while embedding, so a killed build resumes; the new
    generation becomes live only when complete.

    Raises:
        ValueError: bad chunking or ann settings, an index built with another model or chunking (use
            ``rebuild``), duplicate document ids, no documents.
    """
    started = time.perf_counter()
    root = Path(path)
    check_chunking(chunk_tokens, overlap)
    if ann not in ANN_KINDS:
        raise ValueError(f"unknown ann index {ann!r}; choose 'hnsw' or None (exact search only)")
    previous = None if rebuild else _open_snapshot(root)
    embedder, model = _build_model(embedder, model, previous)
    settings = {"model": model, "model_key": model_key(weights_sha256(embedder) or "", embedder), "chunk_tokens": chunk_tokens,
                "overlap": overlap, "similarity": embedder.similarity_name, "dimension": embedder.dimension}
    if previous is not None:
        _check_same_settings(previous, settings)
    documents = read_documents(source, text_field)
    plan = _plan(documents, previous, embedder, chunk_tokens, overlap)
    pending = PendingVectors(root, settings["model_key"])
    vectors_by_hash, resumed = _embed_new_chunks(plan.new_texts, embedder, pending, batch_size, show_progress)
    vectors, chunks, hashes = _assemble(plan, previous, vectors_by_hash, embedder.dimension)
    extras = {"bm25": lambda folder: lexical.save_bm25(lexical.build_bm25(chunks.texts), folder)}
    if ann == "hnsw" and len(vectors):
        extras["hnsw.faiss"] = lambda file: dense.save_hnsw(dense.build_hnsw(vectors, embedder.similarity_name), file)
    manifest = {**settings, "ann": ann, "documents": len(documents), "chunks": len(chunks)}
    generation = write_generation(root, manifest, vectors, chunks, hashes, extras)
    pending.clear()
    return BuildReport(generation.name, len(documents), plan.added, plan.changed, plan.removed, len(documents) - plan.added - plan.changed,
                       len(chunks), len(set(plan.new_texts)) - resumed, resumed, time.perf_counter() - started)


def _open_snapshot(root: Path) -> Snapshot | None:
    folder = current_generation(root) if root.is_dir() else None
    return read_snapshot(folder) if folder else None


def _build_model(embedder: Any, model: str | None, previous: Snapshot | None) -> tuple[Any, str | None]:
    if embedder is not None:
        return embedder, model if model is not None else getattr(embedder, "name", None)
    from gpte.models.embedder import Embedder

    model = model if model is not None else (previous.manifest["model"] if previous else None)
    return Embedder.load(model), model


def _check_same_settings(previous: Snapshot, settings: dict[str, Any]) -> None:
    for key in ("model_key", "chunk_tokens", "overlap"):
        if previous.manifest.get(key) != settings[key]:
            what = "model" if key == "model_key" else key
            raise ValueError(f"{previous.folder.parent} was built with another {what} ({previous.manifest.get(key)!r:.40} vs "
                             f"{settings[key]!r:.40}); rebuild it (gpte index --rebuild) or use another index name")


@dataclass
class _Plan:
    """Per document in source order: reused previous rows, or new chunks to embed."""

    documents: list[Document]
    reused: dict[str, tuple[int, int]]  # doc_id -> (first previous row, chunk count)
    new_chunks: dict[str, list[tuple[str, int, int]]]  # doc_id -> [(text, start, end)]
    new_texts: list[str]
    added: int = 0
    changed: int = 0
    removed: int = 0


def _plan(documents: list[Document], previous: Snapshot | None, embedder: Any, chunk_tokens: int, overlap: int) -> _Plan:
    old = previous.documents if previous else {}
    plan = _Plan(documents, {}, {}, [])
    tokenizer = embedder.backbone.tokenizer if chunk_tokens else None
    for doc in documents:
        if doc.id in old and old[doc.id][0] == doc.content_hash():
            plan.reused[doc.id] = old[doc.id][1:]
            continue
        plan.changed += doc.id in old
        plan.added += doc.id not in old
        spans = chunk_spans(doc.text, tokenizer, chunk_tokens, overlap)
        plan.new_chunks[doc.id] = [(doc.text[s.start : s.end], s.start, s.end) for s in spans]
        plan.new_texts.extend(text for text, _, _ in plan.new_chunks[doc.id])
    plan.removed = len(set(old) - {doc.id for doc in documents})
    return plan


def _embed_new_chunks(texts: list[str], embedder: Any, pending: PendingVectors, batch_size: int,
                      show_progress: bool) -> tuple[dict[str, np.ndarray], int]:
    """Vectors of the distinct ``texts`` by text hash: those an interrupted build left pending, the others
    embedded SAVE_EVERY at a time and kept as pending parts. Returns them and how many were pending."""
    done = pending.load()
    distinct = list(dict.fromkeys(texts))
    todo = [text for text in distinct if text_hash(text) not in done]
    resumed = len(distinct) - len(todo)
    with tqdm(total=len(distinct), initial=resumed, desc="index", unit="chunk", disable=not show_progress) as bar:
        for start in range(0, len(todo), SAVE_EVERY):
            part = todo[start : start + SAVE_EVERY]
            vectors = embedder.encode(part, role="document", batch_size=batch_size, show_progress=False)
            hashes = [text_hash(text) for text in part]
            pending.add(hashes, vectors)
            done.update(zip(hashes, vectors))
            bar.update(len(part))
    return done, resumed


def _assemble(plan: _Plan, previous: Snapshot | None, vectors_by_hash: dict[str, np.ndarray], dimension: int) -> tuple[np.ndarray, ChunkTable, dict[str, str]]:
    """The new generation's vectors, chunks (documents in source order, each one's chunks contiguous) and hashes."""
    tables, blocks = [], []
    for doc in plan.documents:
        if doc.id in plan.reused:
            first, count = plan.reused[doc.id]
            rows = list(range(first, first + count))
            tables.append(previous.chunks.take(rows))
            blocks.append(np.asarray(previous.vectors[first : first + count], dtype=np.float32))
            continue
        chunks = plan.new_chunks[doc.id]
        tables.append(ChunkTable([doc.id] * len(chunks), [c[0] for c in chunks], [c[1] for c in chunks], [c[2] for c in chunks], [doc.metadata] * len(chunks)))
        blocks.append(np.stack([vectors_by_hash[text_hash(text)] for text, _, _ in chunks]).astype(np.float32))
    vectors = np.concatenate(blocks) if blocks else np.empty((0, dimension), np.float32)
    return vectors, ChunkTable.concat(tables), {doc.id: doc.content_hash() for doc in plan.documents}


class Index:
    """An opened index: search it with dense, lexical or hybrid retrieval, filters and reranking."""

    def __init__(self, snapshot: Snapshot, embedder: Any) -> None:
        self.snapshot = snapshot
        self.embedder = embedder
        self.doc_ids = list(snapshot.documents)  # document positions, in chunk-row order
        counts = np.array([snapshot.documents[d][2] for d in self.doc_ids], dtype=np.int64)
        firsts = np.array([snapshot.documents[d][1] for d in self.doc_ids], dtype=np.int64)
        self.layout = DocumentLayout(firsts, counts)
        folder = snapshot.folder
        hnsw = dense.load_hnsw(folder / "hnsw.faiss") if (folder / "hnsw.faiss").is_file() else None
        self.dense = dense.DenseSearcher(snapshot.vectors, self.layout, snapshot.manifest["similarity"], hnsw)
        self.bm25 = lexical.load_bm25(folder / "bm25")

    @classmethod
    def open(cls, path: str | Path, embedder: Any = None) -> Index:
        """Open the live generation at ``path``; ``embedder`` defaults to the model the index was built with,
        and a different model is refused (its vectors would not match the index's)."""
        root = Path(path)
        folder = current_generation(root) if root.is_dir() else None
        if folder is None:
            raise FileNotFoundError(f"no index at {root}; build one with gpte index SOURCE --name NAME (or build_index)")
        snapshot = read_snapshot(folder)
        if embedder is None:
            from gpte.models.embedder import Embedder

            embedder = Embedder.load(snapshot.manifest["model"])
        key = model_key(weights_sha256(embedder) or "", embedder)
        if key != snapshot.manifest["model_key"]:
            raise ValueError(f"{root} was built with another model ({snapshot.manifest['model']!r}); open it with that model")
        return cls(snapshot, embedder)

    def __len__(self) -> int:
        return len(self.snapshot.documents)

    def search(self, queries: str | list[str], k: int = 10, mode: str = "dense", dense_mode: str = "exact",
               filters: dict[str, Any] | None = None, fusion: str = "rrf", weights: list[float] | None = None,
               candidates: int = 100, ef_search: int = 128, rescore: int = 10, reranker: Reranker | None = None,
               batch_size: int = 32) -> list[Hit] | list[list[Hit]]:
        """Rank the index's documents for each query.

        Args:
            queries: one query (returns a list of hits) or a list (returns one list per query).
            k: hits per query.
            mode: "dense" (the model), "lexical" (BM25) or "hybrid" (both, fused).
            dense_mode: "exact", "hnsw" or "binary" (binary codes rescored with float vectors).
            filters: metadata equality filters, ``{field: value or [allowed values]}``.
            fusion, weights: hybrid fusion ("rrf" or "weighted") and the weights of (dense, lexical).
            candidates: documents each retriever passes to fusion and reranking.
            reranker: rescores the top ``candidates`` (query, best chunk) pairs; hits are ordered by it.

        Raises:
            ValueError: an empty query, unknown mode/dense_mode/fusion, k < 1.
        """
        single = isinstance(queries, str)
        query_list = [queries] if single else list(queries)
        self._check_search(query_list, k, mode, dense_mode, fusion)
        depth = max(k, candidates) if (mode == "hybrid" or reranker is not None) else k
        allowed = self._allowed(filters)
        rankings = self._rankings(query_list, depth, mode, dense_mode, allowed, fusion, weights, ef_search, rescore, batch_size)
        results = [self._hits(query, ranking, k, reranker) for query, ranking in zip(query_list, rankings)]
        return results[0] if single else results

    def _check_search(self, queries: list[str], k: int, mode: str, dense_mode: str, fusion: str) -> None:
        if mode not in SEARCH_MODES:
            raise ValueError(f"unknown search mode {mode!r}; choose one of {', '.join(SEARCH_MODES)}")
        dense.check_mode(dense_mode)
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a whole number >= 1, got {k!r}")
        for number, query in enumerate(queries):
            if not isinstance(query, str) or not query.strip():
                raise ValueError(f"query {number} is empty; give a non-empty text")

    def _rankings(self, queries: list[str], depth: int, mode: str, dense_mode: str, allowed: np.ndarray | None,
                  fusion: str, weights: list[float] | None, ef_search: int, rescore: int, batch_size: int) -> list[Ranking]:
        dense_rankings = lexical_rankings = None
        if mode in ("dense", "hybrid"):
            vectors = self.embedder.encode(queries, role="query", batch_size=batch_size, show_progress=False)
            dense_rankings = self.dense.search(vectors, depth, dense_mode, allowed, ef_search, rescore)
        if mode in ("lexical", "hybrid"):
            lexical_rankings = [self._lexical(query, depth, allowed) for query in queries]
        if mode == "dense":
            return dense_rankings
        if mode == "lexical":
            return lexical_rankings
        return [fuse([d, l], fusion, depth, weights) for d, l in zip(dense_rankings, lexical_rankings)]

    def _lexical(self, query: str, depth: int, allowed: np.ndarray | None) -> Ranking:
        scores = lexical.bm25_scores(self.bm25, query, allowed)
        scores = np.where(scores > 0, scores, -np.inf).astype(np.float32)  # no shared term: not a hit
        return rank_chunk_scores(scores, self.layout, (0, len(self.layout.counts)), depth) if len(scores) else Ranking.empty()

    def _allowed(self, filters: dict[str, Any] | None) -> np.ndarray | None:
        """Boolean mask over chunks whose document metadata match every filter (None: no filter)."""
        if not filters:
            return None
        if not isinstance(filters, dict):
            raise ValueError(f"filters must be a mapping {{field: value or [values]}}, got {type(filters).__name__}")
        wanted = {key: set(value) if isinstance(value, (list, tuple, set)) else {value} for key, value in filters.items()}
        return np.array([all(meta.get(key) in values for key, values in wanted.items()) for meta in self.snapshot.chunks.metadata], dtype=bool)

    def _hits(self, query: str, ranking: Ranking, k: int, reranker: Reranker | None) -> list[Hit]:
        chunks = self.snapshot.chunks
        scores = ranking.scores.astype(np.float64)
        order = np.arange(len(ranking))
        if reranker is not None and len(ranking):
            scores = np.asarray(reranker.score(query, [chunks.texts[row] for row in ranking.chunks.tolist()]), dtype=np.float64)
            order = np.argsort(-scores, kind="stable")
        return [
            Hit(self.doc_ids[ranking.docs[i]], float(scores[i]), chunks.texts[ranking.chunks[i]], chunks.starts[ranking.chunks[i]],
                chunks.ends[ranking.chunks[i]], chunks.metadata[ranking.chunks[i]])
            for i in order[:k].tolist()
        ]

