"""Run tasks on a model: each distinct text encoded once per (role, prompt) across all tasks, one result
file per task, resumable (a task whose result file exists is read, not recomputed, unless ``overwrite``),
and a failure in one task never loses the others' results."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gpte._version import __version__
from gpte.evaluate.encoder import TaskEncoder, as_vector_encoder
from gpte.evaluate.results import folder_sha256, read_result, result_path, write_result
from gpte.evaluate.tasks import Task, fetch_data
from gpte.evaluate.tasktypes import EVALUATORS
from gpte.models.protocol import VectorEncoder

logger = logging.getLogger(__name__)


@dataclass
class EvaluationRun:
    """Results by task name, and the tasks that failed with their error message."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def evaluate(
    model: VectorEncoder | Any,
    tasks: list[Task],
    output: str | Path | None = None,
    model_name: str | None = None,
    overwrite: bool = False,
    batch_size: int = 32,
    cache: str | Path | None = None,
) -> EvaluationRun:
    """Evaluate ``model`` on ``tasks``.

    Args:
        model: a gpte model (``gpte.models.protocol.VectorEncoder``), or any object with ``encode(texts, role=...)``.
        tasks: from ``discover_tasks``/``load_task``.
        output: folder for result files (None: keep results in memory only).
        model_name: the name results are filed under (default: the model's ``name`` attribute).
        overwrite: recompute tasks whose result file exists.
        batch_size: passed to the model's encode when it takes one.
        cache: a folder for vectors kept across runs (``gpte.runtime.vector_store``); None: this run only.

    Raises:
        ValueError: a cache is asked for a model without a fingerprint and without ``model_name``.
    """
    model = as_vector_encoder(model)
    fingerprint = model.fingerprint
    encoder = TaskEncoder(model, batch_size, cache, _cache_key(model, fingerprint, model_name) if cache else None)
    model_name = model_name or model.name
    run = EvaluationRun()
    for number, task in enumerate(tasks, 1):
        path = result_path(Path(output), model_name, task.name) if output else None
        if path and path.exists() and not overwrite:
            run.results[task.name] = read_result(path)
            logger.info(f"[{number}/{len(tasks)}] {task.name}: kept {path}")
            continue
        logger.info(f"[{number}/{len(tasks)}] {task.name} ({task.type}) ...")
        try:
            task = fetch_data(task)
            result = _run_task(task, encoder, model, model_name, fingerprint, batch_size)
        except Exception as error:
            run.failures[task.name] = f"{type(error).__name__}: {error}"
            logger.info(f"[{number}/{len(tasks)}] {task.name} FAILED: {run.failures[task.name]}")
            continue
        run.results[task.name] = result
        if path:
            write_result(path, result)
        logger.info(f"[{number}/{len(tasks)}] {task.name}: {task.main_score} = {100 * result['main_score_value']:.2f}")
    return run


def _cache_key(model: VectorEncoder, fingerprint: str | None, model_name: str | None) -> str:
    """The key a model's vectors are filed under in a cache folder: its fingerprint, else a hash of its name."""
    if fingerprint is None and model_name is None:
        raise ValueError(
            f"an on-disk vector cache needs to tell models apart: {model.name} has no fingerprint (no torch "
            "weights to hash), so pass model_name (the cache is filed under it)"
        )
    return fingerprint or hashlib.sha256(f"name:{model_name}".encode()).hexdigest()


def _run_task(
    task: Task, encoder: TaskEncoder, model: VectorEncoder, model_name: str, fingerprint: str | None, batch_size: int
) -> dict[str, Any]:
    started, encode_before = time.perf_counter(), encoder.seconds
    scores = EVALUATORS[task.type](task, encoder)
    return {
        "task": task.name,
        "task_type": task.type,
        "split": task.split,
        "language": task.language,
        "main_score": task.main_score,
        "main_score_value": scores[task.main_score],
        "scores": scores,
        "provenance": {
            "gpte_version": __version__,
            "model": model_name,
            "model_sha256": fingerprint,
            "dataset_path": str(task.path.resolve()),
            "dataset_sha256": folder_sha256(task.path),
            "prompts": task.prompts,
            "dtype": str(getattr(getattr(model, "backbone", None), "dtype", "")).removeprefix("torch.") or None,
            "batch_size": batch_size,
            "wall_seconds": round(time.perf_counter() - started, 3),
            "encode_seconds": round(encoder.seconds - encode_before, 3),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    }
