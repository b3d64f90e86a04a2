"""Matryoshka wrappers: train every prefix of the vector (and every layer) to work on its own.

Matryoshka (Kusupati et al. 2022, "Matryoshka representation learning", eq. 5): for truncation dims
M = (m_1, ..., m_k) with weights c_m,

    L = sum_m c_m * L_base(embeddings[:, :m])

2D Matryoshka (Li et al. 2024, "2D Matryoshka sentence embeddings", eqs. 7-11): in each step a layer
l ~ U(1, L-1) is drawn; the Matryoshka loss is taken on the last layer's vectors and on layer l's, and
layer l's similarity distribution is pulled toward the last layer's:

    L = L_M(X_L) + w_prior * L_M(X_l) + w_kl * KL(softmax(S_L / T) || softmax(S_l / T))

with S the cosine scores of the first column against all other columns' texts and X_L the (detached)
teacher side. sentence-transformers' Matryoshka2dLoss has the same structure.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from gpte.train.losses.base import EmbeddingLoss, TrainingBatch, check_positive, similarity_matrix


class MatryoshkaLoss(EmbeddingLoss):
    """The base loss summed over truncation dims (weights default to 1 each).

    Args:
        base: the loss applied at each size.
        dims: truncation sizes, each from 1 to the model's dimension.
        weights: one weight per dim (default all 1).
    """

    def __init__(self, base: EmbeddingLoss, dims: Sequence[int], weights: Sequence[float] | None = None) -> None:
        super().__init__(base.model)
        dimension = getattr(base.model, "dimension", None)
        if not dims or any(not isinstance(d, int) or d < 1 or (dimension and d > dimension) for d in dims):
            raise ValueError(
                f"matryoshka dims must be integers from 1 to the model's dimension {dimension}, got {list(dims)}"
            )
        weights = [1.0] * len(dims) if weights is None else list(weights)
        if len(weights) != len(dims):
            raise ValueError(f"matryoshka takes one weight per dim: {len(dims)} dims, {len(weights)} weights")
        self.base = base
        self.dims = list(dims)
        self.weights = weights
        self.name = f"matryoshka({base.name})"
        self.min_columns, self.max_columns, self.needs_scores = base.min_columns, base.max_columns, base.needs_scores

    def prepare(self, batch: TrainingBatch) -> TrainingBatch:
        return self.base.prepare(batch)

    def compute(self, embeddings: list[Tensor], batch: TrainingBatch) -> Tensor:
        return sum(
            w * self.base.compute([e[:, :dim] for e in embeddings], batch) for dim, w in zip(self.dims, self.weights)
        )


class Matryoshka2dLoss(EmbeddingLoss):
    """2D Matryoshka: Matryoshka on the last layer and on a random earlier layer, plus KL alignment.

    Args:
        base: the per-size loss (wrapped in ``MatryoshkaLoss`` with ``dims``/``weights``).
        dims, weights: as for ``MatryoshkaLoss``.
        prior_layers_weight: w_prior.
        kl_weight: w_kl; kl_temperature: T.
    """

    def __init__(
        self,
        base: EmbeddingLoss,
        dims: Sequence[int],
        weights: Sequence[float] | None = None,
        prior_layers_weight: float = 1.0,
        kl_weight: float = 1.0,
        kl_temperature: float = 0.3,
    ) -> None:
        super().__init__(base.model)
        check_positive("kl_temperature", kl_temperature)
        self.matryoshka = MatryoshkaLoss(base, dims, weights)
        self.prior_layers_weight = float(prior_layers_weight)
        self.kl_weight = float(kl_weight)
        self.kl_temperature = float(kl_temperature)
        self.name = f"matryoshka_2d({base.name})"
        self.min_columns, self.max_columns, self.needs_scores = base.min_columns, base.max_columns, base.needs_scores
        self.num_layers = base.model.backbone.num_layers
        if self.num_layers < 2:
            raise ValueError("2D Matryoshka needs a model with at least 2 layers")

    def forward(self, batch: TrainingBatch) -> Tensor:
        batch = self.matryoshka.prepare(batch)
        layer = int(torch.randint(1, self.num_layers, (1,)).item())
        per_column = [self.model.forward_layers(features, [layer, self.num_layers]) for features in batch.features]
        shallow, last = [p[0] for p in per_column], [p[1] for p in per_column]
        loss = self.matryoshka.compute(last, batch) + self.prior_layers_weight * self.matryoshka.compute(shallow, batch)
        return loss + self.kl_weight * self._alignment(shallow, last)

    def _alignment(self, shallow: list[Tensor], last: list[Tensor]) -> Tensor:
        """KL(softmax(S_last / T) || softmax(S_shallow / T)), last layer detached (the target)."""

        def scores(columns: list[Tensor]) -> Tensor:
            return similarity_matrix(columns[0], torch.cat(columns[1:]), "cosine") / self.kl_temperature

        target = F.log_softmax(scores([c.detach() for c in last]), dim=1)
        return F.kl_div(F.log_softmax(scores(shallow), dim=1), target, log_target=True, reduction="batchmean")
