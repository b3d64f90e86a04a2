"""Synthesis recipes: the prompts that ask an LLM for training data, and the parsing of its answers.

- ``QueryRecipe`` (InPars, Bonifacio et al. 2022; Promptagator, Dai et al. 2023): few-shot query generation
  for a corpus document; the document becomes the query's positive. The few-shot examples are chat turns
  (user: document, assistant: query): the user's own (Promptagator's "8 examples") or two built-in ones.
- ``E5TaskRecipe`` (E5-mistral, Wang et al. 2024, "Improving text embeddings with large language
  models"): step 1 brainstorms retrieval tasks (``BRAINSTORM_PROMPT``), step 2 writes one
  {user_query, positive_document, hard_negative_document} JSON object per task with query type, length,
  clarity, document length and difficulty drawn at random, as in the paper's prompt template.
- ``ParaphraseRecipe`` (SynCSE, Zhang et al. 2023; GenSE, Chen et al. 2022): for a sentence, a paraphrase
  (positive) and a contradiction (hard negative), for symmetric tasks.

A recipe turns one input item into conversations (``conversations``) and the model's answers to them into
one record or None (``parse``); ``generated`` names the fields the model wrote (what the filters check),
``dedup_field`` the field duplicates are found by and ``example_outputs`` the answers shown in the prompt.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from gpte.datagen.generators import Messages
from gpte.datagen.parsing import parse_json_object, parse_line, parse_text_list

QUERY_PROMPT = (
    "Write one search query that the document below answers. Reply with the query only.\n\nDocument: {document}"
)
BUILTIN_QUERY_EXAMPLES = (
    (
        "The Great Barrier Reef, off the coast of Queensland in Australia, is the largest coral reef system in the "
        "world, made of over 2,900 individual reefs and 900 islands.",
        "where is the largest coral reef system",
    ),
    (
        "Insulin is a peptide hormone produced by the beta cells of the pancreatic islets. It regulates the "
        "metabolism of carbohydrates, fats and protein by promoting the absorption of glucose from the blood.",
        "which cells produce insulin",
    ),
)
BRAINSTORM_PROMPT = (
    "Brainstorm a list of potentially useful text retrieval tasks.\n\n"
    "Here are a few examples for your reference:\n"
    "- Provided a scientific claim as query, retrieve documents that help verify or refute the claim.\n"
    "- Search for documents that answers a FAQ-style query on children's nutrition.\n\n"
    "Please adhere to the following guidelines:\n"
    "- Specify what the query is, and what the desired documents are.\n"
    "- Each retrieval task should cover a wide range of queries, and should not be too specific.\n\n"
    "Your output must always be a python list of strings only, with about {count} elements, and each element "
    "corresponds to a distinct retrieval task in one sentence. Do not explain yourself or output anything else. Be creative!"
)
E5_PROMPT = (
    "You have been assigned a retrieval task: {task}\n\n"
    "Your mission is to write one text retrieval example for this task in JSON format. The JSON object must "
    "contain the following keys:\n"
    '- "user_query": a string, a random user search query specified by the retrieval task.\n'
    '- "positive_document": a string, a relevant document for the user query.\n'
    '- "hard_negative_document": a string, a hard negative document that only appears relevant to the query.\n\n'
    "Please adhere to the following guidelines:\n"
    '- The "user_query" should be {query_type}, {query_length}, {clarity}, and diverse in topic.\n'
    "- All documents must be created independent of the query. Avoid copying the query verbatim. It's "
    'acceptable if some parts of the "positive_document" are not topically related to the query.\n'
    "- All documents should be at least {num_words} words long.\n"
    '- The "hard_negative_document" contains some useful information, but it should be less useful or '
    'comprehensive compared to the "positive_document".\n'
    "- Both the query and documents should be in {language}.\n"
    "- Do not provide any explanation in any document on why it is relevant or not relevant to the query.\n"
    "- Both the query and documents require {difficulty} level education to understand.\n\n"
    "Your output must always be a JSON object only, do not explain yourself or output anything else. Be creative!"
)
E5_CHOICES = {
    "query_type": ("extremely long-tail", "long-tail", "common"),
    "query_length": ("less than 5 words", "5 to 15 words", "at least 10 words"),
    "clarity": ("clear", "understandable with some effort", "ambiguous"),
    "num_words": (50, 100, 200, 300, 400, 500),
    "difficulty": ("high school", "college", "PhD"),
}
E5_KEYS = ("user_query", "positive_document", "hard_negative_document")
PARAPHRASE_PROMPT = (
    "Please paraphrase the input sentence, providing an alternative expression with the same meaning. "
    "Reply with the new sentence only.\n\nInput sentence: {sentence}"
)
CONTRADICTION_PROMPT = (
    "Please write one sentence that contradicts the input sentence: it should be about the same "
    "subject but state something incompatible with it. Reply with the new sentence only.\n\nInput sentence: {sentence}"
)


@dataclass(frozen=True)
class SourceItem:
    """One input of a recipe: an id (a document id, or a position) and its text (a document, a task, a sentence)."""

    id: str
    text: str


def _user(content: str) -> Messages:
    return [{"role": "user", "content": content}]


def _shorten(text: str, max_words: int) -> str:
    words = text.split()
    return " ".join(words[:max_words]) + (" ..." if len(words) > max_words else "")


class QueryRecipe:
    """Query generation from documents (InPars/Promptagator); records ``query``, ``positive``, ``positive_id``.

    Args:
        examples: few-shot (document, query) pairs; default ``BUILTIN_QUERY_EXAMPLES``.
        max_document_words: documents are cut to this many words in the prompt (the positive keeps its full text).
    """

    name = "queries"
    generated = ("query",)
    dedup_field = "query"

    def __init__(self, examples: list[tuple[str, str]] | None = None, max_document_words: int = 150) -> None:
        self.examples = list(examples) if examples is not None else list(BUILTIN_QUERY_EXAMPLES)
        self.max_document_words = max_document_words

    @property
    def example_outputs(self) -> tuple[str, ...]:
        """The few-shot queries (a copy of one is a duplicate, not a new query)."""
        return tuple(query for _, query in self.examples)

    def conversations(self, item: SourceItem) -> list[Messages]:
        turns: Messages = []
        for document, query in self.examples:
            turns += [
                *_user(QUERY_PROMPT.format(document=_shorten(document, self.max_document_words))),
                {"role": "assistant", "content": query},
            ]
        return [turns + _user(QUERY_PROMPT.format(document=_shorten(item.text, self.max_document_words)))]

    def parse(self, item: SourceItem, answers: list[str]) -> dict[str, Any] | None:
        query = parse_line(answers[0])
        return {"query": query, "positive": item.text, "positive_id": item.id} if query else None


class E5TaskRecipe:
    """E5-mistral's two-step recipe; records ``query``, ``positive``, ``negatives`` (one) and ``instruction``
    (the task). Items are tasks; ``brainstorm`` and ``parse_tasks`` are step 1."""

    name = "e5"
    generated = ("query", "positive", "negatives")
    dedup_field = "query"
    example_outputs = ()

    def __init__(self, language: str = "English", seed: int = 0) -> None:
        self.language = language
        self.seed = seed

    @staticmethod
    def brainstorm(count: int) -> Messages:
        return _user(BRAINSTORM_PROMPT.format(count=count))

    @staticmethod
    def parse_tasks(answer: str) -> list[str]:
        """The distinct tasks of a brainstorm answer, in order."""
        return list(dict.fromkeys(parse_text_list(answer)))

    def conversations(self, item: SourceItem) -> list[Messages]:
        rng = random.Random(f"{self.seed}:{item.id}")  # the same item always gets the same draws
        choices = {name: rng.choice(values) for name, values in E5_CHOICES.items()}
        return [_user(E5_PROMPT.format(task=item.text, language=self.language, **choices))]

    def parse(self, item: SourceItem, answers: list[str]) -> dict[str, Any] | None:
        found = parse_json_object(answers[0], E5_KEYS)
        if found is None:
            return None
        return {
            "query": found["user_query"],
            "positive": found["positive_document"],
            "negatives": [found["hard_negative_document"]],
            "instruction": item.text,
        }


class ParaphraseRecipe:
    """SynCSE-style symmetric triples; records ``anchor`` (the input sentence), ``positive`` (a paraphrase)
    and ``negative`` (a contradiction)."""

    name = "paraphrase"
    generated = ("positive", "negative")
    dedup_field = "positive"
    example_outputs = ()

    def conversations(self, item: SourceItem) -> list[Messages]:
        return [
            _user(PARAPHRASE_PROMPT.format(sentence=item.text)),
            _user(CONTRADICTION_PROMPT.format(sentence=item.text)),
        ]

    def parse(self, item: SourceItem, answers: list[str]) -> dict[str, Any] | None:
        paraphrase, contradiction = parse_line(answers[0]), parse_line(answers[1])
        if not paraphrase or not contradiction or paraphrase == contradiction:
            return None
        return {"anchor": item.text, "positive": paraphrase, "negative": contradiction}


Recipe = QueryRecipe | E5TaskRecipe | ParaphraseRecipe
RECIPES = {"queries": QueryRecipe, "e5": E5TaskRecipe, "paraphrase": ParaphraseRecipe}
