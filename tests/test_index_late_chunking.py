"""Late chunking in the search index (``build_index(..., late_chunking=True)``, ``gpte index --late-chunking``): the
stored chunk vectors are ``encode_late_chunks`` of their documents, keyed by document and span (not chunk text), kept
across incremental updates, resumed after a killed build, recorded and checked as settings; on disk, in Milvus Lite
and from ready-made shards. A tiny random BERT with mean pooling (exact checks)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gpte import Embedder
from gpte.cli import main
from gpte.models.chunking import chunk_spans
from gpte.models.late_chunking import encode_late_chunks
from gpte.search import changes as changes_module
from gpte.search.index import Index, build_index
from gpte.search.store import current_generation
from tests.test_search import write_docs

SENTENCE = "the wing stalls early and the flap moves down . "
DOCS = {
    "long.txt": SENTENCE * 5 + "heat flows fast near the nose .",  # beyond a 32-token context: windows
    "mid.txt": "shock waves form when a body moves faster than sound and the pressure jumps across them .",
    "short.txt": "Heat flows fast.",  # one chunk
}
CHUNKING = {"chunk_tokens": 8, "overlap": 2}


@pytest.fixture(scope="module")
def short_context(tiny_models) -> Embedder:
    """The tiny BERT with mean pooling and a 32-token context, so that a long document runs in windows."""
    return Embedder.load(tiny_models["bert"], pooling="mean", device="cpu", max_seq_length=32)


def stored(path, embedder):
    """doc_id -> (its chunk spans, its stored chunk vectors) of the index at ``path``."""
    snapshot = Index.open(path, embedder=embedder).snapshot
    chunks = snapshot.chunks
    return {
        doc: (
            [(chunks.starts[row], chunks.ends[row]) for row in range(first, first + count)],
            np.asarray(snapshot.vectors[first : first + count]),
        )
        for doc, (_, first, count) in snapshot.documents.items()
    }


def cosine(vectors, query):
    return vectors @ query / np.linalg.norm(vectors, axis=1) / np.linalg.norm(query)


def late_vectors(embedder, texts, window_overlap=None, batch_size=32, boundary="token"):
    """doc name -> ``encode_late_chunks`` of its chunks, all documents in one call."""
    names = list(texts)
    spans = [chunk_spans(texts[name], embedder, 8, 2, boundary) for name in names]
    vectors = encode_late_chunks(
        embedder, [texts[name] for name in names], spans, role="document", batch_size=batch_size,
        window_overlap=window_overlap,
    )  # fmt: skip
    return dict(zip(names, vectors))


def encoded_documents(monkeypatch):
    """Record the documents every late-chunking call of the index build encodes."""
    calls = []
    original = changes_module.encode_late_chunks

    def spy(model, texts, spans, **options):
        calls.extend(texts)
        return original(model, texts, spans, **options)

    monkeypatch.setattr(changes_module, "encode_late_chunks", spy)
    return calls


def test_stored_vectors_are_the_late_chunks_of_their_documents(short_context, tmp_path):
    source = write_docs(tmp_path / "docs", DOCS)
    report = build_index(
        tmp_path / "late", source, embedder=short_context, **CHUNKING, late_chunking=True, window_overlap=8,
        show_progress=False,
    )  # fmt: skip
    build_index(tmp_path / "plain", source, embedder=short_context, **CHUNKING, show_progress=False)
    late, plain = stored(tmp_path / "late", short_context), stored(tmp_path / "plain", short_context)
    expected = late_vectors(short_context, DOCS, window_overlap=8)
    assert report.embedded == report.chunks == sum(len(v) for v in expected.values()) and report.truncated == 0
    for doc in DOCS:
        assert late[doc][0] == plain[doc][0]  # the same chunks, offsets and texts
        np.testing.assert_array_equal(late[doc][1], expected[doc])
    assert len(late["long.txt"][0]) > 3 and not np.allclose(late["long.txt"][1], plain["long.txt"][1], atol=1e-3)
    np.testing.assert_allclose(late["short.txt"][1], plain["short.txt"][1], atol=1e-5, rtol=0)  # one chunk: plain
    manifest = Index.open(tmp_path / "late", embedder=short_context).snapshot.manifest
    assert (manifest["late_chunking"], manifest["window_overlap"], manifest["chunk_boundary"]) == (True, 8, "token")
    index = Index.open(tmp_path / "late", embedder=short_context)
    query = short_context.encode(["flap moves"], role="query")[0]
    best = {doc: float(cosine(expected[doc], query).max()) for doc in DOCS}  # a document scores as its best chunk
    hits = index.search("flap moves", k=3)
    assert [(h.doc_id, round(h.score, 5)) for h in hits] == sorted(
        ((doc, round(score, 5)) for doc, score in best.items()), key=lambda item: -item[1]
    )


def test_documents_sharing_a_chunk_text_get_their_own_vectors(embedder, tmp_path):
    texts = {"x.txt": SENTENCE + "the tail shakes hard .", "y.txt": SENTENCE + "heat flows fast near the nose ."}
    source = write_docs(tmp_path / "docs", texts)
    build_index(tmp_path / "late", source, embedder=embedder, **CHUNKING, late_chunking=True, show_progress=False)
    build_index(tmp_path / "plain", source, embedder=embedder, **CHUNKING, show_progress=False)
    late, plain = stored(tmp_path / "late", embedder), stored(tmp_path / "plain", embedder)
    chunks = Index.open(tmp_path / "late", embedder=embedder).snapshot.chunks
    first = {doc: chunks.texts[chunks.doc_ids.index(doc)] for doc in texts}
    assert first["x.txt"] == first["y.txt"]  # the same first chunk text
    np.testing.assert_array_equal(plain["x.txt"][1][0], plain["y.txt"][1][0])
    assert not np.allclose(late["x.txt"][1][0], late["y.txt"][1][0], atol=1e-4)
    expected = late_vectors(embedder, texts)
    for doc in texts:
        np.testing.assert_array_equal(late[doc][1], expected[doc])


def test_an_update_encodes_only_new_and_changed_documents(embedder, tmp_path, monkeypatch):
    texts = {**DOCS, "gone.txt": "propellers create a slipstream that changes the lift along the wing span ."}
    source = write_docs(tmp_path / "docs", texts)
    build_index(tmp_path / "late", source, embedder=embedder, **CHUNKING, late_chunking=True, show_progress=False)
    before = stored(tmp_path / "late", embedder)
    changed = {**DOCS, "mid.txt": DOCS["mid.txt"] + " it separates later .", "new.txt": "a new note on flutter ."}
    write_docs(source, changed)
    calls = encoded_documents(monkeypatch)
    report = build_index(tmp_path / "late", source, embedder=embedder, show_progress=False)  # settings: the index's
    assert calls == [changed["mid.txt"], changed["new.txt"]]
    after = stored(tmp_path / "late", embedder)
    assert (report.added, report.changed, report.removed, report.unchanged) == (1, 1, 1, 2)
    assert report.embedded == len(after["mid.txt"][0]) + len(after["new.txt"][0]) and report.resumed == 0
    for doc in ("long.txt", "short.txt"):
        np.testing.assert_array_equal(after[doc][1], before[doc][1])
    expected = late_vectors(embedder, {doc: changed[doc] for doc in ("mid.txt", "new.txt")})
    for doc in ("mid.txt", "new.txt"):
        np.testing.assert_array_equal(after[doc][1], expected[doc])
    calls.clear()
    again = build_index(tmp_path / "late", source, embedder=embedder, late_chunking=True, show_progress=False)
    assert (again.embedded, again.unchanged, calls) == (0, 4, [])


def test_sparse_vectors_beside_late_chunks_are_those_of_the_chunk_texts(embedder, splade, tmp_path):
    source = write_docs(tmp_path / "docs", DOCS)
    options = {"embedder": embedder, "sparse_model": splade, **CHUNKING, "show_progress": False}
    build_index(tmp_path / "late", source, late_chunking=True, **options)
    changed = {**DOCS, "mid.txt": DOCS["mid.txt"] + " it separates later ."}
    write_docs(source, changed)
    report = build_index(tmp_path / "late", source, **options)  # kept and new rows of both kinds
    build_index(tmp_path / "plain", source, **options)
    late, plain = (Index.open(tmp_path / name, embedder=embedder, sparse_model=splade) for name in ("late", "plain"))
    assert report.changed == 1 and report.sparse_encoded > 0
    assert late.snapshot.chunks.texts == plain.snapshot.chunks.texts
    np.testing.assert_array_equal(late.sparse.vectors().toarray(), plain.sparse.vectors().toarray())
    expected = late_vectors(embedder, changed)
    for doc, (_, vectors) in stored(tmp_path / "late", embedder).items():  # batched with other documents: ~1e-7
        np.testing.assert_allclose(vectors, expected[doc], atol=1e-6, rtol=0)
    hits = late.search("flap moves", k=3, mode="dense+sparse")
    assert {hit.doc_id for hit in hits} == set(DOCS)


def test_a_killed_build_resumes_without_encoding_finished_documents_again(embedder, tmp_path, monkeypatch):
    texts = {f"{n}.txt": f"note {n} : " + SENTENCE * 2 for n in range(5)}
    source = write_docs(tmp_path / "docs", texts)
    monkeypatch.setattr(changes_module, "SAVE_EVERY", 3)  # every document has more chunks: one document a part
    original_add = changes_module.VectorStore.add
    parts = []

    def add_then_die(self, keys, vectors):
        if len(parts) == 2:
            raise KeyboardInterrupt  # killed while encoding the third document
        parts.append(list(keys))
        original_add(self, keys, vectors)

    monkeypatch.setattr(changes_module.VectorStore, "add", add_then_die)
    with pytest.raises(KeyboardInterrupt):
        build_index(tmp_path / "late", source, embedder=embedder, **CHUNKING, late_chunking=True, show_progress=False)
    assert current_generation(tmp_path / "late") is None and list((tmp_path / "late").glob("pending-*"))
    monkeypatch.setattr(changes_module.VectorStore, "add", original_add)
    calls = encoded_documents(monkeypatch)
    report = build_index(
        tmp_path / "late", source, embedder=embedder, **CHUNKING, late_chunking=True, show_progress=False
    )
    assert report.resumed == sum(len(keys) for keys in parts) and report.embedded == report.chunks - report.resumed
    assert len(calls) == 3 and set(calls) == set(list(texts.values())[2:])  # the two finished ones not again
    assert not list((tmp_path / "late").glob("pending-*"))
    fresh = build_index(
        tmp_path / "fresh", source, embedder=embedder, **CHUNKING, late_chunking=True, show_progress=False
    )
    resumed, clean = stored(tmp_path / "late", embedder), stored(tmp_path / "fresh", embedder)
    assert fresh.chunks == report.chunks
    for doc in texts:
        np.testing.assert_array_equal(resumed[doc][1], clean[doc][1])


def test_settings_are_recorded_checked_and_refused_before_any_work(embedder, tiny_models, splade, tmp_path):
    source = write_docs(tmp_path / "docs", DOCS)
    late = tmp_path / "late"
    build_index(late, source, embedder=embedder, **CHUNKING, late_chunking=True, show_progress=False)
    with pytest.raises(ValueError, match=r"was built with another late_chunking \(True vs False\); rebuild it"):
        build_index(late, source, embedder=embedder, late_chunking=False, show_progress=False)
    with pytest.raises(ValueError, match=r"was built with another window_overlap \(None vs 4\)"):
        build_index(late, source, embedder=embedder, window_overlap=4, show_progress=False)
    with pytest.raises(ValueError, match=r"was built with another chunk_boundary \('token' vs 'sentence'\)"):
        build_index(late, source, embedder=embedder, chunk_boundary="sentence", show_progress=False)
    rebuilt = build_index(late, source, embedder=embedder, late_chunking=False, rebuild=True, show_progress=False)
    assert rebuilt.added == 3
    with pytest.raises(ValueError, match=r"was built with another late_chunking \(False vs True\)"):
        build_index(late, source, embedder=embedder, late_chunking=True, show_progress=False)

    for pooling in ("cls", "last"):
        one_token = Embedder.load(tiny_models["bert"], pooling=pooling, device="cpu")
        with pytest.raises(ValueError, match=f"{pooling} pooling reads one fixed token; use a pooling that reduces"):
            build_index(tmp_path / pooling, source, embedder=one_token, late_chunking=True, show_progress=False)
        assert not (tmp_path / pooling).exists()  # refused before any work
    with pytest.raises(ValueError, match="window_overlap=4 applies to late chunking only"):
        build_index(tmp_path / "x", source, embedder=embedder, window_overlap=4, show_progress=False)
    with pytest.raises(ValueError, match=r"window_overlap must be a whole number of tokens in \[0, 128\), got 500"):
        build_index(tmp_path / "x", source, embedder=embedder, late_chunking=True, window_overlap=500)
    with pytest.raises(ValueError, match="unknown chunk boundary 'word'; choose one of: token, sentence"):
        build_index(tmp_path / "x", source, embedder=embedder, chunk_boundary="word", show_progress=False)
    with pytest.raises(ValueError, match="an index without a dense model .* cannot use it"):
        build_index(tmp_path / "x", source, sparse_model=splade, dense=False, late_chunking=True)
    assert not (tmp_path / "x").exists()


def test_an_index_recorded_before_these_settings_counts_as_token_chunks_without_late_chunking(embedder, tmp_path):
    source = write_docs(tmp_path / "docs", DOCS)
    build_index(tmp_path / "old", source, embedder=embedder, **CHUNKING, show_progress=False)
    manifest_path = current_generation(tmp_path / "old") / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for key in ("chunk_boundary", "late_chunking", "window_overlap"):
        del manifest[key]
    manifest_path.write_text(json.dumps(manifest))
    again = build_index(tmp_path / "old", source, embedder=embedder, chunk_boundary="token", show_progress=False)
    assert (again.generation, again.embedded) == ("gen-000001", 0)
    with pytest.raises(ValueError, match=r"another late_chunking \(False vs True\)"):
        build_index(tmp_path / "old", source, embedder=embedder, late_chunking=True, show_progress=False)


def test_sentence_chunks_late_chunked(embedder, tmp_path):
    source = write_docs(tmp_path / "docs", DOCS)
    build_index(
        tmp_path / "late", source, embedder=embedder, **CHUNKING, chunk_boundary="sentence", late_chunking=True,
        show_progress=False,
    )  # fmt: skip
    late = stored(tmp_path / "late", embedder)
    expected = late_vectors(embedder, DOCS, boundary="sentence")
    for doc, text in DOCS.items():
        spans = chunk_spans(text, embedder, 8, 2, "sentence")
        assert late[doc][0] == [(s.start, s.end) for s in spans]
        np.testing.assert_array_equal(late[doc][1], expected[doc])


def test_milvus_lite_holds_the_same_late_chunks(embedder, tmp_path):
    from gpte.search.milvus import MilvusIndex, build_milvus_index

    source = write_docs(tmp_path / "docs", DOCS)
    uri = tmp_path / "milvus.db"
    options = {"embedder": embedder, **CHUNKING, "ann": None, "show_progress": False}
    report = build_milvus_index(uri, "late", source, late_chunking=True, work_dir=tmp_path / "work", **options)
    build_index(tmp_path / "disk", source, late_chunking=True, **options)
    disk, milvus = Index.open(tmp_path / "disk", embedder=embedder), MilvusIndex.open(uri, "late", embedder=embedder)
    assert report.embedded == report.chunks == len(disk.snapshot.chunks)
    for query in ("flap moves", "heat", "shock waves"):
        expected = [(h.doc_id, h.text, round(h.score, 4)) for h in disk.search(query, k=3)]
        assert [(h.doc_id, h.text, round(h.score, 4)) for h in milvus.search(query, k=3)] == expected
    with pytest.raises(ValueError, match=r"Milvus collection 'late' was built with another late_chunking"):
        build_milvus_index(uri, "late", source, late_chunking=False, work_dir=tmp_path / "work", **options)


def test_ready_made_shards_of_late_chunks_are_reused(embedder, tiny_models, tmp_path):
    """The Ray actor's work without Ray: its shards of late chunks feed an index build that encodes nothing."""
    from gpte.search.distributed import VECTORS_MANIFEST, _ChunkEmbedder

    source = write_docs(tmp_path / "docs", DOCS)
    settings = changes_module.build_settings(embedder, str(tiny_models["bert"]), 8, 2, "token", True, None)
    actor = _ChunkEmbedder(
        str(tiny_models["bert"]), {"pooling": "mean", "device": "cpu"}, {k: settings[k] for k in _ChunkEmbedder.CHUNKING}, 4
    )  # fmt: skip
    names = list(DOCS)
    batch = pa.table({"doc_id": names, "text": [DOCS[n] for n in names], "metadata": ["{}"] * len(names)})
    shards = tmp_path / "vectors"
    shards.mkdir()
    table = actor(batch)
    pq.write_table(table, shards / "part-0.parquet")
    (shards / VECTORS_MANIFEST).write_text(json.dumps({**settings, "chunks": len(table)}))
    report = build_index(
        tmp_path / "late", source, embedder=embedder, **CHUNKING, late_chunking=True, vectors_from=shards,
        show_progress=False,
    )  # fmt: skip
    assert (report.embedded, report.ready) == (0, report.chunks)
    late, expected = stored(tmp_path / "late", embedder), late_vectors(embedder, DOCS, batch_size=4)
    for doc in DOCS:
        np.testing.assert_array_equal(late[doc][1], expected[doc])
    with pytest.raises(ValueError, match=r"the vectors in .* was built with another late_chunking \(True vs False\)"):
        build_index(tmp_path / "plain", source, embedder=embedder, **CHUNKING, vectors_from=shards)


def test_cli_late_chunking_builds_the_same_index(tiny_models, tmp_path, capsys):
    source = write_docs(tmp_path / "docs", DOCS)
    root, model = tmp_path / "indexes", str(tiny_models["bert"])
    flags = ["--chunk-tokens", "8", "--overlap", "2", "--late-chunking", "--window-overlap", "4"]
    command = ["index", str(source), "--name", "late", "--model", model, "--root", str(root), "--no-progress"]
    assert main([*command, *flags, "--chunk-boundary", "sentence"]) == 0
    assert "3 documents (3 added, 0 changed, 0 removed, 0 unchanged)" in capsys.readouterr().out
    build_index(
        tmp_path / "api", source, model=model, **CHUNKING, late_chunking=True, window_overlap=4,
        chunk_boundary="sentence", show_progress=False,
    )  # fmt: skip
    embedder = Index.open(tmp_path / "api").embedder
    cli, api = stored(root / "late", embedder), stored(tmp_path / "api", embedder)
    for doc in DOCS:
        assert cli[doc][0] == api[doc][0]
        np.testing.assert_array_equal(cli[doc][1], api[doc][1])
    assert main([*command]) == 0  # an update keeps the index's settings
    assert main([*command, "--no-late-chunking"]) == 1
    assert "was built with another late_chunking (True vs False)" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse names the choices
        main([*command, "--chunk-boundary", "word"])
    assert "invalid choice: 'word'" in capsys.readouterr().err
