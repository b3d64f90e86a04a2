"""Where tasks and vectors come from: suites, glob selection, the on-disk vector cache, hub datasets."""

import json
import subprocess
import sys

import numpy as np
import pytest

from gpte.evaluate import discover_tasks, evaluate, load_task, select_tasks, suite_patterns
from gpte.models.fingerprint import model_key
from gpte.runtime.vector_store import VectorStore, store_folder

ROWS = [
    {"sentence1": "a cat", "sentence2": "a dog", "score": 3},
    {"sentence1": "tea", "sentence2": "eat", "score": 1},
    {"sentence1": "banana", "sentence2": "apple", "score": 2},
]


def _sts_task(folder, rows=ROWS, **meta):
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"task_type": "STS", "score_range": [0, 5], **meta}))
    if rows is not None:
        (folder / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


class CountingEncoder:
    """Vectors from the characters of a text; remembers every text it was asked to encode."""

    def __init__(self):
        self.seen = []

    def encode(self, texts, role=None):
        self.seen += texts
        return np.array([[len(t), t.count("a") + 1, t.count("e") + 1] for t in texts], dtype=np.float32)


def test_suites_and_glob_patterns_select_tasks(tmp_path):
    for name in ("sts/stsb-en", "sts/stsb-de", "sts/sick-r", "bitext_mining/tatoeba-deu-eng"):
        _sts_task(tmp_path / name)
    tasks = discover_tasks(tmp_path)
    assert [t.name for t in select_tasks(tasks, suite_patterns("sts-multilingual"))] == ["sts/stsb-de", "sts/stsb-en"]
    assert [t.name for t in select_tasks(tasks, ["tatoeba-*", "sts/s*-r"])] == [
        "bitext_mining/tatoeba-deu-eng",
        "sts/sick-r",
    ]
    assert len(select_tasks(tasks, suite_patterns("all"))) == 4
    suite_file = tmp_path / "mine.json"
    suite_file.write_text('{"tasks": ["sick-r", "stsb-en"]}')
    assert [t.name for t in select_tasks(tasks, suite_patterns(str(suite_file)))] == ["sts/sick-r", "sts/stsb-en"]
    with pytest.raises(ValueError, match="unknown suite 'englsh'; did you mean english"):
        suite_patterns("englsh")
    suite_file.write_text('{"tasks": []}')
    with pytest.raises(ValueError, match="mine.json: expected a non-empty list of task names"):
        suite_patterns(str(suite_file))


def test_disk_cache_encodes_each_text_once_across_runs(tmp_path):
    task = load_task(_sts_task(tmp_path / "data" / "one"), "one")
    first = CountingEncoder()
    scores = evaluate(first, [task], model_name="chars", cache=tmp_path / "cache").results["one"]["scores"]
    assert sorted(first.seen) == sorted({row[k] for row in ROWS for k in ("sentence1", "sentence2")})
    again = CountingEncoder()
    assert evaluate(again, [task], model_name="chars", cache=tmp_path / "cache").results["one"]["scores"] == scores
    assert again.seen == []  # every vector came from the cache
    other = CountingEncoder()
    evaluate(other, [task], model_name="another model", cache=tmp_path / "cache")
    assert len(other.seen) == 6  # another model never reads these vectors
    prompted = load_task(_sts_task(tmp_path / "data" / "prompted", prompts={"query": "q: "}), "prompted")
    evaluate(again, [prompted], model_name="chars", cache=tmp_path / "cache")
    assert again.seen == []  # STS encodes without a role, so the query prompt does not apply


def test_disk_cache_keys_roles_prompts_and_model_settings(tmp_path, tiny_models):
    from gpte import Embedder

    cache = VectorStore(store_folder(tmp_path, "k" * 64, "query", "q: "))
    cache.add(["a", "b"], np.array([[1, 2], [3, 4]], dtype=np.float32))
    assert set(cache.get(["a", "b", "c"])) == {"a", "b"}
    assert VectorStore(store_folder(tmp_path, "k" * 64, "document", None)).get(["a"]) == {}
    assert VectorStore(store_folder(tmp_path, "k" * 64, "query", "other: ")).get(["a"]) == {}
    assert VectorStore(store_folder(tmp_path, "j" * 64, "query", "q: ")).get(["a"]) == {}
    reread = VectorStore(store_folder(tmp_path, "k" * 64, "query", "q: ")).get(["b"])
    np.testing.assert_array_equal(reread["b"], [3, 4])
    calls = []
    vectors = cache.vectors(["c", "a", "c"], lambda texts: calls.append(texts) or np.ones((len(texts), 2)))
    assert calls == [["c"]] and vectors.tolist() == [[1, 1], [1, 2], [1, 1]]
    assert not list(tmp_path.rglob(".*partial*"))
    model = Embedder.load(tiny_models["bert"])
    key = model_key("weights", model)
    model.normalize = not model.normalize
    assert model_key("weights", model) != key
    model.normalize = not model.normalize
    assert model_key("weights", model) == key and model_key("other weights", model) != key


def test_cache_needs_a_name_for_models_without_weights(tmp_path):
    task = load_task(_sts_task(tmp_path / "one"), "one")
    with pytest.raises(
        ValueError, match="CountingEncoder has no fingerprint .no torch weights to hash., so pass model_name"
    ):
        evaluate(CountingEncoder(), [task], cache=tmp_path / "cache")


def _run_offline(code, env, tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin", **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_hub_dataset_task_without_network_fails_alone_with_a_clear_error(tmp_path):
    _sts_task(tmp_path / "data" / "hub", rows=None, hf_dataset="some-org/some-sts")
    _sts_task(tmp_path / "data" / "local")
    code = (
        "import numpy as np\nfrom gpte.evaluate import discover_tasks, evaluate\n"
        "class M:\n    def encode(self, texts, role=None): return np.array([[len(t), t.count('a') + 1] for t in texts], dtype=np.float32)\n"
        f"run = evaluate(M(), discover_tasks({str(tmp_path / 'data')!r}))\n"
        "print(sorted(run.results)); print(run.failures['hub'])"
    )
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_DOWNLOAD_TIMEOUT": "2"}
    result = _run_offline(code, env, tmp_path)
    assert result.returncode == 0, result.stderr
    kept, failure = result.stdout.strip().split("\n", 1)
    assert kept == "['local']"
    assert "task hub: could not get dataset 'some-org/some-sts' from the Hugging Face Hub" in failure
    assert "Without network, download it into a folder" in failure


def test_hub_dataset_found_in_the_local_cache_is_evaluated_offline(tmp_path):
    """The hub path for real: snapshot_download resolves a cached dataset repository with HF_HUB_OFFLINE=1."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / "datasets--some-org--some-sts"
    _sts_task(repo / "snapshots" / commit / "en")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    _sts_task(tmp_path / "task", rows=None, hf_dataset="some-org/some-sts", hf_subfolder="en")
    code = (
        "import numpy as np\nfrom gpte.evaluate import load_task, evaluate\n"
        "class M:\n    def encode(self, texts, role=None): return np.array([[len(t), t.count('a') + 1] for t in texts], dtype=np.float32)\n"
        f"run = evaluate(M(), [load_task({str(tmp_path / 'task')!r})])\n"
        "print(run.failures, round(run.results['task']['main_score_value'], 4), run.results['task']['provenance']['dataset_path'])"
    )
    result = _run_offline(code, {"HF_HUB_OFFLINE": "1"}, tmp_path)
    assert result.returncode == 0, result.stderr
    failures, score, path = result.stdout.split()
    assert failures == "{}" and path.endswith(f"snapshots/{commit}/en")
    expected = evaluate(CountingEncoder(), [load_task(repo / "snapshots" / commit / "en", "task")])
    assert float(score) == round(expected.results["task"]["main_score_value"], 4)
