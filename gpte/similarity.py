"""Similarity functions between two sets of vectors, as sentence-transformers defines them.

cosine     a.b / (|a| |b|)
dot        a.b
euclidean  -|a - b|_2      (negated, so that larger is more similar)
manhattan  -|a - b|_1
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

Array = np.ndarray | torch.Tensor


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.normalize(a, p=2, dim=1) @ F.normalize(b, p=2, dim=1).T


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a @ b.T


def _euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return -torch.cdist(a, b, p=2.0)


def _manhattan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return -torch.cdist(a, b, p=1.0)


SIMILARITIES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cosine": _cosine,
    "dot": _dot,
    "euclidean": _euclidean,
    "manhattan": _manhattan,
}


def check_similarity(name: str) -> None:
    if name not in SIMILARITIES:
        raise ValueError(f"unknown similarity {name!r}; choose one of: {', '.join(SIMILARITIES)}")


def similarity(a: Array, b: Array, name: str = "cosine") -> Array:
    """The (n, m) matrix of ``name`` similarities between rows of ``a`` (n, d) and ``b`` (m, d).

    1-D inputs count as one row. Returns numpy if ``a`` is numpy, else a torch tensor. Integer
    (quantized) inputs are compared as floats.
    """
    check_similarity(name)
    as_numpy = isinstance(a, np.ndarray)
    ta, tb = (as_matrix(x) for x in (a, b))
    if ta.shape[1] != tb.shape[1]:
        raise ValueError(f"vectors differ in dimension: {ta.shape[1]} and {tb.shape[1]}")
    scores = SIMILARITIES[name](ta, tb.to(ta.device))
    return scores.cpu().numpy() if as_numpy else scores


PAIRWISE: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cosine": lambda a, b: (F.normalize(a, p=2, dim=1) * F.normalize(b, p=2, dim=1)).sum(dim=1),
    "dot": lambda a, b: (a * b).sum(dim=1),
    "euclidean": lambda a, b: -torch.linalg.vector_norm(a - b, ord=2, dim=1),
    "manhattan": lambda a, b: -torch.linalg.vector_norm(a - b, ord=1, dim=1),
}


def pairwise_similarity(a: Array, b: Array, name: str = "cosine") -> Array:
    """The (n,) similarities of row pairs (a[i], b[i]); numpy in, numpy out."""
    check_similarity(name)
    as_numpy = isinstance(a, np.ndarray)
    ta, tb = (as_matrix(x) for x in (a, b))
    if ta.shape != tb.shape:
        raise ValueError(f"pairwise similarity needs equal shapes, got {tuple(ta.shape)} and {tuple(tb.shape)}")
    scores = PAIRWISE[name](ta, tb.to(ta.device))
    return scores.cpu().numpy() if as_numpy else scores


def as_matrix(x: Array) -> torch.Tensor:
    """``x`` as a floating-point torch matrix (a 1-D input is one row; integer inputs become float32).

    Raises:
        TypeError: ``x`` is neither a numpy array nor a torch tensor.
    """
    tensor = torch.from_numpy(np.asarray(x)) if isinstance(x, np.ndarray) else x
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"similarity takes numpy arrays or torch tensors, got {type(x).__name__}")
    tensor = tensor if tensor.is_floating_point() else tensor.float()
    return tensor.unsqueeze(0) if tensor.dim() == 1 else tensor
