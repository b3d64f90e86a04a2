"""MaxSim, the late-interaction score (ColBERT, Khattab & Zaharia 2020): for query tokens q_i and document tokens
d_j (L2-normalised, so q_i . d_j is a cosine),

    MaxSim(q, d) = sum_i max_j q_i . d_j            ("maxsim")
    MeanMaxSim(q, d) = MaxSim(q, d) / |q|           ("meanmaxsim": divided by the query's token count)

Computed as sentence-transformers 6 computes it (``sentence_transformers.util.similarity.maxsim``): document
padding is filled with the dtype's minimum before the max (so a query token whose every cosine is negative keeps
its negative maximum, where PyLate's zero-fill would give 0), the maxima are summed in float32 over the real query
tokens, and a document with no token at all scores -1e9.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from gpte.models.multivector.vectors import TokenVectors

SIMILARITIES = ("maxsim", "meanmaxsim")
EMPTY_DOCUMENT_SCORE = -1e9
SCORE_BUDGET = 50_000_000  # query tokens x document tokens scored at once by maxsim_matrix
QUERY_GROUP = 64  # queries scored together by maxsim_matrix


def check_similarity(name: str) -> str:
    if name not in SIMILARITIES:
        raise ValueError(f"unknown multi-vector similarity {name!r}; choose one of {', '.join(SIMILARITIES)}")
    return name


def maxsim(
    queries: Tensor, query_mask: Tensor, documents: Tensor, document_mask: Tensor, length_normalize: bool = False
) -> Tensor:
    """Scores (A, B) float32 of padded queries (A, s, h) against padded documents (B, t, h); masks are bool (A, s)
    and (B, t), True for a real token. Differentiable (training losses use it)."""
    scores = torch.einsum("ash,bth->abst", queries, documents)
    scores = scores.masked_fill(~document_mask[None, :, None, :], torch.finfo(scores.dtype).min)
    best = scores.max(dim=-1).values.float() * query_mask[:, None, :].float()
    total = best.sum(dim=-1)
    if length_normalize:
        total = total / query_mask.sum(dim=-1, keepdim=True).clamp(min=1).float()
    return total.masked_fill(~document_mask.any(dim=-1)[None, :], EMPTY_DOCUMENT_SCORE)


def maxsim_pairwise(
    queries: Tensor, query_mask: Tensor, documents: Tensor, document_mask: Tensor, length_normalize: bool = False
) -> Tensor:
    """Scores (n,) float32 of query i against document i, padded (n, s, h) and (n, t, h) with their masks."""
    scores = torch.einsum("bsh,bth->bst", queries, documents)
    scores = scores.masked_fill(~document_mask[:, None, :], torch.finfo(scores.dtype).min)
    total = (scores.max(dim=-1).values.float() * query_mask.float()).sum(dim=-1)
    if length_normalize:
        total = total / query_mask.sum(dim=-1).clamp(min=1).float()
    return total.masked_fill(~document_mask.any(dim=-1), EMPTY_DOCUMENT_SCORE)


def maxsim_matrix(queries: TokenVectors, documents: TokenVectors, similarity: str = "maxsim") -> np.ndarray:
    """Scores (len(queries), len(documents)) float32: queries in groups of ``QUERY_GROUP`` and documents in blocks so
    that a block's token scores stay under ``SCORE_BUDGET``, each sorted by length so that padding stays small."""
    check_similarity(similarity)
    scores = np.zeros((len(queries), len(documents)), dtype=np.float32)
    if not len(queries) or not len(documents):
        return scores
    order = np.argsort(documents.lengths, kind="stable")
    by_length = np.argsort(queries.lengths, kind="stable")
    with torch.inference_mode():
        for start in range(0, len(queries), QUERY_GROUP):  # queries of similar length together: little padding
            query_rows = by_length[start : start + QUERY_GROUP]
            query_tensor, query_mask = queries.padded(query_rows)
            for rows in _blocks(order, documents.lengths[order], query_mask.numel()):
                block, block_mask = documents.padded(rows)
                part = maxsim(query_tensor, query_mask, block, block_mask, similarity == "meanmaxsim").numpy()
                scores[np.ix_(query_rows, rows)] = part
    return scores


def maxsim_rows(queries: TokenVectors, documents: TokenVectors, similarity: str = "maxsim") -> np.ndarray:
    """Scores (n,) float32 of query i against document i."""
    check_similarity(similarity)
    if len(queries) != len(documents):
        raise ValueError(f"pairwise MaxSim needs as many queries as documents, got {len(queries)} and {len(documents)}")
    if not len(queries):
        return np.zeros(0, dtype=np.float32)
    (q, q_mask), (d, d_mask) = queries.padded(), documents.padded()
    with torch.inference_mode():
        return maxsim_pairwise(q, q_mask, d, d_mask, similarity == "meanmaxsim").numpy()


def _blocks(order: np.ndarray, sorted_lengths: np.ndarray, query_tokens: int) -> list[np.ndarray]:
    """``order`` (documents by ascending length) cut into runs whose padded token scores
    (documents x longest x ``query_tokens``) stay under ``SCORE_BUDGET``; a run holds at least one document."""
    blocks, start = [], 0
    for stop in range(1, len(order) + 1):
        if stop == len(order) or (stop + 1 - start) * max(int(sorted_lengths[stop]), 1) * query_tokens > SCORE_BUDGET:
            blocks.append(order[start:stop])
            start = stop
    return blocks
