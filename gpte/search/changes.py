"""What a build has to do, shared by every index back-end (``gpte.search.index`` on disk,
``gpte.search.milvus`` in a Milvus server): the model and settings an index is built with, which documents
changed since the last build, and the vectors of their new chunks (kept in pending parts, so a killed build
resumes without embedding them again)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from gpte.data.documents import Document
from gpte.models.loading import load_model
from gpte.models.protocol import DenseModel, require_dense
from gpte.runtime.vector_store import VectorStore
from gpte.search.chunking import chunk_spans, resolve_chunk_tokens, resolve_overlap
from gpte.search.store import pending_folder, text_hash

SAVE_EVERY = 4096  # chunks embedded per pending part (the most a killed build loses)
SETTINGS_CHECKED = ("model_key", "chunk_tokens", "overlap")


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
    ready: int = 0  # chunk vectors taken from ready-made shards (``vectors_from``)
    truncated: int = 0  # chunks embedded now that the model cut (0 with the model's own chunk budget)


@dataclass
class Plan:
    """Per document in source order: kept as it is (``unchanged``) or new chunks to embed."""

    documents: list[Document]
    unchanged: set[str] = field(default_factory=set)
    new_chunks: dict[str, list[tuple[str, int, int]]] = field(default_factory=dict)  # doc_id -> [(text, start, end)]
    new_texts: list[str] = field(default_factory=list)
    added: int = 0
    changed: int = 0
    removed: int = 0


def load_build_model(
    embedder: DenseModel | None, model: str | None, previous_model: str | None, previous_backend: str = "torch"
) -> tuple[DenseModel, str | None]:
    """The model of a build and the name recorded for it: ``embedder`` if given, else ``load_model`` of
    ``model``, else of the model the existing index was built with (``previous_model``, with its backend)."""
    if embedder is not None:
        return require_dense(embedder, "a search index"), model if model is not None else embedder.name
    if model is None and previous_model is not None:
        return load_model(previous_model, backend=previous_backend), previous_model
    return load_model(model), model


def open_model(embedder: DenseModel | None, settings: dict[str, Any], where: str) -> DenseModel:
    """The model to search the index ``where`` with: ``embedder``, else the one it was built with
    (``load_model`` of the recorded name and backend); a model other than the one it was built with is refused."""
    if embedder is None:
        embedder = load_model(settings["model"], backend=settings.get("backend", "torch"))
    require_dense(embedder, "a search index")
    if embedder.fingerprint != settings["model_key"]:
        raise ValueError(f"{where} was built with another model ({settings['model']!r}); open it with that model")
    return embedder


def build_settings(
    embedder: DenseModel, model: str | None, chunk_tokens: int | None, overlap: int | None
) -> dict[str, Any]:
    """The settings an index records and checks on every later build: model (name and fingerprint),
    chunking (``chunk_tokens`` None: the model's own size, ``gpte.search.chunking.resolve_chunk_tokens``; overlap
    None: an eighth of it), similarity and dimension."""
    chunk_tokens = resolve_chunk_tokens(embedder, chunk_tokens)
    overlap = resolve_overlap(chunk_tokens, overlap)
    return {
        "model": model,
        "model_key": embedder.fingerprint,
        "backend": embedder.info().get("backend", "torch"),  # how to load the model again (its fingerprint has it)
        "chunk_tokens": chunk_tokens,
        "overlap": overlap,
        "similarity": embedder.similarity_name,
        "dimension": embedder.dimension,
    }


def check_same_settings(
    where: str,
    previous: dict[str, Any],
    settings: dict[str, Any],
    remedy: str = "rebuild it (gpte index --rebuild) or use another index name",
) -> None:
    """Refuse to update the index ``where`` (built with ``previous`` settings) with other model or chunking."""
    for key in SETTINGS_CHECKED:
        if previous.get(key) != settings[key]:
            what = "model" if key == "model_key" else key
            raise ValueError(
                f"{where} was built with another {what} ({previous.get(key)!r:.40} vs {settings[key]!r:.40}); {remedy}"
            )


def plan_changes(
    documents: list[Document], old_hashes: dict[str, str], embedder: DenseModel, chunk_tokens: int, overlap: int
) -> Plan:
    """Compare ``documents`` with the indexed ones (doc_id -> content hash) and chunk the new and changed ones."""
    plan = Plan(documents)
    for doc in documents:
        if old_hashes.get(doc.id) == doc.content_hash():
            plan.unchanged.add(doc.id)
            continue
        plan.changed += doc.id in old_hashes
        plan.added += doc.id not in old_hashes
        spans = chunk_spans(doc.text, embedder, chunk_tokens, overlap)
        plan.new_chunks[doc.id] = [(doc.text[s.start : s.end], s.start, s.end) for s in spans]
        plan.new_texts.extend(text for text, _, _ in plan.new_chunks[doc.id])
    plan.removed = len(set(old_hashes) - {doc.id for doc in documents})
    return plan


@dataclass
class NewVectors:
    """The vectors of a build's new chunks by text hash; how many were pending from an interrupted build or
    ready-made; the pending store (cleared by the caller once the build is live)."""

    by_hash: dict[str, np.ndarray]
    resumed: int
    ready: int
    pending: VectorStore
    truncated: int = 0


def embed_new_chunks(
    texts: list[str],
    embedder: DenseModel,
    pending_root: Path,
    model_key_: str,
    batch_size: int,
    show_progress: bool,
    ready: dict[str, np.ndarray] | None = None,
) -> NewVectors:
    """Vectors of the distinct ``texts`` by text hash: ready-made ones (``ready``, e.g. from
    ``gpte.search.distributed``), those an interrupted build left pending under ``pending_root``, and the
    others embedded SAVE_EVERY at a time and kept as pending parts; ``truncated`` counts the chunks the model cut."""
    pending = VectorStore(pending_folder(pending_root, model_key_))
    distinct = list(dict.fromkeys(texts))
    hashes = [text_hash(text) for text in distinct]
    done = {text_hash(text): vector for text, vector in pending.get(distinct).items()}
    resumed = len(done)
    ready_hashes = {h for h in hashes if h not in done and ready and h in ready}
    done.update({h: ready[h] for h in ready_hashes})
    todo = [text for text, h in zip(distinct, hashes) if h not in done]
    truncated = 0
    with tqdm(
        total=len(distinct), initial=len(distinct) - len(todo), desc="index", unit="chunk", disable=not show_progress
    ) as bar:
        for start in range(0, len(todo), SAVE_EVERY):
            part = todo[start : start + SAVE_EVERY]
            result = embedder.encode_with_report(part, role="document", batch_size=batch_size, show_progress=False)
            truncated += result.report.n_truncated
            pending.add(part, result.vectors)
            done.update(zip((text_hash(text) for text in part), result.vectors))
            bar.update(len(part))
    return NewVectors(done, resumed, len(ready_hashes), pending, truncated)
