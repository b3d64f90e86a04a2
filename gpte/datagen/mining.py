"""Hard-negative mining (``gpte mine``): for (query, positive) pairs and a document corpus, retrieve each
query's candidates through a search index (dense, BM25 or hybrid), score them with the embedder or a
cross-encoder, and keep negatives by the rules of ``gpte.datagen.negatives`` (rank range, thresholds,
positive-aware margins, top or random sampling).

    report = mine_hard_negatives("pairs.jsonl", "corpus.jsonl", "mined.jsonl", rules=NegativeRules(relative_margin=0.05))

Output rows are what ``gpte train`` reads -- ``query``, ``positive``, ``negatives`` (a list of texts) --
plus ``query_id``, ``positive_id``, ``negative_ids``, ``positive_score`` and ``negative_scores``. Queries are
mined in chunks; a killed run resumes from its last finished chunk (``gpte.datagen.resumable``). Memory
holds the corpus texts once (the index's) and one chunk of candidates; vectors stay memory-mapped.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from gpte.atomic import check_destination
from gpte.data.mteb_folders import read_qrels, read_rows
from gpte.data.readers import check_text, iter_records
from gpte.datagen.corpus_index import corpus_texts, open_corpus_index
from gpte.datagen.negatives import NegativeRules, select_negatives
from gpte.datagen.resumable import ResumableJsonl
from gpte.locking import one_writer
from gpte.models.protocol import DenseModel
from gpte.search.index import Index
from gpte.search.query import Reranker

CHUNK_QUERIES = 1000  # queries mined (and resumed) at a time
POSITIVE_FIELDS = ("positive_id", "positive_ids", "positive")
MINING_MODES = ("dense", "lexical", "hybrid")  # the retrievals of a corpus index built with a dense model
Pair = tuple[str, str | None, str, str]  # (where, query id, query text, positive id or text)


@dataclass
class MiningQuery:
    """One distinct query and its known positives (corpus ids, in the order of its pairs)."""

    query_id: str
    text: str
    positives: list[str] = field(default_factory=list)


@dataclass
class MiningReport:
    """What a mining run did. ``missing_positive``: pairs skipped because their positive is not in the corpus
    (``missing_examples`` names some); ``too_few_negatives``: pairs left out because fewer than
    ``num_negatives`` candidates passed the rules."""

    queries: int
    pairs: int
    missing_positive: int
    missing_examples: list[str]
    too_few_negatives: int
    written: int
    negatives: int
    resumed_chunks: int
    seconds: float


def read_mining_pairs(
    source: str | Path, corpus: dict[str, str], split: str = "train"
) -> tuple[list[MiningQuery], list[str]]:
    """The queries of ``source`` with their positives found in ``corpus``, and the pairs whose positive is not.

    Args:
        source: a BEIR folder (``queries.jsonl`` and ``qrels/{split}.tsv``: every grade > 0 is a positive) or a
            jsonl/csv/tsv/parquet file with ``query`` and ``positive_id`` (a corpus id), ``positive_ids`` (a list)
            or ``positive`` (a text, matched exactly to a corpus text); ``query_id`` optional.
        corpus: document id -> text.
        split: the qrels split of a BEIR folder.

    Returns:
        (queries in first-seen order, each pair's description whose positive is missing from the corpus).

    Raises:
        ValueError: ``source`` has no pairs, or a pair that cannot be read (see ``read_pairs``).
    """
    return match_pairs(read_pairs(source, split), corpus)


def read_pairs(source: str | Path, split: str = "train") -> list[Pair]:
    """(where, query id, query text, positive id or text) of every pair of ``source`` (see ``read_mining_pairs``),
    read before any model loads.

    Raises:
        ValueError: no pairs; or, naming the file and line, a malformed line, a file that is not UTF-8, a lone surrogate, a query
            that is not a non-empty text, no positive field, or a positive of another type than an id (text or
            whole number; for ``positive_ids`` a list of them) or a text (``positive``).
    """
    pairs = list(_pairs(Path(source), split))
    if not pairs:
        raise ValueError(f"{source}: no pairs (an empty file, or no qrels with a grade above 0)")
    return pairs


def match_pairs(pairs: list[Pair], corpus: dict[str, str]) -> tuple[list[MiningQuery], list[str]]:
    """The queries of ``pairs`` (``read_pairs``) with their positives found in ``corpus`` (document id -> text),
    and the descriptions of the pairs whose positive is not."""
    by_text = {text: doc_id for doc_id, text in corpus.items()}
    queries: dict[str, MiningQuery] = {}
    missing = []
    for where, query_id, text, positive in pairs:
        doc_id = positive if positive in corpus else by_text.get(positive)
        if doc_id is None:
            missing.append(f"{where}: {positive!r:.60}")
            continue
        query = queries.setdefault(text, MiningQuery(query_id or f"q{len(queries) + 1}", text))
        if doc_id not in query.positives:
            query.positives.append(doc_id)
    return list(queries.values()), missing


def _pairs(source: Path, split: str) -> Iterator[Pair]:
    """(where, query id, query text, positive id or text) for every pair of ``source``."""
    if source.is_dir():
        texts = {
            str(row["_id"]): check_text(row["text"], f"{source / 'queries.jsonl'} query {row['_id']!r}", "text")
            for row in read_rows(source / "queries.jsonl", ("_id", "text"))
        }
        for query_id, doc_id, grade in read_qrels(source / "qrels" / f"{split}.tsv"):
            if grade > 0 and query_id in texts:
                yield f"qrels {query_id}", query_id, texts[query_id], doc_id
        return
    for where, record in iter_records(source):
        if not isinstance(record.get("query"), str) or not record["query"].strip():
            raise ValueError(f"{where}: a pair needs a non-empty text field 'query' (fields: {', '.join(record)})")
        query = record["query"]
        present = [name for name in POSITIVE_FIELDS if record.get(name) is not None]
        if not present:
            raise ValueError(
                f"{where}: a pair needs one of the fields {', '.join(POSITIVE_FIELDS)} (fields: {', '.join(record)})"
            )
        name = present[0]
        query_id = _identifier(record["query_id"], where, "query_id") if record.get("query_id") is not None else None
        for positive in _positives(record[name], where, name):
            yield where, query_id, query, positive


def _positives(value: object, where: str, name: str) -> list[str]:
    """The positives a pair's field ``name`` gives: ids (``positive_id``, ``positive_ids``) or a text (``positive``).

    Raises:
        ValueError: naming ``where``, a value of another type (a list of lists, an object, true/false, a fraction).
    """
    if name == "positive":
        if not isinstance(value, str):
            raise ValueError(f"{where}: positive must be a text (a corpus text), got {value!r:.80}")
        return [value]
    if name == "positive_ids" and isinstance(value, list):
        return [_identifier(item, where, name) for item in value]
    return [_identifier(value, where, name)]


ID_KINDS = {
    "positive_id": "a corpus id (a text or a whole number)",
    "positive_ids": "a corpus id or a list of corpus ids (texts or whole numbers)",
    "query_id": "an id (a text or a whole number)",
}


def _identifier(value: object, where: str, name: str) -> str:
    """The id in field ``name`` as text: a string or a whole number, else ValueError naming ``where``."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"{where}: {name} must be {ID_KINDS[name]}, got {value!r:.80}")


def check_mining_mode(mode: str) -> str:
    """``mode`` if it is one of ``MINING_MODES``, else ValueError naming them."""
    if mode not in MINING_MODES:
        raise ValueError(f"unknown mining mode {mode!r}; choose one of {', '.join(MINING_MODES)}")
    return mode


@one_writer("output")  # a second run mining into one output fails at once, naming the first
def mine_hard_negatives(
    pairs: str | Path,
    corpus: str | Path,
    output: str | Path,
    embedder: DenseModel | None = None,
    model: str | None = None,
    rules: NegativeRules = NegativeRules(),
    mode: str = "dense",
    cross_encoder: Reranker | str | None = None,
    split: str = "train",
    text_field: str = "text",
    index_dir: str | Path | None = None,
    batch_size: int = 32,
    chunk_size: int = CHUNK_QUERIES,
    overwrite: bool = False,
    restart: bool = False,
    show_progress: bool = True,
) -> MiningReport:
    """Mine hard negatives for every (query, positive) pair of ``pairs`` from ``corpus`` into ``output`` (jsonl).

    Args:
        pairs: see ``read_mining_pairs``.
        corpus: a document file or folder (``gpte.data.documents``); duplicate ids are an error naming them.
        output: the jsonl file to write.
        embedder, model: the retriever (default all-MiniLM-L6-v2).
        rules: the selection rules (``NegativeRules``).
        mode: candidates from "dense", "lexical" (BM25) or "hybrid" retrieval; the rules' scores are the
            embedder's similarity in every mode, or ``cross_encoder``'s scores when given (which then also
            re-ranks the candidates; a name or folder is loaded by ``gpte.models.loading.load_reranker``).
        index_dir: the corpus index folder (default ``OUTPUT.index`` beside the output, reused by later runs).
        chunk_size: queries per finished (resumable) chunk.
        overwrite, restart: replace an existing output; discard an earlier run's progress instead of resuming.

    Raises:
        ValueError: an unknown mode, no pairs or a pair that cannot be read (``read_pairs``), no pair with a
            positive in the corpus, duplicate corpus ids, a corpus line that cannot be read, bad rules.
        FileExistsError: ``output`` exists and ``overwrite`` is False.
        FileNotFoundError, NotADirectoryError, IsADirectoryError: the output or index folder cannot be written
            (``gpte.atomic.check_destination``).
        OutputLockedError: another process is writing ``output``.
    All but the corpus errors are raised before any model loads.
    """
    started = time.perf_counter()
    check_mining_mode(mode)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a whole number >= 1, got {chunk_size!r}")
    output = check_destination(output, overwrite)
    index_dir = check_destination(index_dir or output.with_name(output.name + ".index"), True, folder=True)
    raw_pairs = read_pairs(pairs, split)
    if isinstance(cross_encoder, str | Path):
        from gpte.models.loading import load_reranker

        cross_encoder = load_reranker(cross_encoder)
    index = open_corpus_index(corpus, index_dir, embedder, model, text_field, batch_size, show_progress)
    documents = corpus_texts(index)
    queries, missing = match_pairs(raw_pairs, documents)
    if not queries:
        raise ValueError(
            f"{pairs}: none of the {len(missing)} pairs has its positive in the corpus {corpus} (e.g. {'; '.join(missing[:3])})"
        )
    job = ResumableJsonl(
        output, _job_description(queries, index, rules, mode, cross_encoder, chunk_size), overwrite, restart
    )
    resumed = len(job.finished_chunks)
    miner = _Miner(
        index,
        documents,
        rules,
        mode,
        cross_encoder,
        batch_size,
        rules.range_max + max(len(q.positives) for q in queries) + 1,  # + 1: the query itself may be in the corpus
    )
    starts = range(0, len(queries), chunk_size)
    for number, start in enumerate(tqdm(starts, desc="mining", unit="chunk", disable=not show_progress)):
        if not job.done(number):
            job.write_chunk(number, miner.mine(queries[start : start + chunk_size], random.Random(rules.seed + number)))
    records = list(job.records())
    rows = [record for record in records if "skipped" not in record]
    written = job.finish(rows)
    return MiningReport(
        len(queries),
        sum(len(q.positives) for q in queries) + len(missing),
        len(missing),
        missing[:5],
        len(records) - len(rows),
        written,
        sum(len(row["negative_ids"]) for row in rows),
        resumed,
        time.perf_counter() - started,
    )


def _job_description(
    queries: list[MiningQuery], index: Index, rules: NegativeRules, mode: str, cross_encoder: Any, chunk_size: int
) -> dict[str, Any]:
    """What identifies a mining run: its queries, corpus, model, rules and retrieval (a resume must match)."""
    payload = json.dumps([[q.query_id, q.text, q.positives] for q in queries], ensure_ascii=False).encode("utf-8")
    corpus = json.dumps(sorted((d, v[0]) for d, v in index.snapshot.documents.items())).encode("utf-8")
    return {
        "queries": hashlib.sha256(payload).hexdigest(),
        "corpus": hashlib.sha256(corpus).hexdigest(),
        "model": index.snapshot.manifest["model_key"],
        "rules": asdict(rules),
        "mode": mode,
        "cross_encoder": type(cross_encoder).__name__ if cross_encoder else None,
        "chunk_size": chunk_size,
    }


class _Miner:
    """Retrieves, scores and selects for one chunk of queries."""

    def __init__(
        self,
        index: Index,
        documents: dict[str, str],
        rules: NegativeRules,
        mode: str,
        cross_encoder: Reranker | None,
        batch_size: int,
        depth: int,
    ) -> None:
        """``depth``: candidates retrieved per query, ``range_max`` plus the most positives any query has plus one
        for a corpus document that is the query's own text, which is never a negative (sentence-transformers 6.3's
        ``mine_hard_negatives`` reserves and drops it the same way)."""
        self.index, self.documents, self.rules, self.mode = index, documents, rules, mode
        self.cross_encoder, self.batch_size, self.depth = cross_encoder, batch_size, depth

    def mine(self, queries: list[MiningQuery], rng: random.Random) -> list[dict[str, Any]]:
        """One record per pair: a training row, or ``{"skipped": reason, ...}`` when too few negatives passed."""
        texts = [query.text for query in queries]
        vectors = self.index.embedder.encode(texts, role="query", batch_size=self.batch_size, show_progress=False)
        hits = self.index.search(
            texts,
            k=self.depth,
            mode=self.mode,
            candidates=self.depth,
            batch_size=self.batch_size,
            query_vectors=None if self.mode == "lexical" else vectors,
        )
        return [
            record
            for query, vector, query_hits in zip(queries, vectors, hits)
            for record in self._query_records(query, vector, [hit.doc_id for hit in query_hits], rng)
        ]

    def _query_records(
        self, query: MiningQuery, vector: np.ndarray, candidates: list[str], rng: random.Random
    ) -> list[dict[str, Any]]:
        candidates = [doc for doc in candidates if self.documents[doc] != query.text]
        positive_scores, candidate_scores = self._scores(query, vector, candidates)
        if self.cross_encoder is not None:  # the cross-encoder's order replaces the retriever's
            order = np.argsort(-candidate_scores, kind="stable")
            candidates, candidate_scores = [candidates[i] for i in order], candidate_scores[order]
        # margins compare to the query's lowest-scored positive, as sentence-transformers does
        negatives = select_negatives(
            candidates, candidate_scores, set(query.positives), float(positive_scores.min()), self.rules, rng
        )
        records = []
        for positive, positive_score in zip(query.positives, positive_scores.tolist()):
            ids = {"query_id": query.query_id, "positive_id": positive}
            if len(negatives) < self.rules.num_negatives:
                records.append({"skipped": "too few negatives", **ids})
                continue
            records.append(
                {
                    "query": query.text,
                    "positive": self.documents[positive],
                    "negatives": [self.documents[doc] for doc, _ in negatives],
                    **ids,
                    "negative_ids": [doc for doc, _ in negatives],
                    "positive_score": positive_score,
                    "negative_scores": [score for _, score in negatives],
                }
            )
        return records

    def _scores(self, query: MiningQuery, vector: np.ndarray, candidates: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(the positives' scores, the candidates' scores): the cross-encoder's, else the embedder's similarity."""
        ids = query.positives + candidates
        if self.cross_encoder is not None:
            scores = np.asarray(
                self.cross_encoder.score(query.text, [self.documents[doc] for doc in ids]), dtype=np.float64
            )
        else:
            scores = self.index.document_scores(vector, ids).astype(np.float64)
        return scores[: len(query.positives)], scores[len(query.positives) :]
