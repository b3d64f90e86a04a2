"""Search on real data: all-MiniLM-L6-v2 over ../shared/data/retrieval/cranfield through the index gives
gpte.evaluate's retrieval scores exactly in exact mode, within 0.5 nDCG@10 points with HNSW, and hybrid
BM25 + dense beats both alone (figures printed with -s)."""

import pytest

from gpte import Embedder
from gpte.data.mteb_folders import read_beir
from gpte.evaluate import evaluate, load_task
from gpte.evaluate.tasktypes.retrieval import retrieval_scores
from gpte.search.index import Index, build_index

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def cranfield(shared_data, tmp_path_factory):
    embedder = Embedder.load(device="cpu")
    folder = shared_data / "retrieval/cranfield"
    root = tmp_path_factory.mktemp("search") / "cranfield"
    build_index(
        root, folder / "corpus.jsonl", embedder=embedder, chunk_tokens=0, show_progress=False
    )  # whole documents, as evaluate embeds them
    task = load_task(folder, "retrieval/cranfield")
    reference = evaluate(embedder, [task], tmp_path_factory.mktemp("results")).results["retrieval/cranfield"]["scores"]
    return Index.open(root, embedder=embedder), read_beir(folder, "test"), reference


def scores(index, data, **options):
    query_ids = [query for query in data.queries if query in data.qrels]
    hits = index.search([data.queries[q] for q in query_ids], k=1000, **options)
    return retrieval_scores(data.qrels, {q: {h.doc_id: h.score for h in found} for q, found in zip(query_ids, hits)})


def test_exact_search_reproduces_evaluate(cranfield):
    index, data, reference = cranfield
    ours = scores(index, data)
    print(
        f"\nCranfield nDCG@10 x 100: evaluate {100 * reference['ndcg_at_10']:.3f}, index exact {100 * ours['ndcg_at_10']:.3f}"
    )
    assert ours == pytest.approx(reference, abs=1e-9)


@pytest.mark.slow  # five more passes over the 225 queries: run by hand (pytest -m slow -s tests/test_search_real.py)
def test_hnsw_binary_and_hybrid(cranfield):
    index, data, reference = cranfield
    exact = 100 * reference["ndcg_at_10"]
    figures = {
        name: 100 * scores(index, data, **options)["ndcg_at_10"]
        for name, options in {
            "hnsw": {"dense_mode": "hnsw"},
            "binary+rescore": {"dense_mode": "binary"},
            "int8+rescore": {"dense_mode": "int8"},
            "bm25": {"mode": "lexical"},
            "hybrid rrf": {"mode": "hybrid"},
            "hybrid weighted": {"mode": "hybrid", "fusion": "weighted"},
        }.items()
    }
    print(
        "\nCranfield nDCG@10 x 100: exact "
        + f"{exact:.2f}, "
        + ", ".join(f"{name} {value:.2f}" for name, value in figures.items())
    )
    assert figures["hnsw"] == pytest.approx(exact, abs=0.5)
    assert figures["binary+rescore"] >= 0.95 * exact
    assert figures["int8+rescore"] == pytest.approx(exact, abs=0.5)
    assert figures["hybrid rrf"] > max(exact, figures["bm25"])


@pytest.mark.slow  # embeds Cranfield again into Milvus Lite: run by hand (pytest -m slow -s tests/test_search_real.py)
def test_milvus_lite_reproduces_evaluate(cranfield, shared_data, tmp_path):
    from gpte.search.milvus import MilvusIndex, build_milvus_index

    index, data, reference = cranfield
    build_milvus_index(
        tmp_path / "milvus.db",
        "cranfield",
        shared_data / "retrieval/cranfield/corpus.jsonl",
        embedder=index.embedder,
        chunk_tokens=0,
        ann=None,
        show_progress=False,
        work_dir=tmp_path / "work",
    )
    milvus = MilvusIndex.open(tmp_path / "milvus.db", "cranfield", embedder=index.embedder)
    figures = {
        name: 100 * scores(milvus, data, **options)["ndcg_at_10"]
        for name, options in {"exact": {}, "bm25": {"mode": "lexical"}, "hybrid rrf": {"mode": "hybrid"}}.items()
    }
    print(
        "\nCranfield nDCG@10 x 100 through Milvus Lite: "
        + ", ".join(f"{name} {value:.3f}" for name, value in figures.items())
    )
    assert figures["exact"] == pytest.approx(100 * reference["ndcg_at_10"], abs=0.01)


def test_default_chunks_fit_minilm_and_none_is_truncated(shared_data, tmp_path):
    """The defect this guards: 256-token chunks plus [CLS] and [SEP] overflow all-MiniLM-L6-v2's 256 tokens, so every
    full chunk was silently cut and its stored text claimed words its vector never saw. Indexed: Cranfield's 150
    longest documents, the ones cut into the most chunks (the whole corpus takes minutes more on 2 cores)."""
    import json

    from gpte.data.documents import read_documents
    from gpte.models.chunking import chunk_spans

    embedder = Embedder.load(device="cpu")
    documents = read_documents(shared_data / "retrieval/cranfield/corpus.jsonl")
    lengths = embedder.count_tokens([doc.text for doc in documents])
    longest = sorted(range(len(documents)), key=lambda i: -lengths[i])[:150]
    corpus = tmp_path / "longest.jsonl"
    corpus.write_text("".join(json.dumps({"_id": documents[i].id, "text": documents[i].text}) + "\n" for i in longest))
    old_chunks = [
        documents[i].text[s.start : s.end] for i in longest for s in chunk_spans(documents[i].text, embedder, 256, 32)
    ]
    budget = embedder.text_token_budget(role="document")
    overflowing = sum(tokens > budget for tokens in embedder.count_tokens(old_chunks))
    report = build_index(tmp_path / "cranfield", corpus, embedder=embedder, show_progress=False, ann=None)
    manifest = Index.open(tmp_path / "cranfield", embedder=embedder).snapshot.manifest
    print(
        f"\nCranfield's 150 longest documents ({lengths[longest[-1]]}-{lengths[longest[0]]} tokens), default chunking: "
        f"{manifest['chunk_tokens']}-token chunks, {report.chunks} chunks, {report.truncated} truncated "
        f"(256-token chunks: {overflowing} of {len(old_chunks)} overflowed); "
        f"{sum(n > budget for n in lengths)} of {len(documents)} documents are longer than one chunk"
    )
    assert (manifest["chunk_tokens"], manifest["overlap"]) == (254, 31)
    assert report.truncated == 0 and report.chunks > 150
    assert overflowing > 0  # the old default did overflow on this corpus
