"""Search: documents, chunking, index build/update/resume, exact/HNSW/binary/BM25/hybrid search, filters,
reranking, the HTTP API (OpenAI client included) and the CLI — on a tiny random BERT (exact checks)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gpte import Embedder
from gpte.cli import main
from gpte.data.documents import read_documents
from gpte.models.chunking import chunk_spans
from gpte.search import changes as changes_module
from gpte.search.fusion import fuse
from gpte.search.index import Index, build_index, index_path
from gpte.search.ranking import Ranking
from gpte.similarity import similarity

TEXTS = {
    "a.txt": "Wings stall when the angle of attack is too high for the airflow to follow the surface.",
    "b.txt": "The boundary layer thickens downstream along a flat plate in laminar flow.",
    "c.txt": "Heat transfer at hypersonic speeds is large near the stagnation point of a blunt body.",
    "d.txt": "Propellers create a slipstream that changes the lift distribution along the wing span.",
    "e.txt": "Shock waves form when a body moves faster than sound and the pressure jumps across them.",
}


def write_docs(folder, texts):
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.txt"):
        old.unlink()
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def brute_force(embedder, docs, query):
    """Document ids by max chunk similarity, computed directly."""
    q = torch.from_numpy(embedder.encode([query], role="query"))
    scores = {}
    for doc_id, chunks in docs.items():
        vectors = torch.from_numpy(embedder.encode(chunks, role="document"))
        scores[doc_id] = float(similarity(q, vectors, embedder.similarity_name).max())
    return sorted(scores, key=lambda d: -scores[d])


def test_documents_from_a_folder_and_rows(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.md").write_text("# Title\nbody", encoding="utf-8")
    (tmp_path / ".hidden.txt").write_text("skip me", encoding="utf-8")
    (tmp_path / "rows.jsonl").write_text(
        json.dumps({"_id": 7, "title": "T", "text": " body ", "year": 1960, "tags": ["x"]})
        + "\n"
        + json.dumps({"text": "no id"})
        + "\n",
        encoding="utf-8",
    )
    docs = {doc.id: doc for doc in read_documents(tmp_path)}
    assert set(docs) == {"sub/x.md", "7", "rows.jsonl:1"}
    assert docs["7"].text == "T  body"  # title + " " + text, stripped (BEIR/mteb)
    assert docs["7"].metadata == {"source": "rows.jsonl", "year": 1960}  # lists are not metadata
    assert docs["sub/x.md"].text == "# Title\nbody"


def test_bad_document_sources(tmp_path):
    (tmp_path / "dup.jsonl").write_text('{"_id": "1", "text": "a"}\n{"_id": "1", "text": "b"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"duplicate document id.*'1'"):
        read_documents(tmp_path / "dup.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"_id": "1", "body": "a"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: no field 'text' \(fields: _id, body\)"):
        read_documents(tmp_path / "bad.jsonl")
    (tmp_path / "x.pdf").write_text("%PDF", encoding="utf-8")
    with pytest.raises(ValueError, match=r"unsupported document format '.pdf'; use one of .txt"):
        read_documents(tmp_path / "x.pdf")
    with pytest.raises(FileNotFoundError):
        read_documents(tmp_path / "missing")


def test_chunks_are_exact_slices_with_overlap(embedder):
    tokenizer = embedder.backbone.tokenizer
    text = " ".join(TEXTS.values())
    spans = chunk_spans(text, embedder, max_tokens=12, overlap=4)
    ids = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert len(spans) == -(-(len(ids) - 12) // 8) + 1  # windows every 8 tokens until the last token is covered
    for first, span in zip(range(0, len(ids), 8), spans):
        window = ids[first : first + 12]
        assert (span.start, span.end) == (window[0][0], window[-1][1])
    assert spans[-1].end == len(text.rstrip())
    assert [(s.start, s.end) for s in chunk_spans("short text", embedder, 12, 4)] == [(0, 10)]
    assert [(s.start, s.end) for s in chunk_spans(text, embedder, 0, 0)] == [(0, len(text))]
    with pytest.raises(ValueError, match=r"overlap must be a whole number in \[0, 12\)"):
        chunk_spans(text, embedder, 12, 12)


@pytest.fixture
def built(embedder, tmp_path):
    source = write_docs(tmp_path / "docs", TEXTS)
    report = build_index(tmp_path / "index", source, embedder=embedder, chunk_tokens=8, overlap=2, show_progress=False)
    return report, Index.open(tmp_path / "index", embedder=embedder), source


def chunk_texts(index):
    by_doc = {}
    for doc_id, text in zip(index.snapshot.chunks.doc_ids, index.snapshot.chunks.texts):
        by_doc.setdefault(doc_id, []).append(text)
    return by_doc


def test_exact_search_ranks_documents_by_their_best_chunk(built, embedder):
    report, index, _ = built
    assert (report.documents, report.added, report.chunks > report.documents) == (5, 5, True)
    query = "why does a wing stall"
    hits = index.search(query, k=5)
    assert [hit.doc_id for hit in hits] == brute_force(embedder, chunk_texts(index), query)
    best = hits[0]
    assert TEXTS[best.doc_id][best.start : best.end] == best.text


def test_ann_and_binary_search_agree_with_exact_on_a_small_index(built):
    _, index, _ = built
    queries = ["wing stall", "hypersonic heat", "shock waves pressure", "slipstream lift"]
    exact = [[h.doc_id for h in hits] for hits in index.search(queries, k=3)]
    saved = np.load(index.snapshot.folder / "binary.npy")  # sign bits written at build time, 1/32 of the floats
    assert np.array_equal(saved, np.packbits(np.asarray(index.snapshot.vectors) > 0, axis=1))
    assert [[h.doc_id for h in hits] for hits in index.search(queries, k=3, dense_mode="hnsw")] == exact
    assert [[h.doc_id for h in hits] for hits in index.search(queries, k=3, dense_mode="binary", rescore=50)] == exact
    assert [[h.doc_id for h in hits] for hits in index.search(queries, k=3, dense_mode="int8")] == exact
    assert index.dense.int8_bytes == len(index.snapshot.chunks) * index.embedder.dimension  # one byte per dimension
    exact_scores = [h.score for h in index.search(queries[0], k=3)]
    assert [h.score for h in index.search(queries[0], k=3, dense_mode="hnsw")] == pytest.approx(exact_scores, abs=1e-6)


def test_filters_lexical_and_hybrid(built):
    _, index, _ = built
    only = index.search("wing", k=5, filters={"source": ["b.txt", "c.txt"]})
    assert {hit.doc_id for hit in only} == {"b.txt", "c.txt"}
    for mode in ("hnsw", "binary", "int8"):
        assert {h.doc_id for h in index.search("wing", k=5, dense_mode=mode, filters={"source": "e.txt"})} == {"e.txt"}
    lexical = index.search("hypersonic stagnation", k=5, mode="lexical")
    assert [hit.doc_id for hit in lexical] == ["c.txt"]  # BM25: only documents sharing a term are hits
    hybrid = index.search("hypersonic stagnation", k=5, mode="hybrid")
    assert hybrid[0].doc_id == "c.txt" and len(hybrid) == 5


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        (
            {"source": {"$in": ["b.txt"]}},
            "filter 'source': {'$in': ['b.txt']} is not allowed; a filter value is a string",
        ),
        ({"source": [["b.txt"]]}, "filter 'source': [['b.txt']] is not allowed"),
        ({"year": 1960}, "no document has the metadata field 'year'; the fields are: source"),
        ({"year": 1, "lang": "en"}, "no document has the metadata fields 'year', 'lang'; the fields are: source"),
    ],
)
def test_bad_filters_are_refused_naming_the_field(built, filters, message):
    _, index, _ = built
    for mode in ("dense", "lexical", "hybrid"):
        with pytest.raises(ValueError) as error:
            index.search("wing", k=3, mode=mode, filters=filters)
        assert message in str(error.value)


def test_fusion_formulas():
    dense = Ranking(np.array([0, 1, 2]), np.array([0.9, 0.5, 0.1], np.float32), np.array([10, 11, 12]))
    lexical = Ranking(np.array([2, 3]), np.array([7.0, 1.0], np.float32), np.array([22, 23]))
    rrf = fuse([dense, lexical], "rrf", top=4)
    expected = {0: 1 / 61, 1: 1 / 62, 2: 1 / 63 + 1 / 61, 3: 1 / 62}
    assert rrf.docs.tolist() == [2, 0, 1, 3]
    assert rrf.scores.tolist() == pytest.approx([expected[d] for d in rrf.docs.tolist()])
    assert rrf.chunks.tolist() == [12, 10, 11, 23]  # the first ranking's chunk wins
    weighted = fuse([dense, lexical], "weighted", top=4, weights=[0.7, 0.3])
    expected = {0: 0.7, 1: 0.7 * 0.5, 2: 0.3, 3: 0.0}
    assert dict(zip(weighted.docs.tolist(), weighted.scores.tolist())) == pytest.approx(expected)
    with pytest.raises(ValueError, match="unknown fusion 'max'; choose one of rrf, weighted"):
        fuse([dense], "max", 3)


def test_incremental_update_embeds_only_changes(built, embedder, tmp_path):
    _, index, source = built
    before = {d: np.array(index.snapshot.vectors[f : f + n]) for d, (_, f, n) in index.snapshot.documents.items()}
    changed = {
        **{k: v for k, v in TEXTS.items() if k != "e.txt"},
        "b.txt": TEXTS["b.txt"] + " It separates later.",
        "f.txt": "A new note on flutter.",
    }
    write_docs(source, changed)
    calls = []
    original = embedder.encode_with_report
    embedder.encode_with_report = lambda texts, **kw: calls.append(list(texts)) or original(texts, **kw)
    try:
        report = build_index(
            tmp_path / "index", source, embedder=embedder, chunk_tokens=8, overlap=2, show_progress=False
        )
    finally:
        del embedder.encode_with_report
    assert (report.added, report.changed, report.removed, report.unchanged) == (1, 1, 1, 3)
    updated = Index.open(tmp_path / "index", embedder=embedder)
    new_chunks = chunk_texts(updated)
    assert sorted(t for call in calls for t in call) == sorted(set(new_chunks["b.txt"] + new_chunks["f.txt"]))
    for doc in ("a.txt", "c.txt", "d.txt"):
        _, first, count = updated.snapshot.documents[doc]
        assert np.array_equal(updated.snapshot.vectors[first : first + count], before[doc])
    assert "e.txt" not in updated.snapshot.documents
    generations = sorted(g.name for g in (tmp_path / "index").glob("gen-*"))
    assert generations == ["gen-000001", "gen-000002"]  # the fixture's index still reads generation 1
    index.snapshot.lease.release()
    again = build_index(tmp_path / "index", source, embedder=embedder, chunk_tokens=8, overlap=2, show_progress=False)
    assert (again.generation, again.unchanged, again.embedded) == (
        "gen-000002",
        5,
        0,
    )  # nothing changed: nothing written, and generation 1, read by no one now, deleted
    assert [g.name for g in (tmp_path / "index").glob("gen-*")] == ["gen-000002"]


def test_killed_build_keeps_the_old_index_and_resumes(embedder, tmp_path, monkeypatch):
    source = write_docs(tmp_path / "docs", dict(list(TEXTS.items())[:2]))
    build_index(tmp_path / "index", source, embedder=embedder, chunk_tokens=8, overlap=2, show_progress=False)
    write_docs(source, TEXTS)
    monkeypatch.setattr(changes_module, "SAVE_EVERY", 3)
    original_add = changes_module.VectorStore.add
    parts = []

    def add_then_die(self, texts, vectors):
        if len(parts) == 2:
            raise KeyboardInterrupt  # killed while embedding the third part
        parts.append(texts)
        original_add(self, texts, vectors)

    monkeypatch.setattr(changes_module.VectorStore, "add", add_then_die)
    with pytest.raises(KeyboardInterrupt):
        build_index(tmp_path / "index", source, embedder=embedder, chunk_tokens=8, overlap=2, show_progress=False)
    old = Index.open(tmp_path / "index", embedder=embedder)
    assert len(old) == 2 and old.search("wing", k=1)  # the previous generation is intact and searchable
    monkeypatch.setattr(changes_module.VectorStore, "add", original_add)
    report = build_index(tmp_path / "index", source, embedder=embedder, chunk_tokens=8, overlap=2, show_progress=False)
    assert report.resumed == 6 and report.embedded > 0
    fresh = build_index(tmp_path / "fresh", source, embedder=embedder, chunk_tokens=8, overlap=2, show_progress=False)
    resumed, clean = (
        Index.open(tmp_path / "index", embedder=embedder),
        Index.open(tmp_path / "fresh", embedder=embedder),
    )
    assert fresh.chunks == report.chunks
    assert np.abs(np.asarray(resumed.snapshot.vectors) - np.asarray(clean.snapshot.vectors)).max() <= 1e-6
    assert not list((tmp_path / "index").glob("pending-*"))


def test_bad_input(built, embedder, tiny_models, tmp_path):
    _, index, source = built
    with pytest.raises(ValueError, match="query 0 is empty"):
        index.search("  ")
    with pytest.raises(ValueError, match="unknown search mode 'semantic'; choose one of dense, lexical, hybrid"):
        index.search("x", mode="semantic")
    with pytest.raises(ValueError, match="unknown dense search mode 'ivf'; choose one of exact, hnsw, binary"):
        index.search("x", dense_mode="ivf")
    with pytest.raises(ValueError, match="was built with another chunk_tokens"):
        build_index(tmp_path / "index", source, embedder=embedder, chunk_tokens=16, overlap=2, show_progress=False)
    other = Embedder.load(tiny_models["roberta"], device="cpu")
    with pytest.raises(ValueError, match="was built with another model"):
        Index.open(tmp_path / "index", embedder=other)
    with pytest.raises(FileNotFoundError, match="no index at"):
        Index.open(tmp_path / "nothing")
    with pytest.raises(ValueError, match="index name '../x' is not allowed"):
        index_path("../x")


class ShortestFirst:
    def score(self, query, texts):
        return np.array([-float(len(text)) for text in texts])


def test_reranker_reorders_the_candidates(built):
    _, index, _ = built
    candidates = index.search("wing stall", k=100)  # every document, with the best chunk the reranker reads
    expected = sorted(candidates, key=lambda hit: len(hit.text))[:2]
    hits = index.search("wing stall", k=2, reranker=ShortestFirst())
    assert [(h.doc_id, h.score) for h in hits] == [(h.doc_id, -float(len(h.text))) for h in expected]


def test_cli_index_and_search(tmp_path, tiny_models, capsys):
    source = write_docs(tmp_path / "docs", TEXTS)
    root = tmp_path / "indexes"
    model = str(tiny_models["bert"])
    assert (
        main(
            [
                "index",
                str(source),
                "--name",
                "demo",
                "--model",
                model,
                "--root",
                str(root),
                "--chunk-tokens",
                "8",
                "--overlap",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "5 documents (5 added, 0 changed, 0 removed, 0 unchanged)" in capsys.readouterr().out
    assert main(["search", "demo", "hypersonic stagnation", "--mode", "lexical", "--root", str(root), "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [hit["doc_id"] for hit in hits] == ["c.txt"]
    assert main(["search", "demo", "wing", "--filter", "source=e.txt", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "e.txt" in out and "a.txt" not in out
    assert main(["search", "demo", "wing", "--mode", "fuzzy", "--root", str(root)]) == 1
    assert "unknown search mode 'fuzzy'" in capsys.readouterr().err
    assert main(["search", "demo", "wing", "--filter", "year=1960", "--root", str(root)]) == 1
    assert "no document has the metadata field 'year'; the fields are: source" in capsys.readouterr().err


def test_killed_gpte_index_process_keeps_the_old_index_and_the_next_run_resumes(tmp_path, tiny_models):
    """A real ``gpte index`` process killed with SIGKILL once its first pending part is on disk."""
    import os
    import signal
    import subprocess
    import sys
    import time

    source = tmp_path / "docs.jsonl"
    rows = [{"_id": str(n), "text": f"note {n} on wings"} for n in range(8_192)]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows[:100]), encoding="utf-8")
    root = tmp_path / "indexes"
    command = [
        sys.executable,
        "-m",
        "gpte.cli",
        "index",
        str(source),
        "--name",
        "big",
        "--model",
        str(tiny_models["bert"]),
        "--root",
        str(root),
        "--chunk-tokens",
        "0",
        "--no-ann",
        "--no-progress",
    ]
    subprocess.run(command, check=True, capture_output=True)
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(root.glob("big/pending-*/part-*.npz")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the build finished before it could be killed"
    old = Index.open(root / "big", embedder=Embedder.load(tiny_models["bert"], device="cpu"))
    assert len(old) == 100 and old.search("note", k=3)
    finished = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    kept = int(finished.split("kept ")[1].split()[0])
    assert "8192 documents (8092 added" in finished and kept >= changes_module.SAVE_EVERY
    assert len(Index.open(root / "big", embedder=Embedder.load(tiny_models["bert"], device="cpu"))) == 8_192


def test_cli_index_and_search_in_milvus_lite(tmp_path, tiny_models, capsys):
    source = write_docs(tmp_path / "docs", TEXTS)
    uri = str(tmp_path / "milvus.db")
    model = str(tiny_models["bert"])
    assert (
        main(
            [
                "index",
                str(source),
                "--name",
                "demo",
                "--model",
                model,
                "--milvus",
                uri,
                "--chunk-tokens",
                "8",
                "--overlap",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "5 documents (5 added, 0 changed, 0 removed, 0 unchanged)" in capsys.readouterr().out
    assert main(["search", "demo", "wing", "--filter", "source=e.txt", "--milvus", uri, "--json"]) == 0
    assert [hit["doc_id"] for hit in json.loads(capsys.readouterr().out)] == ["e.txt"]
    assert main(["search", "demo", "wing", "--dense-mode", "binary", "--milvus", uri]) == 1
    assert "searches with 'hnsw' only" in capsys.readouterr().err
