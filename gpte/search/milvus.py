"""The same index API against Milvus: a Milvus server or cluster (``http://host:19530``), or Milvus Lite
(a local ``.db`` path, or ``milvus-lite server``), through one client (pymilvus's ``MilvusClient``).

    report = build_milvus_index("http://localhost:19530", "papers", "docs/")   # again later: only changes embedded
    index = MilvusIndex.open("http://localhost:19530", "papers")
    hits = index.search("how do wings stall?", k=5, mode="hybrid")

One collection per index, one row per chunk: ``pk`` (document-id hash, content hash, chunk number), doc_id,
doc_hash, n_chunks, text, start, end, metadata (JSON), vector, and a BM25 sparse vector that Milvus computes
from the text (its BM25 function); with a ``sparse_model`` (SPLADE, ...), also ``splade``: the chunk's learned
sparse vector (a SPARSE_FLOAT_VECTOR field, SPARSE_INVERTED_INDEX, inner product). The build settings (model,
sparse model, chunking, late chunking) are a collection property, checked on every update as the on-disk index
does; with late chunking (``late_chunking=True``) each chunk's vector is pooled from its whole document, as there.

Updates are crash-safe without generations: new and changed documents' chunks are inserted first under new
primary keys, then the stale rows (deleted documents, old versions) are deleted. A killed build leaves every
document readable (old or new version, never neither); a document counts as indexed only when all its
``n_chunks`` rows with its hash are present, so the next build completes what was cut off. Vectors embedded
before the kill are kept in local pending parts (``work_dir``), as for the on-disk index.

Searching: dense with the collection's vector index (FLAT: exact, or HNSW), lexical with Milvus's BM25, sparse
with the ``splade`` field's inner product, and the "+" modes (hybrid = dense+lexical, dense+sparse, ...) by gpte's
own fusion (``gpte.search.fusion``) of those, so scores fuse as for the on-disk index.
Milvus groups the hits by document (``group_by_field``): a document scores as its best chunk (MaxP).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from gpte.data.documents import read_documents
from gpte.errors import GpteError, extra_needed
from gpte.locking import exclusive_output
from gpte.models.protocol import DenseModel, SparseModel
from gpte.search.changes import (
    INDEX_SETTINGS_CHECKED,
    SPARSE,
    BuildReport,
    Plan,
    build_settings,
    check_same_settings,
    embed_plan,
    encode_new_sparse,
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
from gpte.search.ranking import Ranking
from gpte.search.store import text_hash

with extra_needed("milvus"):
    from pymilvus import DataType, Function, FunctionType, MilvusClient
    from pymilvus.exceptions import MilvusException

SETTINGS_PROPERTY = "gpte.settings"
ANN_INDEXES = {None: ("FLAT", {}), "hnsw": ("HNSW", {"M": 32, "efConstruction": 200})}
METRICS = {"cosine": "COSINE", "dot": "IP"}
MAX_TEXT_BYTES = 65_535  # Milvus's largest VARCHAR
INSERT_ROWS = 512
SCAN_ROWS = 4096
SEARCH_HITS = 8192  # queries x hits per search request
# BM25 text analysis as close to gpte's on-disk index (bm25s + Snowball) as Milvus Lite allows.
ANALYZER = {
    "tokenizer": "standard",
    "filter": ["lowercase", {"type": "stop", "stop_words": ["_english_"]}, {"type": "stemmer", "language": "english"}],
}
ROW_FIELDS = ["doc_id", "text", "start", "end", "metadata"]
SPARSE_FIELD = "splade"  # the sparse model's vectors, beside "sparse" (Milvus's BM25 of the text)


class MilvusUnavailableError(GpteError, ConnectionError):
    """No Milvus answers at a URI; the message names the URI and how to start a server or use Milvus Lite."""


def connect(uri: str | Path, token: str | None = None) -> MilvusClient:
    """A client for ``uri``: ``http(s)://host:port`` (a Milvus server or ``milvus-lite server``) or a local
    Milvus Lite path ending in ``.db``.

    Raises:
        ValueError: ``uri`` is neither.
        MilvusUnavailableError: nothing answers at ``uri``, or it refuses the connection (one line naming the URI
            and what to do; pymilvus's own error, with its gRPC details, is chained).
    """
    text = str(uri)
    if not (text.startswith(("http://", "https://", "tcp://", "unix:")) or text.endswith(".db")):
        raise ValueError(
            f"Milvus URI {text!r} is not one; give http://host:port (a server) or a path ending in .db (Milvus Lite)"
        )
    try:
        return MilvusClient(uri=text, token=token or os.environ.get("MILVUS_TOKEN", ""))
    except MilvusException as error:
        raise MilvusUnavailableError(
            f"cannot connect to Milvus at {text} ({error.message}); start a server there (a local one: "
            "milvus-lite server --data-dir DIR --port PORT, or Milvus standalone in Docker) or give a Milvus Lite file path "
            "ending in .db instead"
        ) from error


def build_milvus_index(
    uri: str | Path,
    name: str,
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
    token: str | None = None,
    work_dir: str | Path | None = None,
    sparse_model: SparseModel | str | Path | None = None,
    late_chunking: bool | None = None,
    window_overlap: int | None = None,
    chunk_boundary: str | None = None,
) -> BuildReport:
    """Build the Milvus collection ``name`` at ``uri`` from ``source``, or bring it up to date.

    Args mirror ``gpte.search.index.build_index``; ``ann`` picks the collection's vector index ("hnsw", or
    None for FLAT = exact search); ``work_dir`` keeps the pending vectors of an unfinished build (default
    ``$GPTE_INDEXES/milvus-pending/NAME`` or ``~/.cache/gpte/indexes/milvus-pending/NAME``); ``sparse_model``
    (a sparse model or its name; None: the collection's) adds its chunk vectors in the ``splade`` field;
    ``late_chunking``, ``window_overlap`` and ``chunk_boundary`` as there (None: the collection's).

    Raises:
        ValueError: a bad URI, chunking or ann, an existing collection built with another model, sparse model,
            chunking or late chunking (use ``rebuild``) or not built by gpte, late chunking with a pooling that reads
            one token, duplicate document ids, a chunk over 65,535 bytes.
        gpte.locking.OutputLockedError: another process on this machine is building the collection with the same
            ``work_dir`` (builds on other machines are not excluded).
    """
    from gpte.search.index import check_index_name, index_path

    check_index_name(name)  # the same names as on-disk indexes (and a safe folder for pending vectors)
    pending_root = Path(work_dir) if work_dir else index_path("milvus-pending") / name
    with exclusive_output(pending_root, f"the build of Milvus collection {name!r}, pending vectors"):
        started = time.perf_counter()
        if ann not in ANN_INDEXES:
            raise ValueError(f"unknown ann index {ann!r}; choose 'hnsw' or None (exact search only)")
        client = connect(uri, token)
        if rebuild and client.has_collection(name):
            client.drop_collection(name)
        previous = _collection_settings(client, name)
        embedder, model = load_build_model(
            embedder,
            model,
            previous["model"] if previous else None,
            previous.get("backend", "torch") if previous else "torch",
        )
        sparse, sparse_name = load_build_kind_model(SPARSE, sparse_model, previous)
        chunking = requested_chunking(previous, chunk_tokens, overlap, chunk_boundary, late_chunking, window_overlap)
        settings = build_settings(embedder, model, **chunking)
        if sparse is not None:
            settings.update(kind_settings(SPARSE, sparse, sparse_name))
        if previous is not None:
            check_same_settings(f"Milvus collection {name!r}", previous, settings, keys=INDEX_SETTINGS_CHECKED)
        else:
            _create_collection(client, name, settings, ann)
        documents = read_documents(source, text_field)
        indexed, rows_by_doc = _indexed_documents(client, name)
        plan = plan_changes(
            documents,
            _old_hashes(documents, indexed),
            embedder,
            settings["chunk_tokens"],
            settings["overlap"],
            settings["chunk_boundary"],
            settings["late_chunking"],
            settings["window_overlap"],
        )
        new = embed_plan(
            plan,
            embedder,
            pending_root,
            settings["model_key"],
            batch_size,
            show_progress,
            read_vectors(vectors_from, settings) if vectors_from else None,
        )
        new_sparse = (
            encode_new_sparse(plan.new_texts, sparse, pending_root, batch_size, show_progress)
            if sparse is not None
            else None
        )
        _insert_new(client, name, plan, new.by_hash, new_sparse)
        _delete_stale(client, name, plan, rows_by_doc)
        client.flush(name)
        new.pending.clear()
        if new_sparse is not None:
            new_sparse.pending.clear()
        chunks = sum(len(chunks) for chunks in plan.new_chunks.values()) + sum(
            indexed[d][plan_hash][1] for d, plan_hash in _kept(plan)
        )
        return BuildReport(
            f"milvus:{name}",
            len(documents),
            plan.added,
            plan.changed,
            plan.removed,
            len(plan.unchanged),
            chunks,
            new.embedded,
            new.resumed,
            time.perf_counter() - started,
            new.ready,
            new.truncated,
            new_sparse.encoded if new_sparse is not None else 0,
            new_sparse.resumed if new_sparse is not None else 0,
            new_sparse.truncated if new_sparse is not None else 0,
        )


def _collection_settings(client: MilvusClient, name: str) -> dict[str, Any] | None:
    if not client.has_collection(name):
        return None
    properties = client.describe_collection(name).get("properties") or {}
    if SETTINGS_PROPERTY not in properties:
        raise ValueError(
            f"Milvus collection {name!r} was not built by gpte (no {SETTINGS_PROPERTY!r} property); use another name"
        )
    return json.loads(properties[SETTINGS_PROPERTY])


def _create_collection(client: MilvusClient, name: str, settings: dict[str, Any], ann: str | None) -> None:
    if settings["similarity"] not in METRICS:
        raise ValueError(
            f"Milvus search supports models with {' or '.join(METRICS)} similarity, not {settings['similarity']!r}"
        )
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=128)
    schema.add_field("doc_id", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
    schema.add_field("doc_hash", DataType.VARCHAR, max_length=64)
    schema.add_field("n_chunks", DataType.INT64)
    schema.add_field(
        "text", DataType.VARCHAR, max_length=MAX_TEXT_BYTES, enable_analyzer=True, analyzer_params=ANALYZER
    )
    schema.add_field("start", DataType.INT64)
    schema.add_field("end", DataType.INT64)
    schema.add_field("metadata", DataType.JSON)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=settings["dimension"])
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    if settings.get("sparse_model_key"):
        schema.add_field(SPARSE_FIELD, DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(
        Function(
            name="bm25", function_type=FunctionType.BM25, input_field_names=["text"], output_field_names=["sparse"]
        )
    )
    index_params = client.prepare_index_params()
    index_type, params = ANN_INDEXES[ann]
    index_params.add_index(
        field_name="vector", index_type=index_type, metric_type=METRICS[settings["similarity"]], params=params
    )
    index_params.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    if settings.get("sparse_model_key"):
        index_params.add_index(field_name=SPARSE_FIELD, index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    client.create_collection(
        name,
        schema=schema,
        index_params=index_params,
        properties={SETTINGS_PROPERTY: json.dumps({**settings, "ann": ann})},
    )


def _indexed_documents(
    client: MilvusClient, name: str
) -> tuple[dict[str, dict[str, tuple[int, int]]], dict[str, list[tuple[str, str]]]]:
    """Scan the collection: doc_id -> content hash -> (rows present, rows expected), and doc_id -> [(pk, hash)]."""
    indexed: dict[str, dict[str, tuple[int, int]]] = {}
    rows_by_doc: dict[str, list[tuple[str, str]]] = {}
    iterator = client.query_iterator(name, batch_size=SCAN_ROWS, output_fields=["pk", "doc_id", "doc_hash", "n_chunks"])
    try:
        while batch := iterator.next():
            for row in batch:
                present, expected = indexed.setdefault(row["doc_id"], {}).get(row["doc_hash"], (0, row["n_chunks"]))
                indexed[row["doc_id"]][row["doc_hash"]] = (present + 1, expected)
                rows_by_doc.setdefault(row["doc_id"], []).append((row["pk"], row["doc_hash"]))
    finally:
        iterator.close()
    return indexed, rows_by_doc


def _old_hashes(documents: list, indexed: dict[str, dict[str, tuple[int, int]]]) -> dict[str, str]:
    """doc_id -> the hash its document counts as indexed with: the current hash when all its rows are
    present, else another one (so that the document is re-indexed)."""
    current = {doc.id: doc.content_hash() for doc in documents}
    old = {}
    for doc_id, versions in indexed.items():
        complete = {h for h, (present, expected) in versions.items() if present == expected}
        old[doc_id] = current.get(doc_id) if current.get(doc_id) in complete else "incomplete"
    return old


def _kept(plan: Plan) -> list[tuple[str, str]]:
    return [(doc.id, doc.content_hash()) for doc in plan.documents if doc.id in plan.unchanged]


def _primary_key(doc_id: str, doc_hash: str, chunk: int) -> str:
    return f"{hashlib.sha256(doc_id.encode('utf-8')).hexdigest()[:32]}-{doc_hash[:32]}-{chunk}"


def _insert_new(
    client: MilvusClient, name: str, plan: Plan, vectors_by_hash: dict[str, np.ndarray], sparse: Any = None
) -> None:
    """Insert the new chunks' rows: dense vectors by ``Plan.dense_key``, ``sparse`` (the build's ``NewSparse``, for
    the ``splade`` field) by text hash."""
    rows = []
    for doc in plan.documents:
        chunks = plan.new_chunks.get(doc.id, [])
        doc_hash = doc.content_hash()
        for number, (text, start, end) in enumerate(chunks):
            if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
                raise ValueError(
                    f"document {doc.id!r}: a chunk of {len(text.encode('utf-8')):,} bytes is over Milvus's "
                    f"{MAX_TEXT_BYTES:,}; index with --chunk-tokens"
                )
            rows.append(
                {
                    "pk": _primary_key(doc.id, doc_hash, number),
                    "doc_id": doc.id,
                    "doc_hash": doc_hash,
                    "n_chunks": len(chunks),
                    "text": text,
                    "start": start,
                    "end": end,
                    "metadata": doc.metadata,
                    "vector": vectors_by_hash[plan.dense_key(doc.id, number)].tolist(),
                }
            )
            if sparse is not None:
                rows[-1][SPARSE_FIELD] = sparse_row(sparse.matrix, sparse.rows[text_hash(text)])
    for first in range(0, len(rows), INSERT_ROWS):
        client.upsert(name, rows[first : first + INSERT_ROWS])


def sparse_row(matrix: Any, row: int) -> dict[int, float]:
    """Row ``row`` of a CSR matrix as Milvus's sparse vector: {dimension: weight}."""
    start, end = matrix.indptr[row], matrix.indptr[row + 1]
    return dict(zip(matrix.indices[start:end].tolist(), matrix.data[start:end].tolist()))


def _delete_stale(client: MilvusClient, name: str, plan: Plan, rows_by_doc: dict[str, list[tuple[str, str]]]) -> None:
    """Delete the rows of removed documents and of every version but the current one."""
    current = {doc.id: doc.content_hash() for doc in plan.documents}
    stale = [pk for doc_id, rows in rows_by_doc.items() for pk, doc_hash in rows if current.get(doc_id) != doc_hash]
    for first in range(0, len(stale), INSERT_ROWS):
        client.delete(name, ids=stale[first : first + INSERT_ROWS])


class MilvusIndex:
    """An index in a Milvus collection, searched as ``gpte.search.index.Index`` is."""

    def __init__(
        self,
        client: MilvusClient,
        name: str,
        settings: dict[str, Any],
        embedder: DenseModel,
        sparse_model: SparseModel | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self.settings = settings
        self.embedder = embedder
        self.sparse_model = sparse_model
        # without sparse vectors, the modes Milvus indexes always had (an unknown mode names these)
        self.modes = available_modes({"dense", "lexical"} | ({"sparse"} if sparse_model is not None else set()))

    @classmethod
    def open(
        cls,
        uri: str | Path,
        name: str,
        embedder: DenseModel | None = None,
        token: str | None = None,
        sparse_model: SparseModel | None = None,
    ) -> MilvusIndex:
        """Open the collection ``name`` at ``uri``; ``embedder`` and ``sparse_model`` default to the models it was
        built with, and a different model is refused."""
        client = connect(uri, token)
        settings = _collection_settings(client, name)
        if settings is None:
            raise FileNotFoundError(
                f"no collection {name!r} at {uri}; build one with build_milvus_index (gpte index --milvus URI)"
            )
        where = f"Milvus collection {name!r}"
        embedder = open_model(embedder, settings, where)
        sparse = open_kind_model(SPARSE, sparse_model, settings, where)
        client.load_collection(name)
        return cls(client, name, settings, embedder, sparse)

    def __len__(self) -> int:
        """Chunks (rows) in the collection."""
        return int(self.client.get_collection_stats(self.name)["row_count"])

    @property
    def dense_mode(self) -> str:
        """The collection's dense search: "exact" (FLAT) or "hnsw"."""
        return self.settings.get("ann") or "exact"

    def search(
        self,
        queries: str | list[str],
        k: int = 10,
        mode: str = "dense",
        dense_mode: str | None = None,
        filters: dict[str, Any] | None = None,
        fusion: str = "rrf",
        weights: list[float] | None = None,
        candidates: int = 100,
        ef_search: int = 128,
        reranker: Reranker | None = None,
        batch_size: int = 32,
        query_vectors: np.ndarray | None = None,
    ) -> list[Hit] | list[list[Hit]]:
        """Rank the collection's documents for each query; arguments as ``gpte.search.index.Index.search``
        (the sparse modes need a collection built with a ``sparse_model``). The dense search is the collection's
        own vector index (``dense_mode`` None or the same one)."""
        single = isinstance(queries, str)
        query_list = [queries] if single else list(queries)
        check_search(query_list, k, mode, fusion, self.modes)
        if dense_mode not in (None, self.dense_mode):
            raise ValueError(
                f"Milvus collection {self.name!r} searches with {self.dense_mode!r} only (its vector index); "
                f"rebuild it with another ann for {dense_mode!r}"
            )
        retrievers = mode_retrievers(mode)
        if weights is not None and len(weights) != len(retrievers):
            raise ValueError(
                f"{len(weights)} fusion weights for mode {mode!r}; give one per retriever ({', '.join(retrievers)})"
            )
        depth = search_depth(k, candidates, mode, reranker)
        expression = filter_expression(filters)
        per_retriever = []
        for retriever in retrievers:
            if retriever == "dense":
                vectors = query_embeddings(self.embedder, query_list, query_vectors, batch_size)
                per_retriever.append(
                    self._search_field(
                        [v.tolist() for v in vectors],
                        "vector",
                        depth,
                        expression,
                        {"params": {"ef": max(ef_search, depth)}},
                    )
                )
            elif retriever == "sparse":
                matrix = self.sparse_model.encode(query_list, role="query", batch_size=batch_size, show_progress=False)
                rows = [sparse_row(matrix, q) for q in range(len(query_list))]
                per_retriever.append(self._search_field(rows, SPARSE_FIELD, depth, expression, {"metric_type": "IP"}))
            else:
                per_retriever.append(
                    self._search_field(query_list, "sparse", depth, expression, {"metric_type": "BM25"})
                )
        if len(per_retriever) == 1:
            ranked = per_retriever[0]
        else:
            ranked = [fuse_hits(list(lists), fusion, depth, weights) for lists in zip(*per_retriever)]
        results = [rerank_hits(query, hits, k, reranker) for query, hits in zip(query_list, ranked)]
        return results[0] if single else results

    def _search_field(
        self, data: list, field: str, depth: int, expression: str, params: dict[str, Any]
    ) -> list[list[Hit]]:
        """One Milvus search of ``field`` per group of queries whose hits stay under SEARCH_HITS (Milvus caps
        queries x limit at 16,384 and a reply at 256 MiB)."""
        per_request = max(1, SEARCH_HITS // depth)
        hits = []
        for first in range(0, len(data), per_request):
            results = self.client.search(
                self.name,
                data=data[first : first + per_request],
                anns_field=field,
                limit=depth,
                filter=expression,
                output_fields=ROW_FIELDS,
                search_params=params,
                group_by_field="doc_id",
            )
            hits.extend(_hits_best_first(result) for result in results)
        return hits


def _hits_best_first(result: list[dict[str, Any]]) -> list[Hit]:
    """Hits of one Milvus result list (best first) with scores that decrease along it: Milvus Lite returns BM25
    matches as negative distances, a server as positive scores."""
    distances = [float(hit["distance"]) for hit in result]
    sign = -1.0 if len(distances) > 1 and distances[0] < distances[-1] else 1.0
    return [
        Hit(
            hit["entity"]["doc_id"],
            sign * distance,
            hit["entity"]["text"],
            hit["entity"]["start"],
            hit["entity"]["end"],
            hit["entity"]["metadata"] or {},
        )
        for hit, distance in zip(result, distances)
    ]


def fuse_hits(rankings: list[list[Hit]], method: str, top: int, weights: list[float] | None = None) -> list[Hit]:
    """``gpte.search.fusion.fuse`` over hit lists (documents numbered in order of appearance); each document
    keeps the chunk of the first list it appears in."""
    pool = [hit for hits in rankings for hit in hits]
    numbers: dict[str, int] = {}
    for hit in pool:
        numbers.setdefault(hit.doc_id, len(numbers))
    converted, offset = [], 0
    for hits in rankings:
        converted.append(
            Ranking(
                np.array([numbers[h.doc_id] for h in hits], dtype=np.int64),
                np.array([h.score for h in hits], dtype=np.float32),
                np.arange(offset, offset + len(hits), dtype=np.int64),
            )
        )
        offset += len(hits)
    fused = fuse(converted, method, top, weights)
    return [
        replace(pool[chunk], score=float(score)) for chunk, score in zip(fused.chunks.tolist(), fused.scores.tolist())
    ]


def filter_expression(filters: dict[str, Any] | None) -> str:
    """Metadata equality filters as a Milvus boolean expression over the JSON ``metadata`` field
    (``(metadata["year"] == 1960 or metadata["year"] == 1961) and (metadata["lang"] == "en")``; equalities, not
    ``in``, because Milvus Lite takes ``in`` on plain fields only); "" for no filter."""
    wanted = normalize_filters(filters)
    clauses = []
    for key, values in wanted.items():
        if not isinstance(key, str):
            raise ValueError(f"filter field {key!r} is not a string")
        path = f"metadata[{json.dumps(key)}]"
        clauses.append("(" + " or ".join(f"{path} == {json.dumps(value)}" for value in sorted(values, key=repr)) + ")")
    return " and ".join(clauses)
