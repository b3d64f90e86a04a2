"""A search index over a document collection: build (incremental, resumable, crash-safe), open, search.

    report = build_index("my-index", "docs/", overlap=32)  # chunks sized to fit the model   # again later: only changes embedded
    index = Index.open("my-index")
    hits = index.search("how do wings stall?", k=5, mode="hybrid")

    build_index("splade-index", "docs/", sparse_model="naver/splade-v3")          # dense + sparse + BM25
    build_index("sparse-only", "docs/", sparse_model=splade, dense=False, lexical=False)
    Index.open("splade-index").search("wing stall", mode="dense+sparse+lexical")
    build_index("colbert-index", "docs/", multivector_model="colbert-folder/")  # dense + ColBERT + BM25
    build_index("late-index", "docs/", late_chunking=True)  # chunk vectors pooled from their whole documents

An index holds up to four retrievers over the same chunks: a dense model's vectors (the default), a sparse model's
vectors (``sparse_model``: SPLADE and the other ``gpte.models.protocol.SparseModel`` kinds), a multi-vector model's
token vectors (``multivector_model``: ColBERT, searched by ``gpte.search.multivector``) and BM25 (``lexical``); at
least one model. Search modes name one retriever or several joined by "+", fused (``gpte.search.query.SEARCH_MODES``).

Documents come from ``gpte.data.documents``, chunks from ``gpte.models.chunking``, snapshots are stored by
``gpte.search.store``, dense search is ``gpte.search.dense``, sparse search ``gpte.search.sparse`` and lexical
search ``gpte.search.lexical``, multi-vector search ``gpte.search.multivector``; this module ties them together.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

from gpte.data.documents import read_documents
from gpte.locking import one_writer
from gpte.models.multivector import TokenVectors
from gpte.models.protocol import DenseModel, MultiVectorModel, SparseModel
from gpte.search import dense as dense_search
from gpte.search import lexical as lexical_search
from gpte.search import multivector as multivector_search
from gpte.search import sparse as sparse_search
from gpte.search.changes import (
    INDEX_SETTINGS_CHECKED,
    MULTIVECTOR,
    SPARSE,
    BuildReport,
    NewSparse,
    NewTokens,
    Plan,
    build_settings,
    check_same_settings,
    chunk_settings,
    embed_plan,
    encode_new_sparse,
    encode_new_tokens,
    kind_settings,
    load_build_kind_model,
    load_build_model,
    open_kind_model,
    open_model,
    plan_changes,
    requested_chunking,
)
from gpte.search.distributed import read_vectors
from gpte.search.fusion import fuse
from gpte.search.query import (
    Hit,
    Reranker,
    available_modes,
    check_search,
    mode_retrievers,
    normalize_filters,
    query_embeddings,
    rerank_hits,
    search_depth,
)
from gpte.search.ranking import DocumentLayout, Ranking, rank_chunk_scores
from gpte.search.store import (
    ChunkTable,
    Snapshot,
    collect_generations,
    current_name,
    open_live_snapshot,
    text_hash,
    write_generation,
)

ANN_KINDS = ("hnsw", None)
MASK_CACHE = 64  # filter masks kept per opened index
TOKENS_FOLDER = "multivector"  # a generation's multi-vector index (gpte.search.multivector)
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


@one_writer("path", "index")  # a second build of one index fails at once, naming the first
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
    sparse_model: SparseModel | str | Path | None = None,
    dense: bool | None = None,
    lexical: bool | None = None,
    multivector_model: MultiVectorModel | str | Path | None = None,
    late_chunking: bool | None = None,
    window_overlap: int | None = None,
    chunk_boundary: str | None = None,
) -> BuildReport:
    """Build the index at ``path`` from ``source``, or bring an existing one up to date.

    Args:
        path: the index folder (created if missing).
        source: a document file or folder (``gpte.data.documents``).
        embedder: the model; default ``Embedder.load(model)`` (an existing index: the model it was built with).
        model: the model's name or folder, recorded so that ``Index.open`` loads it again.
        chunk_tokens, overlap: chunk size and overlap in tokens. None: the existing index's, else for the chunk size
            the model's (at most 256, and never more than fits the model with its document prompt and special
            tokens: ``gpte.models.chunking.resolve_chunk_tokens``) and for the overlap an eighth of the chunk size;
            chunk size 0: whole documents, truncated by the model (counted on the report).
        chunk_boundary: where chunks end, "token" (every chunk size) or "sentence" (after a sentence:
            ``gpte.models.chunking.chunk_spans``). None: the existing index's, else "token".
        late_chunking: embed each chunk in its document's context (``gpte.models.late_chunking``, Günther et al.
            2024): every new or changed document runs whole through the model (in overlapping windows beyond its
            context) and each chunk's tokens are pooled, so a chunk's vector depends on its whole document; needs a
            pooling that reduces a span (mean, max, ...; not cls or last). Chunk texts, offsets and the sparse,
            multi-vector and BM25 retrievers are as without it. None: the existing index's, else False.
        window_overlap: with late chunking, tokens shared by the windows of a document longer than the model's
            ``max_seq_length``. None: the existing index's, else a quarter of a window.
        ann: "hnsw" builds an approximate graph beside the exact vectors; None builds none.
        rebuild: start from nothing instead of reusing the existing index's unchanged documents.
        vectors_from: ready-made chunk vectors (``gpte.search.distributed.embed_corpus_ray``'s folder, same
            model and chunking); only chunks missing there are embedded.
        sparse_model: a sparse model (``gpte.models.protocol.SparseModel``: SPLADE, ...) or its name or folder
            (``gpte.models.sparse.load_sparse_encoder``) whose chunk vectors the index also holds, searched with
            ``mode="sparse"`` and fused in the "+" modes. None: the existing index's, else none. Chunks are sized
            for the dense model when there is one (the sparse model may cut a longer chunk: ``sparse_truncated``).
        multivector_model: a multi-vector model (``gpte.models.protocol.MultiVectorModel``: ColBERT) or its name or
            folder (``gpte.models.multivector.load_multivector_encoder``) whose chunk token vectors the index also
            holds (``gpte.search.multivector``), searched with ``mode="multivector"`` and fused in the "+" modes. None:
            the existing index's, else none.
        dense: whether the index holds dense vectors (None: the existing index's, else True); False needs a
            ``sparse_model`` or ``multivector_model``, whose tokenizer then sizes the chunks.
        lexical: whether the index holds BM25 (None: the existing index's, else True).

    Unchanged documents (same text and metadata) keep their vectors, dense and sparse; new and changed ones are
    embedded, deleted ones dropped. When nothing changed, the live generation stays and nothing is written. Vectors
    are kept in parts while embedding, so a killed build resumes; the new generation becomes live only when complete.

    Raises:
        ValueError: bad chunking or ann settings, an index built with another model, sparse model, chunking,
            chunk boundary, late chunking or window overlap, or without dense vectors (use ``rebuild``), no model at
            all, late chunking with a pooling that reads one token or without a dense model, duplicate document ids,
            no documents.
        gpte.locking.OutputLockedError: another process is building the same index.

    Open indexes keep reading the generation they opened (``gpte.search.store``: leases); the generations no reader
    holds are deleted at the end of the build.
    """
    started = time.perf_counter()
    root = Path(path)
    if ann not in ANN_KINDS:
        raise ValueError(f"unknown ann index {ann!r}; choose 'hnsw' or None (exact search only)")
    previous = None if rebuild else _open_snapshot(root)
    manifest = previous.manifest if previous else None
    dense = _wants_dense(dense, embedder, model, vectors_from, manifest)
    lexical = (manifest.get("lexical", True) if manifest else True) if lexical is None else bool(lexical)
    sparse, sparse_name = load_build_kind_model(SPARSE, sparse_model, manifest)
    tokens_model, tokens_name = load_build_kind_model(MULTIVECTOR, multivector_model, manifest)
    if not dense and sparse is None and tokens_model is None:
        raise ValueError(
            "an index needs a dense, sparse or multi-vector model; give sparse_model= or multivector_model= with "
            "dense=False"
        )
    if dense:
        embedder, model = load_build_model(
            embedder,
            model,
            manifest["model"] if manifest else None,
            (manifest.get("backend") or "torch") if manifest else "torch",
        )
    chunking = requested_chunking(manifest, chunk_tokens, overlap, chunk_boundary, late_chunking, window_overlap)
    chunker = embedder if dense else (sparse if sparse is not None else tokens_model)
    settings = build_settings(embedder, model, **chunking) if dense else chunk_settings(chunker, **chunking)
    settings.update(kind_settings(SPARSE, sparse, sparse_name))
    settings.update(kind_settings(MULTIVECTOR, tokens_model, tokens_name))
    if manifest is not None:
        _check_same_retrievers(str(root), manifest, dense, sparse is not None, tokens_model is not None)
        check_same_settings(str(root), manifest, settings, keys=INDEX_SETTINGS_CHECKED)
    ann = ann if dense else None
    documents = read_documents(source, text_field)
    plan = plan_changes(
        documents,
        {d: v[0] for d, v in previous.documents.items()} if previous else {},
        chunker,
        settings["chunk_tokens"],
        settings["overlap"],
        settings["chunk_boundary"],
        settings["late_chunking"],
        settings["window_overlap"],
    )
    if _nothing_to_do(plan, previous, ann, lexical):
        _collect_after(previous, root)
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
    new = (
        embed_plan(
            plan,
            embedder,
            root,
            settings["model_key"],
            batch_size,
            show_progress,
            read_vectors(vectors_from, settings) if vectors_from else None,
        )
        if dense
        else None
    )
    new_sparse = (
        encode_new_sparse(plan.new_texts, sparse, root, batch_size, show_progress) if sparse is not None else None
    )
    new_tokens = (
        encode_new_tokens(plan.new_texts, tokens_model, root, batch_size, show_progress)
        if tokens_model is not None
        else None
    )
    chunks, hashes, rows = _assemble(plan, previous)
    vectors = _dense_vectors(rows, previous, new.by_hash, embedder.dimension) if dense else None
    extras: dict[str, Any] = {}
    if lexical:
        extras["bm25"] = lambda folder: lexical_search.save_bm25(lexical_search.build_bm25(chunks.texts), folder)
    if dense:
        extras[dense_search.BINARY_CODES] = lambda file: dense_search.save_binary_codes(vectors, file)
    if ann == "hnsw" and vectors is not None and len(vectors):
        extras["hnsw.faiss"] = lambda file: dense_search.save_hnsw(
            dense_search.build_hnsw(vectors, embedder.similarity_name), file
        )
    if sparse is not None:
        postings = _sparse_vectors(rows, previous, new_sparse, int(sparse.vocab_size)).T.tocsr()
        extras[sparse_search.POSTINGS] = lambda folder: sparse_search.save_postings(postings, folder)
    if tokens_model is not None:
        token_vectors = _token_vectors(rows, previous, new_tokens)
        extras[TOKENS_FOLDER] = lambda folder: multivector_search.MultiVectorSearcher.from_vectors(
            token_vectors, similarity=tokens_model.similarity_name
        ).save(folder)
    manifest = {
        **settings,
        "ann": ann,
        "lexical": lexical,
        "documents": len(documents),
        "chunks": len(chunks),
    }
    generation = write_generation(root, manifest, vectors, chunks, hashes, extras)
    _collect_after(previous, root)
    if new is not None:
        new.pending.clear()
    if new_sparse is not None:
        new_sparse.pending.clear()
    if new_tokens is not None:
        new_tokens.pending.clear()
    first = new_sparse if new_sparse is not None else new_tokens
    embedded = new.embedded if new is not None else first.encoded
    return BuildReport(
        generation.name,
        len(documents),
        plan.added,
        plan.changed,
        plan.removed,
        len(plan.unchanged),
        len(chunks),
        embedded,
        new.resumed if new is not None else first.resumed,
        time.perf_counter() - started,
        new.ready if new is not None else 0,
        new.truncated if new is not None else first.truncated,
        new_sparse.encoded if new_sparse is not None else 0,
        new_sparse.resumed if new_sparse is not None else 0,
        new_sparse.truncated if new_sparse is not None else 0,
        new_tokens.encoded if new_tokens is not None else 0,
        new_tokens.resumed if new_tokens is not None else 0,
        new_tokens.truncated if new_tokens is not None else 0,
    )


def _wants_dense(
    dense: bool | None,
    embedder: DenseModel | None,
    model: str | None,
    vectors_from: str | Path | None,
    manifest: dict[str, Any] | None,
) -> bool:
    """Whether the build holds dense vectors: ``dense``, else True when a dense model or vectors are given, else the
    existing index's choice, else True."""
    given = embedder is not None or model is not None or vectors_from is not None
    if dense is False and given:
        raise ValueError(
            "dense=False builds an index without a dense model; do not give embedder, model or vectors_from"
        )
    if dense is not None:
        return bool(dense)
    if given or manifest is None:
        return True
    return manifest.get("model_key") is not None


def _check_same_retrievers(where: str, manifest: dict[str, Any], dense: bool, sparse: bool, tokens: bool) -> None:
    """Refuse an update that adds or drops the dense, sparse or token vectors (every chunk would need embedding)."""
    for what, had, has in (
        ("a dense model", manifest.get("model_key") is not None, dense),
        ("a sparse model", manifest.get("sparse_model_key") is not None, sparse),
        ("a multi-vector model", manifest.get("multivector_model_key") is not None, tokens),
    ):
        if had != has:
            raise ValueError(
                f"{where} was built {'with' if had else 'without'} {what}; rebuild it (gpte index --rebuild, "
                f"rebuild=True) to {'drop' if had else 'add'} its vectors, or use another index name"
            )


def _nothing_to_do(plan: Plan, previous: Snapshot | None, ann: str | None, lexical: bool = True) -> bool:
    """Whether the live generation already is what this build would write: same documents in the same
    order, none changed, same approximate index and BM25 (then no new generation is written)."""
    return (
        previous is not None
        and not (plan.added or plan.changed or plan.removed)
        and previous.manifest.get("ann") == ann
        and previous.manifest.get("lexical", True) == lexical
        and list(previous.documents) == [doc.id for doc in plan.documents]
    )


def _collect_after(previous: Snapshot | None, root: Path) -> None:
    """Release the build's lease on the generation it started from, then delete the generations no reader holds."""
    if previous is not None and previous.lease is not None:
        previous.lease.release()
    collect_generations(root)


def _open_snapshot(root: Path) -> Snapshot | None:
    """The live generation of the index at ``root``, leased (None: no index there yet)."""
    return open_live_snapshot(root) if root.is_dir() else None


def _assemble(plan: Plan, previous: Snapshot | None) -> tuple[ChunkTable, dict[str, str], list[tuple[bool, Any]]]:
    """The new generation's chunks (documents in source order, each one's chunks contiguous), content hashes, and
    where each chunk row's vectors come from: ``(True, previous row)`` for a kept chunk, ``(False, (text hash, dense
    key))`` for a new one (its sparse and token vectors are keyed by its text, its dense vector by
    ``Plan.dense_key``)."""
    tables, rows = [], []
    for doc in plan.documents:
        if doc.id in plan.unchanged:
            _, first, count = previous.documents[doc.id]
            tables.append(previous.chunks.take(list(range(first, first + count))))
            rows.extend((True, row) for row in range(first, first + count))
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
        rows.extend((False, (text_hash(text), plan.dense_key(doc.id, n))) for n, (text, _, _) in enumerate(chunks))
    return ChunkTable.concat(tables), {doc.id: doc.content_hash() for doc in plan.documents}, rows


def _dense_vectors(
    rows: list[tuple[bool, Any]], previous: Snapshot | None, by_hash: dict[str, np.ndarray], dimension: int
) -> np.ndarray:
    """The chunk rows' dense vectors: kept rows read from the previous generation, new ones by dense key."""
    vectors = np.empty((len(rows), dimension), dtype=np.float32)
    kept = [(at, source) for at, (old, source) in enumerate(rows) if old]
    if kept:
        positions = np.array([at for at, _ in kept], dtype=np.int64)
        sources = np.array([source for _, source in kept], dtype=np.int64)
        vectors[positions] = np.asarray(previous.vectors[sources], dtype=np.float32)
    for at, (old, source) in enumerate(rows):
        if not old:
            vectors[at] = by_hash[source[1]]
    return vectors


def _sparse_vectors(rows: list[tuple[bool, Any]], previous: Snapshot | None, new: NewSparse, vocab_size: int) -> Any:
    """The chunk rows' sparse vectors (CSR, chunks x vocab_size): kept rows from the previous generation's postings,
    new ones from this build's."""
    kept = any(old for old, _ in rows)
    blocks = []
    if kept:
        blocks.append(sparse_search.SparseSearcher.load(previous.folder / sparse_search.POSTINGS).vectors())
    offset = blocks[0].shape[0] if blocks else 0
    blocks.append(new.matrix)
    order = np.array([source if old else offset + new.rows[source[0]] for old, source in rows], dtype=np.int64)
    combined = scipy.sparse.vstack(blocks, format="csr") if len(blocks) > 1 else blocks[0]
    return scipy.sparse.csr_matrix(combined[order], shape=(len(rows), vocab_size))


def _token_vectors(rows: list[tuple[bool, Any]], previous: Snapshot | None, new: NewTokens) -> TokenVectors:
    """The chunk rows' token vectors: kept rows from the previous generation's multi-vector index (its float vectors,
    memory-mapped), new ones from this build's."""
    parts = [new.vectors]
    if any(old for old, _ in rows):
        kept = multivector_search.MultiVectorSearcher.load(previous.folder / TOKENS_FOLDER)
        parts.insert(0, TokenVectors(kept.vectors, kept.offsets))
    offset = len(parts[0]) if len(parts) > 1 else 0
    order = [source if old else offset + new.rows[source[0]] for old, source in rows]
    return TokenVectors.concat(parts).take(order)


class Index:
    """An opened index: search it with dense, sparse, multi-vector, lexical or fused retrieval, filters and
    reranking."""

    def __init__(
        self,
        snapshot: Snapshot,
        embedder: DenseModel | None,
        sparse_model: SparseModel | None = None,
        multivector_model: MultiVectorModel | None = None,
    ) -> None:
        """``embedder``: the dense model (None for an index without dense vectors); ``sparse_model``,
        ``multivector_model``: the models of an index with sparse or token vectors (None: that search is refused)."""
        self.snapshot = snapshot
        self.embedder = embedder
        self.sparse_model = sparse_model
        self.multivector_model = multivector_model
        self.doc_ids = list(snapshot.documents)  # document positions, in chunk-row order
        counts = np.array([snapshot.documents[d][2] for d in self.doc_ids], dtype=np.int64)
        firsts = np.array([snapshot.documents[d][1] for d in self.doc_ids], dtype=np.int64)
        self.layout = DocumentLayout(firsts, counts)
        folder = snapshot.folder
        self.dense: dense_search.DenseSearcher | None = None
        if snapshot.vectors is not None:
            hnsw = dense_search.load_hnsw(folder / "hnsw.faiss") if (folder / "hnsw.faiss").is_file() else None
            codes = folder / dense_search.BINARY_CODES
            self.dense = dense_search.DenseSearcher(
                snapshot.vectors,
                self.layout,
                snapshot.manifest["similarity"],
                hnsw,
                np.load(codes, mmap_mode="r") if codes.is_file() else None,
            )
        postings = folder / sparse_search.POSTINGS
        self.sparse = sparse_search.SparseSearcher.load(postings, self.layout) if postings.is_dir() else None
        tokens = folder / TOKENS_FOLDER
        self.multivector = multivector_search.MultiVectorSearcher.load(tokens, self.layout) if tokens.is_dir() else None
        retrievers = {"lexical"} if (folder / "bm25").is_dir() else set()
        retrievers |= {"dense"} if self.dense is not None and embedder is not None else set()
        retrievers |= {"sparse"} if self.sparse is not None and sparse_model is not None else set()
        retrievers |= {"multivector"} if self.multivector is not None and multivector_model is not None else set()
        self.modes = available_modes(retrievers)  # the search modes this index can run
        self._bm25: Any = None  # loaded on the first lexical search (dense-only users never pay for it)
        self._bm25_lock = threading.Lock()
        self._masks: dict[tuple, np.ndarray] = {}
        self._masks_lock = threading.Lock()
        self._positions: dict[str, int] | None = None  # document id -> position, made on first use
        self._fields: list[str] | None = None  # the metadata fields of the documents, found on the first filter

    @classmethod
    def open(
        cls,
        path: str | Path,
        embedder: DenseModel | None = None,
        sparse_model: SparseModel | None = None,
        multivector_model: MultiVectorModel | None = None,
    ) -> Index:
        """Open the live generation at ``path``; ``embedder``, ``sparse_model`` and ``multivector_model`` default to
        the models the index was built with (loaded by their recorded names), and a different model is refused (its
        vectors would not match the index's)."""
        root = Path(path)
        snapshot = _open_snapshot(root)
        if snapshot is None:
            raise FileNotFoundError(
                f"no index at {root}; build one with gpte index SOURCE --name NAME (or build_index)"
            )
        manifest = snapshot.manifest
        if manifest.get("model_key") is None and embedder is not None:
            raise ValueError(f"{root} was built without a dense model; open it without an embedder")
        dense_model = open_model(embedder, manifest, str(root)) if manifest.get("model_key") is not None else None
        return cls(
            snapshot,
            dense_model,
            open_kind_model(SPARSE, sparse_model, manifest, str(root)),
            open_kind_model(MULTIVECTOR, multivector_model, manifest, str(root)),
        )

    def latest(self) -> Index:
        """This index when its generation is still the live one, else the live generation opened with the same models
        (after a build): what a long-running reader calls to follow updates. This one stays usable (its generation
        is kept on disk while it is alive)."""
        root = self.snapshot.folder.parent
        if self.live_generation() == self.snapshot.folder.name:
            return self
        return Index.open(root, self.embedder, self.sparse_model, self.multivector_model)

    def live_generation(self) -> str | None:
        """The name of the index's live generation on disk now (CURRENT), which a build may have changed since this
        one was opened; None when CURRENT is gone."""
        return current_name(self.snapshot.folder.parent)

    def __len__(self) -> int:
        return len(self.snapshot.documents)

    @property
    def default_mode(self) -> str:
        """The mode of a search that names none: "dense", else "sparse", else "multivector" (the first retriever the
        index has)."""
        return next((mode for mode in ("dense", "sparse", "multivector") if mode in self.modes), "dense")

    @property
    def bm25(self) -> Any:
        """The generation's BM25 index, read from disk on first use."""
        with self._bm25_lock:
            if self._bm25 is None:
                self._bm25 = lexical_search.load_bm25(self.snapshot.folder / "bm25")
            return self._bm25

    def search(
        self,
        queries: str | list[str],
        k: int = 10,
        mode: str | None = None,
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
        sparse_query_vectors: Any = None,
        multivector_query_vectors: TokenVectors | None = None,
    ) -> list[Hit] | list[list[Hit]]:
        """Rank the index's documents for each query.

        Args:
            queries: one query (returns a list of hits) or a list (returns one list per query).
            k: hits per query.
            mode: one retriever, "dense" (the dense model), "sparse" (the sparse model's vectors, dot product) or
                "lexical" (BM25), or several joined by "+" in that order and fused: "dense+sparse",
                "dense+lexical", "sparse+lexical", "dense+sparse+lexical"; "hybrid" is "dense+lexical"
                (``gpte.search.query.SEARCH_MODES``; ``modes``: those this index can run). None: ``default_mode``.
            dense_mode: "exact", "hnsw", "binary" or "int8" (quantized codes, rescored with float vectors).
            filters: metadata equality filters, ``{field: value or [allowed values]}``, in every mode.
            fusion, weights: fusion ("rrf" or "weighted") of a "+" mode and one weight per retriever, in the mode's
                order (hybrid: dense, lexical).
            candidates: documents each retriever passes to fusion and reranking.
            reranker: rescores the top ``candidates`` (query, best chunk) pairs; hits are ordered by it.
            query_vectors: the queries' dense vectors (``role="query"``) when the caller has embedded them already
                (the server batches them across requests); default: embedded here.
            sparse_query_vectors: the same for the sparse model (a (queries, vocab_size) sparse matrix).
            multivector_query_vectors: the same for the multi-vector model (``TokenVectors``, one text per query).

        Raises:
            ValueError: an empty query, unknown mode (the allowed ones named), a mode the index was built without,
                unknown dense_mode/fusion, k < 1, weights not one per retriever.
        """
        single = isinstance(queries, str)
        query_list = [queries] if single else list(queries)
        mode = self.default_mode if mode is None else mode
        check_search(query_list, k, mode, fusion, self.modes, f"index {self.snapshot.folder.parent.name!r}")
        dense_search.check_mode(dense_mode)
        retrievers = mode_retrievers(mode)
        if weights is not None and len(weights) != len(retrievers):
            raise ValueError(
                f"{len(weights)} fusion weights for mode {mode!r}; give one per retriever ({', '.join(retrievers)})"
            )
        depth = search_depth(k, candidates, mode, reranker)
        allowed = self._allowed(filters)
        rankings = self._rankings(
            query_list,
            depth,
            retrievers,
            dense_mode,
            allowed,
            fusion,
            weights,
            ef_search,
            rescore,
            batch_size,
            query_vectors,
            sparse_query_vectors,
            multivector_query_vectors,
        )
        results = [rerank_hits(query, self._hits(ranking), k, reranker) for query, ranking in zip(query_list, rankings)]
        return results[0] if single else results

    def document_scores(self, query_vector: np.ndarray, doc_ids: list[str]) -> np.ndarray:
        """The dense score of each of ``doc_ids`` for one query vector (``role="query"``): its best chunk's
        similarity, the score exact dense search ranks by.

        Raises:
            KeyError: an id that is not in the index.
            ValueError: an index without dense vectors.
        """
        if self.dense is None:
            raise ValueError("this index has no dense vectors; use sparse_document_scores")
        return self.dense.document_scores(query_vector, self._doc_positions(doc_ids))

    def sparse_document_scores(self, query_vector: Any, doc_ids: list[str]) -> np.ndarray:
        """The sparse score of each of ``doc_ids`` for one sparse query vector (``role="query"``, (1, vocab_size)):
        its best chunk's dot product, the score sparse search ranks by (0: no shared dimension).

        Raises:
            KeyError: an id that is not in the index.
            ValueError: an index without sparse vectors.
        """
        if self.sparse is None:
            raise ValueError("this index has no sparse vectors; build it with sparse_model=")
        return self.sparse.document_scores(query_vector, self._doc_positions(doc_ids))

    def _doc_positions(self, doc_ids: list[str]) -> np.ndarray:
        if self._positions is None:
            self._positions = {doc_id: position for position, doc_id in enumerate(self.doc_ids)}
        missing = [doc_id for doc_id in doc_ids if doc_id not in self._positions]
        if missing:
            raise KeyError(f"document id(s) not in the index: {', '.join(map(repr, missing[:5]))}")
        return np.array([self._positions[doc_id] for doc_id in doc_ids], dtype=np.int64)

    def _rankings(
        self,
        queries: list[str],
        depth: int,
        retrievers: tuple[str, ...],
        dense_mode: str,
        allowed: np.ndarray | None,
        fusion: str,
        weights: list[float] | None,
        ef_search: int,
        rescore: int,
        batch_size: int,
        query_vectors: np.ndarray | None,
        sparse_query_vectors: Any,
        multivector_query_vectors: TokenVectors | None,
    ) -> list[Ranking]:
        """Each query's ranking: the one retriever's, or the retrievers' fused (``gpte.search.fusion.fuse``)."""
        per_retriever = []
        for retriever in retrievers:
            if retriever == "dense":
                vectors = query_embeddings(self.embedder, queries, query_vectors, batch_size)
                per_retriever.append(self.dense.search(vectors, depth, dense_mode, allowed, ef_search, rescore))
            elif retriever == "sparse":
                vectors = self._sparse_queries(queries, sparse_query_vectors, batch_size)
                per_retriever.append(self.sparse.search(vectors, depth, allowed))
            elif retriever == "multivector":
                vectors = self._token_queries(queries, multivector_query_vectors, batch_size)
                per_retriever.append(self.multivector.search(vectors, depth, allowed))
            else:
                per_retriever.append([self._lexical(query, depth, allowed) for query in queries])
        if len(per_retriever) == 1:
            return per_retriever[0]
        return [fuse(list(rankings), fusion, depth, weights) for rankings in zip(*per_retriever)]

    def _sparse_queries(self, queries: list[str], given: Any, batch_size: int) -> Any:
        if given is None:
            return self.sparse_model.encode(queries, role="query", batch_size=batch_size, show_progress=False)
        given = sparse_search.as_csr(given, self.sparse.vocab_size, "sparse_query_vectors")
        if given.shape[0] != len(queries):
            raise ValueError(f"sparse_query_vectors has {given.shape[0]} rows for {len(queries)} queries")
        return given

    def _token_queries(self, queries: list[str], given: TokenVectors | None, batch_size: int) -> TokenVectors:
        if given is None:
            return self.multivector_model.encode(queries, role="query", batch_size=batch_size, show_progress=False)
        if len(given) != len(queries) or given.dim != self.multivector.dim:
            raise ValueError(
                f"multivector_query_vectors holds {len(given)} texts of {given.dim}-d tokens; expected {len(queries)} "
                f"of {self.multivector.dim}-d"
            )
        return given

    def _lexical(self, query: str, depth: int, allowed: np.ndarray | None) -> Ranking:
        scores = lexical_search.bm25_scores(self.bm25, query, allowed)
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
        self._check_filter_fields(wanted)
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

    def _check_filter_fields(self, wanted: dict[str, set[Any]]) -> None:
        """ValueError naming the filtered fields that no document's metadata has, and the fields there are."""
        if self._fields is None:
            self._fields = sorted({name for meta in self.snapshot.chunks.metadata for name in meta})
        unknown = [name for name in wanted if name not in self._fields]
        if unknown:
            raise ValueError(
                f"no document has the metadata field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                f"the fields are: {', '.join(self._fields) or 'none (the documents have no metadata)'}"
            )

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
