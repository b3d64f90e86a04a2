"""BM25 lexical search over chunk texts, with bm25s (a numpy/scipy BM25, Lucene's scoring by default,
orders of magnitude faster than rank-bm25) and the Snowball English stemmer (PyStemmer)."""

from __future__ import annotations

from pathlib import Path

import bm25s
import numpy as np
import Stemmer

STOPWORDS = "en"


def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def build_bm25(texts: list[str]) -> bm25s.BM25:
    """A BM25 index of ``texts`` (lower-cased, English stop words removed, stemmed)."""
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize(texts, stopwords=STOPWORDS, stemmer=_stemmer(), show_progress=False), show_progress=False
    )
    return retriever


def save_bm25(retriever: bm25s.BM25, folder: Path) -> None:
    retriever.save(str(folder))


def load_bm25(folder: Path) -> bm25s.BM25:
    return bm25s.BM25.load(str(folder), mmap=True)


def bm25_scores(retriever: bm25s.BM25, query: str, allowed: np.ndarray | None = None) -> np.ndarray:
    """BM25 score of ``query`` for every chunk (float32, one per chunk); chunks outside ``allowed`` (a
    boolean mask) get -inf."""
    tokens = bm25s.tokenize([query], stopwords=STOPWORDS, stemmer=_stemmer(), show_progress=False, return_ids=False)[0]
    if tokens:
        scores = np.asarray(retriever.get_scores(tokens), dtype=np.float32)
    else:  # only stop words or punctuation: nothing matches
        scores = np.zeros(retriever.scores["num_docs"], dtype=np.float32)
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf).astype(np.float32)
    return scores


class BM25FirstStage:
    """BM25 as a reranker's first stage in evaluation (``gpte.evaluate.reranker.LexicalRetriever``): ``index`` a
    task's corpus, then ``scores`` per query."""

    name = "bm25"
    fingerprint = None

    def __init__(self) -> None:
        self.retriever: bm25s.BM25 | None = None

    def index(self, texts: list[str]) -> None:
        self.retriever = build_bm25(texts)

    def scores(self, query: str) -> np.ndarray:
        if self.retriever is None:
            raise ValueError("index a corpus before scoring queries")
        return bm25_scores(self.retriever, query)
