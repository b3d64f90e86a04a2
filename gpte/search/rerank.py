"""Rerankers: score (query, text) pairs jointly, for the top candidates of a first-stage search.

- ``CrossEncoderReranker``: a sequence-classification transformer reading ``[CLS] query [SEP] text [SEP]``
  (sentence-transformers' CrossEncoder layout: one logit, or the last class's logit for several labels).
- ``LLMReranker``: a causal LLM asked whether the document answers the query; the score is
  log p("yes") - log p("no") at the answer position (the yes/no relevance scoring of RankGPT-style and
  monoT5-style rerankers), SmolLM2-135M-Instruct by default.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from gpte.errors import ModelLoadError
from gpte.models.causal_lm import DEFAULT_LLM, chat_prompt, load_causal_lm

LLM_PROMPT = (
    "Judge whether the document answers the search query. Reply with yes or no.\n\n"
    "Query: {query}\n\nDocument: {text}\n\nDoes the document answer the query?"
)


class CrossEncoderReranker:
    """Scores pairs with a sequence-classification model from a folder (or hub id)."""

    def __init__(self, model: str | Path, max_length: int = 512, batch_size: int = 32) -> None:
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = AutoModelForSequenceClassification.from_pretrained(model).eval()
        except Exception as error:
            raise ModelLoadError(
                f"could not load a cross-encoder from {model}: {type(error).__name__}: {error}"
            ) from error
        self.max_length = max_length
        self.batch_size = batch_size

    @torch.inference_mode()
    def score(self, query: str, texts: list[str]) -> np.ndarray:
        """One relevance logit per text (higher: more relevant)."""
        scores = []
        for start in range(0, len(texts), self.batch_size):
            part = texts[start : start + self.batch_size]
            batch = self.tokenizer(
                [query] * len(part),
                part,
                padding=True,
                truncation="only_second",  # a long pair loses the end of the document, never the query
                max_length=self.max_length,
                return_tensors="pt",
            )
            scores.append(self.model(**batch).logits[:, -1].float())
        return torch.cat(scores).numpy() if scores else np.empty(0, np.float32)


class LLMReranker:
    """Scores pairs by a causal LLM's yes/no answer (``LLM_PROMPT`` in the model's chat template)."""

    def __init__(self, model: str | Path | None = DEFAULT_LLM, max_length: int = 1024, batch_size: int = 8) -> None:
        self.tokenizer, self.model = load_causal_lm(model)
        self.yes, self.no = (self._token_id(word) for word in ("yes", "no"))
        self.max_length = max_length
        self.batch_size = batch_size

    def _token_id(self, word: str) -> int:
        ids = self.tokenizer.encode(word, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(
                f"the tokenizer splits {word!r} into {len(ids)} tokens; the yes/no scorer needs one token each"
            )
        return ids[0]

    def prompt(self, query: str, text: str) -> str:
        """The model input for one pair (chat template when the tokenizer has one)."""
        return chat_prompt(self.tokenizer, [{"role": "user", "content": LLM_PROMPT.format(query=query, text=text)}])

    def fitted_prompt(self, query: str, text: str) -> str:
        """``prompt(query, text)`` within ``max_length`` tokens: a long document loses its end, never the query or
        the closing question the answer position reads (cutting the prompt's tail would drop that question).

        The document keeps its first ``max_length - (tokens of the prompt with an empty document)`` tokens, cut at a
        token boundary (character offsets); the cut tightens while a merge at the boundary still overflows.

        Raises:
            ValueError: the query alone leaves no room for the document.
        """
        budget = self.max_length - self._length(self.prompt(query, ""))
        if budget < 1:
            raise ValueError(
                f"the query takes the whole LLM reranker input of {self.max_length} tokens; shorten it or raise "
                "max_length"
            )
        offsets = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        prompt, keep = self.prompt(query, text), min(budget, len(offsets))
        while self._length(prompt) > self.max_length and keep >= 1:
            prompt, keep = self.prompt(query, text[: offsets[keep - 1][1]]), keep - 1
        return prompt

    def _length(self, prompt: str) -> int:
        return len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    @torch.inference_mode()
    def score(self, query: str, texts: list[str]) -> np.ndarray:
        """log p(yes) - log p(no) at the answer position, per text (long documents cut by ``fitted_prompt``)."""
        scores = []
        for start in range(0, len(texts), self.batch_size):
            prompts = [self.fitted_prompt(query, text) for text in texts[start : start + self.batch_size]]
            batch = self.tokenizer(prompts, padding=True, return_tensors="pt", add_special_tokens=False)
            logits = self.model(**batch).logits[:, -1].float().log_softmax(-1)
            scores.append(logits[:, self.yes] - logits[:, self.no])
        return torch.cat(scores).numpy() if scores else np.empty(0, np.float32)
