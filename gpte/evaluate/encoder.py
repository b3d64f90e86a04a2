"""The bridge between evaluation tasks and a model.

Evaluation takes a ``gpte.models.protocol.VectorEncoder``: every gpte dense model (``Embedder``,
``StaticEmbedder``) and the analysis views of one. Any other object with ``encode(texts, role=...)`` returning
an (n, d) array is wrapped in ``ForeignEncoder`` (``as_vector_encoder``), so models from other libraries can be
scored too. ``TaskEncoder`` encodes each distinct text once per (role, prompt) and reuses it across tasks
(``gpte.runtime.vector_store``; across runs too, given a cache folder), and checks what the model returns.

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

from gpte.evaluate.tasks import Task
from gpte.models.fingerprint import model_fingerprint, weights_sha256
from gpte.models.protocol import VectorEncoder
from gpte.prompts import Prompts, PromptTemplate
from gpte.runtime.vector_store import VectorStore, store_folder


class ForeignEncoder:
    """A ``VectorEncoder`` around a model from elsewhere that has ``encode(texts, role=...)``.

    Its fingerprint is its torch weights' (with its ``info()`` if it has one) when it has a ``state_dict``, else
    None; a prompt is passed on as ``prompt=`` only when a task asks for one.
    """

    def __init__(self, model: Any) -> None:
        if not callable(getattr(model, "encode", None)):
            raise TypeError(f"{type(model).__name__} has no encode(texts, role=...) method")
        self.model = model
        self.name = getattr(model, "name", None) or type(model).__name__
        self.similarity_name = getattr(model, "similarity_name", "cosine")
        self.prompts = getattr(model, "prompts", None)

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
        self.batch_size = batch_size
        self.seconds = 0.0
        self._cache, self._cache_key = cache, cache_key
        self._stores: dict[tuple[str | None, str | None], VectorStore] = {}

    @property
    def similarity_name(self) -> str:
        """The model's similarity function."""
        return self.model.similarity_name

    def encode(self, texts: list[str], task: Task, role: str | None = None) -> np.ndarray:
        """Vectors (n, d) float32 for ``texts`` in order, encoding only texts not seen before for this role.

        Raises:
            ValueError: the model returned the wrong shape or a non-finite value (task and text index named).
        """
        prompt = task.prompt(role) or self._instruction_prompt(task, role)
        return self._store(role, prompt).vectors(texts, lambda missing: self._call_model(missing, role, prompt, task))

    def _store(self, role: str | None, prompt: str | None) -> VectorStore:
        if (role, prompt) not in self._stores:
            folder = store_folder(self._cache, self._cache_key, role, prompt) if self._cache is not None else None
            self._stores[role, prompt] = VectorStore(folder)
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

    def _call_model(self, texts: list[str], role: str | None, prompt: str | None, task: Task) -> np.ndarray:
        started = time.perf_counter()
        vectors = self.model.encode(texts, role=role, prompt=prompt, batch_size=self.batch_size)
        self.seconds += time.perf_counter() - started
        vectors = np.asarray(vectors.cpu() if hasattr(vectors, "cpu") else vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise ValueError(f"task {task.name}: the model returned shape {vectors.shape} for {len(texts)} texts")
        bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
        if len(bad):
            raise ValueError(
                f"task {task.name}: the model returned NaN or infinity for text index {bad[0]}: {texts[bad[0]]!r:.80}"
            )
        return vectors
