"""The contract of a gpte text model: what evaluation, search, serving, data generation and analysis may ask of
a model, whatever its kind (../shared/DESIGN.md, "Model kinds").

``TextModel`` is what every kind offers: a name, its token limits counted with its own tokenizer, a fingerprint
and ``info``/``save``. Each kind adds its output; ``DenseModel`` (one vector per text: ``Embedder``,
``StaticEmbedder``, the analysis views) is the first. Sparse, multi-vector and pair-scoring kinds extend
``TextModel`` the same way, and consumers say which kinds they take by the protocol in their signatures.

These are ``typing.Protocol`` classes: a model conforms by having the members, not by inheriting; the
``runtime_checkable`` ones let a consumer refuse a wrong object with a clear error (``require_dense``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

OUTPUT_KINDS = ("dense",)  # grows with the sparse, multi-vector and pair-score kinds


@dataclass
class EncodeReport:
    """What an ``encode`` call did.

    Attributes:
        n_texts: inputs given.
        n_unique: distinct inputs, each encoded once.
        truncated_indices: input positions whose text was cut to ``max_seq_length`` tokens.
        n_tokens: tokens run through the model (distinct texts, special tokens included).
        seconds: wall time of the call.
    """

    n_texts: int
    n_unique: int
    truncated_indices: list[int] = field(default_factory=list)
    n_tokens: int = 0
    seconds: float = 0.0

    @property
    def n_truncated(self) -> int:
        return len(self.truncated_indices)


@dataclass
class EncodeResult:
    """Vectors (numpy array or torch tensor) and the report of the call that made them."""

    vectors: np.ndarray | torch.Tensor
    report: EncodeReport


@runtime_checkable
class TextModel(Protocol):
    """Members every model kind has.

    Attributes:
        name: where the model came from (a folder, hub id or packaged name), for display and provenance.
        output_kind: one of ``OUTPUT_KINDS``.
        max_seq_length: tokens per input, special tokens included; None for a model without a limit.
        fingerprint: sha256 of the weights and every setting that changes the output, computed once per state of
            the weights (``gpte.models.fingerprint.model_fingerprint``): equal only for models with equal outputs.
    """

    name: str
    output_kind: str

    @property
    def max_seq_length(self) -> int | None: ...

    @property
    def fingerprint(self) -> str: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text on its own: no prompt, no special tokens."""
        ...

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character ``(start, end)`` of each token of ``text`` on its own (no prompt, no special tokens)."""
        ...

    def text_token_budget(self, role: str | None = None, prompt: Any = None, task: str | None = None) -> int | None:
        """The most text tokens that fit in one input with this role's or prompt's template and the special tokens
        the model adds, so a text of at most this many tokens is never truncated; None: no limit."""
        ...

    def info(self) -> dict[str, Any]:
        """A JSON-able summary of the model and every setting that shapes its output."""
        ...

    def save(self, folder: str | Path, overwrite: bool = False) -> Path:
        """Write the model to ``folder`` (appearing only once complete); returns the folder."""
        ...


@runtime_checkable
class VectorEncoder(Protocol):
    """What a consumer that only needs vectors of texts asks (evaluation): every ``DenseModel``, and views of one
    (``gpte.analysis.views``) that change its vectors but have no weights, tokens or folder of their own.

    Attributes:
        name: how results are filed.
        similarity_name: the similarity its vectors are compared with (``gpte.similarity``).
        fingerprint: equal only for encoders with equal vectors (None: the encoder cannot say).
    """

    name: str
    similarity_name: str

    @property
    def fingerprint(self) -> str | None: ...

    def encode(
        self,
        texts: Sequence[str],
        role: str | None = None,
        prompt: Any = None,
        batch_size: int = 32,
        show_progress: bool | None = None,
    ) -> Any:
        """Vectors (n, d) of ``texts`` in order, with the role's or the given prompt."""
        ...


@runtime_checkable
class DenseModel(TextModel, Protocol):
    """A model with one vector per text (it is also a ``VectorEncoder``).

    Attributes:
        dimension: the vector length.
        similarity_name: the similarity its vectors are compared with (``gpte.similarity``).
    """

    similarity_name: str

    @property
    def dimension(self) -> int: ...

    def encode(
        self,
        texts: str | Sequence[str],
        role: str | None = None,
        prompt: Any = None,
        batch_size: int = 32,
        normalize: bool | None = None,
        truncate_dim: int | None = None,
        precision: str = "float32",
        convert_to: str = "numpy",
        show_progress: bool | None = None,
        task: str | None = None,
    ) -> Any:
        """Vectors (n, dimension) in input order, or (dimension,) for one string."""
        ...

    def encode_with_report(
        self,
        texts: str | Sequence[str],
        role: str | None = None,
        prompt: Any = None,
        batch_size: int = 32,
        normalize: bool | None = None,
        truncate_dim: int | None = None,
        precision: str = "float32",
        convert_to: str = "numpy",
        show_progress: bool | None = None,
        task: str | None = None,
    ) -> EncodeResult:
        """The vectors and an ``EncodeReport`` (texts, distinct texts, truncated positions)."""
        ...

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Scores (len(a), len(b)) with the model's similarity."""
        ...


def require_dense(model: Any, consumer: str) -> DenseModel:
    """``model`` if it is a dense model, else TypeError naming ``consumer`` and what it takes."""
    if not isinstance(model, DenseModel):
        kind = getattr(model, "output_kind", None)
        what = f"a {kind} model" if kind else type(model).__name__
        raise TypeError(
            f"{consumer} takes a dense model (one vector per text: gpte.models.protocol.DenseModel), got {what}"
        )
    return model
