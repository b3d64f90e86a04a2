"""LongEmbed's passkey and needle tasks and the long Cranfield recipe (gpte.data.long_context), with token
counters that need no model: whitespace words, and characters (a different unit for the length window)."""

from __future__ import annotations

import json
import random
import re

import pytest
from conftest import SHARED_DATA

from gpte.data.long_context import (
    FIRST_NAMES,
    LAST_NAMES,
    LENGTHS,
    NEEDLE_TEMPLATES,
    WINDOW,
    long_cranfield,
    longembed_tasks,
    needle_task,
    passkey_task,
    split_name,
    write_retrieval_task,
)
from gpte.data.mteb_folders import RetrievalData, read_beir


def words(texts: list[str]) -> list[int]:
    return [len(text.split()) for text in texts]


def characters(texts: list[str]) -> list[int]:
    return [len(text) for text in texts]


def make_haystack(texts: int = 120, sentences: int = 8) -> list[str]:
    """Texts of short sentences over a neutral vocabulary (about 10 words a sentence)."""
    vocabulary = ["wind", "flow", "wing", "plate", "shock", "heat", "drag", "lift", "wave", "nozzle", "cone", "jet"]
    rng = random.Random(7)
    return [
        " ".join(" ".join(rng.choices(vocabulary, k=rng.randint(6, 13))).capitalize() + "." for _ in range(sentences))
        for _ in range(texts)
    ]


HAYSTACK = make_haystack()


def query_key(question: str) -> str:
    """The needle key value named by a question (the one key of NEEDLE_TEMPLATES in it)."""
    (key,) = [key for template in NEEDLE_TEMPLATES for key in template.keys if key in question]
    return key


def relevant(data: RetrievalData, query: str) -> str:
    (doc,) = data.qrels[query]
    return doc


@pytest.mark.parametrize("kind", ["passkey", "needle"])
def test_same_seed_same_task_other_seed_other_task(kind):
    build = passkey_task if kind == "passkey" else lambda *a, **k: needle_task(*a, haystack=HAYSTACK, **k)
    first = build(512, words, n_documents=20, n_queries=10, seed=3)
    assert build(512, words, n_documents=20, n_queries=10, seed=3) == first
    assert build(512, words, n_documents=20, n_queries=10, seed=4) != first


@pytest.mark.parametrize("kind", ["passkey", "needle"])
@pytest.mark.parametrize("count", [words, characters], ids=["words", "characters"])
def test_every_document_is_in_the_length_window(kind, count):
    lengths = LENGTHS if count is words else (512, 1024, 4096)
    haystack = HAYSTACK if kind == "needle" else None
    tasks = longembed_tasks(kind, lengths, count_tokens=count, haystack=haystack, n_documents=30, n_queries=10)
    assert list(tasks) == list(lengths)
    for length, data in tasks.items():
        counts = count(list(data.corpus.values()))
        assert all(length - WINDOW <= n <= length for n in counts), (length, min(counts), max(counts))


def test_passkey_documents_queries_and_qrels():
    data = passkey_task(1024, words, n_documents=40, n_queries=15, seed=1)
    assert list(data.corpus) == [f"doc{i:02d}" for i in range(40)]
    assert list(data.queries) == [f"q{i:02d}" for i in range(15)]
    targets = [relevant(data, query) for query in data.queries]
    assert len(set(targets)) == 15 and all(data.qrels[q] == {d: 1} for q, d in zip(data.queries, targets))
    passkeys = [re.search(r"pass key is (\d{5})\.", text).group(1) for text in data.corpus.values()]
    assert len(set(passkeys)) == 40
    for query, question in data.queries.items():
        name = question.removeprefix("what is the pass key for ").removesuffix("?")
        assert name.split()[0] in FIRST_NAMES and name.split()[1] in LAST_NAMES
        assert [doc for doc, text in data.corpus.items() if name in text] == [relevant(data, query)]
    assert all(text.startswith("There is an important info hidden") for text in data.corpus.values())


def test_needle_keys_identify_one_document():
    data = needle_task(1024, words, HAYSTACK, n_documents=60, n_queries=30, seed=2)
    keys = [query_key(question) for question in data.queries.values()]
    assert len(set(keys)) == 30
    for query, key in zip(data.queries, keys):
        assert [doc for doc, text in data.corpus.items() if key in text] == [relevant(data, query)]
    templates = {template.fact.split("{")[0] for template in NEEDLE_TEMPLATES}
    assert len({t for t in templates if any(t in text for text in data.corpus.values())}) >= 5


def test_needle_keys_are_not_found_in_a_real_haystack():
    path = SHARED_DATA / "retrieval" / "cranfield" / "corpus.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    haystack = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
    data = needle_task(512, words, haystack, n_documents=100, n_queries=50)
    assert "Unst" not in "".join(data.queries.values())  # "unsteady" is in Cranfield
    for query, question in data.queries.items():
        key = query_key(question)
        assert [doc for doc, text in data.corpus.items() if key in text] == [relevant(data, query)]


def test_needle_slot_values_do_not_contain_each_other():
    keys = [key.lower() for template in NEEDLE_TEMPLATES for key in template.keys]
    others = [template.fact.lower() for template in NEEDLE_TEMPLATES]
    others += [
        value.lower() for template in NEEDLE_TEMPLATES for values in template.answers.values() for value in values
    ]
    assert len(set(keys)) == len(keys)
    for key in keys:
        assert not any(key in other for other in others), key
        assert [other for other in keys if key in other] == [key]


def needle_depths(data: RetrievalData) -> list[float]:
    """Where each queried document's needle starts, as a fraction of the document's characters."""
    found = []
    for query, question in data.queries.items():
        text = data.corpus[relevant(data, query)]
        found.append(text.index(query_key(question)) / len(text))
    return found


def test_the_inserted_sentence_is_at_varied_depths():
    passkey = passkey_task(2048, words, n_documents=50, n_queries=5)
    passkey_depths = [text.index("'s pass key is") / len(text) for text in passkey.corpus.values()]
    needle = needle_depths(needle_task(2048, words, HAYSTACK, n_documents=50, n_queries=50))
    for found in (passkey_depths, needle):
        assert min(found) < 0.2 and max(found) > 0.8 and len({round(depth, 2) for depth in found}) > 25


def test_inserted_sentences_sit_between_whole_sentences():
    data = needle_task(512, words, HAYSTACK, n_documents=20, n_queries=20, seed=5)
    prefixes = {template.fact.split("{")[0] for template in NEEDLE_TEMPLATES}
    for query, question in data.queries.items():
        text = data.corpus[relevant(data, query)]
        end = text.rfind(". ", 0, text.index(query_key(question)))  # the sentence before the needle ends
        start = end + 2 if end >= 0 else 0
        assert any(text[start:].startswith(prefix) for prefix in prefixes)
    passkey = passkey_task(512, words, n_documents=20, n_queries=5)
    for text in passkey.corpus.values():
        before = text[: text.index(re.search(r"\w+ \w+'s pass key", text).group())]
        assert before.endswith(("there. ", "There and back again. "))


def test_long_cranfield_maps_qrels_and_texts():
    data = RetrievalData(
        corpus={"a": "alpha text", "b": "beta text", "c": "gamma text", "d": "delta text", "e": "epsilon text"},
        queries={"q1": "one", "q2": "two", "q3": "three"},
        qrels={"q1": {"a": 2, "e": 3, "b": 1}, "q2": {"d": 1, "c": -1}, "q3": {"b": 0}},
    )
    titles = {"a": "Alpha", "b": "Beta", "c": "Gamma", "d": "Delta", "e": "Epsilon"}
    # random.Random(0).shuffle(["a", "b", "c", "d", "e"]) gives c, b, a, e, d -> groups (c, b), (a, e), (d)
    long, long_titles = long_cranfield(data, titles, parts=2, seed=0)
    assert long.corpus == {
        "long0": "gamma text\n\nbeta text",
        "long1": "alpha text\n\nepsilon text",
        "long2": "delta text",
    }
    assert long_titles == {"long0": "Gamma / Beta", "long1": "Alpha / Epsilon", "long2": "Delta"}
    assert long.qrels == {"q1": {"long1": 3, "long0": 1}, "q2": {"long2": 1}}
    assert long.queries == data.queries
    assert long_cranfield(data, titles, parts=2, seed=0) == (long, long_titles)
    # random.Random(1) gives c, d, e, a, b -> (c, d, e), (a, b)
    other, _ = long_cranfield(data, titles, parts=3, seed=1)
    assert other.corpus["long0"] == "gamma text\n\ndelta text\n\nepsilon text"
    assert other.qrels == {"q1": {"long0": 3, "long1": 2}, "q2": {"long0": 1}}


def test_write_and_read_back(tmp_path):
    data = passkey_task(256, words, n_documents=10, n_queries=4)
    folder = tmp_path / "passkey" / "256"
    write_retrieval_task(folder, data, split_name(256), {"main_score": "ndcg_at_1", "language": "en"})
    assert read_beir(folder, "test_256") == data
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    assert meta == {"task_type": "Retrieval", "split": "test_256", "main_score": "ndcg_at_1", "language": "en"}
    first = json.loads((folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first == {"_id": "doc0", "title": "", "text": data.corpus["doc0"]}
    assert (folder / "qrels" / "test_256.tsv").read_text(encoding="utf-8").startswith("query-id\tcorpus-id\tscore\n")
    assert sorted(path.name for path in folder.parent.iterdir()) == ["256"]  # no temporary folder left
    with pytest.raises(FileExistsError, match="256"):
        write_retrieval_task(folder, data, "test_256", {})


def test_write_and_read_back_long_cranfield(tmp_path):
    data = RetrievalData({"1": "x y", "2": "z", "3": "w"}, {"q": "query"}, {"q": {"1": 2, "3": 1}})
    long, _ = long_cranfield(data, {"1": "X", "2": "Z", "3": "W"}, parts=2)
    write_retrieval_task(tmp_path / "long", long, "test", {})
    assert read_beir(tmp_path / "long", "test") == long


@pytest.mark.parametrize(
    ("data", "meta", "message"),
    [
        (RetrievalData({"d": " padded"}, {"q": "x"}, {"q": {"d": 1}}), {}, "whitespace"),
        (RetrievalData({"d": "text"}, {"q": "x"}, {"q": {"e": 1}}), {}, "unknown"),
        (RetrievalData({"d": "text"}, {"q": "x"}, {}), {}, "no qrels"),
        (RetrievalData({"d": "text"}, {"q": "x"}, {"q": {"d": 1}}), {"split": "dev"}, "must not set split"),
    ],
)
def test_write_refuses_what_would_not_read_back(tmp_path, data, meta, message):
    with pytest.raises(ValueError, match=message):
        write_retrieval_task(tmp_path / "task", data, "test", meta)
    assert not (tmp_path / "task").exists()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: longembed_tasks("haystack", count_tokens=words), "choose one of: passkey, needle"),
        (lambda: longembed_tasks("needle", count_tokens=words), "haystack is required"),
        (lambda: longembed_tasks("passkey", count_tokens=words, haystack=HAYSTACK), "only used"),
        (lambda: passkey_task(16, words), "length must be an integer > 16"),
        (lambda: passkey_task(40, words), "length=40 is too small"),
        (lambda: passkey_task(256, words, n_documents=0), "n_documents must be"),
        (
            lambda: passkey_task(256, words, n_documents=5, n_queries=6),
            r"n_queries must be an integer in \[1, n_documents=5\]",
        ),
        (lambda: passkey_task(256, words, n_documents=257), "exceeds the 256 distinct names"),
        (lambda: passkey_task(256, lambda texts: [1]), "count_tokens returned 1 counts"),
        (lambda: needle_task(256, words, []), "haystack is empty"),
        (lambda: needle_task(256, words, ["  "]), "haystack is empty"),
        (lambda: needle_task(256, words, "one long text"), "not one string"),
        (lambda: needle_task(256, words, HAYSTACK[:2]), r"haystack too short: its 2 texts hold \d+ tokens"),
        (lambda: needle_task(256, words, HAYSTACK, n_documents=129), "exceeds the 128 distinct needles"),
        (lambda: long_cranfield(RetrievalData({"a": "x"}, {}, {}), {"a": "A"}, parts=0), "parts must be"),
        (lambda: long_cranfield(RetrievalData({"a": "x"}, {}, {}), {}), "titles lacks 1 document"),
        (lambda: long_cranfield(RetrievalData({"a": "x"}, {"q": "y"}, {"q": {"b": 1}}), {"a": "A"}), "'b'"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
