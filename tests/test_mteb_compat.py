"""mteb compatibility: every result ``gpte evaluate -o OUTPUT`` writes is also an mteb result file that mteb's own
loaders read (``TaskResult.from_disk``, ``ResultCache(OUTPUT).load_results``) with gpte's scores, and every gpte model
kind runs in mteb's own evaluation (``gpte.evaluate.as_mteb_model``) with gpte's scores."""

import json
import sys

import pytest

from gpte.evaluate import evaluate, load_task
from gpte.evaluate.mteb_format import MODEL_META_FILE, mteb_revision_folder
from gpte.evaluate.results import dataset_sha256, read_results

mteb = pytest.importorskip("mteb")
from mteb.models import ModelMeta  # noqa: E402
from toy_tasks import DOCS, QRELS, QUERIES, ROWS, toy_retrieval_task, toy_sts_task  # noqa: E402


@pytest.fixture
def tasks(tmp_path):
    return [
        load_task(toy_sts_task(tmp_path / "data" / "sts" / "tiny", language="en"), "sts/tiny"),
        load_task(toy_retrieval_task(tmp_path / "data" / "retrieval" / "tiny"), "retrieval/tiny"),
    ]


def test_each_result_is_also_an_mteb_task_result_with_gpte_scores(embedder, tasks, tmp_path):
    output = tmp_path / "out"
    run = evaluate(embedder, tasks, output, model_name="tiny/bert")
    folder = mteb_revision_folder(output, "tiny/bert", embedder.fingerprint)
    assert folder == output / "results" / "tiny__bert" / embedder.fingerprint
    for task, file_name in zip(tasks, ["sts__tiny.json", "retrieval__tiny.json"]):
        gpte_result = run.results[task.name]
        loaded = mteb.TaskResult.from_disk(folder / file_name)
        assert loaded.task_name == file_name.removesuffix(".json")
        assert loaded.get_score() == gpte_result["main_score_value"]
        (entry,) = loaded.scores["test"]
        assert {key: entry[key] for key in gpte_result["scores"]} == gpte_result["scores"]
        assert entry["hf_subset"] == "default" and loaded.dataset_revision == dataset_sha256(task.path, task.path)
        assert loaded.evaluation_time == gpte_result["provenance"]["wall_seconds"]
    assert loaded.scores["test"][0]["ndcg_at_10"] == run.results["retrieval/tiny"]["main_score_value"]
    meta = ModelMeta.model_validate_json_resolved((folder / MODEL_META_FILE).read_text())
    assert (meta.name, meta.revision, meta.embed_dim, meta.model_type) == (
        "tiny/bert",
        embedder.fingerprint,
        embedder.dimension,
        ["dense"],
    )
    assert meta.similarity_fn_name == "cosine" and meta.model_name_as_path() == folder.parent.name


def test_mteb_result_cache_loads_the_output_folder_and_gpte_reads_only_its_own(embedder, tasks, tmp_path):
    output = tmp_path / "out"
    run = evaluate(embedder, tasks, output)  # filed under the model's own name (a folder path here)
    loaded = mteb.ResultCache(output).load_results(include_remote=False)
    (model_result,) = loaded.model_results
    assert model_result.model_revision == embedder.fingerprint and "/" in model_result.model_name
    scores = {result.task_name: result.get_score() for result in model_result.task_results}
    assert scores == {
        "sts__tiny": run.results["sts/tiny"]["main_score_value"],
        "retrieval__tiny": run.results["retrieval/tiny"]["main_score_value"],
    }
    gpte_results = read_results(output)
    assert sorted(result["task"] for result in gpte_results) == ["retrieval/tiny", "sts/tiny"]
    assert sorted(path.name for path in output.rglob("*.json")) == [
        "model_meta.json",
        "retrieval__tiny.json",
        "retrieval__tiny.json",
        "sts__tiny.json",
        "sts__tiny.json",
    ]


def test_a_kept_result_leaves_its_mteb_file_as_it_was_and_a_new_model_gets_a_new_revision(
    embedder, tiny_models, tasks, tmp_path
):
    from gpte import Embedder

    output = tmp_path / "out"
    evaluate(embedder, tasks[:1], output, model_name="tiny/bert")
    path = mteb_revision_folder(output, "tiny/bert", embedder.fingerprint) / "sts__tiny.json"
    written = path.read_bytes()
    path.unlink()
    again = evaluate(embedder, tasks[:1], output, model_name="tiny/bert")
    assert again.statuses == {"sts/tiny": "kept"} and path.read_bytes() == written
    cls_model = Embedder.load(tiny_models["bert"], pooling="cls", device="cpu")
    evaluate(cls_model, tasks[:1], output, model_name="tiny/bert")
    revisions = sorted(p.name for p in (output / "results" / "tiny__bert").iterdir())
    assert revisions == sorted([embedder.fingerprint, cls_model.fingerprint])


def test_a_task_declaring_its_mteb_task_is_filed_under_that_name(embedder, tmp_path):
    task = load_task(toy_sts_task(tmp_path / "stsb", language="en", mteb_task="STSBenchmark"), "sts/stsb-en")
    run = evaluate(embedder, [task], tmp_path / "out", model_name="tiny/bert")
    path = mteb_revision_folder(tmp_path / "out", "tiny/bert", embedder.fingerprint) / "STSBenchmark.json"
    loaded = mteb.TaskResult.from_disk(path)
    assert loaded.task_name == "STSBenchmark" and loaded.task.metadata.type == "STS"  # mteb's own task metadata
    assert loaded.get_score() == run.results["sts/stsb-en"]["main_score_value"]


def test_a_bad_mteb_task_name_is_refused_before_any_work(embedder, tmp_path):
    task = load_task(toy_sts_task(tmp_path / "stsb", language="en", mteb_task="STS/Benchmark"), "sts/stsb-en")
    with pytest.raises(ValueError, match=r"task sts/stsb-en: meta.json's mteb_task 'STS/Benchmark' must be"):
        evaluate(embedder, [task], tmp_path / "out")
    assert not (tmp_path / "out").exists()


RERANKING_ROWS = [
    {"query": QUERIES[q], "positive": [DOCS[d]], "negative": [DOCS[o] for o in DOCS if o != d][:3]}
    for q, d in QRELS.items()
]


def _reranking_folder(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").write_text(json.dumps({"task_type": "Reranking"}))
    (folder / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in RERANKING_ROWS))
    return folder


@pytest.fixture
def typed_tasks(tasks, tmp_path):
    reranking = load_task(_reranking_folder(tmp_path / "data" / "reranking" / "tiny"), "reranking/tiny")
    return {"STS": tasks[0], "Retrieval": tasks[1], "Reranking": reranking}


def _mteb_main_score(model, task):
    """mteb's own harness (``mteb.evaluate``) on the gpte task folder's data, with ``model`` through
    ``as_mteb_model``: its main score."""
    from gpte.evaluate.mteb_bridge import mteb_task
    from gpte.evaluate.mteb_encoder import as_mteb_model

    result = mteb.evaluate(as_mteb_model(model), mteb_task(task), cache=None, show_progress_bar=False)
    (task_result,) = result.task_results
    return task_result.get_score()


@pytest.fixture(scope="module")
def models(tiny_models, splade, embedder, tmp_path_factory):
    """One tiny gpte model of each kind, and the task types mteb scores it on."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from gpte import Embedder
    from gpte.models.cross_encoder import CrossEncoder
    from gpte.models.multivector import load_multivector_encoder
    from gpte.models.static import distill_static

    folder = tmp_path_factory.mktemp("cross-encoder")
    config = BertConfig(
        vocab_size=AutoTokenizer.from_pretrained(tiny_models["bert"]).vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
    )
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_models["bert"]).save_pretrained(folder)
    prompted = Embedder.load(
        tiny_models["bert"], pooling="mean", device="cpu", prompts={"query": "query: ", "document": "passage: "}
    )
    colbert = load_multivector_encoder(
        tiny_models["bert"], dimension=16, device="cpu", prompts={"query": "[Q] ", "document": "[D] "}
    )
    return {
        "dense": (embedder, ("STS", "Retrieval", "Reranking")),
        "dense with prompts": (prompted, ("Retrieval", "Reranking")),
        "static": (distill_static(embedder, pca_dims=8, show_progress=False), ("STS", "Retrieval")),
        "sparse": (splade, ("STS", "Retrieval", "Reranking")),
        "multivector": (colbert, ("Retrieval", "Reranking")),
        "reranker": (CrossEncoder.load(folder, device="cpu"), ("Reranking",)),
    }


@pytest.mark.parametrize("kind", ["dense", "dense with prompts", "static", "sparse", "multivector", "reranker"])
def test_mteb_evaluates_every_gpte_model_kind_with_gpte_scores(models, typed_tasks, kind):
    model, task_types = models[kind]
    tasks = [typed_tasks[task_type] for task_type in task_types]
    run = evaluate(model, tasks)
    for task in tasks:
        assert _mteb_main_score(model, task) == pytest.approx(run.results[task.name]["main_score_value"], abs=1e-6)


def test_mteb_prompt_types_reach_the_model_as_roles_and_meta_names_it(typed_tasks):
    from gpte.evaluate.mteb_encoder import as_mteb_model

    class Recorder:
        name = "recorder"

        def __init__(self):
            self.calls = []

        def encode(self, texts, role=None):
            self.calls.append((role, len(texts)))
            return [[len(t), t.count("a") + 1, t.count("e") + 1] for t in texts]

    recorder = Recorder()
    _mteb_main_score(recorder, typed_tasks["Retrieval"])
    _mteb_main_score(recorder, typed_tasks["STS"])
    assert recorder.calls == [("query", len(QUERIES)), ("document", len(DOCS)), (None, len(ROWS)), (None, len(ROWS))]
    meta = as_mteb_model(recorder).mteb_model_meta
    assert (meta.name, meta.revision, meta.model_type) == ("gpte/recorder", "no_revision_available", ["dense"])


def test_without_mteb_the_wrapper_names_the_extra(embedder, monkeypatch):
    from gpte.errors import MissingExtraError
    from gpte.evaluate.mteb_encoder import as_mteb_model

    monkeypatch.setitem(sys.modules, "mteb.models", None)
    with pytest.raises(MissingExtraError, match=r"gpte\[mteb\]"):
        as_mteb_model(embedder)


def test_mteb_results_of_a_gpte_model_land_beside_gpte_s_mteb_copies(embedder, typed_tasks, tmp_path):
    from gpte.evaluate.mteb_bridge import mteb_task
    from gpte.evaluate.mteb_encoder import as_mteb_model

    output = tmp_path / "out"
    run = evaluate(embedder, [typed_tasks["STS"]], output)
    path = mteb_revision_folder(output, embedder.name, embedder.fingerprint) / "sts__tiny.json"
    path.unlink()
    cache = mteb.ResultCache(output)
    mteb.evaluate(as_mteb_model(embedder), mteb_task(typed_tasks["STS"]), cache=cache, show_progress_bar=False)
    assert mteb.TaskResult.from_disk(path).get_score() == pytest.approx(
        run.results["sts/tiny"]["main_score_value"], abs=1e-6
    )


@pytest.mark.real
def test_minilm_in_mteb_scores_stsb_as_gpte_evaluate_and_mteb_reads_the_result(shared_data, tmp_path):
    from gpte import Embedder

    source = shared_data / "sts" / "stsb-en"  # its first 200 test pairs, to keep the test short
    folder = tmp_path / "stsb-en-200"
    folder.mkdir()
    (folder / "meta.json").write_text((source / "meta.json").read_text())
    lines = (source / "test.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "test.jsonl").write_text("".join(lines[:200]), encoding="utf-8")
    model = Embedder.load(device="cpu")
    task = load_task(folder, "sts/stsb-en-200")
    run = evaluate(model, [task], tmp_path / "out")
    gpte_score = run.results["sts/stsb-en-200"]["main_score_value"]
    assert _mteb_main_score(model, task) == pytest.approx(gpte_score, abs=1e-6)
    (model_result,) = mteb.ResultCache(tmp_path / "out").load_results(include_remote=False).model_results
    assert model_result.model_name == "gpte/all-MiniLM-L6-v2" and model_result.model_revision == model.fingerprint
    assert [result.get_score() for result in model_result.task_results] == [gpte_score]
