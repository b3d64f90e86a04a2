"""Run tasks on a model (dense, sparse: ``gpte.evaluate.sparse``, multi-vector: ``gpte.evaluate.multivector``, or a
reranker: ``gpte.evaluate.reranker``): each distinct text encoded once per (role, prompt) across all tasks, one result
file per task, and a failure in one task never loses the others' results. A sparse model's result adds ``sparsity``:
the mean active dimensions of its vectors per role; a multi-vector model's adds ``tokens``: the mean token vectors
stored per text per role.

Resuming: a task whose result file exists is kept (read, not recomputed) only when the result was computed by the
same model on the same data: its provenance's "model_sha256" equals the model's fingerprint (weights and settings,
``gpte.models.fingerprint``) and its "dataset_sha256" the hash of the task's data now
(``gpte.evaluate.results.dataset_sha256``), and, for a reranker, its first stage (name and fingerprint) and top_k
are the run's. Otherwise the task is recomputed and its status says why (``EvaluationRun.statuses``, and the log):
"recomputed: model changed", "data changed", "first stage changed", "top_k changed" (several joined by ", "),
"no fingerprint recorded" (a result file written before results recorded the model's fingerprint: it cannot be
verified, so it is recomputed once), "no data hash recorded", "unreadable result file", or "overwrite" (``overwrite``
recomputes every task). A task's data is fetched (``fetch_data``: a Hugging Face dataset, from the Hub or its local
cache) and hashed before its result file is compared, so a hub task whose data cannot be fetched fails even when it
has a result file.

Every gpte model kind has a fingerprint (``Embedder``, ``StaticEmbedder``, ``ChunkedEncoder``, sparse, multi-vector,
``CrossEncoder``, the LLM reranker); a foreign model has one when it has torch weights (``ForeignEncoder``). A model
without one (its fingerprint is None: a foreign encoder without weights, a pair scorer without the attribute) cannot
be told apart from another model of its name, so it is known by its name, as the vector cache knows it: its results
record ``"model_sha256": null`` and are kept when they were also made without a fingerprint and the data is unchanged.

A run with an ``output`` folder holds the write lock of the model's result folder (``gpte.locking``) from start to
end: a second run of the same model into the same folder fails at once naming the first.

Every result in an output folder, computed or kept, is also written in mteb's result format under the same lock
(``gpte.evaluate.mteb_format``: ``OUTPUT/results/MTEB_MODEL/REVISION/MTEB_TASK.json`` and ``model_meta.json``), so
that ``mteb.ResultCache(OUTPUT).load_results()`` reads the run.
"""

from __future__ import annotations

import hashlib
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from gpte._version import __version__
from gpte.evaluate import multivector
from gpte.evaluate.encoder import TaskEncoder, as_vector_encoder
from gpte.evaluate.mteb_format import model_meta, mteb_revision_folder, mteb_task_name, write_mteb_result
from gpte.evaluate.reranker import DEFAULT_TOP_K, RerankerScoring, is_pair_scorer
from gpte.evaluate.results import dataset_sha256, model_folder, read_result, result_path, write_result
from gpte.evaluate.tasks import Task, fetch_data
from gpte.evaluate.tasktypes import EVALUATORS
from gpte.locking import exclusive_output
from gpte.models.protocol import VectorEncoder

logger = logging.getLogger(__name__)
FIGURES = ("sparsity", "tokens")  # what a result may add about its vectors (``TaskEncoder.figures``)
# a scoring's provenance key -> the reason a stored result whose value differs is recomputed
SETTING_CHANGES = {"first_stage": "first stage changed", "first_stage_sha256": "first stage changed"}


@dataclass
class EvaluationRun:
    """Results by task name, the tasks that failed with their error message, and how each result came about by task
    name: "computed" (no result file, or no output folder), "kept" (read from its result file), or "recomputed: WHY"
    (a result file that was not kept, see the module docstring)."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)


def evaluate(
    model: VectorEncoder | Any,
    tasks: list[Task],
    output: str | Path | None = None,
    model_name: str | None = None,
    overwrite: bool = False,
    batch_size: int = 32,
    cache: str | Path | None = None,
    first_stage: Any = None,
    top_k: int = DEFAULT_TOP_K,
) -> EvaluationRun:
    """Evaluate ``model`` on ``tasks``.

    Args:
        model: a gpte model (``gpte.models.protocol.VectorEncoder``); a sparse model
            (``gpte.models.protocol.SparseModel``: ``output_kind`` ``"sparse"``), evaluated on every task type by the
            dot product of its sparse vectors (``gpte.evaluate.sparse``); a multi-vector model
            (``gpte.models.protocol.MultiVectorModel``: ``output_kind`` ``"multivector"``, ColBERT), evaluated by its
            own MaxSim on the types of ``gpte.evaluate.multivector.MULTIVECTOR_TYPES``; any object with
            ``encode(texts, role=...)``; or a reranker (``gpte.models.protocol.PairScorer``: ``output_kind``
            ``"pair_score"``), evaluated on Reranking and Retrieval tasks as mteb evaluates a cross-encoder
            (``gpte.evaluate.reranker``).
        tasks: from ``discover_tasks``/``load_task``.
        output: folder for result files (None: keep results in memory only). A result file is kept only when it
            was computed by this model (fingerprint) on this data (hash); see the module docstring. Each result is
            also written in mteb's format below it (``gpte.evaluate.mteb_format``).
        model_name: the name results are filed under (default: the model's ``name`` attribute).
        overwrite: recompute tasks whose result file exists even when it could be kept.
        batch_size: passed to the model's encode (or predict) when it takes one.
        cache: a folder for vectors kept across runs (``gpte.runtime.vector_store``); None: this run only.
        first_stage: for a reranker on Retrieval tasks, what retrieves the documents it reranks: a dense, sparse or
            multi-vector model or a ``gpte.evaluate.reranker.LexicalRetriever`` (BM25).
        top_k: for a reranker on Retrieval tasks, how many first-stage documents per query it reranks.

    Raises:
        ValueError: a cache is asked for a model without a fingerprint and without ``model_name``; a first stage is
            given with a model that is not a reranker.
        ValueError: (with ``output``) a task's meta.json names an ``mteb_task`` that is not a file-name-safe name.
        gpte.locking.OutputLockedError: another process is evaluating into this model's result folder (it is named).
    """
    scoring = _scoring(model, batch_size, cache, model_name, first_stage, top_k)
    model_name = model_name or scoring.name
    run = EvaluationRun()
    folder = model_folder(Path(output), model_name) if output else None
    for task in tasks if output else []:
        mteb_task_name(task)  # a bad "mteb_task" in meta.json is refused before any work
    with exclusive_output(folder, "result folder") if folder else nullcontext():
        for number, task in enumerate(tasks, 1):
            path = result_path(Path(output), model_name, task.name) if output else None
            _evaluate_task(
                run, task, f"[{number}/{len(tasks)}] {task.name}", path, scoring, model_name, overwrite, batch_size
            )
            if output and task.name in run.results:
                _write_mteb_copy(Path(output), run.results[task.name], task, scoring, model_name)
    return run


def _write_mteb_copy(output: Path, result: dict[str, Any], task: Task, scoring: _Scoring, model_name: str) -> None:
    """Write ``result`` in mteb's result format below ``output`` (``gpte.evaluate.mteb_format``)."""
    fingerprint = result["provenance"]["model_sha256"]
    folder = mteb_revision_folder(output, model_name, fingerprint)
    write_mteb_result(folder, result, task, model_meta(scoring.model, model_name, fingerprint))


def _evaluate_task(
    run: EvaluationRun,
    task: Task,
    progress: str,
    path: Path | None,
    scoring: _Scoring,
    model_name: str,
    overwrite: bool,
    batch_size: int,
) -> None:
    """Add ``task``'s result (kept from ``path``, or computed and written there) or its failure to ``run``."""
    try:
        data = fetch_data(task)
        data_sha256 = dataset_sha256(task.path, data.path)
    except Exception as error:
        run.failures[task.name] = f"{type(error).__name__}: {error}"
        logger.info(f"{progress} FAILED: {run.failures[task.name]}")
        return
    status = "computed"
    if path and path.exists():
        stored, reasons = (None, ["overwrite"]) if overwrite else _stored_result(path, scoring, data, data_sha256)
        if stored is not None and not reasons:
            run.results[task.name], run.statuses[task.name] = stored, "kept"
            logger.info(f"{progress}: kept {path}")
            return
        status = f"recomputed: {', '.join(reasons)}"
    logger.info(f"{progress} ({task.type}) ...{'' if status == 'computed' else f' {status}'}")
    try:
        result = _run_task(data, scoring, model_name, batch_size, data_sha256)
    except Exception as error:
        run.failures[task.name] = f"{type(error).__name__}: {error}"
        logger.info(f"{progress} FAILED: {run.failures[task.name]}")
        return
    run.results[task.name], run.statuses[task.name] = result, status
    if path:
        write_result(path, result)
    figures = "".join(f", {name} {value:.1f}" for key in FIGURES for name, value in result.get(key, {}).items())
    logger.info(f"{progress}: {result['main_score']} = {100 * result['main_score_value']:.2f}{figures}")


def _stored_result(
    path: Path, scoring: _Scoring, task: Task, data_sha256: str
) -> tuple[dict[str, Any] | None, list[str]]:
    """The result stored at ``path`` and why it cannot be kept (empty: it can): what its provenance recorded of the
    model, the data and the scoring's settings, compared with the run's."""
    try:
        stored = read_result(path)
    except (OSError, ValueError):
        stored = None
    if not isinstance(stored, dict):
        return None, ["unreadable result file"]
    provenance = stored.get("provenance")
    if not isinstance(provenance, dict) or "model_sha256" not in provenance:
        return stored, ["no fingerprint recorded"]
    reasons = [] if provenance["model_sha256"] == scoring.fingerprint else ["model changed"]
    if "dataset_sha256" not in provenance:
        reasons.append("no data hash recorded")
    elif provenance["dataset_sha256"] != data_sha256:
        reasons.append("data changed")
    for key, value in scoring.provenance(task).items():
        reason = SETTING_CHANGES.get(key, f"{key} changed")
        if provenance.get(key) != value and reason not in reasons:
            reasons.append(reason)
    return stored, reasons


class _Scoring(Protocol):
    """How a run scores tasks with one model: ``scores(task)``, the name of its main score, the model time so far,
    provenance to add, and figures about the vectors the last ``scores(task)`` made (``FIGURES``; none for a dense
    model or a reranker)."""

    model: Any
    name: str
    fingerprint: str | None
    seconds: float

    def scores(self, task: Task) -> dict[str, float]: ...

    def main_score(self, task: Task) -> str: ...

    def provenance(self, task: Task) -> dict[str, Any]: ...

    def figures(self, task: Task) -> dict[str, dict[str, float]]: ...


class _VectorScoring:
    """Tasks scored by their type's evaluator (``EVALUATORS``) on a vector encoder's vectors: dense, sparse, or token
    vectors (a multi-vector model: the types of ``multivector.MULTIVECTOR_TYPES`` only)."""

    def __init__(self, model: Any, batch_size: int, cache: str | Path | None, model_name: str | None) -> None:
        self.model = as_vector_encoder(model)
        self.name, self.fingerprint = self.model.name, self.model.fingerprint
        key = _cache_key(self.model, self.fingerprint, model_name) if cache else None
        self.encoder = TaskEncoder(self.model, batch_size, cache, key)

    @property
    def seconds(self) -> float:
        return self.encoder.seconds

    def scores(self, task: Task) -> dict[str, float]:
        """The scores of ``task``'s type.

        Raises:
            ValueError: a multi-vector model on a type it is not evaluated on (the allowed types named).
        """
        if self.encoder.multivector:
            multivector.check_task_type(task.type, task.name)
        self.encoder.forget_figures(task)
        return EVALUATORS[task.type](task, self.encoder)

    def main_score(self, task: Task) -> str:
        """The task's main score, or for a multi-vector model its stand-in (``multivector.main_score``)."""
        return multivector.main_score(task.type, task.main_score) if self.encoder.multivector else task.main_score

    def provenance(self, task: Task) -> dict[str, Any]:
        return {}

    def figures(self, task: Task) -> dict[str, dict[str, float]]:
        return self.encoder.figures(task)


def _scoring(
    model: Any, batch_size: int, cache: str | Path | None, model_name: str | None, first_stage: Any, top_k: int
) -> _Scoring:
    """A ``RerankerScoring`` for a reranker, else a ``_VectorScoring``."""
    if is_pair_scorer(model):
        return RerankerScoring(model, batch_size, first_stage, top_k, cache)
    if first_stage is not None:
        raise ValueError(
            "first_stage applies to rerankers (output_kind 'pair_score'), which rerank its top_k documents; "
            f"{getattr(model, 'name', None) or type(model).__name__} is searched by itself on Retrieval tasks"
        )
    return _VectorScoring(model, batch_size, cache, model_name)


def _cache_key(model: VectorEncoder, fingerprint: str | None, model_name: str | None) -> str:
    """The key a model's vectors are filed under in a cache folder: its fingerprint, else a hash of its name."""
    if fingerprint is None and model_name is None:
        raise ValueError(
            f"an on-disk vector cache needs to tell models apart: {model.name} has no fingerprint (no torch "
            "weights to hash), so pass model_name (the cache is filed under it)"
        )
    return fingerprint or hashlib.sha256(f"name:{model_name}".encode()).hexdigest()


def _run_task(task: Task, scoring: _Scoring, model_name: str, batch_size: int, data_sha256: str) -> dict[str, Any]:
    started, encode_before = time.perf_counter(), scoring.seconds
    scores = scoring.scores(task)
    main = scoring.main_score(task)
    return {
        "task": task.name,
        "task_type": task.type,
        "split": task.split,
        "language": task.language,
        "main_score": main,
        "main_score_value": scores[main],
        "scores": scores,
        **scoring.figures(task),
        "provenance": {
            "gpte_version": __version__,
            "model": model_name,
            "model_sha256": scoring.fingerprint,
            **scoring.provenance(task),
            "dataset_path": str(task.path.resolve()),
            "dataset_sha256": data_sha256,
            "prompts": task.prompts,
            "dtype": _dtype(scoring.model),
            "batch_size": batch_size,
            "wall_seconds": round(time.perf_counter() - started, 3),
            "encode_seconds": round(scoring.seconds - encode_before, 3),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    }


def _dtype(model: Any) -> str | None:
    """The weights' dtype a model reports in ``info()`` (None: it reports none, e.g. a foreign encoder)."""
    info = model.info() if callable(getattr(model, "info", None)) else {}
    return info.get("dtype") if isinstance(info, dict) else None
