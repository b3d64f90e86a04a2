"""Corpus embedding as a Ray Data pipeline, for collections larger than one machine embeds in reasonable time.

    embed_corpus_ray("docs/", "vectors/", model="all-MiniLM-L6-v2", concurrency=8, num_gpus=1)
    build_index("my-index", "docs/", vectors_from="vectors/")          # or build_milvus_index(...): nothing re-embedded

Files are spread over the cluster and read there (``gpte.data.documents``, so ids and metadata are the
index's), documents are chunked and embedded by ``concurrency`` actors that each load the model once (on a GPU
each with ``num_gpus``), and the chunks are written as Parquet shards: doc_id, text_hash, text, start, end,
metadata (JSON), vector. The shards are written under a temporary name and renamed when complete, with
``_gpte-vectors.json`` (model key, chunking) beside them; an index build reads them as ready-made vectors of its
chunks (by ``text_hash``: the hash of the chunk's dense id, ``gpte.search.changes.dense_ids``, which is its text
unless late chunking), so its own pass embeds only what the shards lack. With ``late_chunking`` an actor encodes its
documents whole and pools each chunk (``gpte.search.changes.late_chunk_vectors``), as the index build does.

Ray is started locally when no cluster is connected (``ray.init()``); connect to a cluster first
(``ray.init(address=...)``) to run it there. The actors never take every CPU (or more GPUs than there are): Ray
Data would then start them all and never run the tasks that read the files, so the pipeline would wait forever
with no rows (``usable_concurrency`` lowers ``concurrency`` to what fits, with a warning).
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gpte.atomic import check_destination
from gpte.data.documents import document_files, file_documents
from gpte.errors import extra_needed
from gpte.locking import one_writer
from gpte.models.chunking import ChunkSpan, chunk_spans
from gpte.models.loading import load_model
from gpte.search.changes import build_settings, check_same_settings, dense_ids, late_chunk_vectors
from gpte.search.store import text_hash

VECTORS_MANIFEST = "_gpte-vectors.json"  # a leading "_": Parquet dataset readers skip it
READ_CPUS = 1.0  # what the file-reading tasks need free beside the actors (a Ray task's default CPU request)


@one_writer("output")  # a second run writing OUTPUT fails at once instead of deleting the first's partial shards
def embed_corpus_ray(
    source: str | Path,
    output: str | Path,
    model: str | None = None,
    chunk_tokens: int | None = None,
    overlap: int | None = None,
    text_field: str = "text",
    batch_size: int = 32,
    concurrency: int = 1,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    model_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    chunk_boundary: str = "token",
    late_chunking: bool = False,
    window_overlap: int | None = None,
) -> int:
    """Embed the chunks of every document in ``source`` (file or folder) with Ray Data; write Parquet shards to
    ``output``. Returns the number of chunks.

    Args:
        model, model_options: the model (``gpte.models.loading.load_model(model, **model_options)`` in every actor).
        chunk_tokens, overlap, chunk_boundary, late_chunking, window_overlap: as ``build_index`` (they must match
            the index the vectors are for; unset values are not taken from an index here).
        batch_size: documents per actor call (the model encodes their chunks in batches of the same size).
        concurrency, num_cpus, num_gpus: embedding actors, and the CPUs and GPUs each one holds (leave a CPU
            free for the tasks that read the files).

    Raises:
        FileExistsError: ``output`` exists and ``overwrite`` is False (``gpte.atomic.check_destination`` names the
            other refusals of an output path).
        gpte.locking.OutputLockedError: another process is writing ``output``.
    """
    with extra_needed("scale"):
        import ray

    output = check_destination(output, overwrite, folder=True)
    options = dict(model_options or {})
    settings = build_settings(  # checks chunking and late chunking, keys them
        load_model(model, **options), model, chunk_tokens, overlap, chunk_boundary, late_chunking, window_overlap
    )
    files = document_files(source)
    partial = output.with_name(output.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    concurrency = usable_concurrency(concurrency, num_cpus, num_gpus, ray.cluster_resources())
    dataset = ray.data.from_items([{"path": str(path), "name": name} for path, name in files])
    documents = dataset.flat_map(lambda item: _read_file(item, text_field))
    chunks = documents.map_batches(
        _ChunkEmbedder,
        fn_constructor_kwargs={
            "model": model,
            "options": options,
            "chunking": {key: settings[key] for key in _ChunkEmbedder.CHUNKING},
            "batch_size": batch_size,
        },
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_cpus=num_cpus,
        num_gpus=num_gpus,
    )
    chunks.write_parquet(str(partial))
    count = sum(pq.ParquetFile(path).metadata.num_rows for path in partial.glob("*.parquet"))
    (partial / VECTORS_MANIFEST).write_text(json.dumps({**settings, "chunks": count}, indent=2), encoding="utf-8")
    if output.exists():
        shutil.rmtree(output)
    partial.rename(output)
    return count


def usable_concurrency(concurrency: int, num_cpus: float, num_gpus: float, resources: dict[str, float]) -> int:
    """The number of embedding actors to start: ``concurrency``, lowered (with a warning naming both numbers) so
    that the actors hold at most the cluster's CPUs less ``READ_CPUS`` and at most its GPUs.

    Args:
        concurrency, num_cpus, num_gpus: the actors asked for and what each one holds.
        resources: the cluster's resources (``ray.cluster_resources()``: ``{"CPU": 2.0, "GPU": 1.0, ...}``).

    Raises:
        ValueError: ``concurrency`` is not a positive integer, or not even one actor fits (the fix is named).
    """
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    fits = [(cpus - READ_CPUS) / num_cpus if num_cpus > 0 else math.inf]
    if num_gpus > 0:
        fits.append(gpus / num_gpus)
    usable = min(concurrency, math.floor(min(fits) + 1e-9))
    if usable < 1:
        raise ValueError(
            f"the Ray cluster has {cpus:g} CPUs and {gpus:g} GPUs: one embedding actor with num_cpus={num_cpus:g} "
            f"and num_gpus={num_gpus:g} does not fit beside the {READ_CPUS:g} CPU the file reading needs; lower "
            "num_cpus (--num-cpus, e.g. 0.5) or num_gpus, or connect to a larger cluster (--ray-address)"
        )
    if usable < concurrency:
        warnings.warn(
            f"concurrency {concurrency} lowered to {usable}: the Ray cluster has {cpus:g} CPUs and {gpus:g} GPUs, "
            f"each embedding actor holds {num_cpus:g} CPUs and {num_gpus:g} GPUs, and {READ_CPUS:g} CPU stays free "
            "for reading the files (with every CPU taken by actors the pipeline would wait forever)",
            stacklevel=2,
        )
    return usable


def _read_file(item: dict[str, str], text_field: str) -> list[dict[str, Any]]:
    return [
        {"doc_id": doc.id, "text": doc.text, "metadata": json.dumps(doc.metadata, ensure_ascii=False)}
        for doc in file_documents(Path(item["path"]), item["name"], text_field)
    ]


class _ChunkEmbedder:
    """A Ray actor: chunks documents and embeds the chunks (each on its own, or late-chunked from its whole document)
    with its own copy of the model."""

    CHUNKING = ("chunk_tokens", "overlap", "chunk_boundary", "late_chunking", "window_overlap")  # settings it uses

    def __init__(self, model: str | None, options: dict[str, Any], chunking: dict[str, Any], batch_size: int) -> None:
        self.embedder = load_model(model, **options)
        self.chunking, self.batch_size = chunking, batch_size

    def __call__(self, batch: pa.Table) -> pa.Table:
        columns: dict[str, list[Any]] = {
            "doc_id": [],
            "text_hash": [],
            "text": [],
            "start": [],
            "end": [],
            "metadata": [],
        }
        chunking = self.chunking
        texts, spans = batch["text"].to_pylist(), []
        for doc_id, text, metadata in zip(batch["doc_id"].to_pylist(), texts, batch["metadata"].to_pylist()):
            spans.append(
                chunk_spans(
                    text, self.embedder, chunking["chunk_tokens"], chunking["overlap"], chunking["chunk_boundary"]
                )
            )
            ids = dense_ids(text, spans[-1], chunking["late_chunking"], chunking["window_overlap"])
            for span, key in zip(spans[-1], ids):
                chunk = text[span.start : span.end]
                for column, value in zip(columns, (doc_id, text_hash(key), chunk, span.start, span.end, metadata)):
                    columns[column].append(value)
        vectors = self._vectors(texts, spans, columns["text"])
        vector_column = pa.FixedSizeListArray.from_arrays(
            pa.array(vectors.reshape(-1)), self.embedder.dimension
        )  # plain Parquet, any reader
        return pa.table({**columns, "vector": vector_column})

    def _vectors(self, texts: list[str], spans: list[list[ChunkSpan]], chunks: list[str]) -> np.ndarray:
        """The chunks' vectors: late-chunked from the documents ``texts`` (their ``spans``), or ``chunks`` encoded."""
        if self.chunking["late_chunking"]:
            return late_chunk_vectors(self.embedder, texts, spans, self.chunking["window_overlap"], self.batch_size)
        return np.asarray(
            self.embedder.encode(chunks, role="document", batch_size=self.batch_size, show_progress=False),
            dtype=np.float32,
        )


def read_vectors(folder: str | Path, settings: dict[str, Any]) -> dict[str, np.ndarray]:
    """Dense-id hash (the chunk text's, without late chunking) -> vector from ``embed_corpus_ray``'s shards in
    ``folder``, checked against the settings of the index being built (same model, chunking and late chunking).

    Raises:
        FileNotFoundError: no complete shards in ``folder``.
        ValueError: shards made with another model or chunking.
    """
    folder = Path(folder)
    manifest_path = folder / VECTORS_MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{folder} holds no complete vectors from embed_corpus_ray (no {VECTORS_MANIFEST})")
    check_same_settings(
        f"the vectors in {folder}",
        json.loads(manifest_path.read_text(encoding="utf-8")),
        settings,
        "embed them again with this index's model and chunking",
    )
    table = pq.read_table(folder, columns=["text_hash", "vector"])
    vectors = np.asarray(
        table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False), dtype=np.float32
    )
    return dict(zip(table.column("text_hash").to_pylist(), vectors.reshape(len(table), -1)))
