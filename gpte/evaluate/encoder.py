"""The bridge between evaluation tasks and a model.

Evaluation takes a ``gpte.models.protocol.VectorEncoder``: every gpte dense model (``Embedder``,
``StaticEmbedder``) and the analysis views of one, every sparse model (``gpte.models.protocol.SparseModel``,
``output_kind`` ``"sparse"``: its vectors are ``scipy.sparse.csr_matrix`` rows, see ``gpte.evaluate.sparse``), and
every multi-vector model (``gpte.models.protocol.MultiVectorModel``, ``output_kind`` ``"multivector"``: its vectors
are ``gpte.models.multivector.TokenVectors``, scored by the model's own ``similarity``, see
``gpte.evaluate.multivector``). Any other object with ``encode(texts, role=...)`` returning an (n, d) array (or, with
``output_kind`` ``"sparse"``, a sparse matrix; with ``"multivector"``, token vectors, and then ``similarity`` and
``similarity_pairwise`` too) is wrapped in ``ForeignEncoder`` (``as_vector_encoder``), so models from other libraries
can be scored too. ``TaskEncoder`` encodes each distinct text once per (role, prompt) and reuses it across tasks
(``gpte.runtime.vector_store``; across runs too, given a cache folder: sparse vectors are kept as sparse rows,
``SparseVectorStore``, token vectors ragged, ``TokenVectorStore``, each kind in its own parts), checks what the model
returns, and scores vectors by the model's similarity (``similarity``, ``pairwise_similarity``).

Roles and prompts reach a sparse or multi-vector model as they reach a dense one: queries ``role="query"`` (an
inference-free SPLADE encodes them with its query head, a ColBERT expands them), documents ``role="document"``, the
texts of symmetric tasks no role.

Instructions: a gpte model whose ``query`` prompt has a ``{task}`` slot follows instructions (E5-mistral's
``Instruct: {task}\nQuery: {text}``). Such a model gets the task's instruction in that slot for every input
that is not a document (retrieval/reranking queries, both sides of symmetric tasks); documents get their
own prompt, without instruction. Whether instruction tokens are pooled is the model's pooler's
``include_prompt``. A task prompt in meta.json wins over the instruction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
import torch

from gpte.evaluate import multivector, sparse
from gpte.evaluate.multivector import TokenCounter, is_multivector_model, token_figures
from gpte.evaluate.sparse import SparsityCounter, is_sparse_model, sparsity_figures
from gpte.evaluate.tasks import Task
from gpte.models.fingerprint import model_fingerprint, weights_sha256
from gpte.models.protocol import VectorEncoder
from gpte.prompts import Prompts, PromptTemplate
from gpte.runtime.vector_store import SparseVectorStore, TokenVectorStore, VectorStore, store_folder

Store = VectorStore | SparseVectorStore | TokenVectorStore


class ForeignEncoder:
    """A ``VectorEncoder`` around a model from elsewhere that has ``encode(texts, role=...)``.

    Its fingerprint is its torch weights' (with its ``info()`` if it has one) when it has a ``state_dict``, else
    None; a prompt is passed on as ``prompt=`` only when a task asks for one. A model with ``output_kind``
    ``"sparse"`` keeps it (and its ``vocab_size``): its vectors are read as sparse ones; one with ``"multivector"``
    keeps it (and its ``dimension``, ``similarity`` and ``similarity_pairwise``): its vectors are read as token
    vectors.

    Raises:
        TypeError: ``model`` has no ``encode``, or a multi-vector one no ``similarity`` or ``similarity_pairwise``.
    """

    def __init__(self, model: Any) -> None:
        if not callable(getattr(model, "encode", None)):
            raise TypeError(f"{type(model).__name__} has no encode(texts, role=...) method")
        self.model = model
        self.name = getattr(model, "name", None) or type(model).__name__
        self.similarity_name = getattr(model, "similarity_name", "cosine")
        self.prompts = getattr(model, "prompts", None)
        if is_sparse_model(model):
            self.output_kind = "sparse"
            self.vocab_size = getattr(model, "vocab_size", None)
        if is_multivector_model(model):
            _require_scoring(model)
            self.output_kind = "multivector"
            self.dimension = getattr(model, "dimension", None)
            self.similarity, self.similarity_pairwise = model.similarity, model.similarity_pairwise

    @property
    def fingerprint(self) -> str | None:
        return None if weights_sha256(self.model) is None else model_fingerprint(self.model)

    def encode(
        self,
        texts: Sequence[str],
        role: str | None = None,
        prompt: Any = None,
        batch_size: int = 32,
        show_progress: bool | None = None,
    ) -> Any:
        options = {"role": role} if prompt is None else {"role": role, "prompt": prompt}
        return self.model.encode(list(texts), **options)


def as_vector_encoder(model: Any) -> VectorEncoder:
    """``model`` itself if it is a ``VectorEncoder`` (gpte's models and views), else a ``ForeignEncoder`` around it.

    Raises:
        TypeError: ``model`` has no ``encode`` method.
    """
    return model if isinstance(model, VectorEncoder) else ForeignEncoder(model)


class TaskEncoder:
    """Encodes task texts through a model, with a per-(role, prompt) cache and output checks, and scores vectors.

    A sparse model's vectors are ``scipy.sparse.csr_matrix`` (n, vocab_size) float32 (no stored zeros, sorted
    indices), kept in a ``SparseVectorStore``; a multi-vector model's are ``TokenVectors`` (one (tokens, dimension)
    float32 matrix per text), kept in a ``TokenVectorStore``. ``figures(task)`` gives a sparse model's active
    dimensions (``sparsity``) or a multi-vector model's token counts (``tokens``) per role.

    Args:
        model: a gpte model or view, or any object with ``encode(texts, role=...)`` (``as_vector_encoder``).
        batch_size: passed to the model's ``encode``.
        cache: a folder of vectors kept across runs (``gpte.runtime.vector_store``): texts found there are not
            encoded again, and new vectors are added to it; None keeps them for this encoder's life only.
        cache_key: the model's key in ``cache`` (its fingerprint); needed with ``cache``.

    Attributes:
        kind: ``dense``, ``sparse`` or ``multivector``: what ``encode`` returns.
        seconds: time spent in the model's ``encode`` so far.

    Raises:
        TypeError: a multi-vector model without ``similarity`` and ``similarity_pairwise``.
    """

    def __init__(
        self, model: Any, batch_size: int = 32, cache: str | Path | None = None, cache_key: str | None = None
    ) -> None:
        if cache is not None and cache_key is None:
            raise ValueError("a vector cache folder needs the model's key (cache_key) to file vectors under")
        self.model = as_vector_encoder(model)
        self.kind = "sparse" if is_sparse_model(self.model) else "dense"
        if is_multivector_model(self.model):
            self.kind = "multivector"
            _require_scoring(self.model)
        self.batch_size = batch_size
        self.seconds = 0.0
        self._cache, self._cache_key = cache, cache_key
        self._stores: dict[tuple[str | None, str | None], Store] = {}
        self._counters: dict[str, dict[str | None, SparsityCounter | TokenCounter]] = {}

    @property
    def sparse(self) -> bool:
        """Whether the model's vectors are sparse rows."""
        return self.kind == "sparse"

    @property
    def multivector(self) -> bool:
        """Whether the model's vectors are token vectors."""
        return self.kind == "multivector"

    @property
    def similarity_name(self) -> str:
        """The model's similarity function."""
        return self.model.similarity_name

    def encode(self, texts: list[str], task: Task, role: str | None = None) -> Any:
        """Vectors of ``texts`` in order, encoding only texts not seen before for this role: a numpy array (n, d)
        float32, for a sparse model a ``scipy.sparse.csr_matrix`` (n, vocab_size), for a multi-vector model
        ``TokenVectors`` (n texts).

        Raises:
            ValueError: the model returned the wrong shape or a non-finite value (task and text index named).
        """
        prompt = task.prompt(role) or self._instruction_prompt(task, role)
        vectors = self._store(role, prompt).vectors(
            texts, lambda missing: self._call_model(missing, role, prompt, task)
        )
        if self.kind != "dense" and len(texts):
            counters = self._counters.setdefault(task.name, {})
            if role not in counters:
                counters[role] = SparsityCounter(vectors.shape[1]) if self.sparse else TokenCounter()
            counters[role].add(texts, vectors)
        return vectors

    def similarity(self, a: Any, b: Any) -> np.ndarray:
        """Scores (rows of ``a``, rows of ``b``) float32 by the model's similarity: a multi-vector model's own
        ``similarity`` (MaxSim, ``a`` the queries), else ``gpte.evaluate.sparse.similarity`` with
        ``similarity_name`` (dense arrays or sparse matrices)."""
        if not self.multivector:
            return sparse.similarity(a, b, self.similarity_name)
        shape = (multivector.row_count(a), multivector.row_count(b))
        return multivector.checked_scores(self.model.similarity(a, b), shape)

    def pairwise_similarity(self, a: Any, b: Any) -> np.ndarray:
        """Scores (n,) of the row pairs (a[i], b[i]) by the model's similarity (``similarity``'s rules)."""
        if not self.multivector:
            return sparse.pairwise_similarity(a, b, self.similarity_name)
        shape = (multivector.row_count(a),)
        return multivector.checked_scores(self.model.similarity_pairwise(a, b), shape)

    def figures(self, task: Task) -> dict[str, dict[str, float]]:
        """What a result adds about the vectors of the distinct texts ``task`` encoded, per role: a sparse model's
        active dimensions (``{"sparsity": gpte.evaluate.sparse.sparsity_figures}``), a multi-vector model's stored
        token vectors (``{"tokens": gpte.evaluate.multivector.token_figures}``); nothing for a dense model."""
        counters = self._counters.get(task.name, {})
        if self.sparse:
            return {"sparsity": sparsity_figures(counters)}
        return {"tokens": token_figures(counters)} if self.multivector else {}

    def forget_figures(self, task: Task) -> None:
        """Start counting ``task``'s figures afresh (before it is scored again)."""
        self._counters.pop(task.name, None)

    def _store(self, role: str | None, prompt: str | None) -> Store:
        if (role, prompt) not in self._stores:
            folder = store_folder(self._cache, self._cache_key, role, prompt) if self._cache is not None else None
            if self.sparse:
                store: Store = SparseVectorStore(folder, getattr(self.model, "vocab_size", None))
            elif self.multivector:
                store = TokenVectorStore(folder, getattr(self.model, "dimension", None))
            else:
                store = VectorStore(folder)
            self._stores[role, prompt] = store
        return self._stores[role, prompt]

    def _instruction_prompt(self, task: Task, role: str | None) -> str | None:
        """The model's query template with the task's instruction in its ``{task}`` slot, or None when the
        input is a document, the task has no instruction or the model's query prompt takes none."""
        prompts = getattr(self.model, "prompts", None)
        if role == "document" or task.instruction is None or not isinstance(prompts, Prompts):
            return None
        template = prompts.resolve(None, "query")
        if not isinstance(template, PromptTemplate) or not template.needs_task:
            return None
        return template.fill(task.instruction).template

    def _call_model(self, texts: list[str], role: str | None, prompt: str | None, task: Task) -> Any:
        started = time.perf_counter()
        vectors = self.model.encode(texts, role=role, prompt=prompt, batch_size=self.batch_size)
        self.seconds += time.perf_counter() - started
        if self.sparse:
            return self._checked_sparse(vectors, texts, task)
        if self.multivector:
            return multivector.checked_token_vectors(vectors, texts, getattr(self.model, "dimension", None), task.name)
        if scipy.sparse.issparse(vectors) or getattr(vectors, "is_sparse", False):
            raise ValueError(
                f"task {task.name}: the model returned sparse vectors but does not say it is sparse; a sparse model "
                "has output_kind 'sparse' (gpte.models.protocol.SparseModel)"
            )
        if multivector.is_token_vectors(vectors):
            raise ValueError(
                f"task {task.name}: the model returned token vectors but does not say it is multi-vector; a "
                "multi-vector model has output_kind 'multivector' (gpte.models.protocol.MultiVectorModel)"
            )
        vectors = np.asarray(vectors.cpu() if hasattr(vectors, "cpu") else vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise ValueError(f"task {task.name}: the model returned shape {vectors.shape} for {len(texts)} texts")
        bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
        if len(bad):
            raise ValueError(
                f"task {task.name}: the model returned NaN or infinity for text index {bad[0]}: {texts[bad[0]]!r:.80}"
            )
        return vectors

    def _checked_sparse(self, vectors: Any, texts: list[str], task: Task) -> scipy.sparse.csr_matrix:
        """A sparse model's output as CSR float32 (stored zeros dropped, indices sorted), checked like dense ones."""
        if isinstance(vectors, torch.Tensor) and vectors.is_sparse:
            vectors = vectors.coalesce().cpu()
            rows, columns = vectors.indices().numpy()
            vectors = scipy.sparse.coo_matrix((vectors.values().numpy(), (rows, columns)), shape=tuple(vectors.shape))
        elif hasattr(vectors, "cpu"):
            vectors = vectors.cpu().numpy()
        matrix = scipy.sparse.csr_matrix(
            vectors if scipy.sparse.issparse(vectors) else np.asarray(vectors), dtype=np.float32
        )
        dimension = getattr(self.model, "vocab_size", None)
        if matrix.ndim != 2 or matrix.shape[0] != len(texts) or (dimension and matrix.shape[1] != dimension):
            expected = f"({len(texts)}, {dimension})" if dimension else f"{len(texts)} rows"
            raise ValueError(
                f"task {task.name}: the sparse model returned shape {matrix.shape} for {len(texts)} texts; "
                f"expected {expected}"
            )
        bad = np.flatnonzero(~np.isfinite(matrix.data))
        if len(bad):
            row = int(np.searchsorted(matrix.indptr, bad[0], side="right") - 1)
            raise ValueError(
                f"task {task.name}: the model returned NaN or infinity for text index {row}: {texts[row]!r:.80}"
            )
        matrix.eliminate_zeros()
        matrix.sort_indices()
        return matrix


def _require_scoring(model: Any) -> None:
    """Refuse a multi-vector model that cannot score its token vectors."""
    missing = [name for name in ("similarity", "similarity_pairwise") if not callable(getattr(model, name, None))]
    if missing:
        raise TypeError(
            f"{type(model).__name__} says it is multi-vector (output_kind 'multivector') but has no "
            f"{' or '.join(missing)}: evaluation scores token vectors by the model's own MaxSim "
            "(gpte.models.protocol.MultiVectorModel)"
        )
