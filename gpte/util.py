"""``sentence_transformers.util``'s search helpers for gpte vectors and models, with its arguments and answers:

- ``semantic_search(query_embeddings, corpus_embeddings, top_k=10, score_function="cosine")``: for each query,
  ``[{"corpus_id": int, "score": float}, ...]`` best first.
- ``paraphrase_mining(model, sentences, top_k=100, max_pairs=500000, ...)``: ``[[score, i, j], ...]`` best first,
  i < j, each pair once; ``paraphrase_mining_embeddings`` does the same from vectors.

``score_function`` is a gpte similarity name (``gpte.similarity.SIMILARITIES``) or a callable on two tensors
(``sentence_transformers.util.cos_sim`` works). Scores are the similarity's own (``gpte.similarity``); the top k
are kept per block of ``query_chunk_size`` queries against blocks of ``corpus_chunk_size`` corpus rows, so memory
holds one block of scores. Exact search over an on-disk collection, with filters and ANN indexes, is
``gpte.search``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from gpte.models.protocol import DenseModel
from gpte.similarity import Array, as_matrix, check_similarity, similarity

ScoreFunction = str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def semantic_search(
    query_embeddings: Array,
    corpus_embeddings: Array,
    query_chunk_size: int = 100,
    corpus_chunk_size: int = 500_000,
    top_k: int = 10,
    score_function: ScoreFunction = "cosine",
) -> list[list[dict[str, int | float]]]:
    """The ``top_k`` corpus rows of each query, best first, as ``sentence_transformers.util.semantic_search``.

    Args:
        query_embeddings: (n, d) or (d,) numpy array or tensor.
        corpus_embeddings: (m, d) numpy array or tensor.
        query_chunk_size, corpus_chunk_size: queries and corpus rows scored at a time.
        top_k: hits per query (fewer when the corpus is smaller).
        score_function: a similarity name or a callable ``(queries, corpus) -> (n, m) scores``.

    Returns:
        One list per query of ``{"corpus_id": corpus row, "score": score}``, highest score first.

    Raises:
        ValueError: an unknown similarity name, or a size that is not a positive integer.
    """
    hits: list[list[dict[str, int | float]]] = []
    for _, scores, ids in top_k_blocks(
        query_embeddings, corpus_embeddings, top_k, score_function, query_chunk_size, corpus_chunk_size
    ):
        hits += [
            [{"corpus_id": corpus_id, "score": score} for corpus_id, score in zip(row_ids, row_scores)]
            for row_ids, row_scores in zip(ids.tolist(), scores.tolist())
        ]
    return hits


def paraphrase_mining(
    model: DenseModel,
    sentences: Sequence[str],
    show_progress_bar: bool = False,
    batch_size: int = 32,
    query_chunk_size: int = 5000,
    corpus_chunk_size: int = 100_000,
    max_pairs: int = 500_000,
    top_k: int = 100,
    score_function: ScoreFunction = "cosine",
    truncate_dim: int | None = None,
    prompt_name: str | None = None,
    prompt: str | None = None,
) -> list[list[float | int]]:
    """The most similar pairs of ``sentences``, as ``sentence_transformers.util.paraphrase_mining``: encodes them
    with ``model`` (``prompt`` wins over ``prompt_name``, as there) and calls :func:`paraphrase_mining_embeddings`.

    Returns:
        ``[[score, i, j], ...]`` highest score first, ``i < j`` positions in ``sentences``.
    """
    chosen = {"prompt": prompt} if prompt is not None or prompt_name is None else {"prompt_name": prompt_name}
    embeddings = model.encode(
        list(sentences), batch_size=batch_size, truncate_dim=truncate_dim, show_progress=show_progress_bar, **chosen
    )
    return paraphrase_mining_embeddings(
        embeddings, query_chunk_size, corpus_chunk_size, max_pairs, top_k, score_function
    )


def paraphrase_mining_embeddings(
    embeddings: Array,
    query_chunk_size: int = 5000,
    corpus_chunk_size: int = 100_000,
    max_pairs: int = 500_000,
    top_k: int = 100,
    score_function: ScoreFunction = "cosine",
) -> list[list[float | int]]:
    """The ``max_pairs`` most similar pairs among rows of ``embeddings``, each row paired with its ``top_k``
    nearest other rows (``sentence_transformers.util.paraphrase_mining_embeddings``; the score function is taken
    to be symmetric: a pair keeps the score it was first found with).

    Returns:
        ``[[score, i, j], ...]`` highest score first (ties by ``(i, j)``), ``i < j``.
    """
    _check_positive(max_pairs=max_pairs, top_k=top_k)
    best: dict[tuple[int, int], float] = {}
    for start, scores, ids in top_k_blocks(
        embeddings, embeddings, top_k + 1, score_function, query_chunk_size, corpus_chunk_size
    ):
        for i, row_ids, row_scores in zip(range(start, start + len(ids)), ids.tolist(), scores.tolist()):
            neighbours = [(j, score) for j, score in zip(row_ids, row_scores) if j != i][:top_k]
            for j, score in neighbours:
                best.setdefault((min(i, j), max(i, j)), score)
        if len(best) > 2 * max_pairs:  # bound memory: a pair dropped here can never re-enter the max_pairs best
            best = dict(_best_pairs(best, max_pairs))
    return [[score, i, j] for (i, j), score in _best_pairs(best, max_pairs)]


def top_k_blocks(
    queries: Array,
    corpus: Array,
    top_k: int,
    score_function: ScoreFunction,
    query_chunk_size: int,
    corpus_chunk_size: int,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """For each block of ``query_chunk_size`` queries: (its first query's position, the (n, k) best scores sorted
    high to low, their corpus rows), merging each corpus block's scores into the best so far.

    Raises:
        ValueError: an unknown similarity name, or a size that is not a positive integer.
    """
    _check_positive(top_k=top_k, query_chunk_size=query_chunk_size, corpus_chunk_size=corpus_chunk_size)
    score = _scorer(score_function)
    corpus_rows = as_matrix(corpus)
    query_rows = as_matrix(queries).to(corpus_rows.device)
    for start in range(0, len(query_rows), query_chunk_size):
        block = query_rows[start : start + query_chunk_size]
        best_scores = torch.empty((len(block), 0), device=corpus_rows.device)
        best_ids = torch.empty((len(block), 0), dtype=torch.long, device=corpus_rows.device)
        for corpus_start in range(0, len(corpus_rows), corpus_chunk_size):
            scores = score(block, corpus_rows[corpus_start : corpus_start + corpus_chunk_size])
            ids = torch.arange(corpus_start, corpus_start + scores.shape[1], device=scores.device)
            merged_scores = torch.cat([best_scores, scores], dim=1)
            merged_ids = torch.cat([best_ids, ids.expand(len(block), -1)], dim=1)
            best_scores, positions = torch.topk(merged_scores, min(top_k, merged_scores.shape[1]), dim=1)
            best_ids = merged_ids.gather(1, positions)
        yield start, best_scores.cpu(), best_ids.cpu()


def _scorer(score_function: ScoreFunction) -> Callable[[torch.Tensor, torch.Tensor], Any]:
    """A callable ``(queries, corpus) -> (n, m) tensor`` for a similarity name, or the callable given."""
    if callable(score_function):
        return score_function
    check_similarity(score_function)
    return lambda a, b: similarity(a, b, score_function)


def _best_pairs(pairs: dict[tuple[int, int], float], count: int) -> list[tuple[tuple[int, int], float]]:
    """The ``count`` highest-scoring pairs, highest first, ties by pair."""
    return sorted(pairs.items(), key=lambda item: (-item[1], item[0]))[:count]


def _check_positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
