"""Hard-negative mining: the selection rules exactly, then mining through the corpus index with a tiny
random BERT (scores, format, positive-aware margins, missing positives, duplicate ids, resume, CLI)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from gpte.cli import main
from gpte.data.training import read_training_data
from gpte.datagen import mining
from gpte.datagen.mining import mine_hard_negatives
from gpte.datagen.negatives import NegativeRules, false_negative_rate, select_negatives

TOPICS = [
    "wings stall at high angles of attack",
    "boundary layers thicken downstream",
    "shock waves form at supersonic speed",
    "heat transfer in hypersonic flow",
    "panel flutter of thin plates",
    "buckling of cylindrical shells",
    "lift of slender delta wings",
    "drag of blunt bodies",
    "jet noise from turbulent mixing",
    "creep of metals at high temperature",
]

IDS = ["a", "b", "c", "d", "e", "f"]
SCORES = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]


def test_top_negatives_skip_positives_and_respect_the_rank_window():
    rules = NegativeRules(num_negatives=2, range_min=1, range_max=4)
    picked = select_negatives(IDS, SCORES, {"b"}, 0.85, rules, random.Random(0))
    assert picked == [("c", 0.7), ("d", 0.6)]  # without b: a c d e f; ranks 1..3 are c d e; top 2


def test_relative_and_absolute_margins_cap_negatives_below_the_positive():
    relative = NegativeRules(num_negatives=3, relative_margin=0.2)  # <= 0.8 * 0.9 = 0.72
    assert [doc for doc, _ in select_negatives(IDS, SCORES, set(), 0.9, relative, random.Random(0))] == ["c", "d", "e"]
    absolute = NegativeRules(num_negatives=3, absolute_margin=0.25, min_score=0.45)  # <= 0.65 and >= 0.45
    assert [doc for doc, _ in select_negatives(IDS, SCORES, set(), 0.9, absolute, random.Random(0))] == ["d", "e"]
    capped = NegativeRules(num_negatives=3, max_score=0.75, relative_margin=0.0)  # min(0.75, 0.9)
    assert [doc for doc, _ in select_negatives(IDS, SCORES, set(), 0.9, capped, random.Random(0))] == ["c", "d", "e"]


def test_the_relative_cap_stays_below_a_negative_positive_score():
    rules = NegativeRules(num_negatives=3, relative_margin=0.1)
    assert rules.ceiling(-0.5) == pytest.approx(-0.55)
    assert select_negatives(["a", "b", "c"], [-0.52, -0.56, -0.6], set(), -0.5, rules, random.Random(0)) == [
        ("b", -0.56),
        ("c", -0.6),
    ]


def test_the_window_counts_ranks_among_candidates_that_pass_the_limits():
    rules = NegativeRules(num_negatives=2, range_min=1, range_max=3, max_score=0.75)  # passing: c d e f -> window d e
    assert select_negatives(IDS, SCORES, set(), None, rules, random.Random(0)) == [("d", 0.6), ("e", 0.5)]


def test_random_sampling_draws_from_the_allowed_window_in_rank_order():
    rules = NegativeRules(num_negatives=2, range_min=2, range_max=6, sampling="random")
    picks = {tuple(select_negatives(IDS, SCORES, set(), None, rules, random.Random(seed))) for seed in range(30)}
    assert all(
        len(p) == 2 and {d for d, _ in p} <= {"c", "d", "e", "f"} and list(p) == sorted(p, key=lambda x: -x[1])
        for p in picks
    )
    assert len(picks) > 1


def test_rules_reject_bad_values_and_margins_need_the_positive_score():
    for bad, word in [
        ({"num_negatives": 0}, "num_negatives"),
        ({"range_min": 5, "range_max": 5}, "range_min"),
        ({"sampling": "middle"}, "top, random"),
        ({"relative_margin": 1.0}, "below 1"),
        ({"absolute_margin": -1}, ">= 0"),
    ]:
        with pytest.raises(ValueError, match=word):
            NegativeRules(**bad)
    with pytest.raises(ValueError, match="positive's score"):
        select_negatives(IDS, SCORES, set(), None, NegativeRules(relative_margin=0.05), random.Random(0))


def test_false_negative_rate_counts_negatives_judged_relevant():
    rows = [{"query_id": "1", "negative_ids": ["x", "y"]}, {"query_id": "2", "negative_ids": ["z", "w"]}]
    assert false_negative_rate(rows, {"1": {"x": 2, "y": 0}, "2": {"w": 1}}) == 0.5


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text(
        "".join(json.dumps({"_id": f"d{i}", "title": f"doc {i}", "text": text}) + "\n" for i, text in enumerate(TOPICS))
    )
    pairs = tmp_path / "pairs.jsonl"
    rows = [
        {"query_id": f"q{i}", "query": f"what about {TOPICS[i].split()[0]}", "positive_id": f"d{i}"} for i in range(6)
    ]
    rows.append({"query": "a query whose positive is gone", "positive_id": "nowhere"})
    rows.append({"query": "a query with a text positive", "positive": f"doc 7 {TOPICS[7]}"})
    pairs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path, pairs


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_mining_writes_trainable_rows_scored_like_the_embedder(corpus, embedder, tmp_path):
    corpus_path, pairs = corpus
    out = tmp_path / "mined.jsonl"
    report = mine_hard_negatives(
        pairs,
        corpus_path,
        out,
        embedder=embedder,
        rules=NegativeRules(num_negatives=2, range_max=5),
        show_progress=False,
    )
    rows = _rows(out)
    assert (report.queries, report.written, report.missing_positive, report.negatives) == (7, 7, 1, 14)
    assert "nowhere" in report.missing_examples[0]
    assert rows[-1]["positive_id"] == "d7"  # a text positive found by its exact text
    documents = {f"d{i}": f"doc {i} {text}" for i, text in enumerate(TOPICS)}
    for row in rows:
        assert row["positive_id"] not in row["negative_ids"] and len(set(row["negative_ids"])) == 2
        assert [documents[d] for d in row["negative_ids"]] == row["negatives"] and row["positive"] == documents[
            row["positive_id"]
        ]
        query = embedder.encode([row["query"]], role="query")
        docs = embedder.encode([row["positive"], *row["negatives"]], role="document")
        expected = embedder.similarity(query, docs)[0]
        np.testing.assert_allclose([row["positive_score"], *row["negative_scores"]], expected, atol=1e-5)
    data = read_training_data(out)
    assert data.columns == ["query", "positive", "negatives[0]", "negatives[1]"] and len(data) == 7
    assert not (tmp_path / ".mined.jsonl.progress").exists()


def test_positive_aware_margin_keeps_negatives_below_the_positive(corpus, embedder, tmp_path):
    corpus_path, pairs = corpus
    out = tmp_path / "mined.jsonl"
    report = mine_hard_negatives(
        pairs,
        corpus_path,
        out,
        embedder=embedder,
        mode="hybrid",
        rules=NegativeRules(num_negatives=1, range_max=9, relative_margin=0.05),
        show_progress=False,
    )
    rows = _rows(out)
    assert report.written + report.too_few_negatives == 7
    assert all(
        score <= row["positive_score"] - 0.05 * abs(row["positive_score"]) + 1e-9
        for row in rows
        for score in row["negative_scores"]
    )


def test_duplicate_corpus_ids_are_named(tmp_path, embedder):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "x", "text": "one"}\n{"_id": "x", "text": "two"}\n{"_id": "y", "text": "three"}\n')
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"query": "q", "positive_id": "y"}\n')
    with pytest.raises(ValueError, match="duplicate document id.*'x'"):
        mine_hard_negatives(pairs, corpus, tmp_path / "out.jsonl", embedder=embedder, show_progress=False)


def test_no_usable_pair_and_a_pair_without_positive_are_clear_errors(corpus, embedder, tmp_path):
    corpus_path, _ = corpus
    pairs = tmp_path / "gone.jsonl"
    pairs.write_text('{"query": "q", "positive_id": "nowhere"}\n')
    with pytest.raises(ValueError, match="none of the 1 pairs"):
        mine_hard_negatives(pairs, corpus_path, tmp_path / "o.jsonl", embedder=embedder, show_progress=False)
    pairs.write_text('{"query": "q"}\n')
    with pytest.raises(ValueError, match="positive_id, positive_ids, positive"):
        mine_hard_negatives(pairs, corpus_path, tmp_path / "o.jsonl", embedder=embedder, show_progress=False)


def test_an_interrupted_run_resumes_and_equals_an_uninterrupted_one(corpus, embedder, tmp_path, monkeypatch):
    corpus_path, pairs = corpus
    rules = NegativeRules(num_negatives=2, range_max=6, sampling="random")
    whole = tmp_path / "whole.jsonl"
    mine_hard_negatives(pairs, corpus_path, whole, embedder=embedder, rules=rules, chunk_size=2, show_progress=False)
    calls = []
    original = mining._Miner.mine

    def failing(self, queries, rng):
        calls.append(len(queries))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, queries, rng)

    monkeypatch.setattr(mining._Miner, "mine", failing)
    out = tmp_path / "resumed.jsonl"
    with pytest.raises(KeyboardInterrupt):
        mine_hard_negatives(pairs, corpus_path, out, embedder=embedder, rules=rules, chunk_size=2, show_progress=False)
    assert not out.exists() and len(list((tmp_path / ".resumed.jsonl.progress").glob("0*.jsonl"))) == 2
    with pytest.raises(ValueError, match="other rules"):
        mine_hard_negatives(
            pairs,
            corpus_path,
            out,
            embedder=embedder,
            rules=NegativeRules(num_negatives=1),
            chunk_size=2,
            show_progress=False,
        )
    monkeypatch.setattr(mining._Miner, "mine", original)
    report = mine_hard_negatives(
        pairs, corpus_path, out, embedder=embedder, rules=rules, chunk_size=2, show_progress=False
    )
    assert report.resumed_chunks == 2
    assert out.read_text() == whole.read_text()


def test_cli_mines_a_beir_folder(tmp_path, tiny_models):
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": str(i), "text": t}) + "\n" for i, t in enumerate(TOPICS))
    )
    (folder / "queries.jsonl").write_text(
        '{"_id": "q1", "text": "wing stall"}\n{"_id": "q2", "text": "shell buckling"}\n'
    )
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\t0\t1\nq1\t6\t1\nq2\t5\t2\nq2\t99\t1\n")
    out = tmp_path / "mined.jsonl"
    assert (
        main(
            [
                "mine",
                str(folder),
                "-o",
                str(out),
                "--model",
                str(tiny_models["bert"]),
                "--num-negatives",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    rows = _rows(out)
    assert [(r["query_id"], r["positive_id"]) for r in rows] == [("q1", "0"), ("q1", "6"), ("q2", "5")]
    assert all({"0", "6"}.isdisjoint(r["negative_ids"]) for r in rows[:2])
    assert (
        main(["mine", str(folder), "-o", str(out), "--model", str(tiny_models["bert"]), "--no-progress"]) == 1
    )  # exists


class _LengthScorer:
    """A stand-in cross-encoder: shorter texts are more relevant."""

    def score(self, query, texts):
        return np.array([-float(len(text)) for text in texts])


def test_a_cross_encoder_rescoring_reorders_candidates_and_sets_the_scale(corpus, embedder, tmp_path):
    corpus_path, pairs = corpus
    out = tmp_path / "mined.jsonl"
    mine_hard_negatives(
        pairs,
        corpus_path,
        out,
        embedder=embedder,
        cross_encoder=_LengthScorer(),
        rules=NegativeRules(num_negatives=2, range_max=9),
        show_progress=False,
    )
    for row in _rows(out):
        assert row["positive_score"] == -len(row["positive"])
        assert (
            row["negative_scores"]
            == [-len(text) for text in row["negatives"]]
            == sorted(row["negative_scores"], reverse=True)
        )
