"""The bridge between evaluation tasks and a model.

Any object with ``encode(texts, role=...)`` returning an (n, d) array can be evaluated (the protocol
below); gpte's Embedder also takes a prompt and a batch size. ``TaskEncoder`` encodes each distinct text
once per (role, prompt) and reuses it across tasks (optionally across runs, through a ``VectorCache`` on
disk), and checks what the model returns.

Instructions: a gpte model whose ``query`` prompt has a ``{task}`` slot follows instructions (E5-mistral's
``Instruct: {task}\nQuery: {text}``). Such a model gets the task's instruction in that slot for every input
that is not a document (retrieval/reranking queries, both sides of symmetric tasks); documents get their
own prompt, without instruction. Whether instruction tokens are pooled is the model's pooler's
``include_prompt``. A task prompt in meta.json wins over the instruction.
"""

from __future__ import annotations

import inspect
import time
from typing import Any, Protocol, runtime_checkable

import numpy as np

from gpte.evaluate.tasks import Task
from gpte.evaluate.vector_cache import VectorCache
from gpte.prompts import Prompts, PromptTemplate


@runtime_checkable
class EncoderProtocol(Protocol):
    def encode(self, texts: list[str], role: str | None = None) -> Any: ...


class TaskEncoder:
    """Encodes task texts through a model, with a per-(role, prompt) cache and output checks.

    Args:
        model: an ``EncoderProtocol`` object (gpte's Embedder or any other).
        batch_size: passed to the model when its ``encode`` takes ``batch_size``.
        disk_cache: vectors of earlier runs with this model; texts found there are not encoded again,
            and new vectors are added to it.

    Attributes:
        seconds: time spent in the model's ``encode`` so far.
    """

    def __init__(self, model: EncoderProtocol, batch_size: int = 32, disk_cache: VectorCache | None = None) -> None:
        if not callable(getattr(model, "encode", None)):
            raise TypeError(f"{type(model).__name__} has no encode(texts, role=...) method")
        self.model = model
        self.batch_size = batch_size
        self.disk_cache = disk_cache
        self.seconds = 0.0
        self._cache: dict[tuple[str | None, str | None], dict[str, np.ndarray]] = {}
        self._parameters = set(inspect.signature(model.encode).parameters)

    @property
    def similarity_name(self) -> str:
        """The model's similarity function (gpte's Embedder says it; other models count as cosine)."""
        return getattr(self.model, "similarity_name", "cosine")

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
        options: dict[str, Any] = {"role": role}
        if prompt is not None:
            options["prompt"] = prompt
        if "batch_size" in self._parameters:
            options["batch_size"] = self.batch_size
        started = time.perf_counter()
        vectors = self.model.encode(texts, **options)
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
