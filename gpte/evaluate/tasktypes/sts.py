"""STS: correlation of pair similarities with graded human scores (mteb ``AbsTaskSTS``).

Scores: Pearson and Spearman of cosine, negative Manhattan and negative Euclidean distances, and of
the model's own similarity (``pearson``/``spearman``); gold scores are first mapped to [0, 1] with the
task's ``score_range``. Main score: ``cosine_spearman``.

A sparse model's vectors stay sparse (scikit-learn's paired distances take them; ``gpte.evaluate.sparse``). A
multi-vector model has no vector per text: its own score of each pair (MaxSim, sentence1 the query side) gives
``pearson``/``spearman`` only, and ``spearman`` is its main score (``gpte.evaluate.multivector``).
"""

from __future__ import annotations

from typing import Any

from scipy.stats import pearsonr, spearmanr
from sklearn.metrics.pairwise import paired_cosine_distances, paired_euclidean_distances, paired_manhattan_distances

from gpte.data.mteb_folders import read_rows
from gpte.evaluate.encoder import TaskEncoder
from gpte.evaluate.sparse import pairwise_similarity
from gpte.evaluate.tasks import Task


def evaluate(task: Task, encoder: TaskEncoder) -> dict[str, float]:
    rows = read_rows(task.path / f"{task.split}.jsonl", ("sentence1", "sentence2", "score"))
    first = encoder.encode([row["sentence1"] for row in rows], task)
    second = encoder.encode([row["sentence2"] for row in rows], task)
    low, high = task.metadata.get("score_range", (0, 5))
    gold = [(float(row["score"]) - low) / (high - low) for row in rows]
    if encoder.multivector:
        return correlations(gold, {"": encoder.pairwise_similarity(first, second)})
    return sts_scores(first, second, gold, encoder.similarity_name)


def sts_scores(first: Any, second: Any, gold: list[float], similarity: str = "cosine") -> dict[str, float]:
    """Correlations between ``gold`` and the similarity of each pair (first[i], second[i]) (arrays, or sparse
    matrices)."""
    predictions = {
        "cosine": 1 - paired_cosine_distances(first, second),
        "manhattan": -paired_manhattan_distances(first, second),
        "euclidean": -paired_euclidean_distances(first, second),
        "": pairwise_similarity(first, second, similarity),
    }
    return correlations(gold, predictions)


def correlations(gold: list[float], predictions: dict[str, Any]) -> dict[str, float]:
    """``{name}_pearson`` and ``{name}_spearman`` (``pearson``, ``spearman`` for the name "") of ``gold`` with each
    of ``predictions`` (name -> one predicted score per pair)."""
    scores = {}
    for name, predicted in predictions.items():
        prefix = f"{name}_" if name else ""
        scores[f"{prefix}pearson"] = float(pearsonr(gold, predicted)[0])
        scores[f"{prefix}spearman"] = float(spearmanr(gold, predicted)[0])
    return scores
