"""Resuming ``gpte evaluate`` into a result folder: a stored result is kept only when the model's fingerprint and the
task data's hash (and a reranker's first stage and top_k) are the ones it was computed with; otherwise the task is
recomputed and the run says why. One process at a time writes a model's result folder."""

import json

import numpy as np
import pytest
import torch
from conftest import lock_held_elsewhere
from toy_tasks import DOCS, QUERIES, ROWS, toy_retrieval_task, toy_sts_task

from gpte import Embedder
from gpte.cli import main
from gpte.evaluate import evaluate, load_task
from gpte.evaluate.results import model_folder, result_path
from gpte.locking import OutputLockedError


class CharEncoder:
    """A model gpte did not build, without weights (so without a fingerprint): vectors from the characters."""

    def __init__(self, name="chars"):
        self.name = name
        self.seen = []

    def encode(self, texts, role=None):
        self.seen += texts
        return np.array([[len(t), t.count("a") + 1, t.count("e") + 1, t.count("t") + 1] for t in texts], np.float32)


def _score(run, task="task"):
    return run.results[task]["main_score_value"]


def test_new_weights_in_the_same_folder_are_recomputed_not_kept(tiny_models, tmp_path):
    folder = Embedder.load(tiny_models["bert"], pooling="mean", device="cpu").save(tmp_path / "model")
    task = load_task(toy_sts_task(tmp_path / "data"), "task")
    output = tmp_path / "results"
    old_model = Embedder.load(folder, device="cpu")
    first = evaluate(old_model, [task], output)
    assert first.statuses == {"task": "computed"}
    again = evaluate(Embedder.load(folder, device="cpu"), [task], output)
    assert again.statuses == {"task": "kept"} and _score(again) == _score(first)

    changed = Embedder.load(folder, device="cpu")
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in changed.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.5)
    changed.save(folder, overwrite=True)
    new_model = Embedder.load(folder, device="cpu")
    assert new_model.name == old_model.name  # filed under the same result path

    resumed = evaluate(new_model, [task], output)
    fresh = evaluate(Embedder.load(folder, device="cpu"), [task])
    assert resumed.statuses == {"task": "recomputed: model changed"}
    assert _score(resumed) == pytest.approx(_score(fresh), abs=1e-6)
    assert abs(_score(resumed) - _score(first)) > 1e-3
    stored = json.loads(result_path(output, new_model.name, "task").read_text())
    assert stored["main_score_value"] == _score(resumed)
    assert stored["provenance"]["model_sha256"] == new_model.fingerprint != old_model.fingerprint
    assert evaluate(new_model, [task], output).statuses == {"task": "kept"}


def test_cut_task_data_is_recomputed_not_kept(embedder, tmp_path):
    data = toy_retrieval_task(tmp_path / "data")
    output = tmp_path / "results"
    first = evaluate(embedder, [load_task(data, "task")], output)
    assert first.statuses == {"task": "computed"}
    assert evaluate(embedder, [load_task(data, "task")], output).statuses == {"task": "kept"}

    cut_queries = {query: QUERIES[query] for query in ("q1", "q4")}
    toy_retrieval_task(data, cut_queries, {doc: DOCS[doc] for doc in ("d1", "d2", "d4", "d6")})
    resumed = evaluate(embedder, [load_task(data, "task")], output)
    fresh = evaluate(embedder, [load_task(data, "task")])
    assert resumed.statuses == {"task": "recomputed: data changed"}
    assert _score(resumed) == _score(fresh)
    assert _score(resumed) != _score(first)
    stored = json.loads(result_path(output, embedder.name, "task").read_text())
    assert stored["main_score_value"] == _score(fresh)
    assert evaluate(embedder, [load_task(data, "task")], output).statuses == {"task": "kept"}


def test_data_and_model_changed_together_names_both(embedder, tmp_path):
    data = toy_sts_task(tmp_path / "data")
    output = tmp_path / "results"
    evaluate(CharEncoder(name=embedder.name), [load_task(data, "task")], output)
    toy_sts_task(data, ROWS[:4])
    run = evaluate(embedder, [load_task(data, "task")], output)
    assert run.statuses == {"task": "recomputed: model changed, data changed"}
    assert _score(run) == _score(evaluate(embedder, [load_task(data, "task")]))


def test_a_model_without_fingerprint_is_known_by_its_name_and_data(tmp_path):
    data = toy_sts_task(tmp_path / "data")
    output = tmp_path / "results"
    first = evaluate(CharEncoder(), [load_task(data, "task")], output)
    model = CharEncoder()
    again = evaluate(model, [load_task(data, "task")], output)
    assert again.statuses == {"task": "kept"} and model.seen == [] and _score(again) == _score(first)
    toy_sts_task(data, ROWS[:4])
    cut = evaluate(model, [load_task(data, "task")], output)
    assert cut.statuses == {"task": "recomputed: data changed"} and model.seen
    assert _score(cut) == _score(evaluate(CharEncoder(), [load_task(data, "task")]))


def test_results_without_fingerprint_or_data_hash_are_recomputed(tmp_path):
    task = load_task(toy_sts_task(tmp_path / "data"), "task")
    output = tmp_path / "results"
    real = _score(evaluate(CharEncoder(), [task], output))
    path = result_path(output, "chars", "task")
    for missing, reason in (("model_sha256", "no fingerprint recorded"), ("dataset_sha256", "no data hash recorded")):
        stored = json.loads(path.read_text())
        del stored["provenance"][missing]
        stored["main_score_value"] = -1.0
        path.write_text(json.dumps(stored))
        run = evaluate(CharEncoder(), [task], output)
        assert run.statuses == {"task": f"recomputed: {reason}"} and _score(run) == real
    stored = json.loads(path.read_text())
    del stored["provenance"]
    path.write_text(json.dumps({**stored, "main_score_value": -1.0}))
    run = evaluate(CharEncoder(), [task], output)
    assert run.statuses == {"task": "recomputed: no fingerprint recorded"} and _score(run) == real
    path.write_text("{not json")
    run = evaluate(CharEncoder(), [task], output)
    assert run.statuses["task"].startswith("recomputed: unreadable result file") and _score(run) == real
    assert json.loads(path.read_text())["main_score_value"] == real


def test_overwrite_recomputes_an_up_to_date_result(tmp_path):
    task = load_task(toy_sts_task(tmp_path / "data"), "task")
    output = tmp_path / "results"
    evaluate(CharEncoder(), [task], output)
    model = CharEncoder()
    run = evaluate(model, [task], output, overwrite=True)
    assert run.statuses == {"task": "recomputed: overwrite"} and len(model.seen) == 2 * len(ROWS)


class PairScorer:
    """A reranker: the number of shared words."""

    output_kind = "pair_score"
    name = "pairs"
    fingerprint = "f" * 64

    def predict(self, pairs, batch_size=32):
        return np.array([len(set(q.lower().split()) & set(d.lower().strip(".").split())) for q, d in pairs], float)


class Overlap:
    """A lexical first stage: query characters found in each text."""

    def __init__(self, name="overlap"):
        self.name = name

    def index(self, texts):
        self.texts = texts

    def scores(self, query):
        return np.array([len(set(query) & set(text)) for text in self.texts], dtype=np.float32)


def test_a_reranker_result_is_recomputed_when_its_first_stage_or_top_k_changes(tmp_path):
    task = load_task(toy_retrieval_task(tmp_path / "data"), "task")
    output = tmp_path / "results"
    assert evaluate(PairScorer(), [task], output, first_stage=Overlap(), top_k=2).statuses == {"task": "computed"}
    assert evaluate(PairScorer(), [task], output, first_stage=Overlap(), top_k=2).statuses == {"task": "kept"}
    run = evaluate(PairScorer(), [task], output, first_stage=Overlap(), top_k=6)
    assert run.statuses == {"task": "recomputed: top_k changed"}
    assert _score(run) == _score(evaluate(PairScorer(), [task], first_stage=Overlap(), top_k=6))
    run = evaluate(PairScorer(), [task], output, first_stage=Overlap("another"), top_k=6)
    assert run.statuses == {"task": "recomputed: first stage changed"}


def test_a_second_run_into_the_same_result_folder_fails_at_once_naming_the_first(tmp_path):
    task = load_task(toy_sts_task(tmp_path / "data"), "task")
    output = tmp_path / "results"
    assert model_folder(output, "chars") == result_path(output, "chars", "task").parent
    with lock_held_elsewhere(model_folder(output, "chars")) as holder:
        model = CharEncoder()
        with pytest.raises(OutputLockedError, match=f"being written by another process \\(pid {holder.pid}: "):
            evaluate(model, [task], output)
        assert model.seen == [] and not result_path(output, "chars", "task").exists()
        other = evaluate(CharEncoder(name="another"), [task], output)  # another model's folder is free
        assert other.statuses == {"task": "computed"}
        assert evaluate(CharEncoder(), [task]).statuses == {"task": "computed"}  # no output: nothing to lock
    assert evaluate(CharEncoder(), [task], output).statuses == {"task": "computed"}


def test_cli_says_kept_or_recomputed_and_refuses_a_locked_folder(tiny_models, tmp_path, capsys):
    model = Embedder.load(tiny_models["bert"], pooling="mean", device="cpu").save(tmp_path / "model")
    toy_sts_task(tmp_path / "data" / "sts")
    output = tmp_path / "results"
    command = ["evaluate", "--model", str(model), "--data", str(tmp_path / "data"), "--output", str(output)]
    assert main(command) == 0
    assert main(command) == 0
    assert "sts: kept" in capsys.readouterr().err
    toy_sts_task(tmp_path / "data" / "sts", ROWS[1:])
    assert main(command) == 0
    err = capsys.readouterr().err
    assert "sts (STS) ... recomputed: data changed" in err and "kept" not in err
    with lock_held_elsewhere(model_folder(output, Embedder.load(model, device="cpu").name)) as holder:
        assert main(command) == 1
        assert f"being written by another process (pid {holder.pid}: " in capsys.readouterr().err
