"""BitextMining: find each sentence's translation by nearest neighbour (mteb ``AbsTaskBitextMining``).

Each ``sentence1`` is matched to the ``sentence2`` of highest model similarity; the gold match of
row i is row i. Scores: accuracy, and precision/recall/F1 weighted by class (scikit-learn,
zero_division=0). Main score: ``f1``.

Similarities are the model's (``TaskEncoder.similarity``): a sparse model's vectors stay sparse (sparse products,
``gpte.evaluate.sparse``); a multi-vector model scores by its own MaxSim, ``sentence1`` the query side
(``gpte.evaluate.multivector``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from gpte.data.mteb_folders import read_rows
from gpte.evaluate import sparse
from gpte.evaluate.encoder import TaskEncoder
from gpte.evaluate.multivector import row_count
from gpte.evaluate.tasks import Task

QUERY_CHUNK = 100


def evaluate(task: Task, encoder: TaskEncoder) -> dict[str, float]:
    rows = read_rows(task.path / f"{task.split}.jsonl", ("sentence1", "sentence2"))
    sources = encoder.encode([row["sentence1"] for row in rows], task)
    targets = encoder.encode([row["sentence2"] for row in rows], task)
    return bitext_scores(nearest_neighbours(sources, targets, encoder.similarity), np.arange(len(rows)))


def nearest_neighbours(
    sources: Any, targets: Any, similarity: str | Callable[[Any, Any], np.ndarray] = "cosine"
) -> np.ndarray:
    """For each source row, the index of its most similar target row, scoring ``QUERY_CHUNK`` sources at a time.

    Args:
        sources, targets: arrays, sparse matrices or ``TokenVectors``.
        similarity: a similarity name (``gpte.evaluate.sparse.similarity``), or (sources, targets) -> scores
            (``TaskEncoder.similarity``).
    """
    score = similarity if callable(similarity) else lambda a, b: sparse.similarity(a, b, similarity)
    best = [
        torch.topk(
            torch.from_numpy(np.asarray(score(sources[start : start + QUERY_CHUNK], targets))), 1, dim=1
        ).indices[:, 0]
        for start in range(0, row_count(sources), QUERY_CHUNK)
    ]
    return torch.cat(best).numpy() if best else np.zeros(0, dtype=np.int64)


def bitext_scores(predicted: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    return {
        "precision": float(precision_score(gold, predicted, zero_division=0, average="weighted")),
        "recall": float(recall_score(gold, predicted, zero_division=0, average="weighted")),
        "f1": float(f1_score(gold, predicted, zero_division=0, average="weighted")),
        "accuracy": float(accuracy_score(gold, predicted)),
    }
