"""GISTEmbed: guided in-batch negative selection (Solatorio 2024, "GISTEmbed: Guided in-sample selection
of training negatives for text embedding fine-tuning").

A frozen guide embedder scores the same candidates as the InfoNCE loss. Any negative the guide scores
higher than the row's positive (less ``margin``) is likely a false negative and is left out of Z:

    mask_ij = guide(x_i, c_j) > guide(x_i, positive_i) - margin,    for every candidate c_j but the positive

The candidate blocks are InfoNCE's (in-batch and hard negatives, and the enabled same-tower terms), so
the guide masks exactly the terms the student sees.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from gpte.train.losses.base import TrainingBatch
from gpte.train.losses.infonce import InfoNCELoss


class GISTLoss(InfoNCELoss):
    """InfoNCE whose false negatives, as judged by ``guide``, are masked.

    Args:
        model: the embedder being trained.
        guide: a frozen embedder (gpte Embedder or anything with ``encode(texts, convert_to="torch")``).
        margin: how far below the positive's guide score a negative must be to stay.
        **infonce: InfoNCELoss options (temperature, similarity, same-tower terms, symmetric is not allowed).
    """

    name = "gist"

    def __init__(self, model: nn.Module, guide: Any, margin: float = 0.0, **infonce: Any) -> None:
        if infonce.get("symmetric"):
            raise ValueError("gist does not support symmetric=True")
        super().__init__(model, **infonce)
        self.guide = [guide]  # in a list: a frozen model that is not a submodule (not trained, not saved)
        self.margin = float(margin)

    def prepare(self, batch: TrainingBatch) -> TrainingBatch:
        guide = self.guide[0]
        with torch.no_grad():
            vectors = [guide.encode(texts, convert_to="torch", show_progress=False) for texts in batch.texts]
        device = batch.features[0].input_ids.device
        extras = {**batch.extras, "guide": [v.to(device=device, dtype=torch.float32) for v in vectors]}
        return TrainingBatch(batch.texts, batch.features, batch.scores, extras)

    def logits(self, embeddings: list[Tensor], guide: list[Tensor] | None = None) -> tuple[Tensor, Tensor]:
        logits, own = super().logits(embeddings)
        if guide is None:
            return logits, own
        with torch.no_grad():
            guide_scores, _ = super().logits(guide)
            rows = torch.arange(logits.shape[0], device=logits.device)
            positive = guide_scores[rows, own].unsqueeze(1)
            mask = guide_scores > positive - self.margin / self.temperature
            mask[rows, own] = False
        return logits.masked_fill(mask, float("-inf")), own

    def compute(self, embeddings: list[Tensor], batch: TrainingBatch | None = None) -> Tensor:
        logits, own = self.logits(embeddings, batch.extras.get("guide") if batch is not None else None)
        return torch.nn.functional.cross_entropy(logits, own)
