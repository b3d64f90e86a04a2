"""Corpus embedding as a Ray Data pipeline, for collections larger than one machine embeds in reasonable time.

    embed_corpus_ray("docs/", "vectors/", model="all-MiniLM-L6-v2", concurrency=8, num_gpus=1)
    build_index("my-index", "docs/", vectors_from="vectors/")          # or build_milvus_index(...): nothing re-embedded

Files are spread over the cluster and read there (``gpte.data.documents``, so ids and metadata are the
index's), documents are chunked and embedded by ``concurrency`` actors that each load the model once (on a GPU
each with ``num_gpus``), and the chunks are written as Parquet shards: doc_id, text_hash, text, start, end,
metadata (JSON), vector. The shards are written under a temporary name and renamed when complete, with
``_gpte-vectors.json`` (model key, chunking) beside them; an index build reads them as ready-made vectors of its
chunks (by text hash), so its own pass embeds only what the shards lack.

Ray is started locally when no cluster is connected (``ray.init()``); connect to a cluster first
(``ray.init(address=...)``) to run it there.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gpte.data.documents import document_files, file_documents
from gpte.errors import extra_needed
from gpte.models.loading import load_model
from gpte.search.changes import build_settings, check_same_settings
from gpte.models.chunking import chunk_spans
from gpte.search.store import text_hash

VECTORS_MANIFEST = "_gpte-vectors.json"  # a leading "_": Parquet dataset readers skip it


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
) -> int:
    """Embed the chunks of every document in ``source`` (file or folder) with Ray Data; write Parquet shards to
    ``output``. Returns the number of chunks.

    Args:
        model, model_options: the model (``gpte.models.loading.load_model(model, **model_options)`` in every actor).
        chunk_tokens, overlap: as ``build_index`` (they must match the index the vectors are for).
        batch_size: documents per actor call (the model encodes their chunks in batches of the same size).
        concurrency, num_cpus, num_gpus: embedding actors, and the CPUs and GPUs each one holds (leave a CPU
            free for the tasks that read the files).

    Raises:
        FileExistsError: ``output`` exists and ``overwrite`` is False.
    """
    with extra_needed("scale"):
        import ray

    output = Path(output)
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass overwrite=True (--overwrite) to replace it")
    options = dict(model_options or {})
    settings = build_settings(load_model(model, **options), model, chunk_tokens, overlap)  # checks chunking, keys it
    files = document_files(source)
    partial = output.with_name(output.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    dataset = ray.data.from_items([{"path": str(path), "name": name} for path, name in files])
    documents = dataset.flat_map(lambda item: _read_file(item, text_field))
    chunks = documents.map_batches(
        _ChunkEmbedder,
        fn_constructor_kwargs={
            "model": model,
            "options": options,
            "chunk_tokens": settings["chunk_tokens"],
            "overlap": settings["overlap"],
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


def _read_file(item: dict[str, str], text_field: str) -> list[dict[str, Any]]:
    return [
        {"doc_id": doc.id, "text": doc.text, "metadata": json.dumps(doc.metadata, ensure_ascii=False)}
        for doc in file_documents(Path(item["path"]), item["name"], text_field)
    ]


class _ChunkEmbedder:
    """A Ray actor: chunks documents and embeds the chunks with its own copy of the model."""

    def __init__(
        self, model: str | None, options: dict[str, Any], chunk_tokens: int, overlap: int, batch_size: int
    ) -> None:
        self.embedder = load_model(model, **options)
        self.chunk_tokens, self.overlap, self.batch_size = chunk_tokens, overlap, batch_size

    def __call__(self, batch: pa.Table) -> pa.Table:
        columns: dict[str, list[Any]] = {
            "doc_id": [],
            "text_hash": [],
            "text": [],
            "start": [],
            "end": [],
            "metadata": [],
        }
        for doc_id, text, metadata in zip(
            batch["doc_id"].to_pylist(), batch["text"].to_pylist(), batch["metadata"].to_pylist()
        ):
            for span in chunk_spans(text, self.embedder, self.chunk_tokens, self.overlap):
                chunk = text[span.start : span.end]
                for key, value in zip(columns, (doc_id, text_hash(chunk), chunk, span.start, span.end, metadata)):
                    columns[key].append(value)
        vectors = np.asarray(
            self.embedder.encode(columns["text"], role="document", batch_size=self.batch_size, show_progress=False),
            dtype=np.float32,
        )
        vector_column = pa.FixedSizeListArray.from_arrays(
            pa.array(vectors.reshape(-1)), self.embedder.dimension
        )  # plain Parquet, any reader
        return pa.table({**columns, "vector": vector_column})


def read_vectors(folder: str | Path, settings: dict[str, Any]) -> dict[str, np.ndarray]:
    """Chunk-text hash -> vector from ``embed_corpus_ray``'s shards in ``folder``, checked against the settings
    of the index being built (same model and chunking).

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
