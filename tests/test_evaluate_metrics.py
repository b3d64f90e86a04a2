"""Evaluation metrics on hand-worked cases: ties, queries without relevant documents, graded relevance,
a single class, a single cluster; task loading and its errors; the runner's resume and failure isolation."""

import json

import numpy as np
import pytest

from gpte.evaluate import TaskEncoder, discover_tasks, evaluate, load_task, select_tasks
from gpte.evaluate.tasktypes.bitext_mining import bitext_scores, nearest_neighbours
from gpte.evaluate.tasktypes.classification import undersample
from gpte.evaluate.tasktypes.clustering import clustering_scores
from gpte.evaluate.tasktypes.pair_classification import threshold_metrics
from gpte.evaluate.tasktypes.retrieval import mean_reciprocal_ranks, retrieval_scores
from gpte.evaluate.tasktypes.sts import sts_scores
from gpte.evaluate.tasktypes.summarization import summarization_scores


def test_retrieval_graded_relevance_by_hand():
    qrels = {"q": {"a": 2, "b": 1}}
    run = {"q": {"c": 0.9, "a": 0.8, "b": 0.1}}
    scores = retrieval_scores(qrels, run, (1, 3))
    ideal = 2 / np.log2(2) + 1 / np.log2(3)  # trec_eval: gain = relevance grade (a=2, b=1)
    assert scores["ndcg_at_3"] == round((2 / np.log2(3) + 1 / np.log2(4)) / ideal, 5) == 0.66967
    assert scores["ndcg_at_1"] == 0.0 and scores["precision_at_1"] == 0.0
    assert scores["map_at_3"] == round((1 / 2 + 2 / 3) / 2, 5)
    assert scores["recall_at_3"] == 1.0 and scores["mrr_at_1"] == 0.0 and scores["mrr_at_3"] == 0.5


def test_retrieval_ties_break_by_document_id_like_trec_eval():
    qrels = {"q": {"d1": 1}}
    run = {"q": {"d1": 0.5, "d2": 0.5}}  # tied: trec_eval ranks d2 (larger id) first
    scores = retrieval_scores(qrels, run, (1,))
    assert scores["ndcg_at_1"] == 0.0 and scores["mrr_at_1"] == 0.0
    assert mean_reciprocal_ranks(qrels, run, (2,))[2] == [0.5]


def test_query_with_no_relevant_documents_scores_zero():
    qrels = {"q1": {"a": 1}, "q2": {"a": 0}}
    run = {"q1": {"a": 1.0}, "q2": {"a": 1.0}}
    scores = retrieval_scores(qrels, run, (1,))
    assert scores["ndcg_at_1"] == 0.5 and scores["mrr_at_1"] == 0.5


def test_pair_thresholds_by_hand_and_ties_not_split():
    scores, labels = np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0])
    metrics = threshold_metrics(scores, labels, higher_is_similar=True)
    assert metrics["accuracy"] == 0.75 and metrics["f1"] == pytest.approx(0.8)
    assert (metrics["precision"], metrics["recall"]) == (pytest.approx(2 / 3), 1.0)
    assert metrics["ap"] == pytest.approx((1 + 2 / 3) / 2)
    tied = threshold_metrics(np.array([0.5, 0.5, 0.5]), np.array([1, 0, 1]), True)
    assert tied["accuracy"] == 0.0 and tied["f1"] == 0.0  # no threshold can split equal scores
    distances = threshold_metrics(np.array([0.1, 0.2, 0.3, 0.9]), labels, higher_is_similar=False)
    assert distances["accuracy"] == 0.75


def test_sts_correlations():
    first = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    second = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    scores = sts_scores(first, second, [1.0, 0.5, 0.0])
    assert scores["cosine_spearman"] == pytest.approx(1.0) and scores["spearman"] == pytest.approx(1.0)
    assert scores["euclidean_spearman"] == pytest.approx(1.0)


def test_bitext_nearest_neighbour_and_weighted_scores():
    sources = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    targets = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    predicted = nearest_neighbours(sources, targets)
    assert predicted.tolist() == [0, 1, 0]
    assert bitext_scores(predicted, np.arange(3))["accuracy"] == pytest.approx(2 / 3)


def test_undersampling_is_mteb_cumulative_reshuffle():
    labels = ["a", "b"] * 20
    first, second = undersample(labels, 2, 2, 42)
    order = list(range(40))
    np.random.RandomState(42).shuffle(order)
    assert first == [i for i in order if sum(labels[j] == labels[i] for j in order[: order.index(i) + 1]) <= 2][:4]
    np.random.RandomState(42).shuffle(order)
    assert second[:1] == [order[0]] and len(second) == 4


def test_single_cluster_scores_one():
    vectors = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    scores = clustering_scores(vectors, np.array(["x"] * 50), draws=2, draw_size=20)
    assert scores["v_measure"] == 1.0


def test_summarization_by_hand():
    human = np.array([[1.0, 0.0], [0.0, 1.0]])
    machine = np.array([[1.0, 0.1], [1.0, 1.0], [-1.0, -0.2]])
    scores = summarization_scores([(human, machine, [1.0, 0.5, 0.0])])
    assert scores["cosine_spearman"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="constant"):
        summarization_scores([(human, machine, [1.0, 1.0, 1.0])])


def _write_sts_task(folder, rows, task_type="STS"):
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"task_type": task_type, "score_range": [0, 5]}))
    (folder / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


class HashEncoder:
    """A model gpte did not build: vectors from the characters of the text."""

    def encode(self, texts, role=None):
        return np.array([[len(t), t.count("a") + 1, t.count("e") + 1] for t in texts], dtype=np.float32)


def test_task_discovery_selection_and_errors(tmp_path):
    rows = [
        {"sentence1": "a cat", "sentence2": "a dog", "score": 3},
        {"sentence1": "tea", "sentence2": "eat", "score": 1},
    ]
    _write_sts_task(tmp_path / "sts" / "one", rows)
    _write_sts_task(tmp_path / "sts" / "two", rows)
    tasks = discover_tasks(tmp_path)
    assert [t.name for t in tasks] == ["sts/one", "sts/two"]
    assert select_tasks(tasks, ["two"])[0].name == "sts/two"
    with pytest.raises(ValueError, match="unknown task 'tow'; did you mean two"):
        select_tasks(tasks, ["tow"])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "meta.json").write_text('{"task_type": "Sorting"}')
    with pytest.raises(ValueError, match="unknown task_type 'Sorting'; choose one of: STS, PairClassification"):
        load_task(bad)
    with pytest.raises(FileNotFoundError, match="has no meta.json"):
        load_task(tmp_path / "sts")


def test_runner_resumes_isolates_failures_and_names_bad_lines(tmp_path):
    rows = [
        {"sentence1": "a cat", "sentence2": "a dog", "score": 3},
        {"sentence1": "tea", "sentence2": "eat", "score": 1},
        {"sentence1": "banana", "sentence2": "apple", "score": 2},
    ]
    good = load_task(_write_sts_task(tmp_path / "data" / "good", rows), "good")
    broken = _write_sts_task(tmp_path / "data" / "broken", rows)
    (broken / "test.jsonl").write_text(json.dumps(rows[0]) + "\n{oops\n")
    empty = _write_sts_task(tmp_path / "data" / "empty", [])
    run = evaluate(
        HashEncoder(),
        [load_task(broken, "broken"), good, load_task(empty, "empty")],
        tmp_path / "out",
        model_name="hash",
    )
    assert set(run.results) == {"good"}
    assert "test.jsonl:2: not valid JSON" in run.failures["broken"] and "the task is empty" in run.failures["empty"]
    saved = tmp_path / "out" / "hash" / "good.json"
    result = json.loads(saved.read_text())
    assert result["main_score"] == "cosine_spearman" and result["provenance"]["dataset_sha256"]
    saved.write_text(saved.read_text().replace('"task_type"', '"kept": true, "task_type"'))
    assert evaluate(HashEncoder(), [good], tmp_path / "out", model_name="hash").results["good"]["kept"] is True
    assert (
        "kept"
        not in evaluate(HashEncoder(), [good], tmp_path / "out", model_name="hash", overwrite=True).results["good"]
    )


def test_wrong_shapes_and_nan_name_the_task(tmp_path):
    rows = [{"sentence1": "a", "sentence2": "b", "score": 1}, {"sentence1": "c", "sentence2": "d", "score": 2}]
    task = load_task(_write_sts_task(tmp_path / "t", rows), "t")

    class Short:
        def encode(self, texts, role=None):
            return np.zeros((1, 3))

    class Nan:
        def encode(self, texts, role=None):
            return np.full((len(texts), 3), np.nan)

    with pytest.raises(ValueError, match="task t: the model returned shape \\(1, 3\\) for 2 texts"):
        TaskEncoder(Short()).encode(["a", "c"], task)
    with pytest.raises(ValueError, match="task t: the model returned NaN or infinity for text index 0"):
        TaskEncoder(Nan()).encode(["a"], task)


def test_beir_qrels_naming_unknown_documents_are_warned_and_counted(tmp_path):
    from gpte.data.mteb_folders import read_beir

    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(
        '{"_id": "d1", "title": "T", "text": "body"}\n{"_id": "d2", "text": "other"}\n'
    )
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "question"}\n')
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\tmissing\t1\nq9\td2\t1\n")
    with pytest.warns(UserWarning, match="2 qrels name unknown queries or documents and were skipped"):
        data = read_beir(tmp_path, "test")
    assert data.qrels == {"q1": {"d1": 2}} and data.corpus["d1"] == "T body"
    task = load_task(tmp_path, "beir")  # no meta.json: read as a BEIR retrieval folder
    assert task.type == "Retrieval" and task.main_score == "ndcg_at_10"
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    with pytest.raises(ValueError, match=r"test.tsv:2: expected query-id, corpus-id, score"):
        read_beir(tmp_path, "test")
