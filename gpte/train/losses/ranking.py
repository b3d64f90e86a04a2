"""Losses for graded pairs (sentence1, sentence2, score): CoSENT and AnglE rank the pairs of a batch by
similarity; cosine MSE regresses the similarity onto the score.

CoSENT (Su 2022; Huang et al., "CoSENT: consistent sentence embedding via similarity ranking"): with
s_k the similarity of pair k times ``scale`` (1/tau) and y_k its gold score,

    L = log(1 + sum_{(k, l): y_k < y_l} exp(s_k - s_l))

AnglE (Li & Li 2024, "AoE: Angle-optimized embeddings", eq. 4) is the same ranking loss on the
normalized angle difference of the pair in complex space (each vector split into real and imaginary
halves) instead of the cosine. Both equal sentence-transformers' CoSENTLoss/AnglELoss on the same
embeddings. Cosine MSE: mean((cos(u, v) - y)^2), sentence-transformers' CosineSimilarityLoss (scores
should lie in [0, 1]: use the data's ``score_range``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpte.similarity import PAIRWISE
from gpte.train.losses.base import EmbeddingLoss, TrainingBatch, check_positive


def cosent(similarities: Tensor, scores: Tensor) -> Tensor:
    """log(1 + sum over pairs (k, l) with scores[k] < scores[l] of exp(similarities[k] - similarities[l]))."""
    differences = similarities[:, None] - similarities[None, :]
    ordered = scores[:, None] < scores[None, :]
    differences = differences.masked_fill(~ordered, float("-inf"))
    zero = torch.zeros(1, dtype=differences.dtype, device=differences.device)
    return torch.logsumexp(torch.cat([zero, differences.flatten()]), dim=0)


def angle_similarity(u: Tensor, v: Tensor) -> Tensor:
    """|sum of (re, im) of (u / v) / (|u| / |v|)| per row, with u = a + ib, v = c + id from the vector halves."""
    a, b = torch.chunk(u, 2, dim=1)
    c, d = torch.chunk(v, 2, dim=1)
    v_square = (c**2 + d**2).sum(dim=1, keepdim=True)
    real, imaginary = (a * c + b * d) / v_square, (b * c - a * d) / v_square
    norm_ratio = (a**2 + b**2).sum(dim=1, keepdim=True).sqrt() / v_square.sqrt()
    return (torch.cat([real, imaginary], dim=1) / norm_ratio).sum(dim=1).abs()


class CoSENTLoss(EmbeddingLoss):
    """CoSENT on (sentence1, sentence2, score) rows; ``scale`` = 1/tau (sentence-transformers: 20)."""

    name = "cosent"
    max_columns = 2
    needs_scores = True

    def __init__(self, model: nn.Module, scale: float = 20.0) -> None:
        super().__init__(model)
        check_positive("scale", scale)
        self.scale = float(scale)

    def pair_similarity(self, u: Tensor, v: Tensor) -> Tensor:
        return PAIRWISE["cosine"](u, v)

    def compute(self, embeddings: list[Tensor], batch: TrainingBatch) -> Tensor:
        return cosent(
            self.scale * self.pair_similarity(embeddings[0], embeddings[1]), batch.scores.to(embeddings[0].dtype)
        )


class AnglELoss(CoSENTLoss):
    """AnglE: CoSENT on the angle similarity (see module docstring)."""

    name = "angle"

    def pair_similarity(self, u: Tensor, v: Tensor) -> Tensor:
        return angle_similarity(u, v)


class CosineMSELoss(EmbeddingLoss):
    """mean((cos(u, v) - score)^2) on (sentence1, sentence2, score) rows."""

    name = "cosine_mse"
    max_columns = 2
    needs_scores = True

    def compute(self, embeddings: list[Tensor], batch: TrainingBatch) -> Tensor:
        cosine = PAIRWISE["cosine"](embeddings[0], embeddings[1])
        return F.mse_loss(cosine, batch.scores.to(cosine.dtype))
