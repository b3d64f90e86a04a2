"""Run mteb's own evaluator on a gpte task folder (needs ``pip install mteb``), to cross-check gpte's
scores and to time mteb on the same data.

mteb loads datasets from the Hugging Face Hub; here an mteb task of the same type is taken for its
protocol and handed the folder's data directly, in the shapes mteb's loaders produce. The model must
be an mteb model (for example ``mteb.models.sentence_transformer_wrapper.SentenceTransformerEncoderWrapper``).
"""

from __future__ import annotations

from typing import Any

from gpte.data.mteb_folders import read_beir, read_rows
from gpte.evaluate.tasks import Task

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
    """mteb's scores for ``task`` with ``model`` (an mteb model)."""
    import mteb

    mteb_task = mteb.get_task(MTEB_TASKS[task.type])
    mteb_task.dataset = {"default": _dataset(task, mteb_task)}
    mteb_task.hf_subsets = ["default"]
    mteb_task.data_loaded = True
    return mteb_task.evaluate(model, task.split, encode_kwargs={"batch_size": batch_size})["default"]


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
        data = read_beir(task.path, task.split)
        corpus = [{"id": doc, "title": "", "text": text} for doc, text in data.corpus.items()]
        queries = [{"id": query, "text": text} for query, text in data.queries.items()]
        return {
            "corpus": Dataset.from_list(corpus),
            "queries": Dataset.from_list(queries),
            "relevant_docs": data.qrels,
            "top_ranked": None,
        }
    rows = [
        r
        for r in read_rows(task.path / f"{task.split}.jsonl", ("query", "positive", "negative"))
        if r["positive"] and r["negative"]
    ]
    corpus, queries, qrels, top_ranked = [], [], {}, {}
    for index, row in enumerate(rows):
        query_id = f"{task.split}_query{index}"
        queries.append({"id": query_id, "text": row["query"]})
        docs = [(f"apositive_{query_id}_{i:05d}", text, 1) for i, text in enumerate(row["positive"])]
        docs += [(f"negative_{query_id}_{i:05d}", text, 0) for i, text in enumerate(row["negative"])]
        corpus += [{"id": doc, "title": "", "text": text} for doc, text, _ in docs]
        qrels[query_id] = {doc: grade for doc, _, grade in docs}
        top_ranked[query_id] = [doc for doc, _, _ in docs]
    return {
        "corpus": Dataset.from_list(corpus),
        "queries": Dataset.from_list(queries),
        "relevant_docs": qrels,
        "top_ranked": top_ranked,
    }
