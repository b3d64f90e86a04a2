"""Training-free ways to read a text vector out of a decoder LLM: a prompt plus the pooling that goes with it.

Each is a named configuration; ``Embedder.load(model, extraction="echo")`` installs its prompt (as the
model's default and its ``query``/``document`` prompt) and its pooling, and ``save`` keeps both.

- ``prompteol``: ``This sentence : "{text}" means in one word:"`` and the last token (Jiang et al. 2023,
  "Scaling sentence embeddings with large language models", arXiv:2307.16645).
- ``pcoteol``: the same with a pretended chain of thought, ``After thinking step by step , this sentence :
  "{text}" means in one word:"`` (Zhang et al. 2024, "Simple techniques for enhancing sentence embeddings
  in generative language models", arXiv:2404.03921).
- ``metaeol``: several meta-task prompts in PromptEOL form, the last token of each, averaged (Lei et al. 2024,
  "Meta-task prompting elicits embeddings from large language models", arXiv:2402.18458). The paper's exact
  prompt texts are not in our references; these four follow its recipe (one prompt per meta-task:
  classification, sentiment, paraphrase, information extraction, each ending "in one word:").
- ``echo``: ``Rewrite the sentence: {text}, rewritten sentence: {text}`` and the mean over the tokens of the
  second copy (Springer et al. 2024, "Repetition improves language model embeddings", arXiv:2402.15449).
  Which tokens belong to the second copy comes from the tokenizer's character offsets
  (``gpte.models.tokenization``), whatever it does at the boundary with the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpte.prompts import PromptSet, PromptTemplate, parse_prompt

PROMPTEOL = 'This sentence : "{text}" means in one word:"'
PCOTEOL = 'After thinking step by step , this sentence : "{text}" means in one word:"'
METAEOL = (
    "In this task, you are given a text and sort it into a broad category such as education, technology, "
    'health, business, environment, politics or culture. For this task, this sentence : "{text}" belongs to '
    'the category in one word:"',
    'In this task, you are given a text and judge its sentiment. For this task, this sentence : "{text}" '
    'reflects the sentiment in one word:"',
    "In this task, you are given a text and find a text that means the same. For this task, this sentence : "
    '"{text}" means in one word:"',
    "In this task, you are given a text and extract its key information. For this task, this sentence : "
    '"{text}" conveys the key information in one word:"',
)
ECHO = "Rewrite the sentence: {text}, rewritten sentence: {text}"


@dataclass(frozen=True)
class Extraction:
    """A named prompt (one template, or several averaged) and the pooling that reads it."""

    name: str
    prompt: str | tuple[str, ...]
    pooling: dict[str, Any]

    def template(self) -> PromptTemplate | PromptSet:
        return parse_prompt(self.prompt)

    def prompts(self) -> dict[str, str | list[str]]:
        """The model prompts it installs: under its own name and for both roles."""
        value = list(self.prompt) if isinstance(self.prompt, tuple) else self.prompt
        return {self.name: value, "query": value, "document": value}


EXTRACTIONS = {
    extraction.name: extraction
    for extraction in (
        Extraction("prompteol", PROMPTEOL, {"name": "last"}),
        Extraction("pcoteol", PCOTEOL, {"name": "last"}),
        Extraction("metaeol", METAEOL, {"name": "last"}),
        Extraction("echo", ECHO, {"name": "span_mean", "copy": -1}),
    )
}


def get_extraction(name: str) -> Extraction:
    """The extraction called ``name``; ValueError listing the names otherwise."""
    if name not in EXTRACTIONS:
        raise ValueError(f"unknown extraction {name!r}; choose one of: {', '.join(EXTRACTIONS)}")
    return EXTRACTIONS[name]
