"""The sparse model kind: one weight per vocabulary token for each text, most of them zero
(``gpte.models.protocol.SparseModel``; SPLADE, inference-free SPLADE, PromptReps; CSR, whose dimensions are the
latents of a k-sparse autoencoder on a dense model rather than tokens: ``gpte.models.sparse.csr``).

Vectors are ``scipy.sparse.csr_matrix`` (texts, vocab_size) float32, rows in input order; two texts are compared by
the dot product of their vectors. ``top_k`` keeps each vector's largest weights and ``threshold`` drops weights at
or below it (pruning, as sentence-transformers' ``max_active_dims``); ``decode`` reads a vector back as
(token, weight) pairs. An asymmetric model has a second head for queries (``role="query"``): inference-free SPLADE
gives queries a learned weight per token, with no transformer.

The encode loop is the dense one's: each distinct text once, batches of similar token length
(``gpte.models.batching``), truncation reported.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from gpte.models.batching import check_batch_size, deduplicate, length_sorted_batches
from gpte.models.fingerprint import model_fingerprint
from gpte.models.model_card import CardNotes
from gpte.models.postprocess import check_texts
from gpte.models.protocol import EncodeReport
from gpte.models.sparse.heads import SparseHead, StaticQueryHead
from gpte.models.tokenization import TextTokenizer, TokenBatch
from gpte.prompts import Prompts

PROGRESS_MIN_BATCHES = 8


@dataclass
class SparseResult:
    """Sparse vectors (texts, vocab_size) and the report of the call that made them."""

    vectors: scipy.sparse.csr_matrix
    report: EncodeReport


class SparseEncoder(nn.Module):
    """A text -> sparse vector model.

    Args:
        document_head: the head every text goes through (``gpte.models.sparse.heads``).
        tokenizer: the backbone's fast tokenizer.
        max_seq_length: tokens per text, special tokens included.
        query_head: a head for ``role="query"`` texts (inference-free SPLADE); None: queries use the document head.
        prompts: named prompts (``query``/``document`` serve those roles), as ``gpte.prompts.Prompts`` or a mapping.
        top_k: default number of weights kept per vector (None: all); ``threshold``: default weight at or below
            which an entry is dropped.
        name: where the model came from.
    """

    output_kind = "sparse"
    similarity_name = "dot"

    def __init__(
        self,
        document_head: SparseHead,
        tokenizer: Any,
        max_seq_length: int,
        query_head: SparseHead | None = None,
        prompts: Prompts | dict[str, str] | None = None,
        top_k: int | None = None,
        threshold: float = 0.0,
        name: str = "sparse",
    ) -> None:
        super().__init__()
        if query_head is not None and query_head.vocab_size != document_head.vocab_size:
            raise ValueError(
                f"the query head has {query_head.vocab_size} dimensions, the document head {document_head.vocab_size}"
            )
        self.document_head = document_head
        self.query_head = query_head
        self.tokenizer = tokenizer
        self.prompts = prompts if isinstance(prompts, Prompts) else Prompts.from_strings(prompts)
        self.top_k, self.threshold = check_pruning(top_k, threshold)
        self.name = name
        self.card_notes = CardNotes()
        self._max_seq_length = check_length(max_seq_length)
        self._tokenizers: dict[tuple[str, bool], TextTokenizer] = {}

    @classmethod
    def load(cls, name_or_path: str | Path | None = None, **options: Any) -> SparseEncoder:
        """``gpte.models.sparse.load_sparse_encoder`` (a SparseEncoder folder, ``"promptreps"``, or an encoder that
        becomes SPLADE)."""
        from gpte.models.sparse.folders import load_sparse_encoder

        return load_sparse_encoder(name_or_path, **options)

    # ----------------------------------------------------------------- the model contract

    @property
    def vocab_size(self) -> int:
        return self.document_head.vocab_size

    @property
    def dimension(self) -> int:
        """The vector length: the vocabulary size."""
        return self.vocab_size

    @property
    def architecture(self) -> str:
        """``splade``, ``promptreps`` or ``inference-free-splade`` (a static query head before a SPLADE one)."""
        if isinstance(self.query_head, StaticQueryHead):
            return f"inference-free-{self.document_head.architecture}"
        return self.document_head.architecture

    @property
    def max_seq_length(self) -> int:
        return self._max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self._max_seq_length = check_length(value)
        self._tokenizers.clear()

    @property
    def fingerprint(self) -> str:
        """sha256 of the weights (hashed once per state of the weights) and the settings in ``info()``."""
        return model_fingerprint(self)

    @property
    def device(self) -> torch.device:
        return next(self.document_head.parameters()).device

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text on its own: no prompt, no special tokens."""
        return self._text_tokenizer(self.document_head).count_tokens(texts)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character ``(start, end)`` of each token of ``text`` on its own."""
        return self._text_tokenizer(self.document_head).token_offsets(text)

    def text_token_budget(self, role: str | None = None, prompt: Any = None, task: str | None = None) -> int:
        """The most text tokens one input of this role holds with its prompt and special tokens."""
        template = self.prompts.resolve(prompt, role)
        template = template.fill(task) if template is not None and (task or template.needs_task) else template
        return self._text_tokenizer(self.head_for(role)).text_budget(template)

    def info(self) -> dict[str, Any]:
        """The model's name, kind and every setting that shapes its vectors."""
        return {
            "name": self.name,
            "kind": self.output_kind,
            "architecture": self.architecture,
            "vocab_size": self.vocab_size,
            "max_seq_length": self.max_seq_length,
            "prompts": self.prompts.to_strings(),
            "default_prompt": self.prompts.default,
            "top_k": self.top_k,
            "threshold": self.threshold,
            "heads": {role: _head_settings(head) for role, head in self._heads().items()},
            "dtype": str(next(self.document_head.parameters()).dtype).removeprefix("torch."),
            "device": str(self.device),
            "backend": "torch",
        }

    def save(self, folder: str | Path, overwrite: bool = False) -> Path:
        """Write the model in sentence-transformers' SparseEncoder layout (PromptReps: a settings file naming its
        LLM); the folder appears only once complete."""
        from gpte.models.sparse.folders import write_sparse_folder

        return write_sparse_folder(self, Path(folder), overwrite)

    # ----------------------------------------------------------------- encoding

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
    ) -> scipy.sparse.csr_matrix:
        """Sparse vectors (len(texts), vocab_size) float32 in input order (one row for one string).

        Args:
            role: ``query`` or ``document`` (an asymmetric model's query head; the role's prompt).
            prompt: a prompt name of the model or a literal template/prefix (wins over the role's).
            top_k, threshold: pruning for this call (default: the model's).
            task: fills a ``{task}`` slot of the prompt.
        """
        return self.encode_with_report(texts, role, prompt, batch_size, top_k, threshold, show_progress, task).vectors

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
    ) -> SparseResult:
        """``encode``'s vectors and an ``EncodeReport`` (texts, distinct texts, truncated positions, tokens)."""
        started = time.perf_counter()
        texts, _ = check_texts(texts)
        check_batch_size(batch_size)
        top_k, threshold = check_pruning(
            self.top_k if top_k is None else top_k, self.threshold if threshold is None else threshold
        )
        head = self.head_for(role)
        template = self.prompts.resolve(prompt, role)
        template = template.fill(task) if template is not None and (task or template.needs_task) else template
        if not texts:
            return SparseResult(scipy.sparse.csr_matrix((0, self.vocab_size), dtype=np.float32), EncodeReport(0, 0))
        unique, inverse = deduplicate(texts)
        tokenizer = self._text_tokenizer(head)
        fitted, cut = fit_texts(tokenizer, unique, template) if head.keeps_template else (unique, [False] * len(unique))
        tokenized = tokenizer.tokenize(fitted, template, with_segments=head.needs_segments)
        truncated = np.asarray(cut, dtype=bool) | np.asarray(tokenized.truncated, dtype=bool)
        lengths = [len(ids) for ids in tokenized.input_ids]
        rows_out, cols_out, values_out = [], [], []
        show = len(unique) >= PROGRESS_MIN_BATCHES * batch_size if show_progress is None else show_progress
        with torch.inference_mode(), tqdm(total=len(unique), unit="text", disable=not show, desc="encode") as bar:
            for rows in length_sorted_batches(lengths, batch_size):
                batch = tokenizer.pad(tokenized, rows).to(self.device)
                scores = head(batch, top_k) if getattr(head, "accepts_top_k", False) else head(batch)
                weights = prune(scores, top_k, threshold).cpu()
                batch_rows, columns = weights.nonzero(as_tuple=True)
                rows_out.append(rows[batch_rows.numpy()])
                cols_out.append(columns.numpy())
                values_out.append(weights[batch_rows, columns].numpy())
                bar.update(len(rows))
        matrix = _csr(rows_out, cols_out, values_out, (len(unique), self.vocab_size))
        report = EncodeReport(
            n_texts=len(texts),
            n_unique=len(unique),
            truncated_indices=np.flatnonzero(truncated[inverse]).tolist(),
            n_tokens=sum(lengths),
            seconds=time.perf_counter() - started,
        )
        return SparseResult(matrix[inverse], report)

    def similarity(self, a: scipy.sparse.spmatrix, b: scipy.sparse.spmatrix) -> np.ndarray:
        """Dot products (len(a), len(b)) float32 of two sets of sparse vectors."""
        return np.asarray((scipy.sparse.csr_matrix(a) @ scipy.sparse.csr_matrix(b).T).todense(), dtype=np.float32)

    def decode(self, vector: Any, top_k: int | None = None) -> list[tuple[str, float]]:
        """The (token, weight) pairs of one vector (a one-row sparse matrix or a 1-D array), largest weight first
        (ties by token id), the first ``top_k`` (None: all)."""
        check_pruning(top_k, 0.0)
        row = scipy.sparse.csr_matrix(vector if scipy.sparse.issparse(vector) else np.atleast_2d(vector))
        if row.shape != (1, self.vocab_size):
            raise ValueError(f"decode takes one vector of {self.vocab_size} dimensions, got shape {row.shape}")
        row.eliminate_zeros()
        order = np.lexsort((row.indices, -row.data))[:top_k]
        ids = row.indices[order].tolist()
        names = getattr(self.document_head, "dimension_names", None)  # CSR: latent ids, not tokens
        tokens = names(ids) if names is not None else self.tokenizer.convert_ids_to_tokens(ids)
        return [(token, float(weight)) for token, weight in zip(tokens, row.data[order])]

    # ----------------------------------------------------------------- training

    def head_for(self, role: str | None) -> SparseHead:
        """The head that encodes texts of ``role``: the query head for queries when there is one."""
        return self.query_head if role == "query" and self.query_head is not None else self.document_head

    def tokenize(self, texts: Sequence[str], role: str | None = None, prompt: Any = None) -> TokenBatch:
        """``texts`` as one padded batch for ``role``'s head (prompt applied), on the model's device."""
        head = self.head_for(role)
        tokenizer = self._text_tokenizer(head)
        template = self.prompts.resolve(prompt, role)
        texts = fit_texts(tokenizer, list(texts), template)[0] if head.keeps_template else list(texts)
        tokenized = tokenizer.tokenize(texts, template, with_segments=head.needs_segments)
        batch = tokenizer.pad(tokenized, list(range(len(tokenized.input_ids))))
        return dataclasses.replace(batch, role=role).to(self.device)

    @property
    def autoencoder_outputs(self) -> Any:
        """A CSR model's ``autoencoder_outputs(batch)`` (what ``CSRLoss`` reads); None for other heads."""
        return getattr(self.document_head, "autoencoder_outputs", None)

    def forward(self, batch: TokenBatch) -> Tensor:
        """Weights (rows, vocab_size) with gradients, from the head of the role the batch was tokenized for
        (``tokenize``; training losses call this)."""
        return self.head_for(batch.role)(batch)

    # ----------------------------------------------------------------- internals

    def _heads(self) -> dict[str, SparseHead]:
        return {"document": self.document_head} | ({"query": self.query_head} if self.query_head is not None else {})

    def _text_tokenizer(self, head: SparseHead) -> TextTokenizer:
        key = head.architecture, head.add_special_tokens
        if key not in self._tokenizers:
            own = getattr(head, "text_tokenizer", None)  # CSR: the embedder's lowercasing, padding, pooler suffix
            self._tokenizers[key] = (
                own(self.max_seq_length)
                if own is not None
                else TextTokenizer(
                    self.tokenizer,
                    self.max_seq_length,
                    padding_side="left" if head.architecture == "promptreps" else "right",
                    add_special_tokens=head.add_special_tokens,
                )
            )
        return self._tokenizers[key]

    def extra_repr(self) -> str:
        return f"name={self.name!r}, architecture={self.architecture!r}, vocab_size={self.vocab_size}"


def prune(weights: Tensor, top_k: int | None, threshold: float) -> Tensor:
    """``weights`` (rows, vocab) with entries <= ``threshold`` zeroed and, given ``top_k``, all but each row's ``top_k``
    largest zeroed."""
    weights = torch.where(weights > threshold, weights, torch.zeros_like(weights))
    if top_k is None or top_k >= weights.shape[1]:
        return weights
    top = weights.topk(top_k, dim=1)
    return torch.zeros_like(weights).scatter_(1, top.indices, top.values)


def fit_texts(tokenizer: TextTokenizer, texts: list[str], template: Any) -> tuple[list[str], list[bool]]:
    """Each text cut to the tokens that fit in ``template`` (``TextTokenizer.text_budget``), at a token boundary, so
    the template's end stays; and which texts were cut."""
    budget = tokenizer.text_budget(template)
    fitted, cut = [], []
    for text, count in zip(texts, tokenizer.count_tokens(texts)):
        if count <= budget:
            fitted.append(text)
            cut.append(False)
            continue
        offsets = tokenizer.token_offsets(text)
        fitted.append(text[: offsets[budget - 1][1]] if budget else "")
        cut.append(True)
    return fitted, cut


def active_dimensions(vectors: scipy.sparse.spmatrix) -> float:
    """Mean number of non-zero weights per vector (the FLOPS-related sparsity figure)."""
    vectors = scipy.sparse.csr_matrix(vectors)
    return float(np.diff(vectors.indptr).mean()) if vectors.shape[0] else 0.0


def check_pruning(top_k: int | None, threshold: float) -> tuple[int | None, float]:
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    if threshold < 0:
        raise ValueError(f"threshold must be 0 or more (weights are never negative), got {threshold!r}")
    return top_k, float(threshold)


def check_length(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"max_seq_length must be a positive integer, got {value!r}")
    return value


def _head_settings(head: SparseHead) -> dict[str, Any]:
    settings: dict[str, Any] = {"architecture": head.architecture}
    for key in ("pooling", "activation", "top_k", "frozen"):
        if hasattr(head, key):
            settings[key] = getattr(head, key)
    if callable(getattr(head, "settings", None)):  # CSR: the autoencoder's sizes, the dense pooling
        settings.update(head.settings())
    return settings


def _csr(rows: list[np.ndarray], cols: list[np.ndarray], values: list[np.ndarray], shape: tuple[int, int]):
    """One CSR matrix (float32, sorted indices) from per-batch coordinates."""
    if not rows:
        return scipy.sparse.csr_matrix(shape, dtype=np.float32)
    matrix = scipy.sparse.coo_matrix(
        (np.concatenate(values).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))), shape=shape
    ).tocsr()
    matrix.sort_indices()
    return matrix
