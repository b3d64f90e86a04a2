"""Sparse search: SparseSearcher's exact top-k against a NumPy brute force (ties, filters, document scores), its
on-disk format, and the index with sparse vectors beside dense ones and BM25 (incremental updates, killed builds,
fusion of any retrievers, mode names) — on a hashing stand-in for the sparse model and the tiny random SPLADE."""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse

from gpte.models.protocol import EncodeReport, SparseModel
from gpte.search import changes as changes_module
from gpte.search import sparse as sparse_module
from gpte.search.fusion import fuse
from gpte.search.index import Index, build_index
from gpte.search.query import SEARCH_MODES, mode_retrievers
from gpte.search.ranking import DocumentLayout
from gpte.search.sparse import SparseSearcher, load_postings

WITHOUT_TOKENS = tuple(mode for mode in SEARCH_MODES if "multivector" not in mode_retrievers(mode))

TEXTS = {
    "a.txt": "Wings stall when the angle of attack is too high for the airflow to follow the surface.",
    "b.txt": "The boundary layer thickens downstream along a flat plate in laminar flow.",
    "c.txt": "Heat transfer at hypersonic speeds is large near the stagnation point of a blunt body.",
    "d.txt": "Propellers create a slipstream that changes the lift distribution along the wing span.",
    "e.txt": "Shock waves form when a body moves faster than sound and the pressure jumps across them.",
}
WORD = re.compile(r"\w+")


class HashingSparse:
    """A stand-in sparse model: each lower-cased word hashed (crc32) to one of ``vocab_size`` dimensions with weight
    log(1 + count); queries weigh words twice (an asymmetric model). Records every encode call."""

    output_kind = "sparse"
    similarity_name = "dot"
    max_seq_length = None

    def __init__(self, vocab_size: int = 1009, name: str = "hashing-sparse") -> None:
        self.vocab_size = vocab_size
        self.name = name
        self.calls: list[tuple[str | None, list[str]]] = []

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.name}:{self.vocab_size}".encode()).hexdigest()

    def vector(self, text: str, role: str | None = None) -> dict[int, float]:
        counts = Counter(zlib.crc32(word.lower().encode()) % self.vocab_size for word in WORD.findall(text))
        scale = 2.0 if role == "query" else 1.0
        return {dim: scale * float(np.log1p(count)) for dim, count in counts.items()}

    def encode(self, texts, role=None, prompt=None, batch_size=32, top_k=None, threshold=None, show_progress=None):
        texts = [texts] if isinstance(texts, str) else list(texts)
        self.calls.append((role, texts))
        rows, cols, values = [], [], []
        for row, text in enumerate(texts):
            for dim, weight in self.vector(text, role).items():
                rows.append(row)
                cols.append(dim)
                values.append(weight)
        return scipy.sparse.csr_matrix(
            (np.array(values, np.float32), (rows, cols)), shape=(len(texts), self.vocab_size), dtype=np.float32
        )

    def encode_with_report(self, texts, role=None, batch_size=32, show_progress=None, **options):
        vectors = self.encode(texts, role=role, batch_size=batch_size, show_progress=show_progress)
        return SimpleNamespace(vectors=vectors, report=EncodeReport(vectors.shape[0], vectors.shape[0]))

    def decode(self, vector, top_k=None):
        return []

    def count_tokens(self, texts):
        return [len(WORD.findall(text)) for text in texts]

    def token_offsets(self, text):
        return [match.span() for match in WORD.finditer(text)]

    def text_token_budget(self, role=None, prompt=None, task=None):
        return None

    def info(self):
        return {"name": self.name, "kind": "sparse", "vocab_size": self.vocab_size}

    def save(self, folder, overwrite=False):
        raise NotImplementedError

    def document_encodes(self) -> list[str]:
        return [text for role, texts in self.calls if role == "document" for text in texts]


def write_docs(folder, texts):
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.txt"):
        old.unlink()
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


# ----------------------------------------------------------------- SparseSearcher


def random_collection(seed: int, chunks: int = 240, vocab: int = 40):
    """Chunk vectors with weights in {1, 2} (so that scores tie often) and a layout of 1 to 4 chunks per document."""
    rng = np.random.default_rng(seed)
    dense = (rng.random((chunks, vocab)) < 0.08) * rng.integers(1, 3, (chunks, vocab))
    counts = []
    while sum(counts) < chunks:
        counts.append(int(min(rng.integers(1, 5), chunks - sum(counts))))
    counts = np.array(counts, dtype=np.int64)
    layout = DocumentLayout(np.cumsum(counts) - counts, counts)
    queries = (rng.random((12, vocab)) < 0.15) * rng.integers(1, 3, (12, vocab))
    return dense.astype(np.float32), layout, queries.astype(np.float32), rng


def brute_force(dense, layout, query, top, allowed=None):
    """(document, score, best chunk) by best chunk's dot product, ties by position; no shared dimension or filtered
    out: not a hit."""
    scores = dense @ query
    ranked = []
    for doc, (first, count) in enumerate(zip(layout.first_rows.tolist(), layout.counts.tolist())):
        rows = [r for r in range(first, first + count) if scores[r] > 0 and (allowed is None or allowed[r])]
        if rows:
            best = max(rows, key=lambda r: (scores[r], -r))
            ranked.append((doc, float(scores[best]), best))
    ranked.sort(key=lambda item: (-item[1], item[0]))
    return ranked[:top]


def as_tuples(ranking):
    return list(zip(ranking.docs.tolist(), ranking.scores.tolist(), ranking.chunks.tolist()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_top_k_matches_brute_force_with_ties_and_filters(seed):
    dense, layout, queries, rng = random_collection(seed)
    searcher = SparseSearcher.from_vectors(scipy.sparse.csr_matrix(dense), layout)
    assert (len(searcher), searcher.vocab_size) == dense.shape
    allowed = rng.random(len(dense)) < 0.5
    for top in (1, 5, 1000):
        for mask in (None, allowed):
            rankings = searcher.search(scipy.sparse.csr_matrix(queries), top, mask)
            for query, ranking in zip(queries, rankings):
                assert as_tuples(ranking) == brute_force(dense, layout, query, top, mask)
    assert (
        searcher.search(queries[:2], 5)[0].docs.tolist()
        == searcher.search(scipy.sparse.csr_matrix(queries[:1]), 5)[0].docs.tolist()
    )  # dense query rows are taken too
    docs = np.array([3, 0, len(layout.counts) - 1, 3])
    expected = [
        max(float((dense[f : f + n] @ queries[0]).max()), 0.0)
        for f, n in zip(layout.first_rows[docs], layout.counts[docs])
    ]
    assert searcher.document_scores(scipy.sparse.csr_matrix(queries[:1]), docs).tolist() == pytest.approx(expected)
    assert searcher.document_scores(queries[0], np.array([], np.int64)).shape == (0,)


def test_one_row_per_document_without_a_layout_and_bad_input():
    dense, _, queries, _ = random_collection(3, chunks=50)
    searcher = SparseSearcher.from_vectors(dense)
    one_each = DocumentLayout(np.arange(50), np.ones(50, np.int64))
    assert as_tuples(searcher.search(queries[:1], 7)[0]) == brute_force(dense, one_each, queries[0], 7)
    with pytest.raises(ValueError, match=r"query vectors have shape \(1, 39\); expected \(rows, 40\)"):
        searcher.search(np.ones((1, 39), np.float32), 3)
    with pytest.raises(ValueError, match="negative weights"):
        searcher.search(-np.ones((1, 40), np.float32), 3)
    with pytest.raises(ValueError, match="the filter mask has 3 entries for 50 chunks"):
        searcher.search(queries[:1], 3, np.ones(3, bool))
    empty = SparseSearcher.from_vectors(scipy.sparse.csr_matrix((0, 40), dtype=np.float32))
    assert [len(r) for r in empty.search(queries[:2], 3)] == [0, 0]


def test_save_and_load_round_trip(tmp_path):
    dense, layout, queries, _ = random_collection(4)
    searcher = SparseSearcher.from_vectors(dense, layout)
    searcher.save(tmp_path / "sparse")
    meta = json.loads((tmp_path / "sparse" / "format.json").read_text())
    assert meta == {"format": "gpte-sparse-postings", "version": 1, "shape": [40, 240], "nnz": int((dense > 0).sum())}
    assert sorted(p.name for p in (tmp_path / "sparse").iterdir()) == [
        "data.npy",
        "format.json",
        "indices.npy",
        "indptr.npy",
    ]
    assert not list(tmp_path.glob(".sparse.partial-*"))
    arrays = {name: np.load(tmp_path / "sparse" / f"{name}.npy") for name in ("indptr", "indices", "data")}
    by_hand = scipy.sparse.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=tuple(meta["shape"]))
    assert np.array_equal(by_hand.T.toarray(), dense)  # the documented format, read with scipy alone
    loaded = SparseSearcher.load(tmp_path / "sparse", layout)
    assert not loaded.postings.data.flags.writeable and not loaded.postings.indices.flags.writeable  # memory maps
    assert np.array_equal(loaded.vectors().toarray(), dense)
    assert loaded.nbytes == searcher.nbytes == sum(a.nbytes for a in arrays.values())
    for a, b in zip(loaded.search(queries, 10), searcher.search(queries, 10)):
        assert as_tuples(a) == as_tuples(b)
    (tmp_path / "sparse" / "format.json").write_text('{"format": "other", "version": 1}')
    with pytest.raises(ValueError, match="not a gpte-sparse-postings folder"):
        load_postings(tmp_path / "sparse")


# ----------------------------------------------------------------- the index


@pytest.fixture
def hashing():
    return HashingSparse()


@pytest.fixture
def built(embedder, hashing, tmp_path):
    source = write_docs(tmp_path / "docs", TEXTS)
    report = build_index(
        tmp_path / "index",
        source,
        embedder=embedder,
        sparse_model=hashing,
        chunk_tokens=8,
        overlap=2,
        show_progress=False,
    )
    return report, Index.open(tmp_path / "index", embedder=embedder, sparse_model=hashing), source


def sparse_brute_force(model, index, query, allowed_docs=None):
    """Document ids by their best chunk's dot product with the stand-in's vectors, computed directly."""
    q = model.vector(query, "query")
    scores = {}
    for doc_id, text in zip(index.snapshot.chunks.doc_ids, index.snapshot.chunks.texts):
        if allowed_docs is not None and doc_id not in allowed_docs:
            continue
        d = model.vector(text, "document")
        score = float(sum(np.float32(w) * np.float32(d[t]) for t, w in q.items() if t in d))
        if score > 0:
            scores[doc_id] = max(scores.get(doc_id, 0.0), score)
    return sorted(scores, key=lambda doc: (-scores[doc], index.doc_ids.index(doc)))


def test_sparse_search_in_the_index_ranks_documents_by_their_best_chunk(built, hashing):
    report, index, _ = built
    assert (report.documents, report.sparse_encoded) == (5, len(set(index.snapshot.chunks.texts)))
    assert index.modes == WITHOUT_TOKENS  # dense, sparse and BM25: every mode without token vectors
    assert index.snapshot.manifest["sparse_model_key"] == hashing.fingerprint
    assert (index.snapshot.folder / "sparse" / "format.json").is_file()
    for query in ("why does a wing stall", "hypersonic stagnation heat", "shock pressure"):
        hits = index.search(query, k=5, mode="sparse")
        assert [h.doc_id for h in hits] == sparse_brute_force(hashing, index, query)
        best = hits[0]
        assert TEXTS[best.doc_id][best.start : best.end] == best.text
        scores = index.sparse_document_scores(hashing.encode([query], role="query"), [h.doc_id for h in hits])
        assert scores.tolist() == pytest.approx([h.score for h in hits])
    assert hashing.calls[-2][0] == "query"  # queries are encoded with the query role


def test_filters_work_in_every_mode(built, hashing):
    _, index, _ = built
    for mode in WITHOUT_TOKENS:
        hits = index.search(
            "wing stall hypersonic shock boundary", k=5, mode=mode, filters={"source": ["b.txt", "d.txt"]}
        )
        assert {h.doc_id for h in hits} <= {"b.txt", "d.txt"}, mode
        assert hits, mode
    only = index.search("wing", k=5, mode="sparse", filters={"source": "d.txt"})
    assert [h.doc_id for h in only] == sparse_brute_force(hashing, index, "wing", {"d.txt"}) == ["d.txt"]


@pytest.mark.parametrize(
    ("mode", "fusion", "weights"),
    [
        ("dense+sparse", "rrf", None),
        ("dense+sparse+lexical", "weighted", [0.5, 0.3, 0.2]),
        ("sparse+lexical", "rrf", [2, 1]),
    ],
)
def test_fusion_of_any_retrievers_equals_fuse_by_hand(built, hashing, embedder, mode, fusion, weights):
    _, index, _ = built
    queries = ["wing stall", "hypersonic heat near the stagnation point"]
    allowed = index._allowed({"source": ["a.txt", "c.txt", "d.txt", "e.txt"]})
    candidates = 3
    by_retriever = {
        "dense": index.dense.search(embedder.encode(queries, role="query"), candidates, "exact", allowed),
        "sparse": index.sparse.search(hashing.encode(queries, role="query"), candidates, allowed),
        "lexical": [index._lexical(q, candidates, allowed) for q in queries],
    }
    results = index.search(
        queries,
        k=2,
        mode=mode,
        fusion=fusion,
        weights=weights,
        candidates=candidates,
        filters={"source": ["a.txt", "c.txt", "d.txt", "e.txt"]},
    )
    for q, hits in enumerate(results):
        expected = fuse([by_retriever[r][q] for r in mode_retrievers(mode)], fusion, candidates, weights).top(2)
        assert [(h.doc_id, h.score) for h in hits] == [
            (index.doc_ids[d], pytest.approx(s)) for d, s in zip(expected.docs.tolist(), expected.scores.tolist())
        ]
        assert [h.text for h in hits] == [index.snapshot.chunks.texts[c] for c in expected.chunks.tolist()]
    hybrid = index.search(queries[0], k=5, mode="hybrid")
    assert [(h.doc_id, h.score) for h in hybrid] == [
        (h.doc_id, h.score) for h in index.search(queries[0], k=5, mode="dense+lexical")
    ]


def test_bad_modes_are_refused_with_the_allowed_ones(built, embedder, tmp_path):
    _, index, source = built
    allowed = "dense, lexical, hybrid, sparse, dense+lexical, dense+sparse, sparse+lexical, dense+sparse+lexical"
    for bad in ("semantic", "sparse+dense", "dense+sparse+", "lexical+lexical", "SPARSE"):
        with pytest.raises(ValueError, match=re.escape(f"unknown search mode {bad!r}; choose one of {allowed}")):
            index.search("wing", mode=bad)
    with pytest.raises(
        ValueError, match=re.escape("3 fusion weights for mode 'dense+sparse'; give one per retriever (dense, sparse)")
    ):
        index.search("wing", mode="dense+sparse", weights=[1, 1, 1])
    build_index(tmp_path / "dense-only", source, embedder=embedder, chunk_tokens=8, overlap=2, show_progress=False)
    dense_only = Index.open(tmp_path / "dense-only", embedder=embedder)
    assert dense_only.modes == ("dense", "lexical", "hybrid", "dense+lexical")
    with pytest.raises(
        ValueError,
        match=re.escape(
            "cannot search in mode 'dense+sparse' (built without a sparse model); its modes: dense, lexical, hybrid, dense+lexical"
        ),
    ):
        dense_only.search("wing", mode="dense+sparse")
    with pytest.raises(ValueError, match="has no sparse vectors"):
        Index.open(tmp_path / "dense-only", embedder=embedder, sparse_model=HashingSparse())
    with pytest.raises(ValueError, match="was built without a sparse model; rebuild it"):
        build_index(
            tmp_path / "dense-only", source, embedder=embedder, sparse_model=HashingSparse(), show_progress=False
        )


def test_incremental_update_encodes_only_changed_chunks_and_keeps_the_others(built, embedder, hashing, tmp_path):
    _, index, source = built
    before = {d: index.sparse.vectors()[f : f + n].toarray() for d, (_, f, n) in index.snapshot.documents.items()}
    changed = {
        **{k: v for k, v in TEXTS.items() if k != "e.txt"},
        "b.txt": TEXTS["b.txt"] + " It separates later.",
        "f.txt": "A new note on wing flutter.",
    }
    write_docs(source, changed)
    hashing.calls.clear()
    report = build_index(tmp_path / "index", source, embedder=embedder, sparse_model=hashing, show_progress=False)
    assert (report.added, report.changed, report.removed, report.unchanged) == (1, 1, 1, 3)
    updated = Index.open(tmp_path / "index", embedder=embedder, sparse_model=hashing)
    new_chunks = [
        t for d, t in zip(updated.snapshot.chunks.doc_ids, updated.snapshot.chunks.texts) if d in ("b.txt", "f.txt")
    ]
    assert sorted(hashing.document_encodes()) == sorted(set(new_chunks)) and report.sparse_encoded == len(
        set(new_chunks)
    )
    vectors = updated.sparse.vectors()
    for doc in ("a.txt", "c.txt", "d.txt"):
        _, first, count = updated.snapshot.documents[doc]
        assert np.array_equal(vectors[first : first + count].toarray(), before[doc])
    for row, text in enumerate(updated.snapshot.chunks.texts):  # every row is its chunk's vector, wherever it moved
        assert np.array_equal(vectors[row].toarray(), hashing.encode([text], role="document").toarray())
    assert [h.doc_id for h in updated.search("flutter", mode="sparse")] == ["f.txt"]
    hashing.calls.clear()
    again = build_index(tmp_path / "index", source, embedder=embedder, sparse_model=hashing, show_progress=False)
    assert (again.generation, again.sparse_encoded, hashing.calls) == (report.generation, 0, [])  # nothing changed
    reopened = build_index(
        tmp_path / "index", source, embedder=embedder, show_progress=False, lexical=False, sparse_model=hashing
    )
    assert reopened.generation != report.generation and hashing.document_encodes() == []  # BM25 dropped: vectors kept
    assert not (tmp_path / "index" / reopened.generation / "bm25").exists()
    with pytest.raises(ValueError, match="was built with another sparse model"):
        build_index(
            tmp_path / "index",
            source,
            embedder=embedder,
            sparse_model=HashingSparse(vocab_size=31),
            show_progress=False,
        )
    with pytest.raises(ValueError, match="was built with a dense model; rebuild it"):
        build_index(tmp_path / "index", source, sparse_model=hashing, dense=False, show_progress=False)
    assert not list((tmp_path / "index").glob("pending-*"))


def test_a_crash_between_writes_keeps_the_previous_generation_and_the_next_build_resumes(
    embedder, hashing, tmp_path, monkeypatch
):
    source = write_docs(tmp_path / "docs", dict(list(TEXTS.items())[:2]))
    options = dict(embedder=embedder, sparse_model=hashing, chunk_tokens=8, overlap=2, show_progress=False)
    build_index(tmp_path / "index", source, **options)
    write_docs(source, TEXTS)

    original_save = sparse_module.save_postings

    def save_then_die(postings, folder):
        original_save(postings, folder)  # the sparse folder is written, the manifest and CURRENT are not
        raise KeyboardInterrupt

    monkeypatch.setattr(sparse_module, "save_postings", save_then_die)
    hashing.calls.clear()
    with pytest.raises(KeyboardInterrupt):
        build_index(tmp_path / "index", source, **options)
    encoded_before_the_crash = hashing.document_encodes()
    assert encoded_before_the_crash
    old = Index.open(tmp_path / "index", embedder=embedder, sparse_model=hashing)
    assert len(old) == 2 and old.search("wing stall", k=1, mode="sparse")  # the previous generation is intact
    assert [g.name for g in (tmp_path / "index").glob("gen-*")] == ["gen-000001"]
    assert list((tmp_path / "index").glob("pending-sparse-*"))

    monkeypatch.setattr(sparse_module, "save_postings", original_save)
    hashing.calls.clear()
    report = build_index(tmp_path / "index", source, **options)
    assert hashing.document_encodes() == [] and report.sparse_resumed == len(set(encoded_before_the_crash))
    resumed = Index.open(tmp_path / "index", embedder=embedder, sparse_model=hashing)
    assert len(resumed) == 5 and not list((tmp_path / "index").glob("pending-*"))

    # killed while encoding: the parts encoded before the kill are kept, the rest encoded by the next build
    write_docs(source, {**TEXTS, "f.txt": "Flutter of a wing: " + " ".join(f"mode {n}" for n in range(40))})
    monkeypatch.setattr(changes_module, "SAVE_EVERY", 2)
    original_add = sparse_module.SparsePending.add
    parts = []

    def add_then_die(self, texts, vectors):
        if len(parts) == 1:
            raise KeyboardInterrupt
        parts.append(list(texts))
        original_add(self, texts, vectors)

    monkeypatch.setattr(sparse_module.SparsePending, "add", add_then_die)
    with pytest.raises(KeyboardInterrupt):
        build_index(tmp_path / "index", source, **options)
    assert len(Index.open(tmp_path / "index", embedder=embedder, sparse_model=hashing)) == 5
    monkeypatch.setattr(sparse_module.SparsePending, "add", original_add)
    hashing.calls.clear()
    report = build_index(tmp_path / "index", source, **options)
    assert report.sparse_resumed == 2 and not set(parts[0]) & set(hashing.document_encodes())
    fresh = HashingSparse()
    build_index(tmp_path / "fresh", source, **{**options, "sparse_model": fresh})
    a = Index.open(tmp_path / "index", embedder=embedder, sparse_model=hashing)
    b = Index.open(tmp_path / "fresh", embedder=embedder, sparse_model=fresh)
    assert (a.sparse.vectors() != b.sparse.vectors()).nnz == 0


def test_sparse_only_index_with_the_tiny_splade_reopens_its_model_by_name(tiny_models, tmp_path):
    from gpte.models.sparse import load_sparse_encoder

    source = write_docs(tmp_path / "docs", TEXTS)
    folder = str(tiny_models["bert-mlm"])
    report = build_index(
        tmp_path / "index", source, sparse_model=folder, dense=False, lexical=False, show_progress=False
    )
    assert report.embedded == report.sparse_encoded == 5  # whole short documents: one chunk each
    index = Index.open(tmp_path / "index")  # the sparse model loaded again by its recorded name
    assert isinstance(index.sparse_model, SparseModel) and index.embedder is None and index.dense is None
    assert index.modes == ("sparse",) and index.default_mode == "sparse"
    assert not (index.snapshot.folder / "vectors.npy").exists() and not (index.snapshot.folder / "bm25").exists()
    splade = load_sparse_encoder(folder, device="cpu")
    query = "why does a wing stall"
    scores = splade.similarity(
        splade.encode([query], role="query"), splade.encode(list(TEXTS.values()), role="document")
    )[0]
    expected = sorted(TEXTS, key=lambda doc: (-scores[list(TEXTS).index(doc)], list(TEXTS).index(doc)))
    hits = index.search(query, k=5)
    assert [h.doc_id for h in hits] == expected
    assert [h.score for h in hits] == pytest.approx(sorted(scores.tolist(), reverse=True), rel=1e-5)
    with pytest.raises(
        ValueError, match=r"cannot search in mode 'dense' \(built without a dense model\); its modes: sparse"
    ):
        index.search(query, mode="dense")
    with pytest.raises(ValueError, match="built without a dense model; open it without an embedder"):
        Index.open(tmp_path / "index", embedder=splade)
    with pytest.raises(ValueError, match="an index needs a dense, sparse or multi-vector model"):
        build_index(tmp_path / "none", source, dense=False, show_progress=False)
