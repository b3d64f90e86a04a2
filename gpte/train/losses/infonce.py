"""InfoNCE / multiple-negatives ranking loss with in-batch, hard, same-tower and cross-process negatives.

For query q_i with positive d_i, candidate documents D (every positive of the batch, then every hard
negative column) and temperature tau:

    L = -1/n sum_i log( exp(s(q_i, d_i)/tau) / Z_i ),   Z_i = sum_{d in D} exp(s(q_i, d)/tau)   (+ options)

Options add terms to Z_i, following GTE's improved contrastive loss (Li et al. 2023, "Towards General
Text Embeddings with Multi-stage Contrastive Learning", eq. 3; Gecko uses the same-tower terms):

    query_negatives     + sum_{j != i} exp(s(q_i, q_j)/tau)     other queries
    reverse_negatives   + sum_j exp(s(q_j, d_i)/tau)            other queries scored against d_i
    document_negatives  + sum_{j != i} exp(s(d_j, d_i)/tau)     other positives scored against d_i
    gte=True            all three (GTE's loss)

``symmetric`` averages the query->document loss with the document->query loss (each positive must pick
its query among the batch's queries). With ``gather_across_processes`` (default) and DDP running, the
candidates (and same-tower terms) come from every process. ``compute`` is the math on embeddings; sentence-
transformers' MultipleNegativesRankingLoss (scale = 1/tau) is the same loss without the options.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpte.train.losses.base import (
    PAIRWISE_SIMILARITIES,
    EmbeddingLoss,
    TrainingBatch,
    check_choice,
    check_positive,
    similarity_matrix,
)
from gpte.train.losses.distributed import gather_with_grad, world


class InfoNCELoss(EmbeddingLoss):
    """InfoNCE over (query, positive, hard negatives...) rows; see the module docstring for the formula.

    Args:
        model: the embedder.
        temperature: tau (0.05 = sentence-transformers' scale 20).
        similarity: cosine or dot.
        query_negatives, reverse_negatives, document_negatives: the extra terms of Z (module docstring).
        gte: all three extra terms (GTE's improved contrastive loss).
        symmetric: average with the document->query direction.
        gather_across_processes: share candidates across DDP processes.
    """

    name = "infonce"

    def __init__(
        self,
        model: nn.Module,
        temperature: float = 0.05,
        similarity: str = "cosine",
        query_negatives: bool = False,
        reverse_negatives: bool = False,
        document_negatives: bool = False,
        gte: bool = False,
        symmetric: bool = False,
        gather_across_processes: bool = True,
    ) -> None:
        super().__init__(model)
        check_positive("temperature", temperature)
        check_choice("similarity", similarity, PAIRWISE_SIMILARITIES)
        self.temperature = float(temperature)
        self.similarity = similarity
        self.query_negatives = query_negatives or gte
        self.reverse_negatives = reverse_negatives or gte
        self.document_negatives = document_negatives or gte
        self.symmetric = symmetric
        self.gather = gather_across_processes

    def compute(self, embeddings: list[Tensor], batch: TrainingBatch | None = None) -> Tensor:
        logits, targets = self.logits(embeddings)
        loss = F.cross_entropy(logits, targets)
        if self.symmetric:
            loss = (loss + self._backward_loss(embeddings)) / 2
        return loss

    def logits(self, embeddings: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Scaled scores (rows, candidates) of each local query and the column of its positive.

        Columns: every gathered positive and hard negative, then the enabled extra terms; masked
        entries (a text against itself) are -inf.
        """
        queries, positives = embeddings[0], embeddings[1]
        rank, _ = world()
        gather = gather_with_grad if self.gather else (lambda t: t)
        n = queries.shape[0]
        own = torch.arange(n, device=queries.device) + rank * n  # global index of each local row
        all_queries, all_positives = gather(queries), gather(positives)
        documents = torch.cat([all_positives] + [gather(negative) for negative in embeddings[2:]])
        blocks = [self._scores(queries, documents)]
        if self.query_negatives:
            blocks.append(_mask_self(self._scores(queries, all_queries), own))
        if self.reverse_negatives:
            blocks.append(self._scores(positives, all_queries))
        if self.document_negatives:
            blocks.append(_mask_self(self._scores(positives, all_positives), own))
        return torch.cat(blocks, dim=1), own

    def _backward_loss(self, embeddings: list[Tensor]) -> Tensor:
        """Each positive against every (gathered) query; the target is its own query."""
        queries, positives = embeddings[0], embeddings[1]
        rank, _ = world()
        all_queries = gather_with_grad(queries) if self.gather else queries
        own = torch.arange(positives.shape[0], device=positives.device) + rank * positives.shape[0]
        return F.cross_entropy(self._scores(positives, all_queries), own)

    def _scores(self, a: Tensor, b: Tensor) -> Tensor:
        return similarity_matrix(a, b, self.similarity) / self.temperature


def _mask_self(scores: Tensor, own: Tensor) -> Tensor:
    """``scores`` with each row's entry for its own text set to -inf."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    mask[torch.arange(scores.shape[0], device=scores.device), own] = True
    return scores.masked_fill(mask, float("-inf"))
