"""Hierarchical token pooling: fewer vectors per document, by Ward clustering of its token vectors.

ColBERT/PLAID indexes store one vector per document token. Token pooling (Clavié et al. 2024, "Reducing the
footprint of multi-vector retrieval with minimal performance impact via token pooling", arXiv:2409.14683) clusters a
document's token vectors and keeps one mean vector per cluster; halving the tokens (``pool_factor=2``) costs little
retrieval quality. Queries are never pooled.

The algorithm is sentence-transformers 6.3's ``HierarchicalTokenPooling`` (``multi_vector_encoder.modules.
token_pooling``), reproduced step by step so that a model saved with a pooler gives the same document vectors in both
(and PyLate > 1.3.4's with ``normalize_embeddings=False``). For each document of ``n`` unit token vectors:

1. the first ``num_protected_tokens`` tokens (the [CLS]) are kept as they are, first, and never clustered;
2. the other ``m = n - p`` tokens are clustered: cosine distances ``D = clamp(1 - E Eᵀ, 0, 2)`` (float32, no square
   root), Ward linkage (``scipy.cluster.hierarchy.linkage`` on the condensed ``D``, or ``fastcluster.linkage`` where
   that package is installed, as sentence-transformers does: the two break exact distance ties differently), then
   ``fcluster``: ``maxclust`` at ``max(floor(m / pool_factor), 1)`` clusters (``max_tokens - p`` with
   ``max_tokens``), or ``distance`` at ``distance_threshold``;
3. each cluster becomes the mean of its members (summed in float32 for half-precision input), clusters in the
   order of their fcluster labels; a document with at most one poolable token, or whose target is not below ``m``,
   is not clustered;
4. the output is the protected tokens then the cluster means, each L2-normalised if ``normalize_embeddings``.

Documents are pooled in padded batches grouped as sentence-transformers groups them (consecutive documents of one
device, dtype and width; about 128 MiB of working memory a batch), so the same list of documents gives the same bits.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from functools import cache
from itertools import groupby
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

POOLING_MEMORY_BUDGET = 128 * 1024 * 1024  # bytes of working memory per padded batch (sentence-transformers')
CONFIG_KEYS = (
    "pool_factor",
    "max_tokens",
    "distance_threshold",
    "num_protected_tokens",
    "normalize_embeddings",
    "tasks",
)
TASKS = ["document"]


@cache
def ward_linkage_function() -> Callable[..., np.ndarray]:
    """``fastcluster.linkage`` where it imports, else ``scipy.cluster.hierarchy.linkage`` (sentence-transformers'
    choice, so that both break distance ties alike)."""
    try:
        from fastcluster import linkage
    except (ImportError, OSError, RuntimeError):
        from scipy.cluster.hierarchy import linkage
    return linkage


class HierarchicalTokenPooling:
    """Pools each document's token vectors into cluster means (Ward linkage on cosine distance; module docstring).

    Args:
        pool_factor: keep about ``1 / pool_factor`` of each document's poolable tokens (a real number >= 1; 1.5 keeps
            two thirds). 1 (the default) merges nothing.
        max_tokens: at most this many output tokens, protected ones included (an integer above
            ``num_protected_tokens``); shorter documents are not clustered.
        distance_threshold: cut each document's Ward tree at this height (a real number >= 0): the token count
            follows the document.
        num_protected_tokens: leading tokens kept as they are (an integer >= 0; default 1, the [CLS]).
        normalize_embeddings: L2-normalise every output token (default True).

    A non-default ``pool_factor``, ``max_tokens`` and ``distance_threshold`` are mutually exclusive.
    """

    def __init__(
        self,
        pool_factor: float = 1.0,
        *,
        max_tokens: int | None = None,
        distance_threshold: float | None = None,
        num_protected_tokens: int = 1,
        normalize_embeddings: bool = True,
    ) -> None:
        if not _is_real(pool_factor) or not math.isfinite(pool_factor) or pool_factor < 1:
            raise ValueError(f"pool_factor must be a finite number >= 1, got {pool_factor!r}")
        if not _is_int(num_protected_tokens) or num_protected_tokens < 0:
            raise ValueError(f"num_protected_tokens must be an integer >= 0, got {num_protected_tokens!r}")
        if not isinstance(normalize_embeddings, (bool, np.bool_)):
            raise ValueError(f"normalize_embeddings must be True or False, got {normalize_embeddings!r}")
        if max_tokens is not None and (not _is_int(max_tokens) or max_tokens <= num_protected_tokens):
            raise ValueError(
                f"max_tokens must be an integer above num_protected_tokens ({num_protected_tokens}) to leave room "
                f"for at least one pooled token, got {max_tokens!r}"
            )
        if distance_threshold is not None and (
            not _is_real(distance_threshold) or not math.isfinite(distance_threshold) or distance_threshold < 0
        ):
            raise ValueError(f"distance_threshold must be a finite number >= 0, got {distance_threshold!r}")
        chosen = [
            name
            for name, value in (
                ("pool_factor", None if pool_factor == 1 else pool_factor),
                ("max_tokens", max_tokens),
                ("distance_threshold", distance_threshold),
            )
            if value is not None
        ]
        if len(chosen) > 1:
            raise ValueError(
                f"pool_factor (other than 1), max_tokens and distance_threshold are mutually exclusive; got {' and '.join(chosen)}"
            )
        self.pool_factor = int(pool_factor) if _is_int(pool_factor) else float(pool_factor)
        self.max_tokens = None if max_tokens is None else int(max_tokens)
        self.distance_threshold = None if distance_threshold is None else float(distance_threshold)
        self.num_protected_tokens = int(num_protected_tokens)
        self.normalize_embeddings = bool(normalize_embeddings)

    # ----------------------------------------------------------------- settings

    def config(self) -> dict[str, Any]:
        """sentence-transformers' ``config.json`` of the module (its ``config_keys``, in its order)."""
        return {
            "pool_factor": self.pool_factor,
            "max_tokens": self.max_tokens,
            "distance_threshold": self.distance_threshold,
            "num_protected_tokens": self.num_protected_tokens,
            "normalize_embeddings": self.normalize_embeddings,
            "tasks": list(TASKS),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> HierarchicalTokenPooling:
        """The pooler of a saved ``config.json``. As sentence-transformers, a config without ``normalize_embeddings``
        (written before it existed) does not normalise, and other missing keys take their defaults.

        Raises:
            ValueError: the config has keys sentence-transformers does not know, pools other tasks than documents, or
                holds a bad value.
        """
        if config is not None and not isinstance(config, dict):
            raise ValueError(f"a HierarchicalTokenPooling config is a JSON object, got {type(config).__name__}")
        config = dict(config or {})
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ValueError(
                f"unknown HierarchicalTokenPooling config keys {unknown}; known keys: {', '.join(CONFIG_KEYS)}"
            )
        tasks = config.pop("tasks", None)
        if tasks is not None and ([tasks] if isinstance(tasks, str) else list(tasks)) != TASKS:
            raise ValueError(
                f"HierarchicalTokenPooling tasks must be {TASKS} (gpte pools documents only), got {tasks!r}"
            )
        config.setdefault("normalize_embeddings", False)
        return cls(**config)

    def settings(self) -> dict[str, Any]:
        """The settings that shape the pooled vectors (for the model's ``info()``)."""
        return {
            "type": "hierarchical",
            "linkage": "ward",
            "pool_factor": self.pool_factor,
            "max_tokens": self.max_tokens,
            "distance_threshold": self.distance_threshold,
            "num_protected_tokens": self.num_protected_tokens,
            "normalize_embeddings": self.normalize_embeddings,
        }

    def __repr__(self) -> str:
        options = ", ".join(
            f"{key}={value!r}" for key, value in self.settings().items() if key not in ("type", "linkage")
        )
        return f"HierarchicalTokenPooling({options})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HierarchicalTokenPooling) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash(tuple(self.config()[key] for key in CONFIG_KEYS[:-1]))

    # ----------------------------------------------------------------- pooling

    def __call__(self, vectors: Sequence[Tensor]) -> list[Tensor]:
        """Each document's (tokens, dim) vectors pooled, in input order; dtype and device kept.

        Raises:
            ValueError: an entry is not a 2-D floating-point tensor, or a clustered document holds NaN or inf.
        """
        if isinstance(vectors, Tensor) or not isinstance(vectors, Sequence):
            raise ValueError(f"token pooling takes a list of (tokens, dim) tensors, got {type(vectors).__name__}")
        for i, document in enumerate(vectors):
            if not isinstance(document, Tensor) or document.ndim != 2 or not document.is_floating_point():
                what = (
                    f"a {document.ndim}-D {document.dtype} tensor"
                    if isinstance(document, Tensor)
                    else type(document).__name__
                )
                raise ValueError(f"document {i}: token pooling takes (tokens, dim) float tensors, got {what}")
        pooled: list[Tensor] = []
        # Consecutive documents of one device, dtype and width share padded batches (sentence-transformers' grouping).
        for _, group in groupby(vectors, key=lambda d: (d.device, d.dtype, d.shape[1])):
            documents = list(group)
            width = documents[0].shape[1]
            longest = max(len(d) for d in documents)
            poolable = max(longest - self.num_protected_tokens, 0)
            per_document = max(1, 4 * poolable**2 * 4 + 6 * longest * width * 4)  # 4 distance, 6 embedding buffers
            batch_size = max(1, POOLING_MEMORY_BUDGET // per_document)
            for start in range(0, len(documents), batch_size):
                batch = documents[start : start + batch_size]
                padded = torch.nn.utils.rnn.pad_sequence(batch, batch_first=True, padding_value=0.0)
                lengths = torch.tensor([len(d) for d in batch], device=padded.device)
                embeddings, new_lengths = self._pool_batch(padded, lengths)
                if self.normalize_embeddings:
                    embeddings = _normalize(embeddings)
                pooled.extend(e[:n] for e, n in zip(embeddings, new_lengths.tolist()))
        return pooled

    def _pool_batch(self, embeddings: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """A right-padded (B, T, D) batch pooled: (B, T', D) and each row's new length."""
        batch_size, num_tokens, dim = embeddings.shape
        protected = min(self.num_protected_tokens, num_tokens)
        num_poolable = num_tokens - protected
        max_clusters = max(int(num_poolable // self.pool_factor), 1)
        if self.max_tokens is not None:
            max_clusters = min(self.max_tokens - protected, num_poolable)

        valid = torch.arange(num_tokens, device=embeddings.device)[None, :] < lengths[:, None]
        embeddings = torch.where(valid[..., None], embeddings, 0)
        if num_poolable <= 1 or (self.distance_threshold is None and max_clusters >= num_poolable):
            return embeddings, lengths

        poolable_lengths = (lengths - protected).clamp_min(0)
        poolable = embeddings[:, protected:]
        values = poolable.float() if poolable.dtype in (torch.float16, torch.bfloat16) else poolable

        if max_clusters == 1:  # one cluster: the mean of every poolable token, no linkage
            cluster_sums = values.sum(1, keepdim=True)
            means = cluster_sums / poolable_lengths.clamp_min(1)[:, None, None]
            counts = (poolable_lengths > 0).long()
        else:
            with torch.autocast(device_type="cpu", enabled=False):
                on_cpu = values.detach().to(device="cpu", dtype=torch.float32)
                distances = (1 - on_cpu @ on_cpu.transpose(1, 2)).clamp_(0, 2)
                cpu_lengths = poolable_lengths.cpu()
                if self.max_tokens is not None:
                    targets = torch.full_like(cpu_lengths, self.max_tokens - protected)
                else:
                    targets = (cpu_lengths.double() // self.pool_factor).long()
                targets = targets.clamp_min_(1).minimum(cpu_lengths)
                labels, counts = self._cluster(distances, cpu_lengths, targets)
            labels, counts = labels.to(embeddings.device), counts.to(embeddings.device)
            cluster_sums = values.new_zeros((batch_size, max_clusters, dim))
            cluster_sums.scatter_add_(1, labels[..., None].expand_as(values), values)
            weights = valid[:, protected:].to(values.dtype)  # padding has label 0 too: it is not counted
            sizes = weights.new_zeros((batch_size, max_clusters)).scatter_add_(1, labels, weights)
            means = cluster_sums / sizes.clamp_min(1)[..., None]

        if cluster_sums.requires_grad:  # straight-through: each member gets its cluster mean's full gradient
            means = means.detach() + (cluster_sums - cluster_sums.detach())
        pooled = torch.cat((embeddings[:, :protected], means.to(embeddings.dtype)), dim=1)
        return pooled, lengths.clamp_max(protected) + counts

    def _cluster(self, distances: Tensor, lengths: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Dense zero-based cluster labels (B, T) of each row's first ``lengths`` tokens, and the cluster counts."""
        from scipy.cluster.hierarchy import fcluster
        from scipy.spatial.distance import squareform

        labels = torch.zeros(distances.shape[:2], dtype=torch.int64)
        counts = []
        for row, (n, target) in enumerate(zip(lengths.tolist(), targets.tolist())):
            if n <= 1 or (self.distance_threshold is None and target >= n):
                labels[row, :n] = torch.arange(n)
                counts.append(n)
                continue
            matrix = distances[row, :n, :n]
            if not torch.isfinite(matrix).all():
                raise ValueError("token pooling cannot cluster token vectors that hold NaN or inf")
            tree = ward_linkage_function()(squareform(matrix.numpy(), checks=False), method="ward")
            if self.distance_threshold is None:
                found = fcluster(tree, t=target, criterion="maxclust")
            else:
                found = fcluster(tree, t=self.distance_threshold, criterion="distance")
            # Dense labels in fcluster's label order (ties can give fewer clusters than asked for).
            unique, dense = torch.from_numpy(found.astype(np.int64)).unique(return_inverse=True)
            labels[row, :n] = dense
            counts.append(len(unique))
        return labels, torch.tensor(counts)


def _normalize(embeddings: Tensor) -> Tensor:
    """L2-normalised rows (half precision computed in float32 and cast back)."""
    if embeddings.dtype in (torch.float16, torch.bfloat16):
        return F.normalize(embeddings.float(), dim=-1).to(embeddings.dtype)
    return F.normalize(embeddings, dim=-1)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
