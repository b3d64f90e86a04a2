"""Summarization: rank machine summaries like humans do (SummEval protocol, mteb ``AbsTaskSummarization``).

Rows: ``{"text", "human_summaries": [...], "machine_summaries": [...], "relevance": [...]}`` with one
human relevance score per machine summary (scaled to [0, 1] by the task's ``score_range``). A machine
summary's predicted score is its highest similarity to the text's human summaries (cosine, dot, and
the model's own). Per text, Spearman and Pearson between predicted and human scores; texts where
either is constant are skipped. Scores are means over texts. Main score: ``cosine_spearman``.

A sparse model's vectors stay sparse: similarities by sparse products (``gpte.evaluate.sparse``).
"""

from __future__ import annotations

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
    return summarization_scores(samples, encoder.similarity_name)


def summarization_scores(
    samples: list[tuple[Any, Any, list[float]]], similarity_name: str = "cosine"
) -> dict[str, float]:
    """``samples``: per text, human summary vectors, machine summary vectors (arrays, or sparse matrices), human
    scores of the machine ones."""
    correlations: dict[str, list[float]] = {
        name: [] for name in ("cosine_spearman", "cosine_pearson", "dot_spearman", "dot_pearson", "spearman", "pearson")
    }
    for human, machine, gold in samples:
        predicted = {
            "cosine": similarity(machine, human, "cosine").max(axis=1),
            "dot": similarity(machine, human, "dot").max(axis=1),
            "": similarity(machine, human, similarity_name).max(axis=1),
        }
        if (
            len(set(gold)) == 1
            or len(set(predicted["dot"].tolist())) == 1
            or len(set(predicted["cosine"].tolist())) == 1
        ):
            continue
        for name, values in predicted.items():
            prefix = f"{name}_" if name else ""
            correlations[f"{prefix}spearman"].append(float(spearmanr(gold, values).statistic))
            correlations[f"{prefix}pearson"].append(float(pearsonr(gold, values).statistic))
    if not correlations["cosine_spearman"]:
        raise ValueError("every text has constant human or predicted scores; nothing to correlate")
    return {name: float(np.mean(values)) for name, values in correlations.items()}
