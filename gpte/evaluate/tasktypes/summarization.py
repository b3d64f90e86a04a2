"""Summarization: rank machine summaries like humans do (SummEval protocol, mteb ``AbsTaskSummarization``).

Rows: ``{"text", "human_summaries": [...], "machine_summaries": [...], "relevance": [...]}`` with one
human relevance score per machine summary (scaled to [0, 1] by the task's ``score_range``). A machine
summary's predicted score is its highest similarity to the text's human summaries (cosine, dot, and
the model's own). Per text, Spearman and Pearson between predicted and human scores; texts where
either is constant are skipped. Scores are means over texts. Main score: ``cosine_spearman``.

A sparse model's vectors stay sparse: similarities by sparse products (``gpte.evaluate.sparse``). A multi-vector
model has no vector per text: a machine summary's score is its highest MaxSim against the human summaries (the
machine summary the query side), giving ``spearman``/``pearson`` only; texts where those scores are constant are
skipped, and ``spearman`` is its main score (``gpte.evaluate.multivector``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from scipy.stats import pearsonr, spearmanr

from gpte.data.mteb_folders import read_rows
from gpte.evaluate.encoder import TaskEncoder
from gpte.evaluate.sparse import similarity
from gpte.evaluate.tasks import Task

FIELDS = ("text", "human_summaries", "machine_summaries", "relevance")


def evaluate(task: Task, encoder: TaskEncoder) -> dict[str, float]:
    rows = read_rows(task.path / f"{task.split}.jsonl", FIELDS)
    low, high = task.metadata.get("score_range", (0, 1))
    samples = []
    for row in rows:
        human = encoder.encode(row["human_summaries"], task)
        machine = encoder.encode(row["machine_summaries"], task)
        gold = [(float(score) - low) / (high - low) for score in row["relevance"]]
        samples.append((human, machine, gold))
    if encoder.multivector:
        return summary_correlations(samples, {"": encoder.similarity}, constant_skips=("",))
    return summarization_scores(samples, encoder.similarity_name)


def summarization_scores(
    samples: list[tuple[Any, Any, list[float]]], similarity_name: str = "cosine"
) -> dict[str, float]:
    """``samples``: per text, human summary vectors, machine summary vectors (arrays, or sparse matrices), human
    scores of the machine ones."""
    scorers = {
        "cosine": partial(similarity, name="cosine"),
        "dot": partial(similarity, name="dot"),
        "": partial(similarity, name=similarity_name),
    }
    return summary_correlations(samples, scorers, constant_skips=("dot", "cosine"))


def summary_correlations(
    samples: list[tuple[Any, Any, list[float]]],
    scorers: dict[str, Callable[[Any, Any], np.ndarray]],
    constant_skips: tuple[str, ...],
) -> dict[str, float]:
    """Means over texts of ``{name}_spearman``/``{name}_pearson`` (``spearman``/``pearson`` for the name "")
    between human scores and each scorer's predictions: per machine summary, its highest score (scorer(machine,
    human): (machines, humans)) against the text's human summaries. A text is skipped when its human scores, or the
    predictions of a scorer in ``constant_skips`` (mteb: dot and cosine), are constant.

    Raises:
        ValueError: every text is skipped.
    """
    correlations: dict[str, list[float]] = {
        f"{name}_{measure}" if name else measure: [] for name in scorers for measure in ("spearman", "pearson")
    }
    for human, machine, gold in samples:
        predicted = {name: np.asarray(score(machine, human)).max(axis=1) for name, score in scorers.items()}
        if len(set(gold)) == 1 or any(len(set(predicted[name].tolist())) == 1 for name in constant_skips):
            continue
        for name, values in predicted.items():
            prefix = f"{name}_" if name else ""
            correlations[f"{prefix}spearman"].append(float(spearmanr(gold, values).statistic))
            correlations[f"{prefix}pearson"].append(float(pearsonr(gold, values).statistic))
    if not next(iter(correlations.values())):
        raise ValueError("every text has constant human or predicted scores; nothing to correlate")
    return {name: float(np.mean(values)) for name, values in correlations.items()}
