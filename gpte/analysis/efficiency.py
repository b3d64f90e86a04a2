"""What a change of the output vectors costs on real tasks: Matryoshka dimension and precision curves,
and the price of inversion defenses, all scored by ``gpte.evaluate`` (mteb's metrics) on ``VectorView``s
of one ``CachedEncoder`` (each text encoded once for every curve point)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gpte.analysis.views import CachedEncoder, Transform, VectorView, precision, truncate
from gpte.errors import GpteError
from gpte.evaluate.runner import evaluate
from gpte.evaluate.tasks import Task

CURVE_PRECISIONS = ("float32", "int8", "binary")
SMALLEST_DIMENSION = 16


class TaskFailedError(GpteError, RuntimeError):
    """A task could not be scored (unreadable rows, a metric that failed); the message names the task and its error."""


def check_scored(name: str, failures: dict[str, object]) -> None:
    """Raise ``TaskFailedError`` naming each failed task of the run ``name`` (``EvaluationRun.failures``), if any."""
    if failures:
        raise TaskFailedError(f"{name}: " + "; ".join(f"{task}: {error}" for task, error in failures.items()))


def matryoshka_dimensions(dimension: int) -> list[int]:
    """Powers of two from 16 below ``dimension``, then ``dimension`` itself (384 -> 16, 32, ..., 256, 384)."""
    dimensions = []
    size = SMALLEST_DIMENSION
    while size < dimension:
        dimensions.append(size)
        size *= 2
    return dimensions + [dimension]


def score_transforms(
    encoder: CachedEncoder, transforms: dict[str, Transform], tasks: Sequence[Task]
) -> dict[str, dict[str, float]]:
    """Main score (mteb's, as a fraction) of each task for each named transform: ``{transform: {task: score}}``.

    Raises:
        TaskFailedError: a task failed (its error is named).
    """
    scores: dict[str, dict[str, float]] = {}
    for name, transform in transforms.items():
        run = evaluate(VectorView(encoder, transform, f"{encoder.name} [{name}]"), list(tasks))
        check_scored(name, run.failures)
        scores[name] = {task: result["main_score_value"] for task, result in run.results.items()}
    return scores


def matryoshka_curve(
    encoder: CachedEncoder, tasks: Sequence[Task], dimensions: Sequence[int]
) -> dict[int, dict[str, float]]:
    """``{dimension: {task: score}}`` with vectors cut to each dimension (and re-normalized)."""
    scores = score_transforms(encoder, {str(d): truncate(d) for d in dimensions}, tasks)
    return {int(name): values for name, values in scores.items()}


def precision_curve(
    encoder: CachedEncoder,
    tasks: Sequence[Task],
    precisions: Sequence[str] = CURVE_PRECISIONS,
    ranges: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """``{precision: {task: score}}`` on the quantized codes (see ``gpte.analysis.views.precision``); ``ranges``
    calibrate int8/uint8 (None: each encode call's own vectors)."""
    return score_transforms(encoder, {name: precision(name, ranges) for name in precisions}, tasks)
