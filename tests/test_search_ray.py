"""Corpus embedding as a Ray Data pipeline on a local single-node Ray that the test starts and stops: the shards
hold the same chunks and vectors as the index's own embedding, and an index built from them embeds nothing."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from gpte import Embedder
from gpte.search.distributed import embed_corpus_ray
from gpte.search.index import Index, build_index
from tests.test_search import TEXTS, write_docs

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_pipeline_embeds_what_the_index_would_and_the_index_reuses_it(local_ray, tiny_models, tmp_path):
    source = write_docs(tmp_path / "docs", TEXTS)
    options = {"pooling": "mean", "device": "cpu"}
    with pytest.warns(UserWarning, match="concurrency 4 lowered to 1: the Ray cluster has 2 CPUs"):
        count = embed_corpus_ray(  # 4 actors on 2 CPUs used to leave none for reading: 0 rows, forever
            source,
            tmp_path / "vectors",
            model=str(tiny_models["bert"]),
            model_options=options,
            chunk_tokens=8,
            overlap=2,
            batch_size=2,
            concurrency=4,
        )
    embedder = Embedder.load(tiny_models["bert"], **options)
    fresh = build_index(tmp_path / "fresh", source, embedder=embedder, chunk_tokens=8, overlap=2, show_progress=False)
    assert count == fresh.chunks
    shards = pq.read_table(tmp_path / "vectors").to_pydict()
    expected = Index.open(tmp_path / "fresh", embedder=embedder).snapshot
    by_span = {
        (d, s, e): v
        for d, s, e, v in zip(expected.chunks.doc_ids, expected.chunks.starts, expected.chunks.ends, expected.vectors)
    }
    assert set(zip(shards["doc_id"], shards["start"], shards["end"])) == set(by_span)
    for doc_id, start, end, vector in zip(shards["doc_id"], shards["start"], shards["end"], shards["vector"]):
        assert np.abs(np.asarray(vector) - by_span[(doc_id, start, end)]).max() <= 1e-5

    report = build_index(
        tmp_path / "from-ray",
        source,
        embedder=embedder,
        chunk_tokens=8,
        overlap=2,
        show_progress=False,
        vectors_from=tmp_path / "vectors",
    )
    assert (report.embedded, report.ready, report.chunks) == (0, len(set(expected.chunks.texts)), fresh.chunks)
    built = Index.open(tmp_path / "from-ray", embedder=embedder).snapshot
    assert np.abs(np.asarray(built.vectors) - np.asarray(expected.vectors)).max() <= 1e-5
    with pytest.raises(ValueError, match="vectors in .* was built with another chunk_tokens"):
        build_index(
            tmp_path / "other",
            source,
            embedder=embedder,
            chunk_tokens=16,
            overlap=2,
            show_progress=False,
            vectors_from=tmp_path / "vectors",
        )
    with pytest.raises(FileExistsError, match="exists; pass overwrite=True"):
        embed_corpus_ray(source, tmp_path / "vectors", model=str(tiny_models["bert"]), model_options=options)


def test_cli_embed_corpus_then_index_from_its_vectors(local_ray, tiny_models, tmp_path, capsys):
    from gpte.cli import main

    source = write_docs(tmp_path / "docs", TEXTS)
    model = str(tiny_models["bert"])
    assert (
        main(
            [
                "embed-corpus",
                str(source),
                "-o",
                str(tmp_path / "vectors"),
                "--model",
                model,
                "--chunk-tokens",
                "8",
                "--overlap",
                "2",
            ]
        )
        == 0
    )
    assert "chunks embedded into" in capsys.readouterr().out
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
                str(tmp_path / "indexes"),
                "--chunk-tokens",
                "8",
                "--overlap",
                "2",
                "--vectors-from",
                str(tmp_path / "vectors"),
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "embedded 0," in out and "took 0 ready-made" not in out
