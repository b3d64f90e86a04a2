"""What a build has to do, shared by every index back-end (``gpte.search.index`` on disk,
``gpte.search.milvus`` in a Milvus server): the model and settings an index is built with, which documents
changed since the last build, and the vectors of their new chunks (kept in pending parts, so a killed build
resumes without embedding them again), and the same for a sparse model's vectors (``gpte.search.sparse``) and a
multi-vector model's token vectors (``gpte.search.multivector``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from gpte.data.documents import Document
from gpte.models.loading import load_model
from gpte.models.protocol import (
    DenseModel,
    MultiVectorModel,
    SparseModel,
    TextModel,
    require_dense,
    require_multivector,
    require_sparse,
)
from gpte.runtime.vector_store import TokenVectorStore, VectorStore
from gpte.models.chunking import chunk_spans, resolve_chunk_tokens, resolve_overlap
from gpte.search.sparse import SparsePending, stack_rows
from gpte.search.store import pending_folder, text_hash

SAVE_EVERY = 4096  # chunks embedded per pending part (the most a killed build loses)
SETTINGS_CHECKED = ("model_key", "chunk_tokens", "overlap")
# an index that may hold sparse and token vectors
INDEX_SETTINGS_CHECKED = (*SETTINGS_CHECKED, "sparse_model_key", "multivector_model_key")
SETTING_NAMES = {
    "model_key": "model",
    "sparse_model_key": "sparse model",
    "multivector_model_key": "multi-vector model",
}


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
    multivector_encoded: int = 0  # distinct chunks the multi-vector model encoded now (an index with one)
    multivector_resumed: int = 0  # token vectors taken from an interrupted build's pending parts
    multivector_truncated: int = 0  # chunks encoded now that the multi-vector model cut


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
    chunking (``chunk_tokens`` None: the model's own size, ``gpte.models.chunking.resolve_chunk_tokens``; overlap
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


# ----------------------------------------------------------------- sparse and multi-vector models


@dataclass(frozen=True)
class ModelKind:
    """A kind of model an index may hold beside (or instead of) the dense one, and how the index records it: the
    manifest keys ``{name}_model`` (the name it loads by), ``{name}_model_key`` (its fingerprint), ``size_key`` and
    ``{name}_options`` (the loading options found in its ``info()`` that shape its vectors).

    Attributes:
        name: ``sparse`` or ``multivector``.
        label: how messages name the model.
        vectors: how messages name its vectors.
        argument: the build/open argument that gives it.
        size_key, size_attribute: the manifest key of its vector size and the model attribute holding it.
        load_options: the ``info()`` keys recorded to load the same model again.
        loader: ``module:function`` loading it by name with those options.
        require: the protocol check (``gpte.models.protocol.require_*``).
    """

    name: str
    label: str
    vectors: str
    argument: str
    size_key: str
    size_attribute: str
    load_options: tuple[str, ...]
    loader: str
    require: Callable[[Any, str], Any]

    def load(self, name: str | Path, **options: Any) -> Any:
        module, function = self.loader.split(":")
        return getattr(importlib.import_module(module), function)(name, **options)


SPARSE = ModelKind(
    "sparse",
    "sparse model",
    "sparse vectors",
    "sparse_model",
    "sparse_vocab_size",
    "vocab_size",
    ("max_seq_length", "top_k", "threshold", "dtype"),
    "gpte.models.sparse:load_sparse_encoder",
    require_sparse,
)
MULTIVECTOR = ModelKind(
    "multivector",
    "multi-vector model",
    "token vectors",
    "multivector_model",
    "multivector_dimension",
    "dimension",
    (
        "dimension",
        "max_seq_length",
        "query_length",
        "document_length",
        "query_expansion",
        "skiplist",
        "similarity",
        "dtype",
    ),
    "gpte.models.multivector:load_multivector_encoder",
    require_multivector,
)


def load_build_kind_model(kind: ModelKind, given: Any, previous: dict[str, Any] | None) -> tuple[Any, str | None]:
    """The ``kind`` model of a build and the name recorded for it: ``given`` (a model, or a name or folder loaded with
    ``kind.loader``), else the one the existing index was built with (``previous``, its manifest), else none."""
    if given is None:
        if not previous or not previous.get(f"{kind.name}_model_key"):
            return None, None
        return _load_kind_model(kind, previous), previous.get(f"{kind.name}_model")
    if isinstance(given, (str, Path)):
        return kind.load(given), str(given)
    return kind.require(given, "a search index"), getattr(given, "name", None)


def open_kind_model(kind: ModelKind, given: Any, settings: dict[str, Any], where: str) -> Any:
    """The ``kind`` model to search the index ``where`` with: ``given``, else the one it was built with (loaded by the
    recorded name and options); None for an index without its vectors. Another model is refused."""
    if not settings.get(f"{kind.name}_model_key"):
        if given is not None:
            raise ValueError(f"{where} has no {kind.vectors}; build it with a {kind.argument} to search it with one")
        return None
    model = _load_kind_model(kind, settings) if given is None else kind.require(given, "a search index")
    if model.fingerprint != settings[f"{kind.name}_model_key"]:
        raise ValueError(
            f"{where} was built with another {kind.label} ({settings.get(f'{kind.name}_model')!r}); open it with that "
            "model"
        )
    return model


def _load_kind_model(kind: ModelKind, settings: dict[str, Any]) -> Any:
    if not settings.get(f"{kind.name}_model"):
        raise ValueError(
            f"the index's {kind.label} was given as an object without a name to load it by; pass it again "
            f"({kind.argument}=)"
        )
    options = {key: value for key, value in (settings.get(f"{kind.name}_options") or {}).items() if value is not None}
    return kind.load(settings[f"{kind.name}_model"], **options)


def kind_settings(kind: ModelKind, model: Any, name: str | None) -> dict[str, Any]:
    """What an index records of its ``kind`` model (all None without one): name, fingerprint, vector size and the
    loading options that shape its vectors (``kind.load_options`` found in its ``info()``)."""
    keys = (f"{kind.name}_model", f"{kind.name}_model_key", kind.size_key, f"{kind.name}_options")
    if model is None:
        return dict.fromkeys(keys)
    info = model.info() if callable(getattr(model, "info", None)) else {}
    values = (
        name,
        model.fingerprint,
        int(getattr(model, kind.size_attribute)),
        {key: info[key] for key in kind.load_options if key in info},
    )
    return dict(zip(keys, values))


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


@dataclass
class NewTokens:
    """The token vectors of a build's distinct new chunks: ``vectors`` (one text per distinct chunk), ``rows`` (text
    hash -> its position there); how many came from an interrupted build's pending parts, how many were encoded now
    and cut by the model; the pending store (cleared by the caller once the build is live)."""

    vectors: Any
    rows: dict[str, int]
    resumed: int
    encoded: int
    truncated: int
    pending: TokenVectorStore


def encode_new_tokens(
    texts: list[str], model: MultiVectorModel, pending_root: Path, batch_size: int, show_progress: bool
) -> NewTokens:
    """Token vectors (``role="document"``) of the distinct ``texts``: those an interrupted build left pending under
    ``pending_root`` (``pending-multivector-<key>``), the others encoded SAVE_EVERY at a time and kept as pending
    parts."""
    from gpte.models.multivector import TokenVectors

    pending = TokenVectorStore(pending_folder(pending_root, model.fingerprint, "multivector"), model.dimension)
    distinct = list(dict.fromkeys(texts))
    counts = {"encoded": 0, "truncated": 0}

    def encode(part: list[str]) -> Any:
        result = model.encode_with_report(part, role="document", batch_size=batch_size, show_progress=False)
        counts["encoded"] += len(part)
        counts["truncated"] += result.report.n_truncated
        return result.vectors

    parts = []
    with tqdm(total=len(distinct), desc="multivector", unit="chunk", disable=not show_progress) as bar:
        for start in range(0, len(distinct), SAVE_EVERY):
            parts.append(pending.vectors(distinct[start : start + SAVE_EVERY], encode))
            bar.update(len(parts[-1]))
    vectors = TokenVectors.concat(parts) if parts else TokenVectors.from_list([], model.dimension)
    rows = {text_hash(text): row for row, text in enumerate(distinct)}
    return NewTokens(vectors, rows, len(distinct) - counts["encoded"], counts["encoded"], counts["truncated"], pending)
