"""The contract of a gpte text model: what evaluation, search, serving, data generation and analysis may ask of
a model, whatever its kind (../shared/DESIGN.md, "Model kinds").

``TextModel`` is what every kind offers: a name, its token limits counted with its own tokenizer, a fingerprint
and ``info``/``save``. Each kind adds its output; ``DenseModel`` (one vector per text: ``Embedder``,
``StaticEmbedder``, the analysis views) is the first; ``PairScorer`` (one score per (query, text): cross-encoders,
LLM yes/no rerankers) the second; ``SparseModel`` (one weight per vocabulary token: SPLADE, PromptReps) the third;
``MultiVectorModel`` (one vector per token, compared by MaxSim: ColBERT) the fourth. Consumers say which kinds they
take by the protocol in their signatures.

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

OUTPUT_KINDS = ("dense", "pair_score", "sparse", "multivector")


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


@dataclass
class ScoreResult:
    """Scores of pairs and the report of the call that made them (``n_texts``: pairs; ``truncated_indices``: pairs
    cut to ``max_seq_length`` tokens)."""

    scores: np.ndarray
    report: EncodeReport


@runtime_checkable
class PairScorer(TextModel, Protocol):
    """A model with one relevance score per (query, text) pair, read jointly (``output_kind`` ``"pair_score"``).

    A long pair loses the end of its text, never its query, and the truncated pairs are reported. ``activation``
    applies the model's activation to the raw score (sentence-transformers' ``CrossEncoder.predict``: sigmoid
    for one-logit cross-encoders, so scores lie in (0, 1)); ``activation=False`` gives the raw logit. Rankings
    are equal either way.
    """

    def predict(
        self,
        pairs: Sequence[tuple[str, str]],
        batch_size: int = 32,
        activation: bool = True,
        prompt: str | None = None,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """Scores (n,) float32 of ``pairs`` in order; ``prompt`` (an instruction) goes before each query."""
        ...

    def predict_with_report(
        self,
        pairs: Sequence[tuple[str, str]],
        batch_size: int = 32,
        activation: bool = True,
        prompt: str | None = None,
        show_progress: bool | None = None,
    ) -> ScoreResult:
        """``predict``'s scores and an ``EncodeReport`` of the pairs."""
        ...

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """Scores (len(texts),) of ``(query, text)`` for each text (the search ``Reranker`` protocol)."""
        ...

    def rank(
        self, query: str, texts: Sequence[str], top_k: int | None = None, batch_size: int = 32
    ) -> list[dict[str, Any]]:
        """``[{"corpus_id": position in texts, "score": float}]`` best first, the first ``top_k`` (None: all)."""
        ...


@runtime_checkable
class SparseModel(TextModel, Protocol):
    """A model with one sparse vector per text over its vocabulary (``output_kind`` ``"sparse"``), compared by dot
    product (``similarity_name`` ``"dot"``).

    Attributes:
        vocab_size: the vector length (also ``dimension``).
    """

    similarity_name: str

    @property
    def vocab_size(self) -> int: ...

    def encode(
        self,
        texts: str | Sequence[str],
        role: str | None = None,
        prompt: Any = None,
        batch_size: int = 32,
        top_k: int | None = None,
        threshold: float | None = None,
        show_progress: bool | None = None,
        task: str | None = None,
    ) -> Any:
        """``scipy.sparse.csr_matrix`` (n, vocab_size) float32 in input order; ``top_k``/``threshold`` prune."""
        ...

    def encode_with_report(
        self,
        texts: str | Sequence[str],
        role: str | None = None,
        prompt: Any = None,
        batch_size: int = 32,
        top_k: int | None = None,
        threshold: float | None = None,
        show_progress: bool | None = None,
        task: str | None = None,
    ) -> Any:
        """The vectors (``vectors``) and an ``EncodeReport`` (``report``)."""
        ...

    def decode(self, vector: Any, top_k: int | None = None) -> list[tuple[str, float]]:
        """(token, weight) pairs of one vector, largest first."""
        ...


@runtime_checkable
class MultiVectorModel(TextModel, Protocol):
    """A model with one unit vector per token of each text (``output_kind`` ``"multivector"``), compared by MaxSim
    (``similarity_name`` ``"maxsim"`` or ``"meanmaxsim"``; ``gpte.models.multivector.maxsim``).

    Attributes:
        dimension: the length of each token vector.
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
        show_progress: bool | None = None,
        task: str | None = None,
    ) -> Any:
        """``gpte.models.multivector.TokenVectors`` of ``texts`` in input order (text i: (tokens, dimension))."""
        ...

    def encode_with_report(
        self,
        texts: str | Sequence[str],
        role: str | None = None,
        prompt: Any = None,
        batch_size: int = 32,
        show_progress: bool | None = None,
        task: str | None = None,
    ) -> Any:
        """The vectors (``vectors``) and an ``EncodeReport`` (``report``)."""
        ...

    def similarity(self, queries: Any, documents: Any) -> np.ndarray:
        """MaxSim scores (len(queries), len(documents)) float32."""
        ...

    def similarity_pairwise(self, queries: Any, documents: Any) -> np.ndarray:
        """Scores (n,) float32 of query i against document i."""
        ...


def best_first(scores: np.ndarray, top_k: int | None = None) -> np.ndarray:
    """Positions of ``scores`` from the highest, ties in input order (a stable sort), the first ``top_k`` (None: all)."""
    return np.argsort(-np.asarray(scores), kind="stable")[:top_k]


def ranking(scores: np.ndarray, top_k: int | None = None) -> list[dict[str, Any]]:
    """``PairScorer.rank``'s answer from one score per text: ``[{"corpus_id", "score"}]`` best first."""
    return [{"corpus_id": int(i), "score": float(scores[i])} for i in best_first(scores, top_k)]


def require_dense(model: Any, consumer: str) -> DenseModel:
    """``model`` if it is a dense model, else TypeError naming ``consumer`` and what it takes."""
    if getattr(model, "output_kind", "dense") != "dense" or not isinstance(model, DenseModel):
        kind = getattr(model, "output_kind", None)
        what = f"a {kind} model" if kind else type(model).__name__
        raise TypeError(
            f"{consumer} takes a dense model (one vector per text: gpte.models.protocol.DenseModel), got {what}"
        )
    return model


def require_sparse(model: Any, consumer: str) -> SparseModel:
    """``model`` if it is a sparse model, else TypeError naming ``consumer`` and what it takes."""
    if getattr(model, "output_kind", None) != "sparse" or not isinstance(model, SparseModel):
        kind = getattr(model, "output_kind", None)
        what = f"a {kind} model" if kind else type(model).__name__
        raise TypeError(
            f"{consumer} takes a sparse model (one weight per vocabulary token: gpte.models.protocol.SparseModel), "
            f"got {what}"
        )
    return model


def require_pair_scorer(model: Any, consumer: str) -> PairScorer:
    """``model`` if it scores pairs, else TypeError naming ``consumer`` and what it takes."""
    if getattr(model, "output_kind", None) != "pair_score" or not isinstance(model, PairScorer):
        kind = getattr(model, "output_kind", None)
        what = f"a {kind} model" if kind else type(model).__name__
        raise TypeError(
            f"{consumer} takes a reranker (one score per (query, text): gpte.models.protocol.PairScorer), got {what}"
        )
    return model


def require_multivector(model: Any, consumer: str) -> MultiVectorModel:
    """``model`` if it is a multi-vector model, else TypeError naming ``consumer`` and what it takes."""
    if getattr(model, "output_kind", None) != "multivector" or not isinstance(model, MultiVectorModel):
        kind = getattr(model, "output_kind", None)
        what = f"a {kind} model" if kind else type(model).__name__
        raise TypeError(
            f"{consumer} takes a multi-vector model (one vector per token: gpte.models.protocol.MultiVectorModel), "
            f"got {what}"
        )
    return model
