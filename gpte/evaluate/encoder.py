"""The bridge between evaluation tasks and a model.

Evaluation takes a ``gpte.models.protocol.VectorEncoder``: every gpte dense model (``Embedder``,
``StaticEmbedder``) and the analysis views of one. Any other object with ``encode(texts, role=...)`` returning
an (n, d) array is wrapped in ``ForeignEncoder`` (``as_vector_encoder``), so models from other libraries can be
scored too. ``TaskEncoder`` encodes each distinct text once per (role, prompt) and reuses it across tasks
(optionally across runs, through a ``VectorStore`` on disk), and checks what the model returns.

Instructions: a gpte model whose ``query`` prompt has a ``{task}`` slot follows instructions (E5-mistral's
``Instruct: {task}\nQuery: {text}``). Such a model gets the task's instruction in that slot for every input
that is not a document (retrieval/reranking queries, both sides of symmetric tasks); documents get their
own prompt, without instruction. Whether instruction tokens are pooled is the model's pooler's
``include_prompt``. A task prompt in meta.json wins over the instruction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from gpte.evaluate.tasks import Task
from gpte.evaluate.vector_cache import VectorCache
from gpte.models.fingerprint import model_key, weights_sha256
from gpte.models.protocol import VectorEncoder
from gpte.prompts import Prompts, PromptTemplate


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
        weights = weights_sha256(self.model)
        return None if weights is None else model_key(weights, self.model)

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
        disk_cache: vectors of earlier runs with this model; texts found there are not encoded again,
            and new vectors are added to it.

    Attributes:
        seconds: time spent in the model's ``encode`` so far.
    """

    def __init__(self, model: Any, batch_size: int = 32, disk_cache: VectorCache | None = None) -> None:
        self.model = as_vector_encoder(model)
        self.batch_size = batch_size
        self.disk_cache = disk_cache
        self.seconds = 0.0
        self._cache: dict[tuple[str | None, str | None], dict[str, np.ndarray]] = {}

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
        cache = self._cache.setdefault((role, prompt), {})
        missing = list(dict.fromkeys(text for text in texts if text not in cache))
        if missing and self.disk_cache:
            cache.update(self.disk_cache.get(role, prompt, missing))
            missing = [text for text in missing if text not in cache]
        if missing:
            vectors = self._call_model(missing, role, prompt, task)
            cache.update(zip(missing, vectors))
            if self.disk_cache:
                self.disk_cache.add(role, prompt, missing, vectors)
        if not texts:
            dimension = len(next(iter(cache.values()))) if cache else 0
            return np.zeros((0, dimension), dtype=np.float32)
        return np.stack([cache[text] for text in texts])

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
