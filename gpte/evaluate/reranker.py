"""Rerankers (pair scorers, ``gpte.models.protocol.PairScorer``) evaluated as mteb evaluates a cross-encoder.

mteb 2.x takes a cross-encoder on retrieval-type tasks only (``AbsTaskRetrieval._support_cross_encoder``; every
other task type refuses one), Reranking included, through ``SearchCrossEncoderWrapper``: each query's candidates
(the task's ``top_ranked``) are scored as (query, document) pairs, in one ``predict`` call, and the run holds those
candidates only. gpte does the same:

- the pair score is the model's ``predict`` with its activation (sentence-transformers' ``CrossEncoder.predict``
  default, which mteb's ``CrossEncoderWrapper`` calls), and no prompt (the wrapper's ``query_prefix`` is "");
- Reranking: the candidates are each row's positives then negatives (``read_reranking``, mteb's ``top_ranked``);
- Retrieval: the candidates are each query's first ``top_k`` documents by a first stage (a dense model, or a
  ``LexicalRetriever`` such as BM25), taken as mteb's ``convert_to_reranking`` takes a previous run's: sorted by
  score, best first, the first ``top_k`` kept. Documents outside them are not in the run, so at every k they
  count as not retrieved (``recall_at_1000`` is the recall of the ``top_k``);
- the scores are the retrieval scores of that run (``retrieval_scores``): ``map_at_1000`` is the Reranking
  main score, ``ndcg_at_10`` the Retrieval one, with ``mrr_at_10`` and the others at every k.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from gpte.data.mteb_folders import read_beir
from gpte.evaluate.encoder import TaskEncoder, as_vector_encoder
from gpte.evaluate.tasks import Task
from gpte.evaluate.tasktypes.retrieval import (
    Run,
    dense_run,
    judged_queries,
    read_reranking,
    retrieval_scores,
)

RERANKABLE_TYPES = ("Reranking", "Retrieval")  # the task types mteb evaluates a cross-encoder on
DEFAULT_TOP_K = 100


def is_pair_scorer(model: Any) -> bool:
    """Whether ``model`` scores (query, text) pairs: ``output_kind`` ``"pair_score"`` and a ``predict`` method."""
    return getattr(model, "output_kind", None) == "pair_score" and callable(getattr(model, "predict", None))


@runtime_checkable
class LexicalRetriever(Protocol):
    """A first stage that scores texts by their words (BM25): ``index`` a corpus, then ``scores`` per query."""

    name: str

    def index(self, texts: list[str]) -> None:
        """Index ``texts`` (the whole corpus of one task), replacing any previous index."""
        ...

    def scores(self, query: str) -> np.ndarray:
        """One score per indexed text, in order (higher: more relevant)."""
        ...


class FirstStage:
    """The candidates a reranker reranks on a Retrieval task: each query's ``top_k`` documents by ``model``.

    Args:
        model: a dense model (``gpte.models.protocol.VectorEncoder``, or any object with ``encode(texts, role=...)``),
            a sparse one (``gpte.models.protocol.SparseModel``) or a multi-vector one
            (``gpte.models.protocol.MultiVectorModel``), searched as the Retrieval task type searches; or a
            ``LexicalRetriever``.
        batch_size: passed to the model's encode.
        cache: a folder of vectors kept across runs for a model with a fingerprint (``TaskEncoder``).
    """

    def __init__(self, model: Any, batch_size: int = 32, cache: str | Path | None = None) -> None:
        self.lexical: LexicalRetriever | None = model if isinstance(model, LexicalRetriever) else None
        source = self.lexical or as_vector_encoder(model)
        self.name: str = source.name
        self.fingerprint: str | None = getattr(source, "fingerprint", None)
        self.encoder = (
            None
            if self.lexical
            else TaskEncoder(source, batch_size, cache if self.fingerprint else None, self.fingerprint)
        )

    @property
    def seconds(self) -> float:
        """Time spent in a dense model's encode so far (0 for a lexical first stage)."""
        return self.encoder.seconds if self.encoder else 0.0

    def candidates(
        self, task: Task, queries: dict[str, str], corpus: dict[str, str], top_k: int
    ) -> dict[str, list[str]]:
        """Query id -> the ids of its ``top_k`` best documents, best first (mteb's ``convert_to_reranking``)."""
        if self.encoder is not None:
            run = dense_run(task, self.encoder, queries, corpus, top_k)
        else:
            run = self._lexical_run(queries, corpus, top_k)
        return {query: sorted(docs, key=docs.__getitem__, reverse=True)[:top_k] for query, docs in run.items()}

    def _lexical_run(self, queries: dict[str, str], corpus: dict[str, str], top_k: int) -> Run:
        doc_ids = list(corpus)
        self.lexical.index(list(corpus.values()))
        run: Run = {}
        for query, text in queries.items():
            scores = np.asarray(self.lexical.scores(text), dtype=np.float64)
            best = np.argsort(-scores, kind="stable")[:top_k]
            run[query] = {doc_ids[i]: float(scores[i]) for i in best}
        return run


class RerankerScoring:
    """Scores tasks with a reranker: its pair scores on each query's candidates, then the retrieval scores.

    Args:
        model: a pair scorer (``is_pair_scorer``): ``predict(pairs, batch_size=...)`` -> one score per pair.
        batch_size: passed to ``predict``.
        first_stage: what retrieves the candidates on Retrieval tasks (``FirstStage``'s ``model``); None allows
            Reranking tasks only.
        top_k: the number of first-stage documents reranked per query.
        cache: a folder of vectors for a dense first stage (pair scores are not cached).

    Attributes:
        seconds: time spent in the reranker's ``predict`` and the first stage's encode so far.
    """

    def __init__(
        self,
        model: Any,
        batch_size: int = 32,
        first_stage: Any = None,
        top_k: int = DEFAULT_TOP_K,
        cache: str | Path | None = None,
    ) -> None:
        if not is_pair_scorer(model):
            raise TypeError(
                f"{type(model).__name__} is not a reranker: one needs output_kind 'pair_score' and "
                "predict(pairs, batch_size=...) (gpte.models.protocol.PairScorer)"
            )
        if top_k < 1:
            raise ValueError(f"top_k must be a positive number of documents to rerank, got {top_k}")
        self.model, self.batch_size, self.top_k = model, batch_size, top_k
        self.name: str = getattr(model, "name", None) or type(model).__name__
        self.fingerprint: str | None = getattr(model, "fingerprint", None)
        self.first_stage = FirstStage(first_stage, batch_size, cache) if first_stage is not None else None
        self._predict_seconds = 0.0

    @property
    def seconds(self) -> float:
        return self._predict_seconds + (self.first_stage.seconds if self.first_stage else 0.0)

    def scores(self, task: Task) -> dict[str, float]:
        """The retrieval scores of ``task`` reranked by the model.

        Raises:
            ValueError: the task type is not one a reranker is evaluated on, or a Retrieval task has no first stage.
        """
        if task.type == "Reranking":
            data = read_reranking(task)
            return retrieval_scores(data.qrels, self.rerank(task, data.queries, data.candidates))
        if task.type != "Retrieval":
            raise ValueError(
                f"task {task.name}: a reranker is evaluated on {' and '.join(RERANKABLE_TYPES)} tasks "
                f"(as mteb does), not on {task.type}"
            )
        if self.first_stage is None:
            raise ValueError(
                f"task {task.name}: a reranker reranks the top_k documents of a first stage on a Retrieval task; "
                "pass first_stage (a dense model, or a lexical retriever such as BM25)"
            )
        beir = read_beir(task.path, task.split)
        queries = judged_queries(beir)
        top = self.first_stage.candidates(task, queries, beir.corpus, self.top_k)
        candidates = {query: {doc: beir.corpus[doc] for doc in docs} for query, docs in top.items()}
        return retrieval_scores(beir.qrels, self.rerank(task, queries, candidates))

    def main_score(self, task: Task) -> str:
        return task.main_score

    def figures(self, task: Task) -> dict[str, dict[str, float]]:
        """Nothing: a reranker's scores come from no vectors (a sparse or multi-vector first stage's are not
        reported)."""
        return {}

    def provenance(self, task: Task) -> dict[str, Any]:
        """The first stage of a Retrieval task (name, fingerprint, top_k); nothing for the other types."""
        if task.type != "Retrieval" or self.first_stage is None:
            return {}
        return {
            "first_stage": self.first_stage.name,
            "first_stage_sha256": self.first_stage.fingerprint,
            "top_k": self.top_k,
        }

    def rerank(self, task: Task, queries: dict[str, str], candidates: dict[str, dict[str, str]]) -> Run:
        """Query id -> candidate id -> the model's score of (query text, candidate text), all pairs in one call."""
        pairs = [(queries[query], text) for query, docs in candidates.items() for text in docs.values()]
        scores = iter(self._predict(pairs, task).tolist())
        return {query: {doc: next(scores) for doc in docs} for query, docs in candidates.items()}

    def _predict(self, pairs: Sequence[tuple[str, str]], task: Task) -> np.ndarray:
        """The model's scores of ``pairs``, checked: one finite float per pair."""
        started = time.perf_counter()
        scores = self.model.predict(pairs, batch_size=self.batch_size)
        self._predict_seconds += time.perf_counter() - started
        scores = np.asarray(scores.cpu() if hasattr(scores, "cpu") else scores, dtype=np.float64)
        if scores.shape != (len(pairs),):
            raise ValueError(
                f"task {task.name}: the reranker returned shape {scores.shape} for {len(pairs)} pairs; evaluation "
                f"needs one score per pair, shape ({len(pairs)},) (a one-label cross-encoder)"
            )
        bad = np.flatnonzero(~np.isfinite(scores))
        if len(bad):
            query, text = pairs[bad[0]]
            raise ValueError(
                f"task {task.name}: the reranker returned NaN or infinity for pair {bad[0]}: ({query!r:.60}, {text!r:.60})"
            )
        return scores
