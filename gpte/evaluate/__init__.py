"""MTEB-compatible evaluation: the eight task types with mteb's metrics and protocols, on local folders.

from gpte import Embedder
from gpte.evaluate import discover_tasks, evaluate
run = evaluate(Embedder.load(), discover_tasks("../shared/data"), output="results")

A sparse model (``gpte.models.sparse.SparseEncoder``: SPLADE, PromptReps) is evaluated on every task type by the dot
product of its sparse vectors, each result with their mean active dimensions (``gpte.evaluate.sparse``):
``evaluate(load_sparse_encoder(folder), tasks)``.

A multi-vector model (``gpte.models.multivector.MultiVectorEncoder``: ColBERT) is evaluated by its own MaxSim on
Retrieval, Reranking, STS, PairClassification, BitextMining and Summarization, each result with the mean token vectors
stored per text (``gpte.evaluate.multivector``): ``evaluate(load_multivector_encoder(folder), tasks)``.

A reranker (``gpte.models.protocol.PairScorer``) is evaluated on Reranking tasks, and on Retrieval tasks reranking a
first stage's top-k: ``evaluate(CrossEncoder.load(folder), tasks, first_stage=Embedder.load(), top_k=100)``.

Every result written to an output folder is also written in mteb's result format (``gpte.evaluate.mteb_format``:
``mteb.ResultCache(output).load_results()`` reads them), and ``as_mteb_model(model)`` makes any gpte model an mteb
model: ``mteb.evaluate(as_mteb_model(Embedder.load()), tasks)``.
"""

from gpte.errors import extra_needed

with extra_needed("eval"):
    from gpte.evaluate.encoder import ForeignEncoder, TaskEncoder, as_vector_encoder
    from gpte.evaluate.mteb_encoder import as_mteb_model
    from gpte.evaluate.reranker import RERANKABLE_TYPES, LexicalRetriever
    from gpte.evaluate.runner import EvaluationRun, evaluate
    from gpte.evaluate.suites import SUITES, suite_patterns
    from gpte.evaluate.tasks import TASK_TYPES, Task, discover_tasks, fetch_data, load_task, select_tasks


__all__ = [
    "ForeignEncoder",
    "EvaluationRun",
    "LexicalRetriever",
    "RERANKABLE_TYPES",
    "SUITES",
    "TASK_TYPES",
    "Task",
    "TaskEncoder",
    "as_mteb_model",
    "as_vector_encoder",
    "discover_tasks",
    "evaluate",
    "fetch_data",
    "load_task",
    "select_tasks",
    "suite_patterns",
]
