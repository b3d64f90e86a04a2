"""Training data and batch samplers: layouts, every bad row named by file and line, no duplicate text in
a batch, every row once per epoch, deterministic per seed and epoch, one source per batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpte.data.training import TrainingData, TrainingExample, read_training_data
from gpte.train.samplers import MultiDatasetBatchSampler, NoDuplicatesBatchSampler


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_layouts_scores_negatives_and_instructions(tmp_path):
    pairs = read_training_data(
        _jsonl(tmp_path / "sts.jsonl", [{"sentence1": "a", "sentence2": "b", "score": 4.0}]), score_range=[0, 5]
    )
    assert pairs.columns == ["sentence1", "sentence2"] and pairs.rows[0] == TrainingExample(("a", "b"), 0.8)
    rows = [{"query": "q", "positive": "p", "negatives": ["n1", "n2"], "scores": [3, 1, 0], "task": "find it"}]
    tuples = read_training_data(_jsonl(tmp_path / "n.jsonl", rows), instruction="task")
    assert tuples.columns == ["query", "positive", "negatives[0]", "negatives[1]"]
    assert tuples.rows[0] == TrainingExample(("q", "p", "n1", "n2"), (3.0, 1.0, 0.0), "find it")
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("anchor,positive,negative\nx,y,z\n", encoding="utf-8")
    assert read_training_data(csv_path).rows == [TrainingExample(("x", "y", "z"))]


def test_hugging_face_dataset_folder(tmp_path):
    from datasets import Dataset

    Dataset.from_dict({"anchor": ["a", "b"], "positive": ["c", "d"]}).save_to_disk(tmp_path / "hf")
    data = read_training_data(tmp_path / "hf")
    assert [row.texts for row in data.rows] == [("a", "c"), ("b", "d")]


@pytest.mark.parametrize(
    "rows, options, message",
    [
        (
            [{"anchor": "a", "positive": "p"}, {"anchor": "b"}],
            {},
            r"bad.jsonl:2: missing field 'positive' \(fields: anchor\)",
        ),
        ([{"anchor": "a", "positive": 3}], {}, r"bad.jsonl:1: positive is int, not a text"),
        ([{"a": "x", "b": "y"}], {}, r"bad.jsonl:1: cannot tell the text columns from the fields a, b"),
        ([{"sentence1": "a", "sentence2": "b", "score": "high"}], {}, r"bad.jsonl:1: score is not a number: 'high'"),
        (
            [
                {"query": "q", "positive": "p", "negatives": ["n"]},
                {"query": "q", "positive": "p", "negatives": ["n", "m"]},
            ],
            {},
            r"bad.jsonl:2: field 'negatives' must be a list of 1 texts",
        ),
        ([], {}, r"bad.jsonl: the training data is empty"),
        ([{"text": "a"}], {"columns": ["text", "other"]}, r"bad.jsonl:1: no field 'other' \(fields: text\)"),
    ],
)
def test_bad_rows_are_named_by_file_and_line(tmp_path, rows, options, message):
    with pytest.raises(ValueError, match=message):
        read_training_data(_jsonl(tmp_path / "bad.jsonl", rows), **options)


def _data(n: int, duplicate_every: int = 0) -> TrainingData:
    rows = [TrainingExample((f"q{i}", f"p{i % duplicate_every}" if duplicate_every else f"p{i}")) for i in range(n)]
    return TrainingData("mem", ["anchor", "positive"], rows)


def test_no_duplicates_sampler_at_batch_8192():
    data = _data(50_000, duplicate_every=20_000)  # every positive text occurs 2-3 times
    sampler = NoDuplicatesBatchSampler(data, 8192, seed=3)
    batches = list(sampler)
    for batch in batches:
        texts = [t for i in batch for t in data.rows[i].texts]
        assert len(texts) == len(set(texts))
    assert sorted(i for b in batches for i in b) == list(range(50_000))
    assert all(len(b) == 8192 for b in batches[:-3])


def test_samplers_are_deterministic_per_epoch_and_keep_sources_apart():
    first, second = _data(40), _data(25)
    a = NoDuplicatesBatchSampler(first, 8, seed=1)
    b = NoDuplicatesBatchSampler(second, 8, seed=1, offset=40)
    mixed = MultiDatasetBatchSampler([a, b], "proportional", seed=1)
    epoch0 = list(mixed)
    assert epoch0 == list(mixed)
    mixed.set_epoch(1)
    assert list(mixed) != epoch0
    assert all(all(i < 40 for i in batch) or all(i >= 40 for i in batch) for batch in epoch0)
    assert len(epoch0) == len(mixed) == 5 + 4
    round_robin = list(MultiDatasetBatchSampler([a, b], "round_robin"))
    assert len(round_robin) == 8 and [batch[0] >= 40 for batch in round_robin] == [False, True] * 4


def test_batch_larger_than_data_and_unknown_strategy():
    with pytest.raises(ValueError, match="batch size 64 is larger than the data \\(40 rows\\)"):
        NoDuplicatesBatchSampler(_data(40), 64)
    with pytest.raises(
        ValueError, match="unknown sampling strategy 'random'; choose one of: round_robin, proportional"
    ):
        MultiDatasetBatchSampler([], "random")


def test_collator_applies_query_and_document_prompts_and_instructions(tiny_models):
    from gpte import Embedder
    from gpte.train.collator import TrainingCollator

    model = Embedder.load(tiny_models["bert"], device="cpu", prompts={"query": "query: ", "document": "passage: "})
    batch = TrainingCollator(model)([TrainingExample(("what is rain", "rain is water"), None, None)])
    decode = lambda features: model.backbone.tokenizer.decode(features.input_ids[0], skip_special_tokens=True)  # noqa: E731
    assert decode(batch.features[0]) == "query : what is rain"
    assert decode(batch.features[1]) == "passage : rain is water"
    rows = [
        TrainingExample(("what is rain", "rain is water"), None, "find the answer"),
        TrainingExample(("hi", "hello")),
    ]
    instructed = TrainingCollator(model)(rows)
    assert decode(instructed.features[0]) == "instruct : find the answer query : what is rain"
    assert instructed.texts == [["what is rain", "hi"], ["rain is water", "hello"]]
    templated = Embedder.load(tiny_models["bert"], device="cpu", prompts={"query": "task: {task} | q: {text}"})
    assert (
        model.backbone.tokenizer.decode(
            TrainingCollator(templated)(rows[:1]).features[0].input_ids[0], skip_special_tokens=True
        )
        == "task : find the answer | q : what is rain"
    )
