"""LLM data synthesis: parsing of malformed answers, the recipes' prompts, filters, retries, the
"nothing usable" error with partial results kept, resume, the OpenAI-compatible endpoint, and a tiny
random Llama as a real transformers generator."""

from __future__ import annotations

import json

import httpx
import pytest
import torch

from gpte import Embedder
from gpte.cli import main
from gpte.data.training import read_training_data
from gpte.datagen.generators import GeneratorError, OpenAIChatGenerator, TransformersGenerator
from gpte.datagen.parsing import parse_json_object, parse_line, parse_text_list
from gpte.datagen.recipes import BUILTIN_QUERY_EXAMPLES, E5_KEYS, QueryRecipe, SourceItem
from gpte.datagen.synthesis import synthesize
from gpte.datagen.synthesis_filters import SynthesisFilters

NO_FILTERS = SynthesisFilters(min_words=0, language=None, dedup=False, round_trip_k=None)
E5_JSON = '```json\n{{"user_query": "{q}", "positive_document": "A long relevant text about {q}.", \'hard_negative_document\': "Another text.",}}\n```'


class Scripted:
    """A generator answering from a function of (conversation, attempt); records its calls."""

    name = "scripted"

    def __init__(self, answer):
        self.answer, self.calls = answer, []

    def generate(self, conversations, max_new_tokens=256, temperature=0.7, seed=0):
        self.calls.append((len(conversations), temperature, seed))
        return [self.answer(conversation, len(self.calls)) for conversation in conversations]


def test_parsers_recover_labels_quotes_fences_trailing_commas_and_bullets():
    assert parse_line('\n  Query: "how do wings stall?"\nsecond line') == "how do wings stall?"
    assert parse_line("1. **Relevant query:** wing stall") == "wing stall"
    assert parse_line("Boundary layer: effects") == "Boundary layer: effects"  # not a known label
    assert parse_line("  \n ") is None
    found = parse_json_object(E5_JSON.format(q="wing stall"), E5_KEYS)
    assert found == {
        "user_query": "wing stall",
        "positive_document": "A long relevant text about wing stall.",
        "hard_negative_document": "Another text.",
    }
    assert parse_json_object('Sure: {"user_query": "x"', E5_KEYS) is None  # keys missing
    assert (
        parse_json_object('{"user_query": "", "positive_document": "a", "hard_negative_document": "b"}', E5_KEYS)
        is None
    )
    assert parse_text_list('Here you go: ["Retrieve a", "Find b",]') == ["Retrieve a", "Find b"]
    assert parse_text_list("- Retrieve a\n2. Find b") == ["Retrieve a", "Find b"]


def test_query_recipe_prompt_has_the_examples_as_chat_turns_then_the_document():
    recipe = QueryRecipe(max_document_words=5)
    [conversation] = recipe.conversations(SourceItem("d1", "one two three four five six seven"))
    assert [m["role"] for m in conversation] == ["user", "assistant", "user", "assistant", "user"]
    assert conversation[1]["content"] == BUILTIN_QUERY_EXAMPLES[0][1]
    assert conversation[-1]["content"].endswith("Document: one two three four five ...")
    assert recipe.parse(SourceItem("d1", "full text"), ["Query: wings?"]) == {
        "query": "wings?",
        "positive": "full text",
        "positive_id": "d1",
    }


def test_transformers_generator_formats_the_chat_and_is_reproducible(chat_llama):
    generator = TransformersGenerator(chat_llama, batch_size=2)
    conversation = QueryRecipe().conversations(SourceItem("d", "A man is playing a guitar."))[0]
    prompt = generator.prompt(conversation)
    assert prompt.startswith("<user> Write one search query") and prompt.endswith(
        "Document: A man is playing a guitar. </s><assistant>"
    )
    state = torch.random.get_rng_state()
    first = generator.generate([conversation] * 3, max_new_tokens=6, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random stream is untouched
    assert len(first) == 3 and first == generator.generate([conversation] * 3, max_new_tokens=6, seed=7)
    assert generator.generate([conversation], max_new_tokens=6, temperature=0) == generator.generate(
        [conversation], max_new_tokens=6, temperature=0, seed=3
    )


def test_tiny_llama_runs_the_query_pipeline_end_to_end(chat_llama, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"_id": str(i), "text": f"document number {i} about dogs"}) + "\n" for i in range(5))
    )
    report = synthesize(
        "queries",
        tmp_path / "out.jsonl",
        corpus,
        TransformersGenerator(chat_llama),
        filters=NO_FILTERS,
        max_new_tokens=8,
        chunk_size=2,
        show_progress=False,
    )
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert (
        report.items == 5
        and report.kept == len(rows) == report.parsed
        and report.removed.get("unparsable", 0) == 5 - report.parsed
    )
    assert all(row["positive"] == f"document number {row['positive_id']} about dogs" for row in rows)


def test_tiny_llama_writing_no_json_stops_with_a_clear_error_after_bounded_retries(chat_llama, tmp_path):
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("Retrieve wiki passages for a question\nFind recipes for a dish\n")
    with pytest.raises(GeneratorError, match="nothing usable for items 0:0..1:0 in 2 attempts"):
        synthesize(
            "e5",
            tmp_path / "e5.jsonl",
            tasks,
            TransformersGenerator(chat_llama),
            max_attempts=2,
            max_new_tokens=8,
            show_progress=False,
        )
    assert not (tmp_path / "e5.jsonl").exists()


def test_e5_recipe_repairs_json_retries_and_keeps_records_trainable(tmp_path):
    def answer(conversation, call):
        content = conversation[-1]["content"]
        if content.startswith("Brainstorm"):
            return 'Sure! ["Retrieve passages answering a trivia question", "Find product reviews for a gadget", "Find product reviews for a gadget",]'
        return (
            "I cannot comply"
            if call == 2 and "trivia" in content
            else E5_JSON.format(q=content.split("task: ")[1].split(".")[0][:20])
        )

    generator = Scripted(answer)
    report = synthesize(
        "e5", tmp_path / "e5.jsonl", generator=generator, tasks=3, filters=NO_FILTERS, show_progress=False
    )
    assert generator.calls[0] == (1, 0.7, 0)  # the brainstorm
    assert (report.items, report.parsed, report.kept) == (2, 2, 2)  # the repeated task is asked once
    data = read_training_data(tmp_path / "e5.jsonl", instruction="instruction")
    assert (
        data.columns == ["query", "positive", "negatives[0]"]
        and data[0].instruction == "Retrieve passages answering a trivia question"
    )


def test_failed_items_are_retried_then_counted_unparsable(tmp_path):
    sentences = tmp_path / "s.txt"
    sentences.write_text("A man plays a guitar.\nTwo dogs run in a park.\n")

    def answer(conversation, call):
        content = conversation[-1]["content"]
        if "dogs" in content:
            return (
                ""
                if call < 3
                else ("Two dogs are running in a park." if "paraphrase" in content else "No dogs are in the park.")
            )
        return (
            ""
            if call > 0 and "guitar" not in content
            else ("A guitar is played by a man." if "paraphrase" in content else "A man sits silently.")
        )

    generator = Scripted(answer)
    report = synthesize(
        "paraphrase",
        tmp_path / "p.jsonl",
        sentences,
        generator,
        filters=NO_FILTERS,
        max_attempts=2,
        temperature=0,
        show_progress=False,
    )
    assert [(n, t) for n, t, _ in generator.calls] == [(4, 0), (2, 0.7)]  # retries only the failed item, sampling
    assert (report.parsed, report.kept, report.removed) == (1, 1, {"unparsable": 1})
    assert json.loads((tmp_path / "p.jsonl").read_text()) == {
        "anchor": "A man plays a guitar.",
        "positive": "A guitar is played by a man.",
        "negative": "A man sits silently.",
    }


def test_filters_drop_duplicates_copied_examples_short_and_foreign_texts(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    answers = [
        "how do wings stall",
        "How do  wings stall?",
        BUILTIN_QUERY_EXAMPLES[1][1],
        "stall",
        "comment les ailes décrochent-elles en vol",
        "what causes panel flutter",
    ]
    corpus.write_text("".join(json.dumps({"_id": str(i), "text": f"text {i}"}) + "\n" for i in range(len(answers))))
    generator = Scripted(lambda conversation, call: answers[int(conversation[-1]["content"].split("text ")[-1])])
    report = synthesize(
        "queries",
        tmp_path / "q.jsonl",
        corpus,
        generator,
        filters=SynthesisFilters(round_trip_k=None),
        show_progress=False,
    )
    assert report.removed == {"duplicate": 1, "copied_example": 1, "length": 1, "language": 1}
    assert [json.loads(line)["query"] for line in (tmp_path / "q.jsonl").read_text().splitlines()] == [
        "how do wings stall",
        "what causes panel flutter",
    ]


def test_round_trip_keeps_queries_whose_document_ranks_in_the_top_k(tmp_path):
    texts = [
        "Wings stall when the angle of attack exceeds the critical angle and the flow separates.",
        "Pasta is boiled in salted water until al dente.",
        "Thin panels flutter in supersonic flow when aerodynamic and elastic forces couple.",
    ]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": str(i), "text": t}) + "\n" for i, t in enumerate(texts)))
    answers = {
        "0": "why do wings stall at high angle of attack",
        "1": "why do thin panels flutter at supersonic speed",
        "2": "how long to boil pasta",
    }
    generator = Scripted(
        lambda conversation, call: answers[
            next(k for k, t in enumerate(texts) if t in conversation[-1]["content"]).__str__()
        ]
    )
    report = synthesize(
        "queries",
        tmp_path / "q.jsonl",
        corpus,
        generator,
        embedder=Embedder.load(device="cpu"),
        filters=SynthesisFilters(round_trip_k=1),
        show_progress=False,
    )
    assert report.removed == {"round_trip": 2} and report.kept == 1
    assert (tmp_path / "q.jsonl.index").is_dir()


def test_a_failing_chunk_keeps_the_finished_ones_and_a_rerun_resumes(tmp_path):
    sentences = tmp_path / "s.txt"
    sentences.write_text("".join(f"Sentence number {i} is here.\n" for i in range(6)))

    def good(conversation, call):
        return ("Here is sentence " if "paraphrase" in conversation[-1]["content"] else "No sentence ") + conversation[
            -1
        ]["content"][-12:]

    broken = Scripted(lambda conversation, call: good(conversation, call) if call == 1 else "")
    with pytest.raises(GeneratorError, match="nothing usable.*finished chunks are kept"):
        synthesize(
            "paraphrase",
            tmp_path / "p.jsonl",
            sentences,
            broken,
            filters=NO_FILTERS,
            chunk_size=2,
            max_attempts=3,
            show_progress=False,
        )
    assert len(broken.calls) == 1 + 3 and len(list((tmp_path / ".p.jsonl.progress").glob("0*.jsonl"))) == 1
    fixed = Scripted(good)
    report = synthesize(
        "paraphrase",
        tmp_path / "p.jsonl",
        sentences,
        fixed,
        filters=NO_FILTERS,
        chunk_size=2,
        max_attempts=3,
        show_progress=False,
    )
    assert report.resumed_chunks == 1 and len(fixed.calls) == 2 and report.kept == 6
    assert not (tmp_path / ".p.jsonl.progress").exists()


def test_openai_endpoint_generator_sends_chat_requests_and_reports_errors():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, json.loads(request.content), request.headers.get("authorization")))
        if json.loads(request.content)["messages"][0]["content"] == "fail":
            return httpx.Response(503, text="overloaded")
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": "a query"}}]})

    generator = OpenAIChatGenerator("http://llm.local/v1", "qwen", api_key="k", transport=httpx.MockTransport(handler))
    assert generator.generate([[{"role": "user", "content": "hi"}]], max_new_tokens=5, seed=2) == ["a query"]
    path, body, auth = seen[0]
    assert path == "/v1/chat/completions" and auth == "Bearer k"
    assert body == {
        "model": "qwen",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
        "temperature": 0.7,
        "seed": 2,
    }
    with pytest.raises(GeneratorError, match="answered 503: overloaded"):
        generator.generate([[{"role": "user", "content": "fail"}]])


def test_cli_synth_reports_bad_input(tmp_path, chat_llama, capsys):
    assert main(["synth", "queries", "-o", str(tmp_path / "o.jsonl"), "--generator", str(chat_llama)]) == 1
    assert "needs a source" in capsys.readouterr().err
    assert main(["synth", "nli", str(tmp_path), "-o", str(tmp_path / "o.jsonl"), "--generator", str(chat_llama)]) == 1
    assert "unknown recipe 'nli'; choose one of queries, e5, paraphrase" in capsys.readouterr().err
    assert main(["synth", "e5", "-o", str(tmp_path / "o.jsonl"), "--generator", "openai:http://x"]) == 1
    assert "openai:BASE_URL#MODEL" in capsys.readouterr().err


def test_tiny_llama_run_killed_after_a_chunk_resumes_to_the_uninterrupted_output(chat_llama, tmp_path, monkeypatch):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"_id": str(i), "text": f"a man is playing guitar number {i}"}) + "\n" for i in range(6))
    )
    generator = TransformersGenerator(chat_llama)
    options = dict(filters=NO_FILTERS, max_new_tokens=6, chunk_size=2, max_attempts=1, show_progress=False)
    synthesize("queries", tmp_path / "whole.jsonl", corpus, generator, **options)
    original, calls = TransformersGenerator.generate, []

    def killed_at_the_second_chunk(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TransformersGenerator, "generate", killed_at_the_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        synthesize("queries", tmp_path / "resumed.jsonl", corpus, generator, **options)
    monkeypatch.setattr(TransformersGenerator, "generate", original)
    report = synthesize("queries", tmp_path / "resumed.jsonl", corpus, generator, **options)
    assert report.resumed_chunks == 1 and report.generator_calls == 2
    assert (tmp_path / "resumed.jsonl").read_text() == (tmp_path / "whole.jsonl").read_text() != ""


def test_cli_synth_writes_paraphrase_triples_with_a_tiny_llama(tmp_path, chat_llama, capsys):
    sentences = tmp_path / "s.txt"
    sentences.write_text("A man is playing a guitar.\nTwo dogs run.\nA woman is slicing an onion.\n")
    out = tmp_path / "nli.jsonl"
    assert (
        main(
            [
                "synth",
                "paraphrase",
                str(sentences),
                "-o",
                str(out),
                "--generator",
                str(chat_llama),
                "--language",
                "",
                "--min-words",
                "0",
                "--no-dedup",
                "--max-new-tokens",
                "6",
                "--no-progress",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert f"kept {len(rows)} in {out}" in printed and rows
    assert {row["anchor"] for row in rows} <= {
        "A man is playing a guitar.",
        "Two dogs run.",
        "A woman is slicing an onion.",
    }
