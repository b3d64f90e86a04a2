"""Triplet margin loss (Schroff et al. 2015; sentence-transformers' TripletLoss):

    L = mean_i max(0, dist(a_i, p_i) - dist(a_i, n_i) + margin)

with dist euclidean (default, margin 5 as in sentence-transformers) or cosine (1 - cos).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from gpte.train.losses.base import EmbeddingLoss, TrainingBatch, check_choice, check_positive

DISTANCES = ("euclidean", "cosine")


class TripletLoss(EmbeddingLoss):
    """Triplet margin loss on (anchor, positive, negative) rows."""

    name = "triplet"
    min_columns = max_columns = 3

    def __init__(self, model: nn.Module, margin: float = 5.0, distance: str = "euclidean") -> None:
        super().__init__(model)
        check_positive("margin", margin)
        check_choice("distance", distance, DISTANCES)
        self.margin = float(margin)
        self.distance = distance

    def _distance(self, a: Tensor, b: Tensor) -> Tensor:
        if self.distance == "cosine":
            return 1 - F.cosine_similarity(a, b, dim=1)
        return F.pairwise_distance(a, b, p=2)

    def compute(self, embeddings: list[Tensor], batch: TrainingBatch) -> Tensor:
        anchor, positive, negative = embeddings
        return F.relu(self._distance(anchor, positive) - self._distance(anchor, negative) + self.margin).mean()
