"""Unsupervised SimCSE (Gao et al. 2021, "SimCSE: Simple contrastive learning of sentence embeddings").

Each text is embedded twice in training mode; the two dropout masks make two views, which are each
other's positive with the rest of the batch as negatives:

    L = InfoNCE(h_i, h_i') with tau = 0.05 (the paper's value)

Data: one text column (any extra columns are ignored). The model must have dropout (train mode).
"""

from __future__ import annotations

from torch import Tensor, nn

from gpte.train.losses.base import TrainingBatch
from gpte.train.losses.infonce import InfoNCELoss


class SimCSELoss(InfoNCELoss):
    """InfoNCE between two dropout views of the same texts."""

    name = "simcse"
    min_columns = 1

    def __init__(self, model: nn.Module, temperature: float = 0.05, similarity: str = "cosine") -> None:
        super().__init__(model, temperature=temperature, similarity=similarity)

    def prepare(self, batch: TrainingBatch) -> TrainingBatch:
        """The batch's first column twice: each copy gets its own dropout mask when embedded."""
        return TrainingBatch([batch.texts[0]] * 2, [batch.features[0]] * 2, batch.scores, batch.extras)

    def compute(self, embeddings: list[Tensor], batch: TrainingBatch | None = None) -> Tensor:
        return super().compute(embeddings[:2], batch)
