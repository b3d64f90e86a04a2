"""Generative rerankers: a causal LLM judges whether a document meets a query (``gpte.models.protocol.PairScorer``).

The input is Qwen3-Reranker's template in the model's chat template: a system message asking for "yes" or "no",
then ``<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {document}`` as the user's turn, ready for the
assistant's answer. The raw score is the answer position's ``logit(yes) - logit(no)`` = ``log p(yes) - log p(no)``
(sentence-transformers' ``LogitScore``; with ``false_token=None``, the logit of the true token alone); the
activation (sigmoid) turns it into ``p(yes) / (p(yes) + p(no))``, Qwen3-Reranker's relevance probability.
SmolLM2-135M-Instruct (the packaged GGUF) is the default model.

A long document loses its end, never the query or the closing turn the answer position reads (``fitted_prompt``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from gpte.atomic import atomic_path
from gpte.models.batching import check_batch_size, deduplicate, length_sorted_batches
from gpte.models.causal_lm import DEFAULT_LLM, chat_prompt, load_causal_lm
from gpte.models.cross_encoder import check_pairs
from gpte.models.fingerprint import model_fingerprint
from gpte.models.protocol import EncodeReport, ScoreResult, ranking
from gpte.models.st_format import read_json, write_json

SYSTEM_PROMPT = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided. Note that the "
    'answer can only be "yes" or "no".'
)
USER_TEMPLATE = "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {text}"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
SETTINGS_FILE = "gpte_reranker.json"


class LLMReranker(nn.Module):
    """Scores (query, text) pairs by a causal LLM's yes/no answer.

    Args:
        model: a packaged LLM name, folder, .gguf file or hub id (``gpte.models.causal_lm``).
        max_length: tokens per prompt; a longer document is cut (``fitted_prompt``).
        instruction: the task in the template's ``<Instruct>`` line.
        true_token, false_token: the answer words read (each must be one token); ``false_token=None`` scores the
            true token's logit alone.
    """

    output_kind = "pair_score"

    def __init__(
        self,
        model: str | Path | None = DEFAULT_LLM,
        max_length: int = 1024,
        instruction: str = DEFAULT_INSTRUCTION,
        true_token: str = "yes",
        false_token: str | None = "no",
    ) -> None:
        super().__init__()
        self.tokenizer, self.model = load_causal_lm(model)
        self.name = str(model)
        if not isinstance(max_length, int) or max_length < 16:
            raise ValueError(f"max_length must be an integer of at least 16 tokens, got {max_length!r}")
        self.max_length = max_length
        self.instruction = instruction
        self.true_token, self.false_token = true_token, false_token
        self.true_id = self._token_id(true_token)
        self.false_id = None if false_token is None else self._token_id(false_token)
        self.activation = nn.Sigmoid()

    @classmethod
    def load(cls, name_or_path: str | Path | None = DEFAULT_LLM, **options: Any) -> LLMReranker:
        """An LLM reranker from a model; a folder saved by ``save`` brings its settings (``options`` win)."""
        saved = read_json(Path(name_or_path) / SETTINGS_FILE) if name_or_path is not None else {}
        settings = {"max_length" if key == "max_seq_length" else key: value for key, value in saved.items()}
        return cls(name_or_path, **{**settings, **options})

    def _token_id(self, word: str) -> int:
        ids = self.tokenizer.encode(word, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(
                f"the tokenizer splits {word!r} into {len(ids)} tokens; the yes/no scorer needs one token each"
            )
        return ids[0]

    # ----------------------------------------------------------------- the model contract

    @property
    def max_seq_length(self) -> int:
        return self.max_length

    @property
    def fingerprint(self) -> str:
        return model_fingerprint(self)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text on its own, without special tokens."""
        return [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]] if texts else []

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [tuple(pair) for pair in encoded["offset_mapping"]]

    def text_token_budget(self, role: str | None = None, prompt: Any = None, task: str | None = None) -> int:
        """Tokens the query and the document may hold together: ``max_length`` less the template's tokens."""
        return max(0, self.max_length - self._length(self.prompt("", "", prompt)))

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.output_kind,
            "architecture": type(self.model).__name__,
            "scorer": "llm-yes-no",
            "instruction": self.instruction,
            "true_token": self.true_token,
            "false_token": self.false_token,
            "max_seq_length": self.max_length,
            "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."),
            "device": str(self.device),
        }

    def save(self, folder: str | Path, overwrite: bool = False) -> Path:
        """The LLM (Hugging Face layout) and its reranker settings (``gpte_reranker.json``)."""
        folder = Path(folder)
        with atomic_path(folder, overwrite) as temporary:
            temporary.mkdir()
            self.model.save_pretrained(temporary)
            self.tokenizer.save_pretrained(temporary)
            settings = {k: self.info()[k] for k in ("instruction", "true_token", "false_token", "max_seq_length")}
            write_json(temporary / SETTINGS_FILE, settings)
        return folder

    # ----------------------------------------------------------------- prompts

    def prompt(self, query: str, text: str, instruction: str | None = None) -> str:
        """The model input for one pair: the template in the model's chat template, ready for the answer."""
        user = USER_TEMPLATE.format(instruction=instruction or self.instruction, query=query, text=text)
        return chat_prompt(
            self.tokenizer, [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
        )

    def fitted_prompt(self, query: str, text: str, instruction: str | None = None) -> tuple[str, bool]:
        """``prompt(query, text)`` within ``max_length`` tokens, and whether the document was cut: a long document
        loses its end, never the query or the closing turn the answer position reads.

        The document keeps its first ``max_length - (tokens of the prompt with an empty document)`` tokens, cut at a
        token boundary (character offsets); the cut tightens while a merge at the boundary still overflows.

        Raises:
            ValueError: the query alone leaves no room for the document.
        """
        budget = self.max_length - self._length(self.prompt(query, "", instruction))
        if budget < 1:
            raise ValueError(
                f"the query takes the whole LLM reranker input of {self.max_length} tokens; shorten it or raise "
                "max_length"
            )
        prompt = self.prompt(query, text, instruction)
        if self._length(prompt) <= self.max_length:
            return prompt, False
        offsets = self.token_offsets(text)
        keep = min(budget, len(offsets))
        prompt = self.prompt(query, text[: offsets[keep - 1][1]] if keep else "", instruction)
        while self._length(prompt) > self.max_length and keep > 1:
            keep -= 1
            prompt = self.prompt(query, text[: offsets[keep - 1][1]], instruction)
        return prompt, True

    def _length(self, prompt: str) -> int:
        return len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    # ----------------------------------------------------------------- scoring

    def predict(
        self,
        pairs: Sequence[tuple[str, str]],
        batch_size: int = 8,
        activation: bool = True,
        prompt: str | None = None,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """Scores (n,) float32: ``p(yes) / (p(yes) + p(no))``, or the raw ``logit(yes) - logit(no)`` with
        ``activation=False``; ``prompt`` replaces the instruction."""
        return self.predict_with_report(pairs, batch_size, activation, prompt, show_progress).scores

    def predict_with_report(
        self,
        pairs: Sequence[tuple[str, str]],
        batch_size: int = 8,
        activation: bool = True,
        prompt: str | None = None,
        show_progress: bool | None = None,
    ) -> ScoreResult:
        """``predict``'s scores and an ``EncodeReport`` of the pairs (truncated: documents cut to fit)."""
        started = time.perf_counter()
        queries, texts = check_pairs(pairs)
        check_batch_size(batch_size)
        unique, inverse = deduplicate(list(zip(queries, texts)))
        fitted = [self.fitted_prompt(query, text, prompt) for query, text in unique]
        encoded = self.tokenizer([p for p, _ in fitted], add_special_tokens=False)["input_ids"]
        raw = torch.empty(len(unique), dtype=torch.float32)
        show = len(unique) >= 8 * batch_size if show_progress is None else show_progress
        with torch.inference_mode(), tqdm(total=len(unique), unit="pair", disable=not show, desc="rerank") as bar:
            for rows in length_sorted_batches([len(ids) for ids in encoded], batch_size):
                raw[torch.from_numpy(rows)] = self._logit_difference([encoded[i] for i in rows]).cpu()
                bar.update(len(rows))
        scores = self.activation(raw) if activation else raw
        truncated = np.array([cut for _, cut in fitted], dtype=bool)
        report = EncodeReport(
            n_texts=len(queries),
            n_unique=len(unique),
            truncated_indices=np.flatnonzero(truncated[inverse]).tolist() if len(unique) else [],
            n_tokens=sum(len(ids) for ids in encoded),
            seconds=time.perf_counter() - started,
        )
        return ScoreResult(scores.numpy()[inverse].astype(np.float32, copy=False), report)

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """Scores (len(texts),) of ``(query, text)`` (search's ``Reranker`` protocol)."""
        return self.predict([(query, text) for text in texts], show_progress=False)

    def rank(
        self, query: str, texts: Sequence[str], top_k: int | None = None, batch_size: int = 8
    ) -> list[dict[str, Any]]:
        """``[{"corpus_id", "score"}]`` best first (ties keep input order), the first ``top_k`` (None: all)."""
        scores = self.predict([(query, text) for text in texts], batch_size=batch_size, show_progress=False)
        return ranking(scores, top_k)

    def forward_pairs(self, queries: Sequence[str], texts: Sequence[str], prompt: str | None = None) -> torch.Tensor:
        """Raw scores (n,) with gradients (training, e.g. with LoRA)."""
        prompts = [self.fitted_prompt(query, text, prompt)[0] for query, text in zip(queries, texts)]
        return self._logit_difference(self.tokenizer(prompts, add_special_tokens=False)["input_ids"])

    def _logit_difference(self, sequences: list[list[int]]) -> torch.Tensor:
        """``logit(true) - logit(false)`` (or ``logit(true)``) at the last position of each left-padded sequence."""
        width = max(len(ids) for ids in sequences)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in sequences], device=self.device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in sequences], device=self.device)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        logits = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, logits_to_keep=1)
        last = logits.logits[:, -1].float()
        return last[:, self.true_id] - (last[:, self.false_id] if self.false_id is not None else 0.0)
