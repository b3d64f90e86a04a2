"""The ways a sparse model turns a token batch into one weight per vocabulary token (rows, vocab_size).

``SpladeHead``      SPLADE: a masked-LM's logits w_ij (token i, vocabulary entry j) of the real tokens, then
                    ``log(1 + ReLU(w_ij))`` and max (SPLADE-max, Formal et al. 2021) or sum (SPLADE v1) over i.
                    Equal to sentence-transformers' ``Transformer(fill-mask)`` + ``SpladePooling``.
``StaticQueryHead`` inference-free SPLADE's query side: a learned weight per vocabulary entry, given to each entry
                    present in the text (no transformer); sentence-transformers' ``SparseStaticEmbedding``.
``PromptRepsHead``  PromptReps (Zhuang et al. 2024): a decoder LLM reads a prompt asking for one word that
                    represents the text; the next token's logits give ``log(1 + ReLU(logit))`` per vocabulary
                    entry, kept only for entries spelling a word of the text and cut to the ``top_k`` largest.

Every head returns non-negative weights, zero for entries it does not activate, and says how its texts are
tokenized (``add_special_tokens``; ``needs_segments``: text tokens must be told from prompt tokens;
``keeps_template``: a long text is cut to fit inside the prompt rather than the prompt's end cut off).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from gpte.models.tokenization import PROMPT, TokenBatch

SPLADE_POOLINGS = ("max", "sum")
SPLADE_ACTIVATIONS = ("relu", "log1p_relu")


class SparseHead(nn.Module):
    """Base class: ``forward(batch)`` -> (rows, vocab_size) non-negative weights."""

    architecture: ClassVar[str] = ""
    add_special_tokens: ClassVar[bool] = True
    needs_segments: ClassVar[bool] = False
    keeps_template: ClassVar[bool] = False  # a long text loses its end, never the prompt's closing words

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError


class SpladeHead(SparseHead):
    """SPLADE over a ``...ForMaskedLM`` model.

    Args:
        mlm: the masked-LM model (its logits are (rows, tokens, vocab_size)).
        pooling: ``max`` (SPLADE v2 and later) or ``sum`` (SPLADE v1).
        activation: ``relu`` (log(1 + ReLU(w))) or ``log1p_relu`` (a second log1p, OpenSearch's models).
    """

    architecture = "splade"

    def __init__(self, mlm: PreTrainedModel, pooling: str = "max", activation: str = "relu") -> None:
        super().__init__()
        if pooling not in SPLADE_POOLINGS:
            raise ValueError(f"unknown SPLADE pooling {pooling!r}; choose one of {', '.join(SPLADE_POOLINGS)}")
        if activation not in SPLADE_ACTIVATIONS:
            raise ValueError(f"unknown SPLADE activation {activation!r}; choose one of {', '.join(SPLADE_ACTIVATIONS)}")
        self.mlm = mlm
        self.pooling = pooling
        self.activation = activation

    @property
    def vocab_size(self) -> int:
        return int(self.mlm.get_output_embeddings().weight.shape[0])

    def forward(self, batch: TokenBatch) -> Tensor:
        """sum/max over real tokens i of log(1 + ReLU(w_ij)) (twice log1p for ``log1p_relu``)."""
        logits = self.mlm(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        masked = logits * batch.attention_mask.unsqueeze(-1).to(logits.dtype)  # padding: 0, as sentence-transformers
        if self.pooling == "max":  # log(1 + ReLU) is monotone: the max of it is it of the max (one vocab-wide copy)
            pooled = masked.amax(dim=1).relu().log1p()
            return (pooled.log1p() if self.activation == "log1p_relu" else pooled).float()
        weights = masked.relu().log1p()
        return (weights.log1p() if self.activation == "log1p_relu" else weights).sum(dim=1).float()


class StaticQueryHead(SparseHead):
    """Inference-free query encoding: ``weight[j]`` for each vocabulary entry j present in the text, else 0.

    Args:
        weight: (vocab_size,) weights, e.g. IDF values or learned ones.
        frozen: keep the weights fixed in training.
    """

    architecture = "static"
    add_special_tokens = False
    needs_segments = True  # an empty text's stand-in token (gpte.models.tokenization) is not one of its tokens

    def __init__(self, weight: Tensor, frozen: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.float(), requires_grad=not frozen)
        self.frozen = frozen

    @property
    def vocab_size(self) -> int:
        return int(self.weight.shape[0])

    def forward(self, batch: TokenBatch) -> Tensor:
        present = torch.zeros(batch.input_ids.shape[0], self.vocab_size, dtype=torch.int64, device=self.weight.device)
        own = batch.segments >= PROMPT if batch.segments is not None else batch.attention_mask.bool()
        present.scatter_(1, batch.input_ids, own.to(torch.int64))
        return present * self.weight


class PromptRepsHead(SparseHead):
    """PromptReps' sparse representation from a causal LLM's next-token logits.

    The batch must be left-padded (the next token of every row is read at the last position) and carry token
    segments (``gpte.models.tokenization``: labels >= 1 mark the text's own tokens). A vocabulary entry is kept only
    if it spells, lowercased and without its word-start marker, a token of the text: the representation is a bag of
    the text's own words, weighted by how strongly the LLM would answer with each.

    Args:
        llm: a ``...ForCausalLM`` model.
        tokenizer: its tokenizer (to group vocabulary entries by the word they spell).
        top_k: entries kept per text (the largest weights).
    """

    architecture = "promptreps"
    needs_segments = True
    keeps_template = True  # the answer's opening ends the prompt: the next token is read there

    def __init__(self, llm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, top_k: int = 128) -> None:
        super().__init__()
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        self.llm = llm
        self.top_k = top_k
        self.register_buffer("word_of_entry", torch.from_numpy(_word_groups(tokenizer)), persistent=False)

    @property
    def vocab_size(self) -> int:
        return int(self.word_of_entry.shape[0])

    def forward(self, batch: TokenBatch) -> Tensor:
        logits = self.llm(  # the LM head on the last position only (left padding: every row's next token)
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            logits_to_keep=1,
        ).logits[:, -1, : self.vocab_size]
        weights = logits.float().relu().log1p() * self._text_words(batch)
        top = weights.topk(min(self.top_k, self.vocab_size), dim=1)
        return torch.zeros_like(weights).scatter_(1, top.indices, top.values)

    def _text_words(self, batch: TokenBatch) -> Tensor:
        """(rows, vocab_size) 1.0 where the entry spells a word among the row's text tokens, else 0.0."""
        if batch.segments is None:
            raise ValueError("PromptReps needs token segments to find the text's own tokens")
        groups = self.word_of_entry
        mask = torch.zeros(batch.input_ids.shape[0], int(groups.max()) + 1, device=groups.device)
        text = batch.segments >= 1
        rows = torch.arange(batch.input_ids.shape[0], device=groups.device).unsqueeze(1).expand_as(text)
        mask[rows[text], groups[batch.input_ids[text].clamp(max=len(groups) - 1)]] = 1.0
        mask[:, 0] = 0.0  # group 0: entries that spell no word (punctuation, special tokens)
        return mask.gather(1, groups.unsqueeze(0).expand(len(mask), -1))


def _word_groups(tokenizer: PreTrainedTokenizerBase) -> np.ndarray:
    """(vocab_size,) int64: entries spelling the same lowercased word (word-start markers removed) share a group;
    group 0 holds entries with no letter or digit."""
    size = max(len(tokenizer), max(tokenizer.get_vocab().values()) + 1)
    words = [""] * size
    for token, index in tokenizer.get_vocab().items():
        words[index] = tokenizer.convert_tokens_to_string([token]).strip().lower()
    groups: dict[str, int] = {}
    result = np.zeros(size, dtype=np.int64)
    for index, word in enumerate(words):
        if any(character.isalnum() for character in word):
            result[index] = groups.setdefault(word, len(groups) + 1)
    return result
