"""gpte's evaluation gives mteb's scores: all-MiniLM-L6-v2 on one task of each type in ../shared/data,
against the reference figures that mteb 2.26.24's own evaluators produced (../shared/data/README.md),
and against mteb's evaluators run live on the same folders (when mteb is installed; it is a test extra),
including a hand-written summarization fixture."""

import re
from pathlib import Path

import pytest

from gpte import Embedder
from gpte.evaluate import discover_tasks, evaluate, load_task, select_tasks

pytestmark = pytest.mark.real

TASKS = [  # one of each type in the data (Summarization has no real set: see test_evaluate_metrics)
    "sts/stsb-en",
    "pair_classification/sick-e",
    "classification/banking77",
    "clustering/banking77",
    "reranking/trecqa",
    "retrieval/cranfield",
    "bitext_mining/tatoeba-deu-eng",
]
SAMPLED = {"Classification": 0.1, "Clustering": 0.1}  # tolerance (× 100) for sampled protocols; else 0.01
SUMMARIZATION_FIXTURE = Path(__file__).parent / "data" / "summarization" / "toy"


def reference_figures(shared_data):
    """task -> main score × 100 from the data README's table of mteb reference scores."""
    table = re.findall(r"^\| `([^`]+)` \| (\w+) \| ([\d.]+) \|$", (shared_data / "README.md").read_text(), re.M)
    return {task: float(value) for task, _, value in table}


@pytest.fixture(scope="module")
def run(shared_data, tmp_path_factory):
    tasks = select_tasks(discover_tasks(shared_data), TASKS) + [load_task(SUMMARIZATION_FIXTURE, "summarization/toy")]
    return evaluate(Embedder.load(device="cpu"), tasks, tmp_path_factory.mktemp("results"))


@pytest.mark.parametrize("task", TASKS)
def test_main_score_equals_mteb(run, shared_data, task):
    assert not run.failures
    result = run.results[task]
    expected = reference_figures(shared_data)[task]
    assert 100 * result["main_score_value"] == pytest.approx(
        expected, abs=SAMPLED.get(result["task_type"], 0.01) + 0.005
    )


def test_stsb_is_the_published_figure(run):
    assert round(100 * run.results["sts/stsb-en"]["main_score_value"], 2) == 82.03


@pytest.fixture(scope="module")
def mteb_model():
    pytest.importorskip("mteb")
    from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper
    from sentence_transformers import SentenceTransformer

    from gpte.models.sources import resolve_model

    return SentenceTransformerEncoderWrapper(SentenceTransformer(str(resolve_model(None).folder), device="cpu"))


# the two slowest live runs (about 90 s together) are left to `pytest -m slow`: their reference figures, checked above,
# are mteb's own, and every other task type still runs mteb live here
LIVE_IN_SLOW_RUN = {"retrieval/cranfield", "classification/banking77"}


@pytest.mark.parametrize(
    "task",
    [pytest.param(task, marks=pytest.mark.slow) if task in LIVE_IN_SLOW_RUN else task for task in TASKS]
    + ["summarization/toy"],
)
def test_mteb_evaluator_run_live_agrees(run, mteb_model, shared_data, task):
    from gpte.evaluate.mteb_bridge import mteb_scores

    folder = SUMMARIZATION_FIXTURE if task == "summarization/toy" else shared_data / task
    ours = run.results[task]
    theirs = mteb_scores(load_task(folder, task), mteb_model)
    tolerance = SAMPLED.get(ours["task_type"], 0.01)
    assert 100 * ours["main_score_value"] == pytest.approx(100 * theirs["main_score"], abs=tolerance)
    shared = [name for name in ours["scores"] if isinstance(theirs.get(name), float)]
    assert len(shared) >= 4
    for name in shared:  # every score both report, not only the main one
        assert ours["scores"][name] == pytest.approx(theirs[name], abs=tolerance / 100 + 1e-6), name
