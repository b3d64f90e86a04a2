"""The bridge between evaluation tasks and a model.

Evaluation takes a ``gpte.models.protocol.VectorEncoder``: every gpte dense model (``Embedder``,
``StaticEmbedder``) and the analysis views of one, and every sparse model (``gpte.models.protocol.SparseModel``,
``output_kind`` ``"sparse"``: its vectors are ``scipy.sparse.csr_matrix`` rows, see ``gpte.evaluate.sparse``). Any
other object with ``encode(texts, role=...)`` returning an (n, d) array (or, with ``output_kind`` ``"sparse"``, a
sparse matrix) is wrapped in ``ForeignEncoder`` (``as_vector_encoder``), so models from other libraries can be
scored too. ``TaskEncoder`` encodes each distinct text once per (role, prompt) and reuses it across tasks
(``gpte.runtime.vector_store``; across runs too, given a cache folder: sparse vectors are kept as sparse rows in
their own parts, ``SparseVectorStore``, never mixed with dense ones), and checks what the model returns.

Roles and prompts reach a sparse model as they reach a dense one: queries ``role="query"`` (an inference-free SPLADE
encodes them with its query head), documents ``role="document"``, the texts of symmetric tasks no role.

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

from gpte.evaluate.sparse import SparsityCounter, is_sparse_model, sparsity_figures
from gpte.evaluate.tasks import Task
from gpte.models.fingerprint import model_fingerprint, weights_sha256
from gpte.models.protocol import VectorEncoder
from gpte.prompts import Prompts, PromptTemplate
from gpte.runtime.vector_store import SparseVectorStore, VectorStore, store_folder


class ForeignEncoder:
    """A ``VectorEncoder`` around a model from elsewhere that has ``encode(texts, role=...)``.

    Its fingerprint is its torch weights' (with its ``info()`` if it has one) when it has a ``state_dict``, else
    None; a prompt is passed on as ``prompt=`` only when a task asks for one. A model with ``output_kind``
    ``"sparse"`` keeps it (and its ``vocab_size``): its vectors are read as sparse ones.
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
    """Encodes task texts through a model, with a per-(role, prompt) cache and output checks.

    A sparse model's vectors are ``scipy.sparse.csr_matrix`` (n, vocab_size) float32 (no stored zeros, sorted
    indices), kept in a ``SparseVectorStore``; ``sparsity(task)`` gives their active dimensions per role.

    Args:
        model: a gpte model or view, or any object with ``encode(texts, role=...)`` (``as_vector_encoder``).
        batch_size: passed to the model's ``encode``.
        cache: a folder of vectors kept across runs (``gpte.runtime.vector_store``): texts found there are not
            encoded again, and new vectors are added to it; None keeps them for this encoder's life only.
        cache_key: the model's key in ``cache`` (its fingerprint); needed with ``cache``.

    Attributes:
        seconds: time spent in the model's ``encode`` so far.
    """

    def __init__(
        self, model: Any, batch_size: int = 32, cache: str | Path | None = None, cache_key: str | None = None
    ) -> None:
        if cache is not None and cache_key is None:
            raise ValueError("a vector cache folder needs the model's key (cache_key) to file vectors under")
        self.model = as_vector_encoder(model)
        self.sparse = is_sparse_model(self.model)
        self.batch_size = batch_size
        self.seconds = 0.0
        self._cache, self._cache_key = cache, cache_key
        self._stores: dict[tuple[str | None, str | None], VectorStore | SparseVectorStore] = {}
        self._sparsity: dict[str, dict[str | None, SparsityCounter]] = {}

    @property
    def similarity_name(self) -> str:
        """The model's similarity function."""
        return self.model.similarity_name

    def encode(self, texts: list[str], task: Task, role: str | None = None) -> Any:
        """Vectors (n, d) float32 for ``texts`` in order, encoding only texts not seen before for this role: a numpy
        array, or for a sparse model a ``scipy.sparse.csr_matrix`` (n, vocab_size).

        Raises:
            ValueError: the model returned the wrong shape or a non-finite value (task and text index named).
        """
        prompt = task.prompt(role) or self._instruction_prompt(task, role)
        vectors = self._store(role, prompt).vectors(
            texts, lambda missing: self._call_model(missing, role, prompt, task)
        )
        if self.sparse and len(texts):
            counters = self._sparsity.setdefault(task.name, {})
            counters.setdefault(role, SparsityCounter(vectors.shape[1])).add(texts, vectors)
        return vectors

    def sparsity(self, task: Task) -> dict[str, float] | None:
        """For a sparse model, the mean active dimensions of the distinct texts ``task`` encoded, per role
        (``gpte.evaluate.sparse.sparsity_figures``); None for a dense model."""
        return sparsity_figures(self._sparsity.get(task.name, {})) if self.sparse else None

    def forget_sparsity(self, task: Task) -> None:
        """Start counting ``task``'s active dimensions afresh (before it is scored again)."""
        self._sparsity.pop(task.name, None)

    def _store(self, role: str | None, prompt: str | None) -> VectorStore | SparseVectorStore:
        if (role, prompt) not in self._stores:
            folder = store_folder(self._cache, self._cache_key, role, prompt) if self._cache is not None else None
            self._stores[role, prompt] = (
                SparseVectorStore(folder, getattr(self.model, "vocab_size", None))
                if self.sparse
                else VectorStore(folder)
            )
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
        if scipy.sparse.issparse(vectors) or getattr(vectors, "is_sparse", False):
            raise ValueError(
                f"task {task.name}: the model returned sparse vectors but does not say it is sparse; a sparse model "
                "has output_kind 'sparse' (gpte.models.protocol.SparseModel)"
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
