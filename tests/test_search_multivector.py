"""Multi-vector search: MultiVectorSearcher's rescoring equals maxsim_matrix (from float vectors and from decoded
codes), exhaustive search equals brute force, filters, documents of several chunks, the on-disk round trip, MUVERA's
encodings against their formula, and hostile inputs — on small clustered unit token vectors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gpte.models.multivector.maxsim import EMPTY_DOCUMENT_SCORE, maxsim_matrix
from gpte.models.multivector.vectors import TokenVectors
from gpte.search.multivector import (
    FDEConfig,
    FixedDimensionalEncoder,
    MultiVectorSearcher,
    decode_tokens,
)
from gpte.search.ranking import DocumentLayout

DIM = 16


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def clustered(seed: int, texts: int, empty_every: int = 0, max_tokens: int = 12) -> TokenVectors:
    """``texts`` texts of 1..max_tokens unit tokens around 8 shared centres (every ``empty_every``-th text: none)."""
    rng = np.random.default_rng(seed)
    centres = unit(np.random.default_rng(99).standard_normal((8, DIM)))
    out = []
    for i in range(texts):
        n = 0 if empty_every and i % empty_every == 1 else int(rng.integers(1, max_tokens + 1))
        out.append(unit(centres[rng.integers(0, 8, n)] + 0.4 * rng.standard_normal((n, DIM))))
    return TokenVectors.from_list(out, dim=DIM)


def brute_force(query: TokenVectors, documents: TokenVectors, top: int, allowed: np.ndarray | None = None):
    """(documents, scores) of exact MaxSim, best first, ties by position; texts without tokens excluded."""
    scores = maxsim_matrix(query, documents)[0]
    keep = documents.lengths > 0 if allowed is None else (documents.lengths > 0) & allowed
    rows = np.flatnonzero(keep)
    order = rows[np.lexsort((rows, -scores[rows]))][:top]
    return order, scores[order]


@pytest.fixture(scope="module")
def corpus() -> TokenVectors:
    return clustered(0, 80, empty_every=9)


@pytest.fixture(scope="module")
def queries() -> TokenVectors:
    return clustered(1, 4, max_tokens=6)


def test_rescoring_equals_maxsim_from_vectors_and_from_codes(corpus, queries):
    searcher = MultiVectorSearcher.from_vectors(corpus, candidates=12)  # fewer than the corpus: FDE candidates
    for q, ranking in enumerate(searcher.search(queries, 5)):
        assert len(ranking) == 5 and np.all(corpus.lengths[ranking.docs] > 0)
        expected = maxsim_matrix(queries[q : q + 1], corpus.take(ranking.docs))[0]
        np.testing.assert_allclose(ranking.scores, expected, rtol=1e-6, atol=1e-6)
        assert np.all(np.diff(ranking.scores) <= 0)
    searcher.rescore = "codes"
    for q, ranking in enumerate(searcher.search(queries, 5)):
        decoded = [
            decode_tokens(searcher.codec, searcher.codes[corpus.offsets[d] : corpus.offsets[d + 1]])
            for d in ranking.docs
        ]
        expected = maxsim_matrix(queries[q : q + 1], TokenVectors.from_list(decoded, dim=DIM))[0]
        np.testing.assert_allclose(ranking.scores, expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(
            searcher.document_scores(queries[q], ranking.docs), ranking.scores, rtol=1e-6, atol=1e-6
        )


@pytest.mark.parametrize("similarity", ["maxsim", "meanmaxsim"])
def test_generous_candidates_give_the_exact_ranking(corpus, queries, similarity):
    searcher = MultiVectorSearcher.from_vectors(corpus, candidates=len(corpus), similarity=similarity)
    for q, ranking in enumerate(searcher.search(queries, 10)):
        docs, scores = brute_force(queries[q : q + 1], corpus, 10)
        if similarity == "meanmaxsim":
            scores = scores / queries.lengths[q]
        np.testing.assert_array_equal(ranking.docs, docs)
        np.testing.assert_allclose(ranking.scores, scores, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(ranking.chunks, docs)


def test_fde_candidates_find_the_exact_top_on_clustered_data():
    """Rescoring 200 of 700 chunks: a random choice would keep ~29% of the exact top 10; MUVERA's keep >= 90%."""
    corpus, queries = clustered(2, 700), clustered(3, 10, max_tokens=6)
    searcher = MultiVectorSearcher.from_vectors(corpus, candidates=200, fde=FDEConfig(repetitions=20))
    assert searcher.fde_index_name == "PQ1280x4fs" and searcher.codec_name == "SQ8"  # fast scan; too few for PQ
    recall = [
        len(set(ranking.docs.tolist()) & set(brute_force(queries[q : q + 1], corpus, 10)[0].tolist())) / 10
        for q, ranking in enumerate(searcher.search(queries, 10))
    ]
    assert np.mean(recall) >= 0.9


@pytest.mark.parametrize("fde_index", ["Flat", "PQ640x4fs"])  # a FAISS ID selector / oversampling then filtering
def test_allowed_restricts_every_path(fde_index):
    corpus, queries = clustered(4, 700, empty_every=50), clustered(5, 3, max_tokens=6)
    allowed = np.zeros(len(corpus), dtype=bool)
    allowed[::3] = True
    searcher = MultiVectorSearcher.from_vectors(corpus, candidates=40, fde_index=fde_index)
    for ranking in searcher.search(queries, 8, allowed):
        assert len(ranking) == 8 and allowed[ranking.chunks].all() and (corpus.lengths[ranking.chunks] > 0).all()
    few = np.zeros(len(corpus), dtype=bool)
    few[[3, 10, 11, 50, 51]] = True  # fewer allowed chunks than candidates: all rescored, exact
    for q, ranking in enumerate(searcher.search(queries, 8, few)):
        docs, scores = brute_force(queries[q : q + 1], corpus, 8, few)
        np.testing.assert_array_equal(ranking.docs, docs)
        np.testing.assert_allclose(ranking.scores, scores, rtol=1e-6, atol=1e-6)
    assert all(not len(r) for r in searcher.search(queries, 8, np.zeros(len(corpus), dtype=bool)))


def test_documents_rank_by_their_best_chunk(corpus, queries):
    counts = np.array([1, 3, 2, 1, 4] * 7 + [1, 2])  # 80 chunks in 37 documents
    layout = DocumentLayout(np.cumsum(counts) - counts, counts)
    searcher = MultiVectorSearcher.from_vectors(corpus, layout, candidates=len(corpus))
    chunk_scores = maxsim_matrix(queries, corpus)
    for q, ranking in enumerate(searcher.search(queries, 6)):
        per_doc = [chunk_scores[q, f : f + c] for f, c in zip(layout.first_rows, layout.counts)]
        best = np.array([s.max() for s in per_doc])
        order = np.lexsort((np.arange(len(best)), -best))[:6]
        np.testing.assert_array_equal(ranking.docs, order)
        np.testing.assert_allclose(ranking.scores, best[order], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(ranking.chunks, [layout.first_rows[d] + np.argmax(per_doc[d]) for d in order])
        np.testing.assert_allclose(
            searcher.document_scores(queries[q], np.arange(len(best))), best, rtol=1e-6, atol=1e-6
        )
    with pytest.raises(ValueError, match="layout covers"):
        MultiVectorSearcher.from_vectors(corpus, DocumentLayout(np.array([0]), np.array([3])))


def test_save_and_load_round_trip(corpus, queries, tmp_path):
    searcher = MultiVectorSearcher.from_vectors(corpus, candidates=12)
    searcher.save(tmp_path / "index")
    searcher.save(tmp_path / "index")  # replaces the previous folder
    meta = json.loads((tmp_path / "index" / "format.json").read_text())
    assert meta["format"] == "gpte-multivector-index" and meta["vectors"] and meta["rescore"] == "vectors"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind
    loaded = MultiVectorSearcher.load(tmp_path / "index")
    assert isinstance(loaded.codes, np.memmap) and isinstance(loaded.vectors, np.memmap)
    assert len(loaded) == len(searcher) and loaded.nbytes == searcher.nbytes and loaded.candidates == 12
    for a, b in zip(searcher.search(queries, 5), loaded.search(queries, 5)):
        np.testing.assert_array_equal(a.docs, b.docs)
        np.testing.assert_array_equal(a.scores, b.scores)
    codes_only = MultiVectorSearcher.from_vectors(corpus, candidates=12, keep_vectors=False)
    codes_only.save(tmp_path / "codes")
    assert not (tmp_path / "codes" / "tokens.npy").exists()
    reopened = MultiVectorSearcher.load(tmp_path / "codes")
    assert reopened.rescore == "codes" and reopened.vector_bytes == 0
    for a, b in zip(codes_only.search(queries, 5), reopened.search(queries, 5)):
        np.testing.assert_array_equal(a.docs, b.docs)
    with pytest.raises(ValueError, match="needs the float token vectors"):
        MultiVectorSearcher.load(tmp_path / "codes", rescore="vectors")
    with pytest.raises(FileNotFoundError, match="not a multi-vector index"):
        MultiVectorSearcher.load(tmp_path)
    meta["version"] = 99
    (tmp_path / "index" / "format.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="rebuild the index"):
        MultiVectorSearcher.load(tmp_path / "index")


def test_fde_follows_its_formula():
    """One part per repetition (simhash_bits=0): FDE_d = S_r (mean of d), FDE_q = S_r (sum of q); with one bit, a
    document's empty part takes the projection of its token nearest in sign pattern."""
    texts = clustered(6, 5, max_tokens=5)
    encoder = FixedDimensionalEncoder.random(DIM, FDEConfig(repetitions=3, simhash_bits=0, projection_dim=4))
    projections = encoder.projections.numpy()
    for t in range(len(texts)):
        np.testing.assert_allclose(encoder.encode(texts, "document")[t], texts[t].mean(0) @ projections, atol=1e-5)
        np.testing.assert_allclose(encoder.encode(texts, "query")[t], texts[t].sum(0) @ projections, atol=1e-5)
    one_bit = FixedDimensionalEncoder.random(DIM, FDEConfig(repetitions=1, simhash_bits=1, projection_dim=DIM))
    token = texts[0][:1]
    side = int((token @ one_bit.hyperplanes.numpy())[0, 0] > 0)
    fde = one_bit.encode(TokenVectors.from_list([token]), "document").reshape(2, DIM)
    np.testing.assert_allclose(fde[side], fde[1 - side], atol=1e-6)  # the empty part filled with the only token
    assert not one_bit.encode(TokenVectors.from_list([token[:0]], dim=DIM), "document").any()
    with pytest.raises(ValueError, match="simhash_bits"):
        FDEConfig(simhash_bits=11)


def test_hostile_inputs(corpus, queries, tmp_path):
    empty = MultiVectorSearcher.from_vectors(TokenVectors.from_list([], dim=DIM))
    assert len(empty) == 0 and all(not len(r) for r in empty.search(queries, 3))
    empty.save(tmp_path / "empty")
    assert all(not len(r) for r in MultiVectorSearcher.load(tmp_path / "empty").search(queries, 3))
    searcher = MultiVectorSearcher.from_vectors(corpus, candidates=12)
    hollow = np.flatnonzero(corpus.lengths == 0)
    assert len(hollow) and not np.isin(np.concatenate([r.docs for r in searcher.search(queries, 50)]), hollow).any()
    assert np.all(searcher.document_scores(queries[0], hollow) == np.float32(EMPTY_DOCUMENT_SCORE))
    no_tokens = TokenVectors.from_list([queries[0], queries[0][:0]])
    assert [len(r) for r in searcher.search(no_tokens, 3)] == [3, 0]
    with pytest.raises(ValueError, match="8-d; this index holds 16-d"):
        searcher.search(TokenVectors.from_list([np.ones((2, 8), np.float32)]), 3)
    with pytest.raises(ValueError, match="8-d; this index holds 16-d"):
        searcher.document_scores(np.ones((2, 8), np.float32), [0])
    for top in (0, -1, 2.5):
        with pytest.raises(ValueError, match="top must be a positive integer"):
            searcher.search(queries, top)
    with pytest.raises(ValueError, match="one entry per chunk"):
        searcher.search(queries, 3, np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="one entry per chunk"):
        searcher.search(queries, 3, np.ones(len(corpus), dtype=int))
    with pytest.raises(TypeError, match="TokenVectors"):
        searcher.search(np.ones((2, DIM), np.float32), 3)
    with pytest.raises(ValueError, match="choose one of vectors, codes"):
        searcher.rescore = "floats"
    with pytest.raises(ValueError, match="not a FAISS index factory string"):
        MultiVectorSearcher.from_vectors(corpus, codec="PQ7")
    with pytest.raises(ValueError, match="unknown multi-vector similarity"):
        MultiVectorSearcher.from_vectors(corpus, similarity="cosine")
    with pytest.raises(ValueError, match="candidates must be a positive integer"):
        MultiVectorSearcher.from_vectors(corpus, candidates=0)
