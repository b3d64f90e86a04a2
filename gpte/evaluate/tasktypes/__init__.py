"""One module per MTEB task type; each ``evaluate(task, encoder)`` returns the type's scores."""

from collections.abc import Callable

from gpte.evaluate.encoder import TaskEncoder
from gpte.evaluate.tasks import Task
from gpte.evaluate.tasktypes import (
    bitext_mining,
    classification,
    clustering,
    pair_classification,
    retrieval,
    sts,
    summarization,
)

EVALUATORS: dict[str, Callable[[Task, TaskEncoder], dict[str, float]]] = {
    "STS": sts.evaluate,
    "PairClassification": pair_classification.evaluate,
    "Classification": classification.evaluate,
    "Clustering": clustering.evaluate,
    "Reranking": retrieval.evaluate_reranking,
    "Retrieval": retrieval.evaluate_retrieval,
    "BitextMining": bitext_mining.evaluate,
    "Summarization": summarization.evaluate,
}
