"""Distillation from a teacher's scores (a cross-encoder or a larger embedder).

MarginMSE (Hofstaetter et al. 2020, "Improving efficient neural ranking models with cross-architecture
knowledge distillation"): rows (query, positive, negative_1..k) with the teacher's margins
t(q, p) - t(q, n_j) as scores (rows,) or (rows, k):

    L = mean_{i,j} ((s(q_i, p_i) - s(q_i, n_ij)) - margin_ij)^2

KL distillation (E5, Wang et al. 2022, "Text embeddings by weakly-supervised contrastive pre-training",
fine-tuning stage): rows (query, positive, negative_1..k) with the teacher's scores for the k+1
candidates as scores (rows, k+1). With p_t = softmax(t / teacher_temperature) and
p_s = softmax(s(q, candidates) / temperature),

    L = KL(p_t || p_s) + alpha * L_InfoNCE

the E5 interpolation between soft labels and the hard-label contrastive loss (in-batch and hard
negatives, same temperature); ``contrastive_weight`` is alpha (0 = pure distillation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpte.similarity import PAIRWISE
from gpte.train.losses.base import PAIRWISE_SIMILARITIES, EmbeddingLoss, TrainingBatch, check_choice, check_positive
from gpte.train.losses.infonce import InfoNCELoss


def candidate_scores(embeddings: list[Tensor], similarity: str) -> Tensor:
    """(rows, k+1) similarity of each query to its own positive and hard negatives."""
    query = embeddings[0]
    return torch.stack([PAIRWISE[similarity](query, candidate) for candidate in embeddings[1:]], dim=1)


class MarginMSELoss(EmbeddingLoss):
    """MarginMSE on (query, positive, negatives...) rows with teacher margins as scores."""

    name = "margin_mse"
    min_columns = 3
    needs_scores = True

    def __init__(self, model: nn.Module, similarity: str = "dot") -> None:
        super().__init__(model)
        check_choice("similarity", similarity, PAIRWISE_SIMILARITIES)
        self.similarity = similarity

    def compute(self, embeddings: list[Tensor], batch: TrainingBatch) -> Tensor:
        scores = candidate_scores(embeddings, self.similarity)
        margins = scores[:, :1] - scores[:, 1:]
        teacher = batch.scores.to(margins.dtype).reshape(margins.shape[0], -1)
        return F.mse_loss(margins, teacher.expand_as(margins))


class KLDistillationLoss(EmbeddingLoss):
    """KL to the teacher's candidate distribution plus ``contrastive_weight`` x InfoNCE (E5)."""

    name = "kl_distillation"
    min_columns = 2
    needs_scores = True

    def __init__(
        self,
        model: nn.Module,
        temperature: float = 0.05,
        teacher_temperature: float = 1.0,
        contrastive_weight: float = 0.2,
        similarity: str = "cosine",
    ) -> None:
        super().__init__(model)
        check_positive("teacher_temperature", teacher_temperature)
        if contrastive_weight < 0:
            raise ValueError(f"contrastive_weight must be >= 0, got {contrastive_weight!r}")
        self.contrastive = InfoNCELoss(model, temperature=temperature, similarity=similarity)
        self.teacher_temperature = float(teacher_temperature)
        self.contrastive_weight = float(contrastive_weight)

    def compute(self, embeddings: list[Tensor], batch: TrainingBatch) -> Tensor:
        student = candidate_scores(embeddings, self.contrastive.similarity) / self.contrastive.temperature
        teacher = batch.scores.to(student.dtype).reshape(student.shape[0], -1)
        if teacher.shape != student.shape:
            raise ValueError(
                f"{self.name}: each row needs {student.shape[1]} teacher scores (positive and negatives), got {teacher.shape[1]}"
            )
        loss = F.kl_div(
            F.log_softmax(student, dim=1),
            F.log_softmax(teacher / self.teacher_temperature, dim=1),
            log_target=True,
            reduction="batchmean",
        )
        if self.contrastive_weight:
            loss = loss + self.contrastive_weight * self.contrastive.compute(embeddings)
        return loss
