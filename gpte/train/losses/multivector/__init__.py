"""Losses for multi-vector (ColBERT) models, each equal to sentence-transformers' MultiVectorEncoder loss:

    colbert_infonce          in-batch negatives on MaxSim        (MultiVectorMultipleNegativesRankingLoss)
    colbert_kl_distillation  KL to a teacher's candidate scores  (MultiVectorDistillKLDivLoss)
    colbert_margin_mse       MSE to a teacher's margins          (MultiVectorMarginMSELoss)

    build_loss({"name": "colbert_infonce", "gradcache": {"mini_batch_size": 16}}, multivector_model)

``gradcache`` wraps any of them (equal to CachedMultiVectorMultipleNegativesRankingLoss around colbert_infonce);
the Matryoshka wrappers do not (they truncate single vectors).
"""

from __future__ import annotations

from gpte.train.losses.multivector.base import MultiVectorLoss, check_multivector_model
from gpte.train.losses.multivector.infonce import ColBERTInfoNCELoss
from gpte.train.losses.multivector.kl_distillation import ColBERTKLDistillationLoss
from gpte.train.losses.multivector.margin_mse import ColBERTMarginMSELoss
from gpte.train.losses.multivector.tokens import TokenColumn, cat_rows, select_rows

MULTIVECTOR_LOSSES: tuple[type[MultiVectorLoss], ...] = (
    ColBERTInfoNCELoss,
    ColBERTKLDistillationLoss,
    ColBERTMarginMSELoss,
)

__all__ = [
    "MULTIVECTOR_LOSSES",
    "ColBERTInfoNCELoss",
    "ColBERTKLDistillationLoss",
    "ColBERTMarginMSELoss",
    "MultiVectorLoss",
    "TokenColumn",
    "cat_rows",
    "check_multivector_model",
    "select_rows",
]
