"""BitextMining: find each sentence's translation by nearest neighbour (mteb ``AbsTaskBitextMining``).

Each ``sentence1`` is matched to the ``sentence2`` of highest model similarity; the gold match of
row i is row i. Scores: accuracy, and precision/recall/F1 weighted by class (scikit-learn,
zero_division=0). Main score: ``f1``.

A sparse model's vectors stay sparse: similarities by sparse products (``gpte.evaluate.sparse``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from gpte.data.mteb_folders import read_rows
from gpte.evaluate import sparse
from gpte.evaluate.encoder import TaskEncoder
from gpte.evaluate.tasks import Task
from gpte.similarity import similarity

QUERY_CHUNK = 100


def evaluate(task: Task, encoder: TaskEncoder) -> dict[str, float]:
    rows = read_rows(task.path / f"{task.split}.jsonl", ("sentence1", "sentence2"))
    sources = encoder.encode([row["sentence1"] for row in rows], task)
    targets = encoder.encode([row["sentence2"] for row in rows], task)
    return bitext_scores(nearest_neighbours(sources, targets, encoder.similarity_name), np.arange(len(rows)))


def nearest_neighbours(sources: Any, targets: Any, similarity_name: str = "cosine") -> np.ndarray:
    """For each source row, the index of its most similar target row (chunked over sources); arrays, or sparse
    matrices."""
    if sparse.is_sparse(sources):
        best = [
            torch.topk(
                torch.from_numpy(sparse.similarity(sources[start : start + QUERY_CHUNK], targets, similarity_name)),
                1,
                dim=1,
            ).indices[:, 0]
            for start in range(0, sources.shape[0], QUERY_CHUNK)
        ]
        return torch.cat(best).numpy()
    target_tensor = torch.from_numpy(targets)
    best = [
        torch.topk(
            similarity(torch.from_numpy(sources[start : start + QUERY_CHUNK]), target_tensor, similarity_name), 1, dim=1
        ).indices[:, 0]
        for start in range(0, len(sources), QUERY_CHUNK)
    ]
    return torch.cat(best).numpy()


def bitext_scores(predicted: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    return {
        "precision": float(precision_score(gold, predicted, zero_division=0, average="weighted")),
        "recall": float(recall_score(gold, predicted, zero_division=0, average="weighted")),
        "f1": float(f1_score(gold, predicted, zero_division=0, average="weighted")),
        "accuracy": float(accuracy_score(gold, predicted)),
    }
