"""The multi-vector model kind: one vector per token (ColBERT, Khattab & Zaharia 2020; ColBERTv2, Santhanam et al.
2022), compared by MaxSim (``gpte.models.multivector.maxsim``).

    text -> prompt ("[Q] "/"[D] " markers) -> tokens -> backbone -> token states -> linear projection (128-d)
         -> L2-normalise each token -> keep the scored tokens (``score_mask``) -> (tokens, 128) per text

Which tokens are kept, as sentence-transformers 6's ``MultiVectorEncoder`` keeps them (``MultiVectorMask``):

- a document keeps its real tokens ([CLS], markers and [SEP] included) except those in the punctuation
  ``skiplist`` (the skiplist only masks: those tokens still pass through the encoder);
- a query keeps its real tokens and, with ``query_expansion`` (ColBERTv2's query augmentation), is padded to a fixed
  number of tokens with the [MASK] token (EOS where the tokenizer has none); the padded tokens are not attended to by
  the other tokens (``attend=False``, the ColBERT default) but their outputs are scored.

Texts without a role are read as documents. A decoder LLM works as a backbone too: its last layer's token states
are projected the same way (no [MASK]: query expansion uses EOS).

Vectors come back as ``TokenVectors`` (ragged, float32); ``similarity`` scores them by MaxSim (or MeanMaxSim).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from gpte.models.backbone import Backbone
from gpte.models.batching import check_batch_size, deduplicate, length_sorted_batches
from gpte.models.fingerprint import model_fingerprint
from gpte.models.model_card import CardNotes
from gpte.models.multivector.maxsim import check_similarity, maxsim_matrix, maxsim_rows
from gpte.models.multivector.vectors import TokenVectors
from gpte.models.postprocess import check_texts
from gpte.models.protocol import EncodeReport
from gpte.models.tokenization import TextTokenizer, TokenBatch, TokenizedTexts
from gpte.prompts import Prompts

EXPANSION_STRATEGIES = ("fixed", "min")
PROGRESS_MIN_BATCHES = 8
TokenPooler = Callable[[list[Tensor]], list[Tensor]]  # a document's token vectors -> fewer (gpte...token_pooling)


@dataclass(frozen=True)
class QueryExpansion:
    """ColBERTv2's query augmentation: queries padded with ``token`` (None: [MASK], else EOS) up to ``length``.

    Attributes:
        length: query width in tokens.
        strategy: ``fixed`` (every query exactly ``length`` tokens: longer ones are cut) or ``min`` (at least
            ``length``: longer queries keep their tokens up to the query length limit).
        attend: whether the other tokens attend to the padding tokens (ColBERT: no).
        token: the padding token's text (None: the tokenizer's mask token, else its EOS token).
    """

    length: int
    strategy: str = "fixed"
    attend: bool = False
    token: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.length, int) or isinstance(self.length, bool) or self.length < 1:
            raise ValueError(f"query expansion length must be a positive integer, got {self.length!r}")
        if self.strategy not in EXPANSION_STRATEGIES:
            raise ValueError(
                f"unknown query expansion strategy {self.strategy!r}; choose one of {', '.join(EXPANSION_STRATEGIES)}"
            )

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> QueryExpansion | None:
        """From sentence-transformers' ``query_expansion`` setting ({strategy, attend, token, length}); None: none."""
        if not config:
            return None
        return cls(
            int(config["length"]), config.get("strategy", "fixed"), bool(config.get("attend")), config.get("token")
        )

    def to_config(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "attend": self.attend, "token": self.token, "length": self.length}


@dataclass
class MultiVectorBatch:
    """A padded batch for the backbone and which of its tokens are scored.

    Attributes:
        tokens: the backbone's input (``attention_mask`` is what the encoder attends to).
        score_mask: (rows, width) bool, the tokens whose vectors are kept.
        role: the role the texts were tokenized for.
    """

    tokens: TokenBatch
    score_mask: Tensor
    role: str | None = None

    def to(self, device: torch.device | str) -> MultiVectorBatch:
        return MultiVectorBatch(self.tokens.to(device), self.score_mask.to(device), self.role)


@dataclass
class MultiVectorResult:
    """Token vectors and the report of the call that made them (``n_tokens``: tokens run through the backbone)."""

    vectors: TokenVectors
    report: EncodeReport
    scored_tokens: int = 0


@dataclass
class RoleTokenizer:
    """How one role's texts become a batch: the tokenizer (its length limit), the expansion, the skiplist ids."""

    tokenizer: TextTokenizer
    expansion: QueryExpansion | None = None
    expansion_id: int | None = None
    skip_ids: list[int] = field(default_factory=list)

    def tokenize(self, texts: list[str], template: Any) -> TokenizedTexts:
        return self.tokenizer.tokenize(texts, template)

    def pad(self, tokenized: TokenizedTexts, rows: Sequence[int]) -> MultiVectorBatch:
        """The texts at ``rows`` right-padded, positions 0..width-1 (sentence-transformers passes none); queries
        expanded to the expansion width; the skiplist's tokens left out of ``score_mask``."""
        batch = self.tokenizer.pad(tokenized, rows)
        input_ids, attention = batch.input_ids, batch.attention_mask
        expansion = self.expansion
        if expansion is not None and input_ids.shape[1] < expansion.length:
            missing = expansion.length - input_ids.shape[1]
            input_ids = F.pad(input_ids, (0, missing), value=self.tokenizer.pad_id)
            attention = F.pad(attention, (0, missing), value=0)
        score_mask = attention.bool()
        if expansion is not None:
            expanded = (attention == 0) & (torch.arange(input_ids.shape[1]) < expansion.length)
            if self.expansion_id is not None:
                input_ids = input_ids.masked_fill(expanded, self.expansion_id)
            score_mask = score_mask | expanded
            attention = attention.masked_fill(expanded, 1) if expansion.attend else attention
        if self.skip_ids:
            score_mask = score_mask & ~torch.isin(input_ids, torch.tensor(self.skip_ids, dtype=input_ids.dtype))
        positions = torch.arange(input_ids.shape[1]).expand_as(input_ids)
        return MultiVectorBatch(TokenBatch(input_ids, attention, positions), score_mask)


class MultiVectorEncoder(nn.Module):
    """A text -> token vectors model.

    Args:
        backbone: the transformer (encoder or decoder) and its tokenizer.
        projection: token state -> token vector (sentence-transformers' ``Dense``: a linear map, bias optional).
        max_seq_length: tokens per text, special tokens included, where the role has no length of its own.
        prompts: named prompts; ``query``/``document`` serve those roles (ColBERT's ``"[Q] "``/``"[D] "`` markers).
        query_length, document_length: tokens per query / per document (None: ``max_seq_length``).
        query_expansion: ColBERTv2 query augmentation (None: none).
        skiplist: token texts never kept in documents (ColBERT: ``string.punctuation``).
        similarity_name: ``maxsim`` or ``meanmaxsim``.
        token_pooling: reduces each document's token vectors at encode time (``gpte.models.multivector.token_pooling``;
            None: none).
        name: where the model came from.
    """

    output_kind = "multivector"

    def __init__(
        self,
        backbone: Backbone,
        projection: nn.Linear,
        max_seq_length: int,
        prompts: Prompts | dict[str, str] | None = None,
        query_length: int | None = None,
        document_length: int | None = None,
        query_expansion: QueryExpansion | None = None,
        skiplist: Sequence[str] = (),
        similarity_name: str = "maxsim",
        token_pooling: Any = None,
        name: str = "multivector",
    ) -> None:
        super().__init__()
        if projection.in_features != backbone.hidden_size:
            raise ValueError(
                f"the projection takes {projection.in_features} features, the backbone gives {backbone.hidden_size}"
            )
        self.backbone = backbone
        self.projection = projection
        self.prompts = prompts if isinstance(prompts, Prompts) else Prompts.from_strings(prompts)
        self.query_length = _check_length(query_length, "query_length", optional=True)
        self.document_length = _check_length(document_length, "document_length", optional=True)
        self.query_expansion = query_expansion
        self.skiplist = list(skiplist)
        self.similarity_name = check_similarity(similarity_name)
        self.token_pooling = token_pooling
        self.name = name
        self.card_notes = CardNotes()
        self._max_seq_length = _check_length(max_seq_length, "max_seq_length")
        self._role_tokenizers: dict[str, RoleTokenizer] = {}

    @classmethod
    def load(cls, name_or_path: str | Path | None = None, **options: Any) -> MultiVectorEncoder:
        """``gpte.models.multivector.load_multivector_encoder``: a MultiVectorEncoder or PyLate folder or hub id, or
        any transformer (a dense sentence-transformers model keeps its transformer) with a new projection."""
        from gpte.models.multivector.folders import load_multivector_encoder

        return load_multivector_encoder(name_or_path, **options)

    # ----------------------------------------------------------------- the model contract

    @property
    def tokenizer(self) -> Any:
        return self.backbone.tokenizer

    @property
    def dimension(self) -> int:
        """The length of each token vector."""
        return int(self.projection.out_features)

    @property
    def max_seq_length(self) -> int:
        return self._max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self._max_seq_length = _check_length(value, "max_seq_length")
        self._role_tokenizers.clear()

    @property
    def fingerprint(self) -> str:
        """sha256 of the weights (hashed once per state of the weights) and the settings in ``info()``."""
        return model_fingerprint(self)

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text on its own: no prompt, no special tokens."""
        return self._role_tokenizer("document").tokenizer.count_tokens(texts)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character ``(start, end)`` of each token of ``text`` on its own."""
        return self._role_tokenizer("document").tokenizer.token_offsets(text)

    def text_token_budget(self, role: str | None = None, prompt: Any = None, task: str | None = None) -> int:
        """The most text tokens one input of this role holds with its prompt and special tokens."""
        return self._role_tokenizer(role).tokenizer.text_budget(self._template(role, prompt, task))

    def info(self) -> dict[str, Any]:
        """The model's name, kind and every setting that shapes its vectors."""
        return {
            "name": self.name,
            "kind": self.output_kind,
            "architecture": "colbert",
            "dimension": self.dimension,
            "max_seq_length": self.max_seq_length,
            "query_length": self.query_length,
            "document_length": self.document_length,
            "query_expansion": None if self.query_expansion is None else self.query_expansion.to_config(),
            "skiplist": self.skiplist,
            "similarity": self.similarity_name,
            "token_pooling": None if self.token_pooling is None else _pooling_settings(self.token_pooling),
            "prompts": self.prompts.to_strings(),
            "default_prompt": self.prompts.default,
            "projection_bias": self.projection.bias is not None,
            "dtype": str(self.backbone.dtype).removeprefix("torch."),
            "device": str(self.device),
            "backend": "torch",
        }

    def save(self, folder: str | Path, overwrite: bool = False) -> Path:
        """Write the model in sentence-transformers 6's MultiVectorEncoder layout; the folder appears only once
        complete."""
        from gpte.models.multivector.folders import write_multivector_folder

        return write_multivector_folder(self, Path(folder), overwrite)

    # ----------------------------------------------------------------- encoding

    def encode(
        self,
        texts: str | Sequence[str],
        role: str | None = None,
        prompt: Any = None,
        batch_size: int = 32,
        show_progress: bool | None = None,
        task: str | None = None,
        token_pooling: Any = None,
    ) -> TokenVectors:
        """Token vectors of ``texts`` in input order (``TokenVectors``: text i is ``vectors[i]``, (tokens, dimension)
        float32, each row of unit length).

        Args:
            role: ``query`` (query length, expansion, the query prompt) or ``document`` (the default for texts of no
                role: document length, skiplist, the document prompt).
            prompt: a prompt name of the model or a literal template/prefix (wins over the role's).
            task: fills a ``{task}`` slot of the prompt.
            token_pooling: a document token pooler for this call (None: the model's).
        """
        return self.encode_with_report(texts, role, prompt, batch_size, show_progress, task, token_pooling).vectors

    def encode_with_report(
        self,
        texts: str | Sequence[str],
        role: str | None = None,
        prompt: Any = None,
        batch_size: int = 32,
        show_progress: bool | None = None,
        task: str | None = None,
        token_pooling: Any = None,
    ) -> MultiVectorResult:
        """``encode``'s vectors and an ``EncodeReport`` (texts, distinct texts, truncated positions, tokens)."""
        started = time.perf_counter()
        texts, _ = check_texts(texts)
        check_batch_size(batch_size)
        if not texts:
            return MultiVectorResult(TokenVectors.from_list([], self.dimension), EncodeReport(0, 0))
        role_tokenizer = self._role_tokenizer(role)
        pooler = (token_pooling or self.token_pooling) if role != "query" else None
        unique, inverse = deduplicate(texts)
        tokenized = role_tokenizer.tokenize(unique, self._template(role, prompt, task))
        lengths = [len(ids) for ids in tokenized.input_ids]
        per_text: list[Tensor | None] = [None] * len(unique)
        show = len(unique) >= PROGRESS_MIN_BATCHES * batch_size if show_progress is None else show_progress
        with torch.inference_mode(), tqdm(total=len(unique), unit="text", disable=not show, desc="encode") as bar:
            for rows in length_sorted_batches(lengths, batch_size):
                batch = role_tokenizer.pad(tokenized, rows).to(self.device)
                vectors, mask = self(batch)
                kept = [vectors[r][mask[r]] for r in range(len(rows))]  # pooled in the model's dtype, as ST pools
                for position, text_vectors in zip(rows, pooler(kept) if pooler is not None else kept):
                    per_text[position] = text_vectors.float().cpu()
                bar.update(len(rows))
        vectors = TokenVectors.from_list(per_text, self.dimension)
        report = EncodeReport(
            n_texts=len(texts),
            n_unique=len(unique),
            truncated_indices=np.flatnonzero(np.asarray(tokenized.truncated, dtype=bool)[inverse]).tolist(),
            n_tokens=sum(lengths),
            seconds=time.perf_counter() - started,
        )
        return MultiVectorResult(vectors.take(inverse), report, int(vectors.lengths.sum()))

    def similarity(self, queries: TokenVectors, documents: TokenVectors) -> np.ndarray:
        """MaxSim (or MeanMaxSim) scores (len(queries), len(documents)) float32."""
        return maxsim_matrix(_token_vectors(queries), _token_vectors(documents), self.similarity_name)

    def similarity_pairwise(self, queries: TokenVectors, documents: TokenVectors) -> np.ndarray:
        """Scores (n,) float32 of query i against document i."""
        return maxsim_rows(_token_vectors(queries), _token_vectors(documents), self.similarity_name)

    # ----------------------------------------------------------------- training

    def tokenize(self, texts: Sequence[str], role: str | None = None, prompt: Any = None) -> MultiVectorBatch:
        """``texts`` as one padded batch for ``role`` (prompt, length, expansion, skiplist), on the model's device."""
        role_tokenizer = self._role_tokenizer(role)
        tokenized = role_tokenizer.tokenize(list(texts), self._template(role, prompt, None))
        batch = role_tokenizer.pad(tokenized, list(range(len(tokenized.input_ids))))
        batch.role = role
        return batch.to(self.device)

    def forward(self, batch: MultiVectorBatch) -> tuple[Tensor, Tensor]:
        """Unit-length token vectors (rows, width, dimension) with gradients, and the (rows, width) bool mask of the
        scored ones."""
        states, _ = self.backbone(batch.tokens)
        return F.normalize(self.projection(states), p=2, dim=-1), batch.score_mask

    # ----------------------------------------------------------------- internals

    def _template(self, role: str | None, prompt: Any, task: str | None) -> Any:
        template = self.prompts.resolve(prompt, role if role is not None or prompt is not None else "document")
        return template.fill(task) if template is not None and (task or template.needs_task) else template

    def _role_tokenizer(self, role: str | None) -> RoleTokenizer:
        role = "query" if role == "query" else "document"
        if role not in self._role_tokenizers:
            self._role_tokenizers[role] = self._build_role_tokenizer(role)
        return self._role_tokenizers[role]

    def _build_role_tokenizer(self, role: str) -> RoleTokenizer:
        tokenizer = self.tokenizer
        own_length = self.query_length if role == "query" else self.document_length
        length = own_length or self.max_seq_length
        expansion = self.query_expansion if role == "query" else None
        if expansion is not None:
            length = expansion.length if expansion.strategy == "fixed" else max(length, expansion.length)
        text_tokenizer = TextTokenizer(tokenizer, length, padding_side="right")
        if expansion is None:
            skip = [] if role == "query" else _token_ids(tokenizer, self.skiplist)
            return RoleTokenizer(text_tokenizer, skip_ids=skip)
        token_id = (
            tokenizer.convert_tokens_to_ids(expansion.token)
            if expansion.token is not None
            else next((i for i in (tokenizer.mask_token_id, tokenizer.eos_token_id) if i is not None), None)
        )
        return RoleTokenizer(text_tokenizer, expansion, token_id)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, dimension={self.dimension}, similarity={self.similarity_name!r}"


def _token_vectors(value: Any) -> TokenVectors:
    """``value`` as ``TokenVectors`` (it may be a list of (tokens, dim) arrays)."""
    return value if isinstance(value, TokenVectors) else TokenVectors.from_list(list(value))


def _token_ids(tokenizer: Any, words: Sequence[str]) -> list[int]:
    """The ids of ``words`` as single tokens; words the tokenizer reads as unknown are dropped (sentence-transformers'
    ``MultiVectorMask``)."""
    ids = {tokenizer.convert_tokens_to_ids(word) for word in words}
    return sorted(i for i in ids if i is not None and i != tokenizer.unk_token_id)


def _pooling_settings(pooler: Any) -> dict[str, Any]:
    settings = getattr(pooler, "settings", None)
    return settings() if callable(settings) else {"pooler": type(pooler).__name__}


def _check_length(value: int | None, name: str, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer{' or None' if optional else ''}, got {value!r}")
    return value
