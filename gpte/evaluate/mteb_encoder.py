"""Any gpte model as an mteb model: ``mteb.evaluate(as_mteb_model(model), tasks)`` (needs ``pip install mteb``).

mteb takes a model that has its own members (``mteb.models.models_protocols``): an encoder's
``encode(inputs: DataLoader, *, task_metadata, hf_split, hf_subset, prompt_type)``, ``similarity``,
``similarity_pairwise`` and an ``mteb_model_meta`` (a ``ModelMeta``); a cross-encoder's
``predict(inputs1, inputs2, *, task_metadata, ...)``. A gpte model keeps gpte's own ``encode(texts, role=...)`` (and a
reranker ``predict(pairs)``), so mteb, which recognises only sentence-transformers' classes and objects with
``mteb_model_meta`` (``mteb.evaluate._sanitize_model``), cannot take it as it is: ``as_mteb_model`` wraps it.

- Dense (``Embedder``, ``StaticEmbedder``, views, a foreign encoder), sparse (SPLADE, PromptReps) and multi-vector
  (ColBERT) models are encoded through ``gpte.evaluate.encoder.TaskEncoder``, as ``gpte evaluate`` encodes them: the
  same roles, prompts and instructions, each distinct text once per (role, prompt) for the wrapper's life, the same
  output checks, and scores by the model's own similarity. mteb's ``prompt_type`` is the role: ``query`` and
  ``document`` pick the model's query and document prompts, no prompt type (symmetric tasks) no role. An
  instruction-following model (a ``{task}`` slot in its query prompt) gets the mteb task's ``prompt`` (its query
  entry when it is a dict) as instruction, else gpte's default instruction of the task type.
- A sparse model's vectors go to mteb as a ``scipy.sparse.csr_matrix`` on Retrieval tasks (scored by the model's
  similarity) and densified on the others, as mteb's own ``SparseEncoderWrapper`` densifies them.
- A multi-vector model's token vectors go to mteb as one (tokens, dim) array per text, scored by the model's MaxSim;
  mteb scores them on Retrieval and Reranking tasks (as with its ``MultiVectorWrapper``).
- A reranker (``gpte.models.protocol.PairScorer``) is an mteb cross-encoder: the model's ``predict`` of (query,
  document) pairs with its activation, which mteb uses on Retrieval and Reranking tasks.

``mteb_model_meta`` is ``gpte.evaluate.mteb_format.model_meta``'s: the mteb name ``org/name`` and the model's
fingerprint as revision, so ``mteb.evaluate(..., cache=mteb.ResultCache(OUTPUT))`` files its results beside the
mteb-format copies ``gpte evaluate -o OUTPUT`` writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

from gpte.errors import extra_needed
from gpte.evaluate.encoder import TaskEncoder, as_vector_encoder
from gpte.evaluate.mteb_format import model_meta
from gpte.evaluate.reranker import is_pair_scorer
from gpte.evaluate.tasks import DEFAULT_INSTRUCTIONS, Task
from gpte.models.multivector import TokenVectors


def as_mteb_model(model: Any, model_name: str | None = None, batch_size: int = 32) -> Any:
    """``model`` as an mteb model: ``MtebCrossEncoder`` for a reranker, else ``MtebEncoder``.

    Args:
        model: a gpte model of any kind, or any object ``gpte.evaluate.evaluate`` takes.
        model_name: the name in its ``mteb_model_meta`` (default: the model's ``name``).
        batch_size: passed to the model's ``encode``/``predict`` (mteb's ``encode_kwargs`` batch size wins).

    Raises:
        gpte.errors.MissingExtraError: mteb is not installed (``pip install 'gpte[mteb]'``).
        TypeError: ``model`` has no ``encode`` method and is not a reranker.
    """
    if is_pair_scorer(model):
        return MtebCrossEncoder(model, model_name, batch_size)
    return MtebEncoder(model, model_name, batch_size)


class MtebEncoder:
    """An mteb encoder (``mteb.models.models_protocols.EncoderProtocol``) around a dense, sparse or multi-vector
    gpte model; see the module docstring."""

    def __init__(self, model: Any, model_name: str | None = None, batch_size: int = 32) -> None:
        self.encoder = TaskEncoder(as_vector_encoder(model), batch_size)
        self.model = self.encoder.model
        self.mteb_model_meta = _model_meta(self.model, model_name)

    def encode(
        self,
        inputs: Any,
        *,
        task_metadata: Any,
        hf_split: str,
        hf_subset: str,
        prompt_type: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Vectors of the texts of ``inputs`` (mteb's DataLoader of ``{"text": [...]}`` batches) in order: a float32
        array (n, d); for a sparse model a CSR matrix on Retrieval tasks, else dense; for a multi-vector model a
        list of (tokens, dim) arrays."""
        self.encoder.batch_size = kwargs.get("batch_size", self.encoder.batch_size)
        texts = [text for batch in inputs for text in batch["text"]]
        role = str(prompt_type.value) if prompt_type is not None else None
        vectors = self.encoder.encode(texts, _task(task_metadata), role)
        if self.encoder.multivector:
            return vectors.to_list()
        if self.encoder.sparse and task_metadata.type != "Retrieval":
            return vectors.toarray()
        return vectors

    def similarity(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """Scores (len(embeddings1), len(embeddings2)) by the model's similarity."""
        return self.encoder.similarity(self._vectors(embeddings1), self._vectors(embeddings2))

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """Scores (n,) of the pairs (embeddings1[i], embeddings2[i]) by the model's similarity."""
        return self.encoder.pairwise_similarity(self._vectors(embeddings1), self._vectors(embeddings2))

    def _vectors(self, embeddings: Any) -> Any:
        """What mteb hands back (the arrays ``encode`` gave, rows of them, or torch tensors of them) in the form
        ``TaskEncoder`` scores: token vectors, a CSR matrix, or a float32 array."""
        if self.encoder.multivector:
            return embeddings if isinstance(embeddings, TokenVectors) else TokenVectors.from_list(list(embeddings))
        if scipy.sparse.issparse(embeddings):
            return embeddings
        if hasattr(embeddings, "cpu"):
            embeddings = embeddings.cpu().numpy()
        return np.asarray(embeddings, dtype=np.float32)


class MtebCrossEncoder:
    """An mteb cross-encoder (``mteb.models.models_protocols.CrossEncoderProtocol``) around a gpte reranker."""

    def __init__(self, model: Any, model_name: str | None = None, batch_size: int = 32) -> None:
        self.model, self.batch_size = model, batch_size
        self.mteb_model_meta = _model_meta(model, model_name)

    def predict(
        self,
        inputs1: Any,
        inputs2: Any,
        *,
        task_metadata: Any,
        hf_split: str,
        hf_subset: str,
        prompt_type: Any = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """The model's scores (n,) of the pairs (query i, document i) of the two DataLoaders, in one ``predict``."""
        queries = [text for batch in inputs1 for text in batch["text"]]
        documents = [text for batch in inputs2 for text in batch["text"]]
        scores = self.model.predict(list(zip(queries, documents, strict=True)), batch_size=self.batch_size)
        return np.asarray(scores.cpu() if hasattr(scores, "cpu") else scores, dtype=np.float32)


def _model_meta(model: Any, model_name: str | None) -> Any:
    """mteb's ``ModelMeta`` of ``model`` (``gpte.evaluate.mteb_format.model_meta``)."""
    with extra_needed("mteb"):
        from mteb.models import ModelMeta
    name = model_name or getattr(model, "name", None) or type(model).__name__
    return ModelMeta.model_validate(model_meta(model, name, getattr(model, "fingerprint", None)))


def _task(task_metadata: Any) -> Task:
    """A gpte ``Task`` standing for the mteb task being run: its name and type, and its instruction (its ``prompt``,
    or its query prompt, else gpte's default for the type) for instruction-following models."""
    prompt = task_metadata.prompt
    instruction = prompt.get("query") if isinstance(prompt, dict) else prompt
    task_type = str(task_metadata.type)
    return Task(
        name=task_metadata.name,
        type=task_type,
        path=Path(),
        instruction=instruction or DEFAULT_INSTRUCTIONS.get(task_type),
    )
