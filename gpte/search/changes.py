"""What a build has to do, shared by every index back-end (``gpte.search.index`` on disk,
``gpte.search.milvus`` in a Milvus server, ``gpte.search.distributed``'s ready-made vectors): the model and settings
an index is built with, which documents changed since the last build, and the vectors of their new chunks (kept in
pending parts, so a killed build resumes without embedding them again), and the same for a sparse model's vectors
(``gpte.search.sparse``) and a multi-vector model's token vectors (``gpte.search.multivector``).

A chunk's dense vector is stored (in the pending parts, the ready-made shards and while a build assembles) under the
hash of its *dense id*: the chunk's text, or with late chunking (``gpte.models.late_chunking``, where a chunk's
vector depends on its whole document) ``late_chunk_ids``: its document's text hash, its characters and the window
overlap. Sparse and token vectors are always keyed by the chunk's text.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from gpte.data.documents import Document
from gpte.models.chunking import BOUNDARIES, ChunkSpan, chunk_spans, resolve_chunk_tokens, resolve_overlap
from gpte.models.embedder import Embedder
from gpte.models.late_chunking import encode_late_chunks
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
from gpte.search.sparse import SparsePending, stack_rows
from gpte.search.store import pending_folder, text_hash

SAVE_EVERY = 4096  # chunks embedded per pending part (the most a killed build loses)
SETTINGS_CHECKED = ("model_key", "chunk_tokens", "overlap", "chunk_boundary", "late_chunking", "window_overlap")
# what an index or vector folder whose settings lack these keys was built with (they came later)
SETTING_DEFAULTS = {"chunk_boundary": "token", "late_chunking": False, "window_overlap": None}
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
    """Per document in source order: kept as it is (``unchanged``) or new chunks to embed; with late chunking
    (``late_chunking``, ``window_overlap``) the new chunks' vectors come from their whole documents."""

    documents: list[Document]
    unchanged: set[str] = field(default_factory=set)
    new_chunks: dict[str, list[tuple[str, int, int]]] = field(default_factory=dict)  # doc_id -> [(text, start, end)]
    new_texts: list[str] = field(default_factory=list)
    added: int = 0
    changed: int = 0
    removed: int = 0
    dense_ids: dict[str, list[str]] = field(default_factory=dict)  # doc_id -> its new chunks' dense ids
    late_chunking: bool = False
    window_overlap: int | None = None

    def dense_key(self, doc_id: str, number: int) -> str:
        """The key of the dense vector of new chunk ``number`` of document ``doc_id`` (``NewVectors.by_hash``)."""
        return text_hash(self.dense_ids[doc_id][number])


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


def recorded(settings: dict[str, Any], key: str) -> Any:
    """The setting ``key`` of an index, collection or vector folder: its value, else ``SETTING_DEFAULTS``'s (what one
    built before the key existed was built with), else None."""
    return settings.get(key, SETTING_DEFAULTS.get(key))


def requested_chunking(
    previous: dict[str, Any] | None,
    chunk_tokens: int | None,
    overlap: int | None,
    chunk_boundary: str | None,
    late_chunking: bool | None,
    window_overlap: int | None,
) -> dict[str, Any]:
    """The chunking a build asks for (``build_settings``'s keyword arguments): each unset (None) value the existing
    index's (``previous``: its manifest or settings; None for a new index), else the default (chunk size and overlap
    left to ``build_settings``, token boundaries, no late chunking, a quarter-window overlap). The window overlap is
    inherited only by a late-chunked build."""
    if previous is not None:
        chunk_tokens = recorded(previous, "chunk_tokens") if chunk_tokens is None else chunk_tokens
        overlap = recorded(previous, "overlap") if overlap is None else overlap
        chunk_boundary = recorded(previous, "chunk_boundary") if chunk_boundary is None else chunk_boundary
        late_chunking = recorded(previous, "late_chunking") if late_chunking is None else late_chunking
        if late_chunking and window_overlap is None:
            window_overlap = recorded(previous, "window_overlap")
    return {
        "chunk_tokens": chunk_tokens,
        "overlap": overlap,
        "chunk_boundary": SETTING_DEFAULTS["chunk_boundary"] if chunk_boundary is None else chunk_boundary,
        "late_chunking": bool(late_chunking),
        "window_overlap": window_overlap,
    }


def build_settings(
    embedder: DenseModel,
    model: str | None,
    chunk_tokens: int | None,
    overlap: int | None,
    chunk_boundary: str = "token",
    late_chunking: bool = False,
    window_overlap: int | None = None,
) -> dict[str, Any]:
    """The settings an index records and checks on every later build: model (name and fingerprint),
    chunking (``chunk_tokens`` None: the model's own size, ``gpte.models.chunking.resolve_chunk_tokens``; overlap
    None: an eighth of it; ``chunk_boundary``: ``gpte.models.chunking.BOUNDARIES``), late chunking and its
    ``window_overlap`` (``check_late_chunking``), similarity and dimension."""
    check_late_chunking(embedder, late_chunking, window_overlap)
    return {
        "model": model,
        "model_key": embedder.fingerprint,
        "backend": embedder.info().get("backend", "torch"),  # how to load the model again (its fingerprint has it)
        **_chunking(embedder, chunk_tokens, overlap, chunk_boundary),
        "late_chunking": bool(late_chunking),
        "window_overlap": window_overlap,
        "similarity": embedder.similarity_name,
        "dimension": embedder.dimension,
    }


def _chunking(model: TextModel, chunk_tokens: int | None, overlap: int | None, chunk_boundary: str) -> dict[str, Any]:
    """``chunk_tokens``, ``overlap`` and ``chunk_boundary`` of an index chunked with ``model``'s tokens, resolved and
    checked (ValueError naming the allowed values)."""
    if chunk_boundary not in BOUNDARIES:
        raise ValueError(f"unknown chunk boundary {chunk_boundary!r}; choose one of: {', '.join(BOUNDARIES)}")
    chunk_tokens = resolve_chunk_tokens(model, chunk_tokens)
    return {
        "chunk_tokens": chunk_tokens,
        "overlap": resolve_overlap(chunk_tokens, overlap),
        "chunk_boundary": chunk_boundary,
    }


def check_late_chunking(embedder: DenseModel, late_chunking: bool, window_overlap: int | None) -> None:
    """Refuse, before any work, what late chunking cannot do: a model without token states (not an ``Embedder``),
    a pooling that reads one fixed token (cls, last) or a prompt set (``encode_late_chunks``'s own checks), a window
    overlap that is not a whole number in [0, max_seq_length), or one given without late chunking."""
    if not late_chunking:
        if window_overlap is not None:
            raise ValueError(
                f"window_overlap={window_overlap!r} applies to late chunking only; pass late_chunking=True "
                "(gpte index --late-chunking) or leave it unset"
            )
        return
    if not isinstance(embedder, Embedder):
        raise ValueError(
            f"late chunking runs a transformer over whole documents; {type(embedder).__name__} "
            f"{getattr(embedder, 'name', None)!r} has no token states: use a transformer Embedder"
        )
    limit = embedder.max_seq_length
    if window_overlap is not None and (
        isinstance(window_overlap, bool) or not isinstance(window_overlap, int) or not 0 <= window_overlap < limit
    ):
        raise ValueError(f"window_overlap must be a whole number of tokens in [0, {limit}), got {window_overlap!r}")
    encode_late_chunks(embedder, [], [], role="document")  # no documents: only its checks of the model and prompt


def check_same_settings(
    where: str,
    previous: dict[str, Any],
    settings: dict[str, Any],
    remedy: str = "rebuild it (gpte index --rebuild) or use another index name",
    keys: tuple[str, ...] = SETTINGS_CHECKED,
) -> None:
    """Refuse to update the index ``where`` (built with ``previous`` settings) with other model or chunking
    (``keys``: the settings compared; a missing one counts as its ``SETTING_DEFAULTS`` value, else None)."""
    for key in keys:
        if recorded(previous, key) != recorded(settings, key):
            what = SETTING_NAMES.get(key, key)
            raise ValueError(
                f"{where} was built with another {what} ({recorded(previous, key)!r:.40} vs "
                f"{recorded(settings, key)!r:.40}); {remedy}"
            )


def plan_changes(
    documents: list[Document],
    old_hashes: dict[str, str],
    embedder: TextModel,
    chunk_tokens: int,
    overlap: int,
    boundary: str = "token",
    late_chunking: bool = False,
    window_overlap: int | None = None,
) -> Plan:
    """Compare ``documents`` with the indexed ones (doc_id -> content hash) and chunk the new and changed ones
    (``boundary``: ``gpte.models.chunking.chunk_spans``'s; ``late_chunking``, ``window_overlap``: how their dense
    vectors are made, which decides their dense ids)."""
    plan = Plan(documents, late_chunking=late_chunking, window_overlap=window_overlap)
    for doc in documents:
        if old_hashes.get(doc.id) == doc.content_hash():
            plan.unchanged.add(doc.id)
            continue
        plan.changed += doc.id in old_hashes
        plan.added += doc.id not in old_hashes
        spans = chunk_spans(doc.text, embedder, chunk_tokens, overlap, boundary)
        plan.new_chunks[doc.id] = [(doc.text[s.start : s.end], s.start, s.end) for s in spans]
        plan.new_texts.extend(text for text, _, _ in plan.new_chunks[doc.id])
        plan.dense_ids[doc.id] = dense_ids(doc.text, spans, late_chunking, window_overlap)
    plan.removed = len(set(old_hashes) - {doc.id for doc in documents})
    return plan


def dense_ids(text: str, spans: list[ChunkSpan], late_chunking: bool, window_overlap: int | None) -> list[str]:
    """What the dense vectors of ``text``'s chunks are stored under (by ``text_hash``): each chunk's text, or with
    late chunking its ``late_chunk_ids``."""
    if late_chunking:
        return late_chunk_ids(text, spans, window_overlap)
    return [text[span.start : span.end] for span in spans]


def late_chunk_ids(text: str, spans: list[ChunkSpan], window_overlap: int | None) -> list[str]:
    """The ids of the late-chunked vectors of ``text``'s chunks: what such a vector depends on besides the model, its
    document's text (by hash), its characters and the window overlap. Two documents sharing a chunk's text get
    different ids; the same document chunked the same way gets the same ones."""
    document = text_hash(text)
    return [f"late-chunk {document} {span.start}:{span.end} window-overlap {window_overlap}" for span in spans]


def late_chunk_vectors(
    embedder: DenseModel, texts: list[str], spans: list[list[ChunkSpan]], window_overlap: int | None, batch_size: int
) -> np.ndarray:
    """The late-chunked vectors (``encode_late_chunks``, ``role="document"``) of the documents' chunks, one after the
    other: (chunks, dimension) float32; ``batch_size`` documents (or windows of one) per forward pass."""
    vectors = encode_late_chunks(
        embedder,
        texts,
        spans,
        role="document",
        batch_size=batch_size,
        window_overlap=window_overlap,
        show_progress=False,
    )
    return np.concatenate(vectors) if vectors else np.zeros((0, embedder.dimension), dtype=np.float32)


@dataclass
class NewVectors:
    """The vectors of a build's new chunks by the hash of their dense id (``Plan.dense_key``); how many were pending
    from an interrupted build, ready-made, embedded now and cut by the model; the pending store (cleared by the
    caller once the build is live)."""

    by_hash: dict[str, np.ndarray]
    resumed: int
    ready: int
    pending: VectorStore
    truncated: int = 0
    embedded: int = 0


def embed_plan(
    plan: Plan,
    embedder: DenseModel,
    pending_root: Path,
    model_key_: str,
    batch_size: int,
    show_progress: bool,
    ready: dict[str, np.ndarray] | None = None,
) -> NewVectors:
    """The dense vectors of ``plan``'s new chunks: ``embed_late_chunks`` for a late-chunked plan, else
    ``embed_new_chunks`` of their texts."""
    if plan.late_chunking:
        return embed_late_chunks(plan, embedder, pending_root, model_key_, batch_size, show_progress, ready)
    return embed_new_chunks(plan.new_texts, embedder, pending_root, model_key_, batch_size, show_progress, ready)


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

    def encode(part: list[str]) -> tuple[np.ndarray, int]:
        result = embedder.encode_with_report(part, role="document", batch_size=batch_size, show_progress=False)
        return result.vectors, result.report.n_truncated

    units = [([text], text) for text in dict.fromkeys(texts)]
    return _embed_units(units, encode, VectorStore(pending_folder(pending_root, model_key_)), ready, show_progress)


def embed_late_chunks(
    plan: Plan,
    embedder: DenseModel,
    pending_root: Path,
    model_key_: str,
    batch_size: int,
    show_progress: bool,
    ready: dict[str, np.ndarray] | None = None,
) -> NewVectors:
    """Late-chunked vectors of ``plan``'s new chunks by the hash of their dense id: each new or changed document
    (each distinct text once) runs whole through ``late_chunk_vectors``, whole documents at a time, in pending parts
    of about SAVE_EVERY chunks, so a killed build resumes without encoding the documents it finished again."""
    units: dict[tuple[str, ...], tuple[list[str], tuple[str, list[ChunkSpan]]]] = {}
    for doc in plan.documents:
        if doc.id in plan.new_chunks:
            spans = [ChunkSpan(start, end) for _, start, end in plan.new_chunks[doc.id]]
            units.setdefault(tuple(plan.dense_ids[doc.id]), (plan.dense_ids[doc.id], (doc.text, spans)))

    def encode(part: list[tuple[str, list[ChunkSpan]]]) -> tuple[np.ndarray, int]:
        texts, spans = [text for text, _ in part], [chunks for _, chunks in part]
        return late_chunk_vectors(embedder, texts, spans, plan.window_overlap, batch_size), 0  # windows: no cut

    pending = VectorStore(pending_folder(pending_root, model_key_))
    return _embed_units(list(units.values()), encode, pending, ready, show_progress)


def _embed_units(
    units: list[tuple[list[str], Any]],
    encode: Callable[[list[Any]], tuple[np.ndarray, int]],
    pending: VectorStore,
    ready: dict[str, np.ndarray] | None,
    show_progress: bool,
) -> NewVectors:
    """The vectors of ``units`` (each: the dense ids of the vectors it makes, and what ``encode`` makes them from)
    by the hash of their dense id. A unit whose vectors are all pending or ready-made (``ready``, by hash) is taken
    from there; the others are encoded (``encode``: payloads -> (vectors of their ids in order, chunks cut)) in parts
    of at least one unit and about SAVE_EVERY vectors, each kept in ``pending`` as it is made."""
    stored = pending.get([key for ids, _ in units for key in ids])
    ready = ready or {}
    done: dict[str, np.ndarray] = {}
    resumed = taken = 0
    todo = []
    for ids, payload in units:
        hashes = [text_hash(key) for key in ids]
        if all(key in stored or h in ready for key, h in zip(ids, hashes)):
            done.update((h, stored[key] if key in stored else ready[h]) for key, h in zip(ids, hashes))
            resumed += sum(key in stored for key in ids)
            taken += sum(key not in stored for key in ids)
        else:
            todo.append((ids, payload))
    total = sum(len(ids) for ids, _ in units)
    embedded = truncated = 0
    with tqdm(total=total, initial=resumed + taken, desc="index", unit="chunk", disable=not show_progress) as bar:
        for part in _parts(todo):
            ids = [key for unit_ids, _ in part for key in unit_ids]
            vectors, cut = encode([payload for _, payload in part])
            pending.add(ids, vectors)
            done.update(zip((text_hash(key) for key in ids), vectors))
            embedded, truncated = embedded + len(ids), truncated + cut
            bar.update(len(ids))
    return NewVectors(done, resumed, taken, pending, truncated, embedded)


def _parts(units: list[tuple[list[str], Any]]) -> list[list[tuple[list[str], Any]]]:
    """``units`` in consecutive parts, each closed once it holds SAVE_EVERY vectors or more."""
    parts: list[list[tuple[list[str], Any]]] = [[]]
    size = 0
    for unit in units:
        if size >= SAVE_EVERY:
            parts.append([])
            size = 0
        parts[-1].append(unit)
        size += len(unit[0])
    return parts if parts[0] else []


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


def chunk_settings(
    model: TextModel,
    chunk_tokens: int | None,
    overlap: int | None,
    chunk_boundary: str = "token",
    late_chunking: bool = False,
    window_overlap: int | None = None,
) -> dict[str, Any]:
    """The settings of an index without a dense model: chunking counted with ``model`` (the sparse one), no dense
    model (model, model_key, backend, similarity, dimension None), no late chunking (it pools a dense model's token
    states: ValueError when asked for)."""
    if late_chunking or window_overlap is not None:
        raise ValueError(
            "late chunking pools a dense model's token states; an index without a dense model (dense=False, "
            "--no-dense) cannot use it: give a dense model or leave late_chunking and window_overlap unset"
        )
    return {
        "model": None,
        "model_key": None,
        "backend": None,
        **_chunking(model, chunk_tokens, overlap, chunk_boundary),
        "late_chunking": False,
        "window_overlap": None,
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
