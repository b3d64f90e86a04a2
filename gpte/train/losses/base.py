"""What every loss shares: a batch of texts in, a scalar out, with the math on embeddings kept apart.

A loss gets a ``TrainingBatch`` (the texts of each column, tokenized by the collator, and optional
scores). ``forward`` embeds the columns with the model and calls ``compute(embeddings, batch)``, the
math on embeddings; wrappers (Matryoshka, GradCache) call ``compute`` on embeddings they made
themselves, so each formula is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor, nn

from gpte.models.tokenization import TokenBatch
from gpte.similarity import SIMILARITIES

PAIRWISE_SIMILARITIES = ("cosine", "dot")


@dataclass
class TrainingBatch:
    """One training batch.

    Attributes:
        texts: per column, the batch's texts (column 0 the anchor/query, 1 the positive or second text,
            2.. hard negatives); all columns have the same number of rows.
        features: per column, the tokenized texts (prompts applied) on the model's device.
        scores: (rows,) gold scores or labels, (rows, k) teacher scores, or None.
    """

    texts: list[list[str]]
    features: list[TokenBatch]
    scores: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return len(self.texts[0])


class EmbeddingLoss(nn.Module):
    """Base class: ``forward(batch)`` embeds every column and returns ``compute(embeddings, batch)``.

    Class attributes say what data a loss accepts, so that bad data fails before the first step:
    ``min_columns``/``max_columns`` text columns and whether it ``needs_scores``.
    """

    name: ClassVar[str] = ""
    min_columns: ClassVar[int] = 2
    max_columns: ClassVar[int | None] = None
    needs_scores: ClassVar[bool] = False

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: TrainingBatch) -> Tensor:
        batch = self.prepare(batch)
        return self.compute([self.model(features) for features in batch.features], batch)

    def prepare(self, batch: TrainingBatch) -> TrainingBatch:
        """The batch the loss embeds (SimCSE doubles a column; GIST adds guide scores); default: unchanged."""
        return batch

    def compute(self, embeddings: list[Tensor], batch: TrainingBatch) -> Tensor:
        """The loss from the columns' embeddings (each (rows, dim)); ``batch`` gives scores and texts."""
        raise NotImplementedError

    def check_columns(self, n_columns: int, has_scores: bool, where: str) -> None:
        """Raise ValueError naming ``where`` if data with these columns cannot feed this loss."""
        high = self.max_columns
        if n_columns < self.min_columns or (high is not None and n_columns > high):
            wanted = (
                f"at least {self.min_columns}"
                if high is None
                else f"{self.min_columns}"
                if high == self.min_columns
                else f"{self.min_columns} to {high}"
            )
            raise ValueError(f"{where}: loss {self.name!r} takes {wanted} text columns, the data has {n_columns}")
        if self.needs_scores and not has_scores:
            raise ValueError(f"{where}: loss {self.name!r} needs a score for each row; the data has no score column")


def similarity_matrix(a: Tensor, b: Tensor, name: str = "cosine") -> Tensor:
    """(n, m) similarities of rows of ``a`` and ``b`` (``gpte.similarity`` functions, differentiable)."""
    return SIMILARITIES[name](a, b)


def check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of: {', '.join(map(str, choices))}")


def check_positive(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
