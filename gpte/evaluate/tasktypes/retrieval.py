"""Retrieval and Reranking (mteb ``AbsTaskRetrieval``; mteb 2.x runs reranking as retrieval over each
query's candidates).

Retrieval: queries (role ``query``) search the corpus (role ``document``, ``title + " " + text``) by the
model's similarity; the top 1000 documents per query are scored with trec_eval semantics through
pytrec_eval against graded qrels. Queries without qrels are dropped, as mteb does. Scores at
k in (1, 3, 5, 10, 20, 100, 1000): ``ndcg_at_k``, ``map_at_k``, ``recall_at_k``, ``precision_at_k``,
``hit_rate_at_k`` (means rounded to 5 decimals, as mteb reports them), ``mrr_at_k`` (ties broken by
document id, as pytrec_eval does). Main score: ``ndcg_at_10``.

Reranking rows ``{query, positive[], negative[]}`` become one query each (rows without a positive or
a negative are dropped), its candidates the documents (relevance 1/0), named as mteb names them so
ties break alike. Main score: ``map_at_1000``.

Queries and documents are compared by the model's similarity (``TaskEncoder.similarity``), the corpus chunk by
chunk: a sparse model's vectors stay sparse (sparse products, ``gpte.evaluate.sparse.similarity``); a multi-vector
model's token vectors are scored by its own MaxSim (``gpte.evaluate.multivector``; on Reranking each query against
its own candidates, as mteb's MultiVectorWrapper scores them).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytrec_eval
import torch

from gpte.data.mteb_folders import RetrievalData, read_beir, read_rows
from gpte.evaluate.encoder import TaskEncoder
from gpte.evaluate.multivector import row_count
from gpte.evaluate.tasks import Task
from gpte.similarity import pairwise_similarity

K_VALUES = (1, 3, 5, 10, 20, 100, 1000)
CORPUS_CHUNK = 50_000  # documents encoded and searched at a time: memory stays flat on large corpora

Run = dict[str, dict[str, float]]  # query id -> document id -> score
Qrels = dict[str, dict[str, int]]
Scorer = Callable[[Any, Any], np.ndarray]  # (queries' vectors, documents' vectors) -> (queries, documents) scores


@dataclass
class RerankingData:
    """A Reranking task as mteb's reranking loader builds it: each row is a query (``{split}_query{i}``) whose
    candidates are its positives (``apositive_{query}_{j:05d}``, relevance 1) then its negatives
    (``negative_{query}_{j:05d}``, relevance 0), so ties break as in mteb."""

    queries: dict[str, str]  # query id -> text
    candidates: dict[str, dict[str, str]]  # query id -> document id -> text, in mteb's top_ranked order
    qrels: Qrels


def read_reranking(task: Task) -> RerankingData:
    """The rows of ``{split}.jsonl`` (``{query, positive[], negative[]}``) with both a positive and a negative."""
    rows = read_rows(task.path / f"{task.split}.jsonl", ("query", "positive", "negative"))
    data = RerankingData({}, {}, {})
    for index, row in enumerate(row for row in rows if row["positive"] and row["negative"]):
        query_id = f"{task.split}_query{index}"
        docs = {f"apositive_{query_id}_{i:05d}": text for i, text in enumerate(row["positive"])}
        docs |= {f"negative_{query_id}_{i:05d}": text for i, text in enumerate(row["negative"])}
        data.queries[query_id] = row["query"]
        data.candidates[query_id] = docs
        data.qrels[query_id] = {doc: int(doc.startswith("apositive")) for doc in docs}
    return data


def evaluate_retrieval(task: Task, encoder: TaskEncoder) -> dict[str, float]:
    data = read_beir(task.path, task.split)
    return retrieval_scores(data.qrels, dense_run(task, encoder, judged_queries(data), data.corpus))


def judged_queries(data: RetrievalData) -> dict[str, str]:
    """The queries that have qrels (mteb drops the others), id -> text."""
    return {query: text for query, text in data.queries.items() if query in data.qrels}


def dense_run(
    task: Task, encoder: TaskEncoder, queries: dict[str, str], corpus: dict[str, str], top_k: int = max(K_VALUES)
) -> Run:
    """The ``top_k`` documents of ``corpus`` for each query by the encoder's model and similarity."""
    vectors = encoder.encode(list(queries.values()), task, role="query")
    return search(
        vectors,
        list(queries),
        corpus,
        lambda texts: encoder.encode(texts, task, role="document"),
        encoder.similarity,
        top_k,
    )


def evaluate_reranking(task: Task, encoder: TaskEncoder) -> dict[str, float]:
    data = read_reranking(task)
    query_vectors = encoder.encode(list(data.queries.values()), task, role="query")
    encoder.encode(
        [text for docs in data.candidates.values() for text in docs.values()], task, role="document"
    )  # one model call
    run: Run = {}
    for index, (query_id, docs) in enumerate(data.candidates.items()):
        doc_vectors = encoder.encode(list(docs.values()), task, role="document")
        if isinstance(query_vectors, np.ndarray):
            scores = pairwise_similarity(
                np.repeat(query_vectors[index][None], len(docs), axis=0), doc_vectors, encoder.similarity_name
            )
        else:  # sparse rows, token vectors: the query (one row) against its candidates
            scores = encoder.similarity(query_vectors[index : index + 1], doc_vectors)[0]
        run[query_id] = dict(zip(docs, scores.tolist()))
    return retrieval_scores(data.qrels, run)


def search(
    queries: Any,
    query_ids: list[str],
    corpus: dict[str, str],
    encode_documents: Callable[[list[str]], Any],
    score: Scorer,
    top_k: int = max(K_VALUES),
) -> Run:
    """The ``top_k`` documents of each query, encoding and scoring the corpus ``CORPUS_CHUNK`` documents at a time:
    memory holds one chunk's (queries, chunk) scores and each query's best ``top_k`` so far.

    Args:
        queries: the queries' vectors (an (n, d) array, a sparse matrix or ``TokenVectors``, one per query id).
        encode_documents: texts -> their vectors, of the kind of ``queries``.
        score: (queries, documents) -> their (n, documents) scores (``TaskEncoder.similarity``).
    """
    if row_count(queries) != len(query_ids):
        raise ValueError(f"{row_count(queries)} query vectors for {len(query_ids)} query ids")
    doc_ids = list(corpus)
    best_scores = torch.empty((len(query_ids), 0))
    best_docs = torch.empty((len(query_ids), 0), dtype=torch.long)
    for start in range(0, len(doc_ids), CORPUS_CHUNK):
        chunk = doc_ids[start : start + CORPUS_CHUNK]
        scores = torch.from_numpy(np.asarray(score(queries, encode_documents([corpus[d] for d in chunk]))))
        merged_scores = torch.cat([best_scores, scores], dim=1)
        merged_docs = torch.cat([best_docs, torch.arange(start, start + len(chunk)).expand(len(query_ids), -1)], dim=1)
        keep = min(top_k, merged_scores.size(1))
        best_scores, positions = torch.topk(merged_scores, keep, dim=1)
        best_docs = merged_docs.gather(1, positions)
    return {
        query: {doc_ids[d]: float(s) for d, s in zip(docs.tolist(), scores.tolist())}
        for query, docs, scores in zip(query_ids, best_docs, best_scores)
    }


def retrieval_scores(qrels: Qrels, run: Run, k_values: tuple[int, ...] = K_VALUES) -> dict[str, float]:
    """trec_eval measures through pytrec_eval, averaged over the queries that have qrels, plus MRR@k."""
    ks = ",".join(str(k) for k in k_values)
    measures = {f"map_cut.{ks}", f"ndcg_cut.{ks}", f"recall.{ks}", f"P.{ks}", f"success.{ks}"}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    if not per_query:
        raise ValueError("no query of the run has qrels: nothing to score (every query was dropped or unjudged)")
    names = {
        "ndcg_at": "ndcg_cut",
        "map_at": "map_cut",
        "recall_at": "recall",
        "precision_at": "P",
        "hit_rate_at": "success",
    }
    scores = {}
    for name, trec_name in names.items():
        for k in k_values:
            values = [query_scores[f"{trec_name}_{k}"] for query_scores in per_query.values()]
            scores[f"{name}_{k}"] = round(sum(values) / len(per_query), 5)
    for k, values in mean_reciprocal_ranks(qrels, run, k_values).items():
        scores[f"mrr_at_{k}"] = sum(values) / len(values)
    return scores


def mean_reciprocal_ranks(qrels: Qrels, run: Run, k_values: tuple[int, ...]) -> dict[int, list[float]]:
    """Per query, 1/rank of the first relevant document within the top k (ranked by score, then id, descending)."""
    ranks: dict[int, list[float]] = defaultdict(list)
    for query, doc_scores in run.items():
        ranking = sorted(doc_scores.items(), key=lambda item: (item[1], item[0]), reverse=True)[: max(k_values)]
        relevant = {doc for doc, grade in qrels.get(query, {}).items() if grade > 0}
        first = next((rank for rank, (doc, _) in enumerate(ranking, 1) if doc in relevant), None)
        for k in k_values:
            ranks[k].append(1.0 / first if first is not None and first <= k else 0.0)
    return ranks
