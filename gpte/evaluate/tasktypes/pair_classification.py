"""PairClassification: is a pair a match (label 1) or not (0)? (mteb ``AbsTaskPairClassification``).

For each score — the model's similarity, cosine, Manhattan and Euclidean distance (lower = more
similar), dot product — the best accuracy and best F1 over all thresholds (a threshold never splits
tied scores), the precision/recall at the best F1, and average precision (scikit-learn). ``max_*`` is
the best over the five scores. Main score: ``max_ap``.

A sparse model's vectors stay sparse (scikit-learn's paired distances take them; ``gpte.evaluate.sparse``). A
multi-vector model has no vector per text: only its own score of each pair (MaxSim, sentence1 the query side) is
thresholded, so ``max_*`` are its ``similarity_*`` (``gpte.evaluate.multivector``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score
from sklearn.metrics.pairwise import paired_cosine_distances, paired_euclidean_distances, paired_manhattan_distances

from gpte.data.mteb_folders import read_rows
from gpte.evaluate.encoder import TaskEncoder
from gpte.evaluate.sparse import is_sparse, pairwise_similarity
from gpte.evaluate.tasks import Task

MAX_METRICS = ("accuracy", "f1", "precision", "recall", "ap")


def evaluate(task: Task, encoder: TaskEncoder) -> dict[str, float]:
    rows = read_rows(task.path / f"{task.split}.jsonl", ("sentence1", "sentence2", "label"))
    first = encoder.encode([row["sentence1"] for row in rows], task)
    second = encoder.encode([row["sentence2"] for row in rows], task)
    labels = np.array([int(row["label"]) for row in rows])
    if encoder.multivector:
        return threshold_scores([("similarity", encoder.pairwise_similarity(first, second), True)], labels)
    return pair_classification_scores(first, second, labels, encoder.similarity_name)


def pair_classification_scores(
    first: Any, second: Any, labels: np.ndarray, similarity: str = "cosine"
) -> dict[str, float]:
    """All scores for pairs (first[i], second[i]) (arrays, or sparse matrices) with 0/1 ``labels``."""
    dot = pairwise_similarity(first, second, "dot") if is_sparse(first) else np.einsum("ij,ij->i", first, second)
    candidates = [  # name, scores, higher means more similar
        ("similarity", pairwise_similarity(first, second, similarity), True),
        ("cosine", 1 - paired_cosine_distances(first, second), True),
        ("manhattan", paired_manhattan_distances(first, second), False),
        ("euclidean", paired_euclidean_distances(first, second), False),
        ("dot", dot, True),
    ]
    return threshold_scores(candidates, labels)


def threshold_scores(candidates: list[tuple[str, Any, bool]], labels: np.ndarray) -> dict[str, float]:
    """``{name}_{metric}`` (``threshold_metrics``) of each candidate (name, one score per pair, whether higher means
    more similar), and ``max_{metric}``: the best over the candidates."""
    scores: dict[str, float] = {}
    for name, values, higher_is_similar in candidates:
        for metric, value in threshold_metrics(np.asarray(values, dtype=np.float64), labels, higher_is_similar).items():
            scores[f"{name}_{metric}"] = value
    for metric in MAX_METRICS:
        scores[f"max_{metric}"] = max(scores[f"{name}_{metric}"] for name, _, _ in candidates)
    return scores


def threshold_metrics(scores: np.ndarray, labels: np.ndarray, higher_is_similar: bool) -> dict[str, float]:
    """Best accuracy, best F1 with its precision and recall, and average precision."""
    order = sorted(zip(scores.tolist(), labels.tolist()), key=lambda row: row[0], reverse=higher_is_similar)
    f1, precision, recall = _best_f1(order, int(labels.sum()))
    return {
        "accuracy": _best_accuracy(order, int((labels == 0).sum()), len(labels)),
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "ap": float(average_precision_score(labels, scores * (1 if higher_is_similar else -1))),
    }


def _best_accuracy(order: list[tuple[float, int]], negatives: int, total: int) -> float:
    """Predict 'match' for the first i+1 rows of ``order``; best accuracy over cut points between distinct scores."""
    best, positives_above = 0.0, 0
    for i in range(len(order) - 1):
        if order[i][1] == 1:
            positives_above += 1
        else:
            negatives -= 1
        if order[i][0] != order[i + 1][0]:
            best = max(best, (positives_above + negatives) / total)
    return best


def _best_f1(order: list[tuple[float, int]], total_positives: int) -> tuple[float, float, float]:
    best = (0.0, 0.0, 0.0)
    correct = 0
    for i in range(len(order) - 1):
        correct += order[i][1] == 1
        if order[i][0] == order[i + 1][0] or correct == 0:
            continue
        precision, recall = correct / (i + 1), correct / total_positives
        f1 = 2 * precision * recall / (precision + recall)
        if f1 > best[0]:
            best = (f1, precision, recall)
    return best
