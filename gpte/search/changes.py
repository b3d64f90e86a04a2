"""What a build has to do, shared by every index back-end (``gpte.search.index`` on disk,
``gpte.search.milvus`` in a Milvus server): the model and settings an index is built with, which documents
changed since the last build, and the vectors of their new chunks (kept in pending parts, so a killed build
resumes without embedding them again), and the same for a sparse model's vectors (``gpte.search.sparse``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from gpte.data.documents import Document
from gpte.models.loading import load_model
from gpte.models.protocol import DenseModel, SparseModel, TextModel, require_dense, require_sparse
from gpte.runtime.vector_store import VectorStore
from gpte.search.chunking import chunk_spans, resolve_chunk_tokens, resolve_overlap
from gpte.search.sparse import SparsePending, stack_rows
from gpte.search.store import pending_folder, text_hash

SAVE_EVERY = 4096  # chunks embedded per pending part (the most a killed build loses)
SETTINGS_CHECKED = ("model_key", "chunk_tokens", "overlap")
INDEX_SETTINGS_CHECKED = (*SETTINGS_CHECKED, "sparse_model_key")  # an index that may hold sparse vectors
SETTING_NAMES = {"model_key": "model", "sparse_model_key": "sparse model"}
SPARSE_LOAD_OPTIONS = ("max_seq_length", "top_k", "threshold", "dtype")  # recorded, to load the same sparse model


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
    sparse_encoded: int = 0  # distinct chunks the sparse model encoded now (an index with one)
    sparse_resumed: int = 0  # sparse vectors taken from an interrupted build's pending parts
    sparse_truncated: int = 0  # chunks encoded now that the sparse model cut (chunks are sized for the dense model)


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
    keys: tuple[str, ...] = SETTINGS_CHECKED,
) -> None:
    """Refuse to update the index ``where`` (built with ``previous`` settings) with other model or chunking
    (``keys``: the settings compared; a missing one counts as None)."""
    for key in keys:
        if previous.get(key) != settings.get(key):
            what = SETTING_NAMES.get(key, key)
            raise ValueError(
                f"{where} was built with another {what} ({previous.get(key)!r:.40} vs {settings.get(key)!r:.40}); {remedy}"
            )


def plan_changes(
    documents: list[Document], old_hashes: dict[str, str], embedder: TextModel, chunk_tokens: int, overlap: int
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


# ----------------------------------------------------------------- sparse vectors


def load_build_sparse(
    given: SparseModel | str | Path | None, previous: dict[str, Any] | None
) -> tuple[SparseModel | None, str | None]:
    """The sparse model of a build and the name recorded for it: ``given`` (a model, or a name or folder loaded with
    ``gpte.models.sparse.load_sparse_encoder``), else the one the existing index was built with (``previous``, its
    manifest), else none."""
    if given is None:
        if not previous or not previous.get("sparse_model_key"):
            return None, None
        return _load_sparse(previous), previous.get("sparse_model")
    if isinstance(given, (str, Path)):
        from gpte.models.sparse import load_sparse_encoder

        return load_sparse_encoder(given), str(given)
    return require_sparse(given, "a search index"), getattr(given, "name", None)


def open_sparse_model(given: SparseModel | None, settings: dict[str, Any], where: str) -> SparseModel | None:
    """The sparse model to search the index ``where`` with: ``given``, else the one it was built with (loaded by the
    recorded name and options); None for an index without sparse vectors. Another model is refused."""
    if not settings.get("sparse_model_key"):
        if given is not None:
            raise ValueError(f"{where} has no sparse vectors; build it with a sparse_model to search it with one")
        return None
    model = _load_sparse(settings) if given is None else require_sparse(given, "a search index")
    if model.fingerprint != settings["sparse_model_key"]:
        raise ValueError(
            f"{where} was built with another sparse model ({settings.get('sparse_model')!r}); open it with that model"
        )
    return model


def _load_sparse(settings: dict[str, Any]) -> SparseModel:
    from gpte.models.sparse import load_sparse_encoder

    if not settings.get("sparse_model"):
        raise ValueError(
            "the index's sparse model was given as an object without a name to load it by; pass it again (sparse_model=)"
        )
    options = {key: value for key, value in (settings.get("sparse_options") or {}).items() if value is not None}
    return load_sparse_encoder(settings["sparse_model"], **options)


def sparse_settings(model: SparseModel | None, name: str | None) -> dict[str, Any]:
    """What an index records of its sparse model (all None without one): name, fingerprint, vocabulary size and the
    loading options that shape its vectors (``SPARSE_LOAD_OPTIONS`` found in its ``info()``)."""
    if model is None:
        return {"sparse_model": None, "sparse_model_key": None, "sparse_vocab_size": None, "sparse_options": None}
    info = model.info() if callable(getattr(model, "info", None)) else {}
    return {
        "sparse_model": name,
        "sparse_model_key": model.fingerprint,
        "sparse_vocab_size": int(model.vocab_size),
        "sparse_options": {key: info[key] for key in SPARSE_LOAD_OPTIONS if key in info},
    }


def chunk_settings(model: TextModel, chunk_tokens: int | None, overlap: int | None) -> dict[str, Any]:
    """The settings of an index without a dense model: chunking counted with ``model`` (the sparse one), no dense
    model (model, model_key, backend, similarity, dimension None)."""
    chunk_tokens = resolve_chunk_tokens(model, chunk_tokens)
    return {
        "model": None,
        "model_key": None,
        "backend": None,
        "chunk_tokens": chunk_tokens,
        "overlap": resolve_overlap(chunk_tokens, overlap),
        "similarity": None,
        "dimension": None,
    }


@dataclass
class NewSparse:
    """The sparse vectors of a build's distinct new chunks: ``matrix`` rows, ``rows`` (text hash -> row); how many
    came from an interrupted build's pending parts, how many were encoded now and cut by the model; the pending store
    (cleared by the caller once the build is live)."""

    matrix: Any
    rows: dict[str, int]
    resumed: int
    encoded: int
    truncated: int
    pending: SparsePending


def encode_new_sparse(
    texts: list[str], model: SparseModel, pending_root: Path, batch_size: int, show_progress: bool
) -> NewSparse:
    """Sparse vectors (``role="document"``) of the distinct ``texts``: those an interrupted build left pending under
    ``pending_root`` (``pending-sparse-<key>``), the others encoded SAVE_EVERY at a time and kept as pending parts."""
    vocab_size = int(model.vocab_size)
    pending = SparsePending(pending_folder(pending_root, model.fingerprint, "sparse"), vocab_size)
    distinct = list(dict.fromkeys(texts))
    hashes = [text_hash(text) for text in distinct]
    done = pending.get(hashes)
    resumed = len(done)
    todo = [text for text, h in zip(distinct, hashes) if h not in done]
    truncated = 0
    with tqdm(total=len(distinct), initial=resumed, desc="sparse", unit="chunk", disable=not show_progress) as bar:
        for start in range(0, len(todo), SAVE_EVERY):
            part = todo[start : start + SAVE_EVERY]
            if callable(getattr(model, "encode_with_report", None)):
                result = model.encode_with_report(part, role="document", batch_size=batch_size, show_progress=False)
                vectors, truncated = result.vectors, truncated + result.report.n_truncated
            else:
                vectors = model.encode(part, role="document", batch_size=batch_size, show_progress=False)
            pending.add(part, vectors)
            done.update(pending.get([text_hash(text) for text in part]))
            bar.update(len(part))
    matrix = stack_rows([done[h] for h in hashes], vocab_size)
    return NewSparse(matrix, {h: row for row, h in enumerate(hashes)}, resumed, len(todo), truncated, pending)
