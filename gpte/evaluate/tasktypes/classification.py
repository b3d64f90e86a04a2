"""Classification: logistic regression on embeddings (mteb ``AbsTaskClassification``).

Protocol: 10 experiments; experiment i trains on the first 8 rows of each label in the train split's
row order shuffled i + 1 times, each time by a fresh ``numpy.random.RandomState(42)`` (mteb's
undersampling); ``LogisticRegression(max_iter=100, random_state=42)`` predicts the whole test split.
Scores (means over experiments): accuracy, macro and weighted F1/precision/recall, and average precision
for binary tasks. Main score: ``accuracy``.

A sparse model's vectors are made dense, as mteb densifies them, over the columns active in some training vector
only (the others get a weight of exactly zero), and test vectors are predicted a chunk at a time
(``gpte.evaluate.sparse``).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, precision_score, recall_score

from gpte.data.mteb_folders import read_rows
from gpte.evaluate import sparse
from gpte.evaluate.encoder import TaskEncoder
from gpte.evaluate.tasks import Task

EXPERIMENTS = 10
SAMPLES_PER_LABEL = 8
SEED = 42
MAX_ITER = 100


def evaluate(task: Task, encoder: TaskEncoder) -> dict[str, float]:
    train = read_rows(task.path / "train.jsonl", ("text", "label"))
    test = read_rows(task.path / f"{task.split}.jsonl", ("text", "label"))
    train_labels = [row["label"] for row in train]
    if len(set(train_labels)) < 2:
        raise ValueError(
            f"{task.path / 'train.jsonl'}: a single label ({train_labels[0]!r}); classification needs two or more"
        )
    selections = undersample(train_labels, EXPERIMENTS, SAMPLES_PER_LABEL, SEED)
    used = sorted(set().union(*selections))
    train_matrix = encoder.encode([train[i]["text"] for i in used], task)
    test_vectors = encoder.encode([row["text"] for row in test], task)
    columns = sparse.feature_columns(train_matrix) if sparse.is_sparse(train_matrix) else None
    if columns is not None:
        train_matrix = sparse.dense_rows(train_matrix, columns)
    train_vectors = dict(zip(used, train_matrix))
    test_labels = [row["label"] for row in test]
    runs = []
    for selected in selections:
        model = LogisticRegression(max_iter=MAX_ITER, random_state=SEED)
        model.fit(np.stack([train_vectors[i] for i in selected]), [train_labels[i] for i in selected])
        if columns is None:
            predicted = model.predict(test_vectors)
        else:
            predicted = sparse.predict_in_chunks(model, test_vectors, columns)
        runs.append(classification_scores(test_labels, predicted))
    return {name: float(np.mean([run[name] for run in runs])) for name in runs[0]}


def undersample(labels: list, experiments: int, per_label: int, seed: int) -> list[list[int]]:
    """Training row indices of each experiment (mteb's cumulative reshuffling; see module docstring)."""
    order = list(range(len(labels)))
    selections = []
    for _ in range(experiments):
        np.random.RandomState(seed).shuffle(order)
        counts: dict = defaultdict(int)
        selected = []
        for index in order:
            if counts[labels[index]] < per_label:
                selected.append(index)
                counts[labels[index]] += 1
        selections.append(selected)
    return selections


def classification_scores(gold: list, predicted: np.ndarray) -> dict[str, float]:
    scores = {
        "accuracy": accuracy_score(gold, predicted),
        "f1": f1_score(gold, predicted, average="macro"),
        "f1_weighted": f1_score(gold, predicted, average="weighted"),
        "precision": precision_score(gold, predicted, average="macro"),
        "precision_weighted": precision_score(gold, predicted, average="weighted"),
        "recall": recall_score(gold, predicted, average="macro"),
        "recall_weighted": recall_score(gold, predicted, average="weighted"),
    }
    if len(set(gold)) == 2:
        scores["ap"] = average_precision_score(gold, predicted, average="macro")
        scores["ap_weighted"] = average_precision_score(gold, predicted, average="weighted")
    return {name: float(value) for name, value in scores.items()}
