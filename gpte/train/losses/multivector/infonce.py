"""ColBERT InfoNCE: in-batch negatives with MaxSim scores (sentence-transformers' MultiVectorMultipleNegativesRankingLoss).

Rows (query, positive, hard negatives...). Every query is scored against every document of the batch, the positives
and all rows' hard negatives alike (``MultiVectorLoss.in_batch_scores``: (n, n * N), query i's positive at column
i * N). With temperature tau,

    L = -1/n sum_i log( exp(s(q_i, d_i) / tau) / sum_{d in batch} exp(s(q_i, d) / tau) )

s is MaxSim (or MeanMaxSim), so scores range over [-|q|, |q|] and ColBERT trains at tau = 1 (sentence-transformers'
``scale`` = 1 / tau). Reference: Khattab & Zaharia 2020, "ColBERT: Efficient and effective passage search via
contextualized late interaction over BERT".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpte.train.losses.base import TrainingBatch, check_positive
from gpte.train.losses.multivector.base import MultiVectorLoss
from gpte.train.losses.multivector.tokens import TokenColumn


class ColBERTInfoNCELoss(MultiVectorLoss):
    """InfoNCE on MaxSim scores over (query, positive, negatives...) rows; see the module docstring.

    Args:
        model: the multi-vector model.
        temperature: tau (1.0 = sentence-transformers' default scale 1).
        similarity: ``maxsim`` or ``meanmaxsim`` (None: the model's).
    """

    name = "colbert_infonce"

    def __init__(self, model: nn.Module, temperature: float = 1.0, similarity: str | None = None) -> None:
        super().__init__(model, similarity)
        check_positive("temperature", temperature)
        self.temperature = float(temperature)

    def from_columns(self, embeddings: list[TokenColumn], batch: TrainingBatch | None) -> Tensor:
        scores = self.in_batch_scores(embeddings)
        documents_per_row = len(embeddings) - 1
        targets = torch.arange(scores.shape[0], device=scores.device) * documents_per_row
        return F.cross_entropy(scores * (1 / self.temperature), targets)  # sentence-transformers: scores * scale
