"""Run mteb's own evaluator on a gpte task folder (needs ``pip install mteb``), to cross-check gpte's
scores and to time mteb on the same data.

mteb loads datasets from the Hugging Face Hub; here an mteb task of the same type is taken for its
protocol and handed the folder's data directly, in the shapes mteb's loaders produce (``mteb_task``), named as
gpte's mteb-format result files name the task (``gpte.evaluate.mteb_format.mteb_task_name``). The model must
be an mteb model: any gpte model through ``gpte.evaluate.mteb_encoder.as_mteb_model``, or for example
``mteb.models.sentence_transformer_wrapper.SentenceTransformerEncoderWrapper`` (``SparseEncoderWrapper`` around
sentence-transformers' ``SparseEncoder`` for a sparse model). ``mteb.evaluate(model, mteb_task(task), cache=None)``
runs mteb's whole harness on the folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpte.data.mteb_folders import read_beir, read_rows
from gpte.evaluate.mteb_format import mteb_task_name
from gpte.evaluate.tasks import Task
from gpte.evaluate.tasktypes.retrieval import read_reranking

# an mteb task of each type whose protocol is mteb's default for that type
MTEB_TASKS = {
    "STS": "STSBenchmark",
    "PairClassification": "SprintDuplicateQuestions",
    "Classification": "Banking77Classification",
    "Clustering": "TwentyNewsgroupsClustering.v2",
    "Reranking": "AskUbuntuDupQuestions",
    "Retrieval": "SciFact",
    "BitextMining": "Tatoeba",
    "Summarization": "SummEvalSummarization.v2",
}


def mteb_scores(task: Task, model: Any, batch_size: int = 32) -> dict[str, Any]:
    """mteb's scores for ``task`` with ``model`` (an mteb model: an encoder, or a cross-encoder such as
    ``mteb.models.sentence_transformer_wrapper.CrossEncoderWrapper`` on a Reranking task)."""
    return mteb_task(task).evaluate(model, task.split, encode_kwargs={"batch_size": batch_size})["default"]


def mteb_rerank_scores(
    task: Task, first_stage: Any, reranker: Any, top_k: int, folder: Path, batch_size: int = 32
) -> dict[str, Any]:
    """mteb's scores for a Retrieval ``task`` whose ``top_k`` first-stage documents per query are reranked.

    mteb's own two-stage protocol: ``first_stage`` (an mteb encoder) runs the task and saves its predictions in
    ``folder``; ``convert_to_reranking`` reads the ``top_k`` best of each query back as the task's candidates, and
    ``reranker`` (an mteb cross-encoder) scores them.
    """
    encode_kwargs = {"batch_size": batch_size}
    mteb_task(task).evaluate(first_stage, task.split, encode_kwargs=encode_kwargs, prediction_folder=folder)
    second = mteb_task(task).convert_to_reranking(folder, top_k)
    return second.evaluate(reranker, task.split, encode_kwargs=encode_kwargs)["default"]


def mteb_task(task: Task) -> Any:
    """An mteb task of ``task``'s type (``MTEB_TASKS``: its protocol) holding ``task``'s data, loaded, named
    ``gpte.evaluate.mteb_format.mteb_task_name(task)``."""
    import mteb

    loaded = mteb.get_task(MTEB_TASKS[task.type])
    loaded.metadata = loaded.metadata.model_copy(update={"name": mteb_task_name(task), "superseded_by": None})
    loaded.dataset = {"default": _dataset(task, loaded)}
    loaded.hf_subsets = ["default"]
    loaded.data_loaded = True
    return loaded


def _dataset(task: Task, mteb_task: Any) -> Any:
    from datasets import Dataset, DatasetDict

    split = task.split
    rows_path = task.path / f"{split}.jsonl"
    low, high = task.metadata.get("score_range", (0, 5))
    if task.type == "STS":
        mteb_task.min_score, mteb_task.max_score = low, high
        return DatasetDict({split: Dataset.from_list(read_rows(rows_path, ("sentence1", "sentence2", "score")))})
    if task.type == "PairClassification":
        rows = read_rows(rows_path, ("sentence1", "sentence2", "label"))
        return DatasetDict(
            {
                split: Dataset.from_dict(
                    {
                        "sentence1": [r["sentence1"] for r in rows],
                        "sentence2": [r["sentence2"] for r in rows],
                        "labels": [int(r["label"]) for r in rows],
                    }
                )
            }
        )
    if task.type == "Classification":
        return DatasetDict(
            {
                name: Dataset.from_list(read_rows(task.path / f"{name}.jsonl", ("text", "label")))
                for name in ("train", split)
            }
        )
    if task.type == "Clustering":
        mteb_task.max_fraction_of_documents_to_embed = None  # the reference protocol embeds every text
        rows = read_rows(rows_path, ("text", "label"))
        return DatasetDict(
            {split: Dataset.from_dict({"sentences": [r["text"] for r in rows], "labels": [r["label"] for r in rows]})}
        )
    if task.type == "BitextMining":
        return DatasetDict({split: Dataset.from_list(read_rows(rows_path, ("sentence1", "sentence2")))})
    if task.type == "Summarization":
        mteb_task.min_score, mteb_task.max_score = low, high
        return DatasetDict(
            {
                split: Dataset.from_list(
                    read_rows(rows_path, ("text", "human_summaries", "machine_summaries", "relevance"))
                )
            }
        )
    return {split: _retrieval_split(task)}


def _retrieval_split(task: Task) -> dict[str, Any]:
    """Retrieval and Reranking in mteb's retrieval split shape (reranking as mteb's reranking loader builds it)."""
    from datasets import Dataset

    if task.type == "Retrieval":
        beir = read_beir(task.path, task.split)
        corpus, queries, qrels, top_ranked = beir.corpus, beir.queries, beir.qrels, None
    else:
        data = read_reranking(task)
        corpus = {doc: text for docs in data.candidates.values() for doc, text in docs.items()}
        queries, qrels = data.queries, data.qrels
        top_ranked = {query: list(docs) for query, docs in data.candidates.items()}
    return {
        "corpus": Dataset.from_list([{"id": doc, "title": "", "text": text} for doc, text in corpus.items()]),
        "queries": Dataset.from_list([{"id": query, "text": text} for query, text in queries.items()]),
        "relevant_docs": qrels,
        "top_ranked": top_ranked,
    }
