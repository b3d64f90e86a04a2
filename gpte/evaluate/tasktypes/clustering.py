"""Clustering: k-means on embeddings scored by V-measure (mteb ``AbsTaskClustering``).

Protocol: every text embedded; 10 bootstrap draws of 16,384 texts with replacement from
``random.Random(42)``; each clustered by ``MiniBatchKMeans(k = number of labels, batch_size=512,
n_init=1, random_state=42)``. Scores: V-measure and adjusted mutual information, mean and standard
deviation over draws. Main score: ``v_measure``.

A sparse model's vectors are made dense, as mteb densifies them, over the columns active in some vector only (a
column zero everywhere moves no distance; ``gpte.evaluate.sparse``).
"""

from __future__ import annotations

import random

import numpy as np
from sklearn.cluster import MiniBatchKMeans
from sklearn.metrics.cluster import adjusted_mutual_info_score, v_measure_score

from gpte.data.mteb_folders import read_rows
from gpte.evaluate import sparse
from gpte.evaluate.encoder import TaskEncoder
from gpte.evaluate.tasks import Task

DRAWS = 10
DRAW_SIZE = 16_384
KMEANS_BATCH = 512
SEED = 42


def evaluate(task: Task, encoder: TaskEncoder) -> dict[str, float]:
    rows = read_rows(task.path / f"{task.split}.jsonl", ("text", "label"))
    vectors = encoder.encode([row["text"] for row in rows], task)
    if sparse.is_sparse(vectors):
        vectors = sparse.dense_rows(vectors, sparse.feature_columns(vectors))
    return clustering_scores(vectors, np.array([str(row["label"]) for row in rows]))


def clustering_scores(
    vectors: np.ndarray, labels: np.ndarray, draws: int = DRAWS, draw_size: int = DRAW_SIZE
) -> dict[str, float]:
    rng = random.Random(SEED)
    kmeans = MiniBatchKMeans(
        n_clusters=np.unique(labels).size, batch_size=KMEANS_BATCH, init="k-means++", n_init=1, random_state=SEED
    )
    v_measures, amis = [], []
    for _ in range(draws):
        chosen = rng.choices(range(len(vectors)), k=draw_size)
        assignment = kmeans.fit_predict(vectors[chosen])
        v_measures.append(float(v_measure_score(labels[chosen], assignment)))
        amis.append(float(adjusted_mutual_info_score(labels[chosen], assignment)))
    return {
        "v_measure": float(np.mean(v_measures)),
        "v_measure_std": float(np.std(v_measures)),
        "ami": float(np.mean(amis)),
        "ami_std": float(np.std(amis)),
    }
