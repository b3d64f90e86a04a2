"""One-line document summaries for contextual chunks: the prompt, parsing, and a cache that resumes."""

from __future__ import annotations

import json

import pytest

from gpte.datagen.generators import TransformersGenerator
from gpte.datagen.summaries import BATCH, document_summaries


class Scripted:
    """Answers each conversation with ``Summary: <first word of the document>``; records its calls; fails when told."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls, self.fail_after = [], fail_after

    def generate(self, conversations, max_new_tokens=256, temperature=0.7, seed=0):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt  # a kill mid-run
        self.calls.append((len(conversations), max_new_tokens, temperature))
        return [f'Summary: "{c[0]["content"].split("Document:")[1].split()[0]} notes"\nmore' for c in conversations]


DOCS = [f"topic{i} " + "word " * 500 for i in range(BATCH + 3)]


def test_summaries_take_the_first_line_of_a_greedy_reply_to_a_shortened_document():
    generator = Scripted()
    found = document_summaries(generator, DOCS + DOCS[:2], show_progress=False)
    assert found == {doc: f"topic{i} notes" for i, doc in enumerate(DOCS)}  # distinct documents, in order
    assert generator.calls == [(BATCH, 48, 0.0), (3, 48, 0.0)]
    shown = []
    document_summaries(type("G", (), {"generate": lambda self, c, **k: shown.extend(c) or [""] * len(c)})(), DOCS[:1])
    assert shown[0][0]["content"].split("Document:")[1].count("word") == 299 and shown[0][0]["content"].endswith(" ...")
    assert document_summaries(type("G", (), {"generate": lambda self, c, **k: ["  \n"] * len(c)})(), DOCS[:1]) == {
        DOCS[0]: ""
    }


def test_an_interrupted_run_resumes_from_its_cache_even_after_a_torn_line(tmp_path):
    cache = tmp_path / "summaries.jsonl"
    with pytest.raises(KeyboardInterrupt):
        document_summaries(Scripted(fail_after=1), DOCS, cache=cache, show_progress=False)
    assert len(cache.read_text().splitlines()) == BATCH  # the first batch was kept
    with cache.open("a") as handle:
        handle.write('{"sha256": "torn')  # killed mid-write
    generator = Scripted()
    found = document_summaries(generator, DOCS, cache=cache, show_progress=False)
    assert generator.calls == [(3, 48, 0.0)] and found == document_summaries(Scripted(), DOCS, show_progress=False)
    records = [
        json.loads(line)
        for line in cache.read_text().splitlines()
        if line.startswith('{"sha256": "') and line.endswith("}")
    ]
    assert len(records) == BATCH + 3


def test_a_real_transformers_generator_gives_the_same_summaries_twice(chat_llama):
    generator = TransformersGenerator(chat_llama, batch_size=2)
    first = document_summaries(generator, DOCS[:3], show_progress=False, max_summary_words=5)
    assert first == document_summaries(generator, DOCS[:3], show_progress=False, max_summary_words=5)
    assert all(len(summary.split()) <= 5 for summary in first.values())
