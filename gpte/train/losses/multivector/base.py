"""What the multi-vector (ColBERT) losses share: the model-kind check, the similarity, and MaxSim scores of a batch.

A multi-vector loss gets, per column, the model's ``(vectors, mask)`` (``tokens.TokenColumn``): column 0 the queries,
columns 1.. the documents (positive first, then hard negatives), each tokenized for its role by
``gpte.train.collator.MultiVectorCollator``. Scores are MaxSim (``gpte.models.multivector.maxsim``):

    s(q, d) = sum_i max_j q_i . d_j                (maxsim)
    s(q, d) = (sum_i max_j q_i . d_j) / |q|        (meanmaxsim: divided by the query's scored token count)

The losses are separate names (``colbert_*``) rather than ``infonce`` & co. dispatching on the model kind: their
options and defaults differ (MaxSim takes no cosine/dot choice and ColBERT trains at temperature 1, not 0.05), and a
recipe's loss section should mean one formula whatever model it meets; a loss given the wrong kind of model raises
TypeError naming the losses that fit.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from gpte.models.multivector.maxsim import SIMILARITIES, maxsim, maxsim_pairwise
from gpte.train.losses.base import EmbeddingLoss, TrainingBatch, check_choice
from gpte.train.losses.multivector.tokens import TokenColumn

MULTIVECTOR_KIND = "multivector"


class MultiVectorLoss(EmbeddingLoss):
    """Base class: a loss on the token vectors of a ``MultiVectorEncoder``.

    Args:
        model: the multi-vector model (``output_kind`` ``"multivector"``).
        similarity: ``maxsim`` or ``meanmaxsim``; None: the model's ``similarity_name`` (sentence-transformers'
            losses score with ``model.similarity``).

    Raises:
        TypeError: ``model`` is not a multi-vector model.
    """

    wrappers: ClassVar[tuple[str, ...]] = ("gradcache",)

    def __init__(self, model: nn.Module, similarity: str | None = None) -> None:
        check_multivector_model(self.name, model)
        super().__init__(model)
        if similarity is not None:
            check_choice("similarity", similarity, SIMILARITIES)
        self.similarity = similarity or model.similarity_name

    @property
    def length_normalize(self) -> bool:
        return self.similarity == "meanmaxsim"

    def compute(self, embeddings: list[TokenColumn], batch: TrainingBatch | None = None) -> Tensor:
        """The loss from the columns' ``(vectors, mask)`` after checking their count and the scores' presence."""
        self.check_columns(len(embeddings), batch is not None and batch.scores is not None, self.name)
        return self.from_columns(embeddings, batch)

    def from_columns(self, embeddings: list[TokenColumn], batch: TrainingBatch | None) -> Tensor:
        """The formula (module docstring of each loss) on checked columns."""
        raise NotImplementedError

    def in_batch_scores(self, embeddings: list[TokenColumn]) -> Tensor:
        """(rows, rows * N) scores of every query against every document of the batch, N = document columns.

        Query-major, as sentence-transformers' ``colbert_scores``: column ``j * N + n`` is row j's n-th document, so
        query i's positive sits at column ``i * N``."""
        queries, query_mask = embeddings[0]
        per_column = [
            maxsim(queries, query_mask, documents, mask, self.length_normalize) for documents, mask in embeddings[1:]
        ]
        return torch.stack(per_column, dim=2).reshape(queries.shape[0], -1)

    def candidate_scores(self, embeddings: list[TokenColumn]) -> Tensor:
        """(rows, N) scores of each query against its own row's documents (``colbert_kd_scores``)."""
        queries, query_mask = embeddings[0]
        per_column = [
            maxsim_pairwise(queries, query_mask, documents, mask, self.length_normalize)
            for documents, mask in embeddings[1:]
        ]
        return torch.stack(per_column, dim=1)


def check_multivector_model(loss_name: str, model: nn.Module) -> None:
    """Raise TypeError unless ``model`` gives token vectors (``output_kind`` ``"multivector"``)."""
    kind = getattr(model, "output_kind", None)
    if kind != MULTIVECTOR_KIND:
        raise TypeError(
            f"loss {loss_name!r} trains a multi-vector model (output_kind 'multivector', "
            f"gpte.models.multivector.MultiVectorEncoder); got {type(model).__name__} (output_kind {kind!r})"
        )
