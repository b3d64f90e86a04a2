"""SPLADE training loss (Formal et al. 2022, "From distillation to hard negative sampling: making sparse
neural IR models more effective"): a ranking loss plus FLOPS regularisers on the sparse vectors.

Rows (query, positive, negatives...) embedded as (rows, vocab) non-negative weights; with Q the query
column and D all document columns stacked (positives and hard negatives together),

    L = L_rank + lambda_d * FLOPS(D) + lambda_q * FLOPS(Q)

(``flops.py``; lambda_q None or 0 switches the query term off, e.g. for inference-free models; with
``use_document_regularizer_only`` every column counts as a document and there is no query term).
Both lambdas warm up from 0 (SPLADE's quadratic schedule): with W = max(1, int(total_steps * warmup_ratio)),

    lambda(step) = lambda_max * (step / W)^2   for step < W,   lambda_max after

Equals sentence-transformers' SpladeLoss (summed terms) under its SpladeRegularizerWeightSchedulerCallback.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from gpte.train.losses.base import EmbeddingLoss, TrainingBatch, check_choice
from gpte.train.losses.sparse.flops import FlopsLoss, check_threshold
from gpte.train.losses.sparse.inner import build_inner

SCHEDULES = ("quadratic", "linear")


class SpladeLoss(EmbeddingLoss):
    """A ranking loss plus weighted FLOPS of the document and query columns, with warm-up of the weights.

    Args:
        model: the sparse encoder (``model(features)`` -> (rows, vocab) weights).
        loss: the ranking loss: a built ``EmbeddingLoss``, a name, or ``{"name": ..., options...}``; sparse
            defaults (``inner.SPARSE_DEFAULTS``: infonce with dot similarity and temperature 1.0).
        document_regularizer_weight: lambda_d (>= 0).
        query_regularizer_weight: lambda_q (>= 0); None or 0 turns the query term off.
        document_regularizer_threshold, query_regularizer_threshold: FLOPS L0 masking (``flops.py``).
        use_document_regularizer_only: every column is a document (symmetric data); no query term.
        warmup_ratio: share of the training steps over which the weights grow from 0 (0 = no warm-up).
        warmup_schedule: quadratic (SPLADE) or linear.

    ``set_progress(step, total_steps)`` sets the weights for the step about to run; until it is first
    called the full weights apply. Wrappers: ``gradcache`` reuses ``compute``.
    """

    name = "splade"

    def __init__(
        self,
        model: nn.Module,
        loss: EmbeddingLoss | str | dict[str, Any] = "infonce",
        document_regularizer_weight: float = 3e-5,
        query_regularizer_weight: float | None = 5e-5,
        document_regularizer_threshold: float | None = None,
        query_regularizer_threshold: float | None = None,
        use_document_regularizer_only: bool = False,
        warmup_ratio: float = 1 / 3,
        warmup_schedule: str = "quadratic",
    ) -> None:
        super().__init__(model)
        _check_weight("document_regularizer_weight", document_regularizer_weight, optional=False)
        _check_weight("query_regularizer_weight", query_regularizer_weight, optional=True)
        if not isinstance(warmup_ratio, (int, float)) or isinstance(warmup_ratio, bool) or not 0 <= warmup_ratio <= 1:
            raise ValueError(f"warmup_ratio must be a number from 0 to 1, got {warmup_ratio!r}")
        check_choice("warmup_schedule", warmup_schedule, SCHEDULES)
        check_threshold("document_regularizer_threshold", document_regularizer_threshold)
        check_threshold("query_regularizer_threshold", query_regularizer_threshold)
        self.base = build_inner(loss, model, "splade")
        self.document_regularizer = FlopsLoss(document_regularizer_threshold)
        self.query_regularizer = FlopsLoss(query_regularizer_threshold)
        self.use_document_regularizer_only = bool(use_document_regularizer_only)
        self.max_document_regularizer_weight = float(document_regularizer_weight)
        self.max_query_regularizer_weight = (
            None if use_document_regularizer_only or not query_regularizer_weight else float(query_regularizer_weight)
        )
        self.document_regularizer_weight = self.max_document_regularizer_weight
        self.query_regularizer_weight = self.max_query_regularizer_weight
        self.warmup_ratio = float(warmup_ratio)
        self.warmup_schedule = warmup_schedule
        self.name = f"splade({self.base.name})"
        self.min_columns = max(self.base.min_columns, 1 if use_document_regularizer_only else 2)
        self.max_columns, self.needs_scores = self.base.max_columns, self.base.needs_scores

    def set_progress(self, step: int, total_steps: int) -> None:
        """Set the regulariser weights for optimizer step ``step`` (0 = the first) of ``total_steps``.

        Called before each step; sentence-transformers' callback with ``state.global_step`` = ``step`` and
        ``state.max_steps`` = ``total_steps``. Stateless, so resuming at any step gives the same weights.
        """
        if not isinstance(step, int) or not isinstance(total_steps, int) or step < 0 or total_steps < 1:
            raise ValueError(f"set_progress needs step >= 0 and total_steps >= 1, got {step!r}, {total_steps!r}")
        self.document_regularizer_weight = self._warmed(step, total_steps, self.max_document_regularizer_weight)
        self.query_regularizer_weight = self._warmed(step, total_steps, self.max_query_regularizer_weight)

    def _warmed(self, step: int, total_steps: int, maximum: float | None) -> float | None:
        warmup_steps = max(int(total_steps * self.warmup_ratio), 1)
        if maximum is None or self.warmup_ratio == 0 or step >= warmup_steps:
            return maximum
        ratio = step / warmup_steps
        return maximum * ratio if self.warmup_schedule == "linear" else maximum * (ratio**2)

    def prepare(self, batch: TrainingBatch) -> TrainingBatch:
        return self.base.prepare(batch)

    def compute(self, embeddings: list[Tensor], batch: TrainingBatch) -> Tensor:
        return sum(self.terms(embeddings, batch).values())

    def terms(self, embeddings: list[Tensor], batch: TrainingBatch) -> dict[str, Tensor]:
        """The loss's parts (sentence-transformers' keys): base_loss, document_ and query_regularizer_loss."""
        self._check_embeddings(embeddings)
        terms = {"base_loss": self.base.compute(embeddings, batch)}
        documents = embeddings if self.use_document_regularizer_only else embeddings[1:]
        terms["document_regularizer_loss"] = (
            self.document_regularizer(torch.cat(documents)) * self.document_regularizer_weight
        )
        if self.query_regularizer_weight is not None:
            terms["query_regularizer_loss"] = self.query_regularizer(embeddings[0]) * self.query_regularizer_weight
        return terms

    def _check_embeddings(self, embeddings: list[Tensor]) -> None:
        if len(embeddings) < self.min_columns:
            raise ValueError(
                f"{self.name}: needs at least {self.min_columns} columns (query, then documents), got {len(embeddings)}"
            )
        shapes = [tuple(e.shape) for e in embeddings]
        if any(len(s) != 2 for s in shapes) or len({s[1] for s in shapes}) > 1:
            raise ValueError(
                f"{self.name}: every column must be (rows, vocab_size) weights of one vocabulary, got {shapes}"
            )


def _check_weight(name: str, value: Any, optional: bool) -> None:
    if optional and value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a number >= 0{' or None' if optional else ''}, got {value!r}")
