"""Rows to a ``TrainingBatch``: texts per column, tokenized with the model's prompts.

Column 0 (anchor/query) gets the model's ``query`` prompt, the other columns its ``document`` prompt
(no prompt where the model has none). A row's instruction fills the query prompt's ``{task}`` slot; if
the query prompt has none, the instruction goes in E5-mistral's form ``Instruct: {task}\\nQuery: {text}``
(Wang et al. 2024, "Improving text embeddings with large language models"). Prompt tokens are left out
of pooling when the model's pooler says ``include_prompt=False``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from gpte.data.training import TrainingExample
from gpte.models.embedder import Embedder
from gpte.models.multivector import MultiVectorEncoder
from gpte.models.sparse import SparseEncoder
from gpte.models.tokenization import TokenBatch, TokenizedTexts
from gpte.prompts import PromptTemplate
from gpte.train.losses.base import TrainingBatch

INSTRUCTION_TEMPLATE = "Instruct: {task}\nQuery: {text}"


class TrainingCollator:
    """Callable turning a list of ``TrainingExample`` into a ``TrainingBatch`` for ``model``."""

    def __init__(self, model: Embedder, query_role: str = "query", document_role: str = "document") -> None:
        self.model = model
        self.query_template = model.prompts.resolve(None, query_role)
        self.document_template = model.prompts.resolve(None, document_role)

    def __call__(self, examples: Sequence[TrainingExample]) -> TrainingBatch:
        n_columns = len(examples[0].texts)
        texts = [[example.texts[column] for example in examples] for column in range(n_columns)]
        query_templates = [self._query_template(example.instruction) for example in examples]
        features = [self._tokenize(texts[0], query_templates)]
        features += [self._tokenize(column, [self.document_template] * len(column)) for column in texts[1:]]
        return TrainingBatch(texts, features, _scores(examples))

    def _query_template(self, instruction: str | None) -> PromptTemplate | None:
        if instruction is None:
            return self.query_template
        if self.query_template is not None and self.query_template.needs_task:
            return self.query_template.fill(instruction)
        return PromptTemplate(INSTRUCTION_TEMPLATE).fill(instruction)

    def _tokenize(self, texts: list[str], templates: list[PromptTemplate | None]) -> TokenBatch:
        """One padded batch of ``texts``, each in its own template (tokenized once per distinct template)."""
        tokenizer, pooler = self.model.tokenizer, self.model.pooler
        suffix = pooler.suffix_ids(self.model.backbone.tokenizer)
        input_ids: list[list[int]] = [[] for _ in texts]
        segments: list[list[int]] | None = [[] for _ in texts] if pooler.needs_segments else None
        for template in dict.fromkeys(templates):
            rows = [i for i, t in enumerate(templates) if t == template]
            tokens = tokenizer.tokenize([texts[i] for i in rows], template, suffix, pooler.needs_segments)
            for position, row in enumerate(rows):
                input_ids[row] = tokens.input_ids[position]
                if segments is not None:
                    segments[row] = tokens.segments[position]
        merged = TokenizedTexts(input_ids, [False] * len(texts), segments)
        return tokenizer.pad(merged, np.arange(len(texts)))


class PairCollator:
    """Callable turning a list of ``TrainingExample`` into a ``TrainingBatch`` of texts for a reranker: the loss
    pairs column 0 (queries) with the other columns and tokenizes the pairs itself (``forward_pairs``), so the
    batch carries no features. A reranker's instruction is its prompt (``prompts``/``default_prompt``), so rows
    with their own instruction are refused."""

    def __call__(self, examples: Sequence[TrainingExample]) -> TrainingBatch:
        if any(example.instruction is not None for example in examples):
            raise ValueError(
                "a reranker is trained with its model prompt, not per-row instructions: drop the instruction field "
                "and set prompts/default_prompt in model_options"
            )
        n_columns = len(examples[0].texts)
        texts = [[example.texts[column] for example in examples] for column in range(n_columns)]
        return TrainingBatch(texts, [], _scores(examples))


class RoleCollator:
    """Callable turning a list of ``TrainingExample`` into a ``TrainingBatch`` for a model that tokenizes by role
    (``model.tokenize(texts, role)``): column 0 is tokenized for the query role, the others for the document role
    (sentence-transformers' SparseEncoder and MultiVectorEncoder data collators: column 0 ``query``, every other
    column ``document``), each with the model's prompt of that role. Rows with their own instruction are refused:
    such a model is trained with its role prompts."""

    kind = "model"

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, examples: Sequence[TrainingExample]) -> TrainingBatch:
        if any(example.instruction is not None for example in examples):
            raise ValueError(
                f"a {self.kind} is trained with its role prompts, not per-row instructions: drop the instruction "
                "field and set the model's prompts"
            )
        n_columns = len(examples[0].texts)
        texts = [[example.texts[column] for example in examples] for column in range(n_columns)]
        roles = ["query"] + ["document"] * (n_columns - 1)
        features = [self.model.tokenize(column, role).to("cpu") for column, role in zip(texts, roles)]
        return TrainingBatch(texts, features, _scores(examples))


class SparseCollator(RoleCollator):
    """``RoleCollator`` for a ``SparseEncoder`` (an inference-free model's query head reads the query tokens)."""

    kind = "sparse model"

    def __init__(self, model: SparseEncoder) -> None:
        super().__init__(model)


class MultiVectorCollator(RoleCollator):
    """``RoleCollator`` for a ``MultiVectorEncoder``: queries get the query length, expansion and prompt ("[Q] "),
    documents the document length, skiplist and prompt ("[D] "). sentence-transformers' trainer takes its training
    prompts from ``args.prompts``; gpte uses the model's own, so training and encoding see the same markers."""

    kind = "multi-vector model"

    def __init__(self, model: MultiVectorEncoder) -> None:
        super().__init__(model)


def _scores(examples: Sequence[TrainingExample]) -> torch.Tensor | None:
    if examples[0].score is None:
        return None
    return torch.tensor([example.score for example in examples], dtype=torch.float32)
