"""Tokenization: prompt/text segments, truncation, EOS suffix, empty texts."""

import pytest
from conftest import bpe_tokenizer, minilm_folder
from transformers import AutoTokenizer

from gpte.models.tokenization import PROMPT, SPECIAL, TextTokenizer
from gpte.prompts import PromptTemplate


@pytest.fixture(scope="module")
def bert():
    return AutoTokenizer.from_pretrained(minilm_folder())


def test_prompt_tokens_are_exactly_the_sentence_transformers_prompt_length(bert):
    tokenizer = TextTokenizer(bert, 128)
    prompt = PromptTemplate.parse("query: ")
    out = tokenizer.tokenize(["how do magnets work?"], prompt, with_segments=True)
    # sentence-transformers: prompt_length = tokens of the prompt alone minus its trailing [SEP]
    prompt_length = len(bert("query: ")["input_ids"]) - 1
    labels = out.segments[0]
    excluded = [i for i, label in enumerate(labels) if label in (PROMPT,) or (label == SPECIAL and i == 0)]
    assert excluded == list(range(prompt_length))
    assert labels[-1] == SPECIAL and all(label == 1 for label in labels[prompt_length:-1])


@pytest.mark.parametrize("template", ["bos", "eos", "none"])
def test_echo_spans_cover_exactly_the_text_tokens(template):
    tokenizer = TextTokenizer(bpe_tokenizer(template), 128)
    prompt = PromptTemplate("Rewrite the sentence: {text}, rewritten sentence: {text}")
    text = "the cat sat on the mat"
    out = tokenizer.tokenize([text], prompt, with_segments=True)
    ids, labels = out.input_ids[0], out.segments[0]
    text_ids = bpe_tokenizer("none")(text)["input_ids"]
    for copy in (1, 2):
        assert [i for i, label in zip(ids, labels) if label == copy] == text_ids


def test_truncation_is_flagged_and_suffix_appended(bert):
    tokenizer = TextTokenizer(bert, 8)
    out = tokenizer.tokenize(["one two", "one two three four five six seven eight nine"], suffix_ids=(999,))
    assert out.truncated == [False, True]
    assert len(out.input_ids[1]) == 8 and out.input_ids[1][-1] == 999 and out.input_ids[1][-2] == bert.sep_token_id
    assert out.n_truncated == 1


def test_empty_text_gets_one_token():
    tokenizer = TextTokenizer(bpe_tokenizer("none"), 16)
    assert tokenizer.tokenize([""]).input_ids == [[2]]  # BOS


def test_padding_sides_and_positions(bert):
    out = TextTokenizer(bert, 16, padding_side="left").tokenize(["a", "a b c"])
    batch = TextTokenizer(bert, 16, padding_side="left").pad(out, [0, 1])
    assert batch.attention_mask.tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert batch.position_ids.tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]
    with pytest.raises(ValueError, match="unknown padding_side 'middle'; choose one of right, left"):
        TextTokenizer(bert, 16, padding_side="middle")
