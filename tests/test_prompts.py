"""Prompt templates, roles and text spans."""

import pytest

from gpte.prompts import Prompts, PromptTemplate


def test_prefix_and_template_forms():
    assert PromptTemplate.parse("query: ").template == "query: {text}"
    assert PromptTemplate.parse("query: ").prefix == "query: "
    assert PromptTemplate.parse('This sentence : "{text}" means in one word:"').prefix is None


def test_format_records_every_copy_of_the_text():
    formatted = PromptTemplate("Rewrite the sentence: {text}, rewritten sentence: {text}").format("a cat")
    assert formatted.text == "Rewrite the sentence: a cat, rewritten sentence: a cat"
    assert [formatted.text[s:e] for s, e in formatted.text_spans] == ["a cat", "a cat"]
    assert formatted.text_spans[0] == (22, 27)


def test_lowercase_and_literal_braces():
    formatted = PromptTemplate('{"q": "{text}"}').format("Hello", lowercase=True)
    assert formatted.text == '{"q": "hello"}'
    assert formatted.text[slice(*formatted.text_spans[0])] == "hello"


def test_task_slot():
    template = PromptTemplate("Instruct: {task}\nQuery: {text}")
    filled = template.fill("find answers")
    assert filled.format("why?").text == "Instruct: find answers\nQuery: why?"
    with pytest.raises(ValueError, match=r"has a \{task\} slot: pass task="):
        template.fill(None)
    with pytest.raises(ValueError, match=r"has no \{task\} slot"):
        PromptTemplate("q: {text}").fill("x")
    with pytest.raises(ValueError, match="no {text} slot"):
        PromptTemplate("no slot")


def test_resolution_order_and_roles():
    prompts = Prompts.from_strings({"query": "query: ", "passage": "passage: ", "sts": "s: {text}"}, default="sts")
    assert prompts.resolve(None, None).template == "s: {text}"
    assert prompts.resolve(None, "query").template == "query: {text}"
    assert prompts.resolve(None, "document") is None  # a role the model has no prompt for
    assert prompts.resolve("passage", "query").template == "passage: {text}"  # prompt wins over role
    assert prompts.resolve("Represent: {text}", None).template == "Represent: {text}"
    with pytest.raises(ValueError, match="unknown role 'questions'; allowed roles: document, passage, query, sts"):
        prompts.resolve(None, "questions")
    with pytest.raises(ValueError, match="default prompt 'x' is not one of"):
        Prompts.from_strings({"query": "q: "}, default="x")
