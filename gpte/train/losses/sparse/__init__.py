"""Losses for learned sparse models: SPLADE (ranking loss + FLOPS regularisers, warmed-up weights) and CSR
(sparse autoencoder reconstruction + ranking loss), each equal to sentence-transformers' sparse loss.

    build_loss({"name": "splade", "loss": {"name": "infonce"}, "document_regularizer_weight": 3e-5,
                "query_regularizer_weight": 5e-5}, sparse_model)
"""

from __future__ import annotations

from gpte.train.losses.sparse.csr import CSR_OUTPUTS, CSRLoss, CSRReconstructionLoss, normalized_mse
from gpte.train.losses.sparse.flops import FlopsLoss, flops
from gpte.train.losses.sparse.inner import SPARSE_DEFAULTS
from gpte.train.losses.sparse.splade import SpladeLoss

__all__ = [
    "CSR_OUTPUTS",
    "SPARSE_DEFAULTS",
    "CSRLoss",
    "CSRReconstructionLoss",
    "FlopsLoss",
    "SpladeLoss",
    "flops",
    "normalized_mse",
]
