"""Token vectors in the search index: ``build_index(multivector_model=...)`` holds a ColBERT model's chunk token
vectors beside the dense vectors and BM25, ``mode="multivector"`` ranks documents by their best chunk's exact MaxSim,
the "+" modes fuse it, updates encode only new chunks (a killed build resumes), another model is refused, and
``gpte index --multivector`` / ``gpte search --mode multivector`` / POST /search serve it — on tiny random models."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from test_search_sparse import write_docs

from gpte.cli import main
from gpte.models.multivector import MultiVectorEncoder, load_multivector_encoder
from gpte.search.index import Index, build_index
from gpte.search.query import SEARCH_MODES, mode_retrievers
from gpte.serve.app import create_app

TEXTS = {
    "a.txt": "Wings stall when the angle of attack is too high for the airflow to follow the surface of the wing.",
    "b.txt": "The boundary layer thickens downstream along a flat plate in laminar flow, then becomes turbulent.",
    "c.txt": "Heat transfer at hypersonic speeds is large near the stagnation point of a blunt body in flight.",
    "d.txt": "Propellers create a slipstream that changes the lift distribution along the wing span of aircraft.",
    "e.txt": "Shock waves form when a body moves faster than sound and the pressure jumps across the shock.",
}
QUERIES = ["why does a wing stall", "hypersonic stagnation heat", "shock pressure jump"]


@pytest.fixture(scope="module")
def colbert(tiny_models) -> MultiVectorEncoder:
    return load_multivector_encoder(
        tiny_models["bert"], dimension=16, device="cpu", query_expansion={"length": 12}, skiplist="punctuation"
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory, embedder, colbert):
    root = tmp_path_factory.mktemp("mv-index")
    docs = write_docs(root / "docs", TEXTS)
    report = build_index(
        root / "index",
        docs,
        embedder=embedder,
        multivector_model=colbert,
        chunk_tokens=8,
        overlap=2,
        show_progress=False,
    )
    return report, Index.open(root / "index", embedder=embedder, multivector_model=colbert), root


def brute_force(colbert, index, query, allowed_docs=None):
    """Documents by their best chunk's exact MaxSim (ties by position), from freshly encoded chunk texts."""
    chunks = index.snapshot.chunks
    scores = colbert.similarity(colbert.encode([query], role="query"), colbert.encode(chunks.texts))[0]
    best: dict[str, float] = {}
    for doc_id, score in zip(chunks.doc_ids, scores):
        if allowed_docs is None or doc_id in allowed_docs:
            best[doc_id] = max(best.get(doc_id, -np.inf), float(score))
    order = sorted(best, key=lambda doc: (-best[doc], index.doc_ids.index(doc)))
    return order, best


def test_multivector_mode_ranks_documents_by_best_chunk_maxsim(built, colbert):
    report, index, _ = built
    chunks = len(index.snapshot.chunks)
    assert report.multivector_encoded == len(set(index.snapshot.chunks.texts)) and chunks > len(TEXTS)
    assert set(index.modes) == set(SEARCH_MODES) - {m for m in SEARCH_MODES if "sparse" in mode_retrievers(m)}
    assert index.snapshot.manifest["multivector_dimension"] == 16
    for query in QUERIES:
        hits = index.search(query, k=5, mode="multivector")
        order, best = brute_force(colbert, index, query)
        assert [hit.doc_id for hit in hits] == order
        np.testing.assert_allclose([hit.score for hit in hits], [best[d] for d in order], rtol=1e-5)
        assert TEXTS[hits[0].doc_id][hits[0].start : hits[0].end] == hits[0].text


def test_fused_modes_and_filters(built, colbert):
    _, index, _ = built
    for mode in ("dense+multivector", "multivector+lexical", "dense+multivector+lexical"):
        hits = index.search("wing stall", k=5, mode=mode, filters={"source": ["b.txt", "d.txt"]})
        assert hits and {hit.doc_id for hit in hits} <= {"b.txt", "d.txt"}, mode
    only = index.search("wing", k=5, mode="multivector", filters={"source": "d.txt"})
    assert [hit.doc_id for hit in only] == ["d.txt"]
    given = colbert.encode(QUERIES[:1], role="query")
    assert [h.doc_id for h in index.search(QUERIES[0], mode="multivector", multivector_query_vectors=given)] == [
        h.doc_id for h in index.search(QUERIES[0], mode="multivector")
    ]
    with pytest.raises(ValueError, match="multivector_query_vectors holds 1 texts"):
        index.search(QUERIES[:2], mode="multivector", multivector_query_vectors=given)


def test_update_encodes_only_changed_documents_and_equals_a_rebuild(tmp_path, embedder, colbert):
    docs = write_docs(tmp_path / "docs", TEXTS)
    options = {"embedder": embedder, "multivector_model": colbert, "chunk_tokens": 8, "overlap": 2}
    build_index(tmp_path / "index", docs, show_progress=False, **options)
    changed = dict(TEXTS, **{"c.txt": "Heat flux to a blunt body grows with flight speed.", "f.txt": "Wing flutter."})
    del changed["e.txt"]
    write_docs(docs, changed)
    report = build_index(tmp_path / "index", docs, show_progress=False)  # the models it was built with
    assert (report.added, report.changed, report.removed) == (1, 1, 1)
    new_chunks = {
        t
        for d, t in zip(
            Index.open(tmp_path / "index").snapshot.chunks.doc_ids, Index.open(tmp_path / "index").snapshot.chunks.texts
        )
        if d in ("c.txt", "f.txt")
    }
    assert report.multivector_encoded == len(new_chunks)
    rebuilt = build_index(tmp_path / "fresh", docs, show_progress=False, **options)
    assert rebuilt.multivector_encoded >= report.multivector_encoded
    updated, fresh = Index.open(tmp_path / "index"), Index.open(tmp_path / "fresh")
    for query in QUERIES:
        a, b = updated.search(query, k=5, mode="multivector"), fresh.search(query, k=5, mode="multivector")
        assert [h.doc_id for h in a] == [h.doc_id for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], rtol=1e-5)


def test_a_killed_build_resumes_from_its_pending_token_vectors(tmp_path, embedder, colbert, monkeypatch):
    from gpte.search import changes

    docs = write_docs(tmp_path / "docs", TEXTS)
    monkeypatch.setattr(changes, "SAVE_EVERY", 3)
    real, calls = MultiVectorEncoder.encode_with_report, []

    def dies_on_third_part(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MultiVectorEncoder, "encode_with_report", dies_on_third_part)
    options = {"multivector_model": colbert, "dense": False, "lexical": False, "chunk_tokens": 8, "overlap": 2}
    with pytest.raises(RuntimeError, match="killed"):
        build_index(tmp_path / "index", docs, show_progress=False, **options)
    monkeypatch.setattr(MultiVectorEncoder, "encode_with_report", real)
    report = build_index(tmp_path / "index", docs, show_progress=False, **options)
    assert report.multivector_resumed == 6 and report.resumed == 6
    index = Index.open(tmp_path / "index")
    assert index.modes == ("multivector",) and index.default_mode == "multivector"
    order, _ = brute_force(colbert, index, QUERIES[0])
    assert [hit.doc_id for hit in index.search(QUERIES[0], k=5)] == order


def test_other_models_and_missing_vectors_are_refused(built, tiny_models, embedder):
    _, index, root = built
    other = load_multivector_encoder(tiny_models["bert"], dimension=8, device="cpu")
    with pytest.raises(ValueError, match="built with another multi-vector model"):
        Index.open(root / "index", embedder=embedder, multivector_model=other)
    plain = build_index(root / "plain", root / "docs", embedder=embedder, show_progress=False)
    assert plain.multivector_encoded == 0
    with pytest.raises(ValueError, match="built without a multi-vector model; rebuild it"):
        build_index(root / "plain", root / "docs", embedder=embedder, multivector_model=other)
    with pytest.raises(ValueError, match="built without a multi-vector model"):
        Index.open(root / "plain", embedder=embedder).search("wing", mode="multivector")
    with pytest.raises(ValueError, match="has no token vectors; build it with a multivector_model"):
        Index.open(root / "plain", embedder=embedder, multivector_model=other)


def test_cli_index_and_search_and_serve(tmp_path, colbert, capsys):
    folder = colbert.save(tmp_path / "colbert")
    docs = write_docs(tmp_path / "docs", TEXTS)
    root = ["--root", str(tmp_path / "indexes")]
    assert (
        main(["index", str(docs), "--name", "mv", "--multivector", str(folder), "--no-dense", "--no-progress", *root])
        == 0
    )
    assert "multi-vector: encoded" in capsys.readouterr().out
    assert main(["search", "mv", "why does a wing stall", "--mode", "multivector", "--json", *root]) == 0
    hits = json.loads(capsys.readouterr().out)
    index = Index.open(tmp_path / "indexes" / "mv")
    assert [hit["doc_id"] for hit in hits] == [hit.doc_id for hit in index.search("why does a wing stall", k=len(hits))]
    with TestClient(create_app({}, {"mv": index})) as http:
        body = http.post("/search", json={"query": "shock pressure jump", "index": "mv", "mode": "multivector+lexical"})
        expected = index.search("shock pressure jump", k=10, mode="multivector+lexical")
        assert [hit["doc_id"] for hit in body.json()["hits"]] == [hit.doc_id for hit in expected]
