"""Padded token vectors of a training batch: a column is ``(vectors, mask)``, the model's output for it.

``vectors`` is (rows, tokens, dim) unit-length token vectors (with gradients) and ``mask`` the (rows, tokens) bool
``score_mask``, True for a token MaxSim scores (``gpte.models.multivector.MultiVectorEncoder.forward``). Multi-vector
batches are right-padded, so rows can be cut and joined by trimming or zero-padding the token axis; padding is never
scored (mask False), which leaves every MaxSim score unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gpte.models.multivector import MultiVectorBatch
from gpte.models.tokenization import TokenBatch

TokenColumn = tuple[Tensor, Tensor]  # (rows, tokens, dim) vectors, (rows, tokens) bool score mask


def select_rows(batch: MultiVectorBatch, rows: slice) -> MultiVectorBatch:
    """The batch's ``rows``, without the right padding none of them attends to or scores (expanded query tokens
    are attended to by no one but scored, so they stay)."""
    tokens, scored = batch.tokens, batch.score_mask[rows]
    used = (tokens.attention_mask[rows].bool() | scored).any(dim=0).nonzero().flatten()
    width = int(used[-1]) + 1 if len(used) else 1
    segments = None if tokens.segments is None else tokens.segments[rows, :width]
    trimmed = TokenBatch(
        tokens.input_ids[rows, :width],
        tokens.attention_mask[rows, :width],
        tokens.position_ids[rows, :width],
        segments,
        tokens.role,
    )
    return MultiVectorBatch(trimmed, scored[:, :width], batch.role)


def pad_tokens(column: TokenColumn, width: int) -> TokenColumn:
    """``column`` zero-padded (mask False) on the token axis to ``width`` tokens."""
    vectors, mask = column
    missing = width - vectors.shape[1]
    if missing <= 0:
        return vectors, mask
    return F.pad(vectors, (0, 0, 0, missing)), F.pad(mask, (0, missing), value=False)


def cat_rows(parts: list[TokenColumn]) -> TokenColumn:
    """The rows of ``parts`` one after another, padded to the widest part."""
    width = max(vectors.shape[1] for vectors, _ in parts)
    padded = [pad_tokens(part, width) for part in parts]
    return torch.cat([v for v, _ in padded]), torch.cat([m for _, m in padded])
