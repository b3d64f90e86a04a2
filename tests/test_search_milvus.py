"""The index API against Milvus: Milvus Lite on a local file, and a Milvus gRPC server (``milvus-lite server``)
that the tests start and stop themselves — the same client code a Milvus cluster is reached with. A tiny
random BERT; rankings are compared with the on-disk index's exact search."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import lock_held_elsewhere

from gpte.locking import OutputLockedError
from gpte.models.chunking import chunk_spans
from gpte.search import changes as changes_module
from gpte.search.index import Index, build_index
from gpte.search.milvus import MilvusIndex, build_milvus_index, filter_expression, fuse_hits
from gpte.search.query import Hit
from tests.test_search import TEXTS, write_docs

QUERIES = ["wing stall", "hypersonic heat", "shock waves pressure", "slipstream lift", "boundary layer plate"]


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory):
    """A Milvus gRPC server on a free loopback port, stopped after the module."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = tmp_path_factory.mktemp("milvus-server")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "milvus_lite",
            "server",
            "--data-dir",
            str(data),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as client:
            if client.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("milvus-lite server did not start within 60 s")
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=30)


def test_milvus_lite_matches_the_on_disk_exact_search_and_updates_incrementally(embedder, tmp_path):
    source = write_docs(tmp_path / "docs", TEXTS)
    uri = tmp_path / "milvus.db"
    report = build_milvus_index(
        uri,
        "papers",
        source,
        embedder=embedder,
        chunk_tokens=8,
        overlap=2,
        ann=None,
        show_progress=False,
        work_dir=tmp_path / "work",
    )
    build_index(tmp_path / "disk", source, embedder=embedder, chunk_tokens=8, overlap=2, ann=None, show_progress=False)
    disk = Index.open(tmp_path / "disk", embedder=embedder)
    assert (report.documents, report.added, report.chunks) == (5, 5, len(disk.snapshot.chunks))
    milvus = MilvusIndex.open(uri, "papers", embedder=embedder)
    assert len(milvus) == report.chunks
    for query in QUERIES:
        expected = disk.search(query, k=5)
        found = milvus.search(query, k=5)
        assert [h.doc_id for h in found] == [h.doc_id for h in expected]
        assert [h.score for h in found] == pytest.approx([h.score for h in expected], abs=1e-5)
        assert [(h.text, h.start, h.end) for h in found] == [(h.text, h.start, h.end) for h in expected]

    changed = {
        **{k: v for k, v in TEXTS.items() if k != "e.txt"},
        "a.txt": "Rotor blades stall in forward flight.",
        "f.txt": "Sonic booms.",
    }
    write_docs(source, changed)
    again = build_milvus_index(
        uri,
        "papers",
        source,
        embedder=embedder,
        chunk_tokens=8,
        overlap=2,
        show_progress=False,
        work_dir=tmp_path / "work",
    )
    assert (again.added, again.changed, again.removed, again.unchanged) == (1, 1, 1, 3)
    new_texts = [changed["a.txt"], changed["f.txt"]]
    assert again.embedded == sum(len(chunk_spans(text, embedder, 8, 2)) for text in new_texts)
    reopened = MilvusIndex.open(uri, "papers", embedder=embedder)
    ids = {h.doc_id for h in reopened.search("anything about flight", k=10)}
    assert ids == {"a.txt", "b.txt", "c.txt", "d.txt", "f.txt"}
    assert reopened.search("rotor blades stall", k=1, filters={"source": "a.txt"})[0].text.startswith("Rotor")
    nothing = build_milvus_index(
        uri,
        "papers",
        source,
        embedder=embedder,
        chunk_tokens=8,
        overlap=2,
        show_progress=False,
        work_dir=tmp_path / "work",
    )
    assert (nothing.unchanged, nothing.embedded) == (5, 0)
    with pytest.raises(ValueError, match="another chunk_tokens"):
        build_milvus_index(
            uri,
            "papers",
            source,
            embedder=embedder,
            chunk_tokens=16,
            overlap=2,
            show_progress=False,
            work_dir=tmp_path / "work",
        )


def test_a_milvus_server_filters_fuses_and_resumes_a_killed_build(embedder, milvus_server, tmp_path, monkeypatch):
    source = write_docs(tmp_path / "docs", TEXTS)
    monkeypatch.setattr(changes_module, "SAVE_EVERY", 3)
    original_add = changes_module.VectorStore.add
    calls = []

    def add_then_die(self, texts, vectors):
        original_add(self, texts, vectors)
        calls.append(len(texts))
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed after two parts

    monkeypatch.setattr(changes_module.VectorStore, "add", add_then_die)
    with pytest.raises(KeyboardInterrupt):
        build_milvus_index(
            milvus_server,
            "flights",
            source,
            embedder=embedder,
            chunk_tokens=8,
            overlap=2,
            show_progress=False,
            work_dir=tmp_path / "work",
        )
    monkeypatch.setattr(changes_module.VectorStore, "add", original_add)
    report = build_milvus_index(
        milvus_server,
        "flights",
        source,
        embedder=embedder,
        chunk_tokens=8,
        overlap=2,
        show_progress=False,
        work_dir=tmp_path / "work",
    )
    assert report.resumed == 6 and report.embedded == report.chunks - 6 and report.added == 5
    index = MilvusIndex.open(milvus_server, "flights", embedder=embedder)
    only = index.search("wing", k=5, filters={"source": ["b.txt", "c.txt"]})
    assert {hit.doc_id for hit in only} == {"b.txt", "c.txt"}
    lexical = index.search("hypersonic stagnation", k=5, mode="lexical")
    assert [hit.doc_id for hit in lexical] == ["c.txt"]
    dense = index.search("hypersonic stagnation", k=5, candidates=5)
    hybrid = index.search("hypersonic stagnation", k=5, mode="hybrid", candidates=5)
    assert hybrid[0].doc_id == "c.txt" and {h.doc_id for h in hybrid} == {h.doc_id for h in dense}
    with pytest.raises(ValueError, match="unknown search mode 'sparse'; choose one of dense, lexical, hybrid"):
        index.search("x", mode="sparse")
    with pytest.raises(FileNotFoundError, match="no collection 'missing'"):
        MilvusIndex.open(milvus_server, "missing", embedder=embedder)


def test_filter_expressions_and_hit_fusion():
    assert filter_expression(None) == ""
    assert filter_expression({"year": [1961, 1960], "lang": "en"}) == (
        '(metadata["year"] == 1960 or metadata["year"] == 1961) and (metadata["lang"] == "en")'
    )
    with pytest.raises(ValueError, match="filters must be a mapping"):
        filter_expression(["year"])
    dense = [Hit("a", 0.9, "a1", 0, 2), Hit("b", 0.5, "b1", 0, 2)]
    lexical = [Hit("b", 7.0, "b2", 3, 5), Hit("c", 1.0, "c1", 0, 2)]
    fused = fuse_hits([dense, lexical], "rrf", 3)
    assert [(h.doc_id, h.text) for h in fused] == [("b", "b1"), ("a", "a1"), ("c", "c1")]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)


def test_bad_milvus_uris_are_named(embedder, tmp_path):
    with pytest.raises(ValueError, match=r"Milvus URI 'localhost' is not one; give http://host:port"):
        build_milvus_index("localhost", "x", tmp_path, embedder=embedder)


def test_milvus_lite_holds_a_sparse_models_vectors_and_fuses_them_like_the_on_disk_index(embedder, tmp_path):
    from tests.test_search_sparse import HashingSparse

    source = write_docs(tmp_path / "docs", TEXTS)
    hashing = HashingSparse()
    uri = tmp_path / "milvus.db"
    options = dict(embedder=embedder, sparse_model=hashing, chunk_tokens=8, overlap=2, ann=None, show_progress=False)
    report = build_milvus_index(uri, "splade", source, work_dir=tmp_path / "work", **options)
    build_index(tmp_path / "disk", source, **options)
    disk = Index.open(tmp_path / "disk", embedder=embedder, sparse_model=hashing)
    assert report.sparse_encoded == len(set(disk.snapshot.chunks.texts))
    milvus = MilvusIndex.open(uri, "splade", embedder=embedder, sparse_model=hashing)
    assert milvus.settings["sparse_model_key"] == hashing.fingerprint

    def scored(hits):  # (score, doc) best first; documents tied on score in any order
        return sorted(((round(h.score, 4), h.doc_id) for h in hits), key=lambda item: (-item[0], item[1]))

    for query in QUERIES:
        expected = disk.search(query, k=5, mode="sparse")
        assert expected and scored(milvus.search(query, k=5, mode="sparse")) == scored(expected)
    only = milvus.search("wing stall boundary", k=5, mode="dense+sparse", filters={"source": ["b.txt", "d.txt"]})
    assert only and {h.doc_id for h in only} <= {"b.txt", "d.txt"}
    fused = milvus.search(
        "hypersonic stagnation", k=3, mode="dense+sparse+lexical", fusion="weighted", weights=[1, 1, 1]
    )
    assert fused[0].doc_id == "c.txt" and len(fused) == 3
    with pytest.raises(ValueError, match="2 fusion weights for mode 'dense\\+sparse\\+lexical'"):
        milvus.search("x", mode="dense+sparse+lexical", weights=[1, 1])

    changed = {**TEXTS, "b.txt": TEXTS["b.txt"] + " It separates later."}
    write_docs(source, changed)
    hashing.calls.clear()
    again = build_milvus_index(uri, "splade", source, work_dir=tmp_path / "work", **options)
    assert (again.changed, again.unchanged) == (1, 4)
    assert set(hashing.document_encodes()) == {t for t, _, _ in _chunks(embedder, changed["b.txt"])}
    assert [h.doc_id for h in milvus.search("separates", k=3, mode="sparse")] == ["b.txt"]
    with pytest.raises(ValueError, match="was built with another sparse model"):
        MilvusIndex.open(uri, "splade", embedder=embedder, sparse_model=HashingSparse(vocab_size=31))


def _chunks(embedder, text):
    return [(text[s.start : s.end], s.start, s.end) for s in chunk_spans(text, embedder, 8, 2)]


def test_searches_during_milvus_updates_never_fail_and_see_old_or_new_documents(embedder, milvus_server, tmp_path):
    """A reader searching a Milvus collection while three updates replace every document: no search fails, and
    every hit's text is a chunk of one of the versions (an update inserts the new rows before deleting the old)."""
    source = tmp_path / "docs"
    options = {"embedder": embedder, "chunk_tokens": 0, "show_progress": False, "work_dir": tmp_path / "work"}
    versions = []

    def write_version(number: int) -> None:
        texts = {f"d{i}.txt": f"{topic} in report {number}." for i, topic in enumerate(QUERIES)}
        write_docs(source, texts)
        versions.append(set(texts.items()))

    write_version(0)
    build_milvus_index(milvus_server, "updating", source, **options)
    index = MilvusIndex.open(milvus_server, "updating", embedder=embedder)
    stop, errors, seen = threading.Event(), [], []

    def search_loop() -> None:
        while not stop.is_set():
            try:
                for mode in ("dense", "lexical", "hybrid"):
                    seen.extend((hit.doc_id, hit.text) for hit in index.search("wing heat shock", k=5, mode=mode))
            except Exception as error:  # every failure counts
                errors.append(repr(error))

    reader = threading.Thread(target=search_loop)
    reader.start()
    try:
        for number in range(1, 4):
            write_version(number)
            build_milvus_index(milvus_server, "updating", source, **options)
        time.sleep(0.5)  # a few searches of the last version
    finally:
        stop.set()
        reader.join()
    assert errors == [] and seen
    assert set(seen) <= set().union(*versions)
    assert {(hit.doc_id, hit.text) for hit in index.search("wing heat shock", k=5)} <= versions[-1]


def test_a_second_build_of_one_collection_fails_at_once_naming_the_first(embedder, tmp_path):
    source = write_docs(tmp_path / "docs", TEXTS)
    work = tmp_path / "work"
    message = r"the build of Milvus collection 'papers', pending vectors .* is being written by another process \(pid "
    with lock_held_elsewhere(work), pytest.raises(OutputLockedError, match=message):
        build_milvus_index(tmp_path / "m.db", "papers", source, embedder=embedder, work_dir=work, show_progress=False)
    assert not (tmp_path / "m.db").exists()  # refused before connecting
