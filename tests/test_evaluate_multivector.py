"""Multi-vector (ColBERT) models in gpte evaluate, on the tiny random BERT with a 16-d token projection: Retrieval and
Reranking give mteb's scores (its MultiVectorWrapper around sentence-transformers' MultiVectorEncoder on the saved
folder); STS gives the correlations mteb computes from the wrapper's pairwise MaxSim (mteb itself refuses STS for a
multi-vector model); every allowed type equals a brute-force numpy MaxSim; chunked search equals one block;
Classification and Clustering are refused by name; empty queries, empty documents and documents of no token vector;
the token-vector cache; the CLI."""

from __future__ import annotations

import importlib
import string
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from gpte.cli import main
from gpte.data.mteb_folders import read_beir, read_rows
from gpte.evaluate import TaskEncoder, evaluate, load_task
from gpte.evaluate.multivector import MULTIVECTOR_TYPES
from gpte.evaluate.results import read_results
from gpte.evaluate.tasktypes import retrieval
from gpte.evaluate.tasktypes.retrieval import dense_run, judged_queries, retrieval_scores
from gpte.models.multivector import TokenVectors, load_multivector_encoder
from gpte.runtime.vector_store import SparseVectorStore, TokenVectorStore, VectorStore
from tests import test_evaluate_sparse as sparse_tests
from tests.test_evaluate_sparse import write_task

data_root, tasks, real_tasks = sparse_tests.data_root, sparse_tests.tasks, sparse_tests.real_tasks  # small tasks

MTEB_TOLERANCE = 1e-4
REFERENCE_TOLERANCE = 1e-5  # the same MaxSim computed another way: float rounding only
COLBERT = {
    "prompts": {"query": "[Q] ", "document": "[D] "},
    "query_expansion": {"length": 12, "strategy": "fixed"},
    "skiplist": list(string.punctuation),
    "document_length": 20,
}
ALLOWED = ("retrieval", "reranking", "sts", "pairs", "bitext", "summarization")  # data_root's tasks of those types


@pytest.fixture(scope="module")
def colbert(tiny_models):
    """ColBERT's settings: [Q]/[D] markers, queries expanded to 12 tokens, punctuation skipped in documents."""
    return load_multivector_encoder(tiny_models["bert"], dimension=16, device="cpu", **COLBERT)


@pytest.fixture(scope="module")
def plain(tiny_models):
    """No prompt, no expansion, no skiplist: a text without a role encodes as sentence-transformers' encode() does."""
    return load_multivector_encoder(tiny_models["bert"], dimension=16, device="cpu")


@pytest.fixture(scope="module")
def colbert_run(colbert, tasks):
    return evaluate(colbert, [tasks[name] for name in ALLOWED])


def wrapper(model, folder):
    """mteb's MultiVectorWrapper around sentence-transformers' MultiVectorEncoder on ``model`` saved in ``folder``."""
    pytest.importorskip("mteb")
    from mteb.models.sentence_transformer_wrapper import MultiVectorWrapper
    from sentence_transformers import MultiVectorEncoder

    return MultiVectorWrapper(MultiVectorEncoder(str(model.save(folder)), device="cpu"))


@pytest.fixture(scope="module")
def colbert_mteb(colbert, tmp_path_factory):
    return wrapper(colbert, tmp_path_factory.mktemp("saved") / "colbert")


@pytest.fixture(scope="module")
def plain_mteb(plain, tmp_path_factory):
    return wrapper(plain, tmp_path_factory.mktemp("saved") / "plain")


def brute_force(queries: TokenVectors, documents: TokenVectors) -> np.ndarray:
    """MaxSim by its definition, pair by pair in numpy: sum over query tokens of the best document token's dot
    product; a document of no token scores -1e9."""
    scores = np.zeros((len(queries), len(documents)), dtype=np.float32)
    for i in range(len(queries)):
        for j in range(len(documents)):
            q, d = queries[i], documents[j]
            scores[i, j] = (q @ d.T).max(axis=1).sum(dtype=np.float32) if len(d) else -1e9
    return scores


class BruteForce:
    """The reference: the model's token vectors (roles and prompts passed on) scored by ``brute_force`` instead of the
    model's MaxSim; a foreign multi-vector model to the evaluator (no fingerprint: read through ``ForeignEncoder``)."""

    output_kind = "multivector"

    def __init__(self, model, empty_documents: bool = False):
        self.model = model
        self.name, self.similarity_name = "brute-force", "maxsim"
        self.dimension = model.dimension
        self.empty_documents = empty_documents

    def encode(self, texts, role=None, prompt=None, batch_size=32, show_progress=None):
        vectors = self.model.encode(list(texts), role=role, prompt=prompt, batch_size=batch_size)
        if not self.empty_documents:
            return vectors
        return [np.zeros((0, self.dimension), np.float32) if text == "" else vectors[i] for i, text in enumerate(texts)]

    def similarity(self, queries, documents):
        return brute_force(queries, documents)

    def similarity_pairwise(self, queries, documents):
        return np.array([brute_force(queries.take([i]), documents.take([i]))[0, 0] for i in range(len(queries))])


def assert_same_scores(result: dict, expected: dict, tolerance: float) -> float:
    """Every score equal within ``tolerance``; returns the largest difference."""
    assert set(result) == set(expected)
    for name, value in result.items():
        assert value == pytest.approx(expected[name], abs=tolerance), name
    return max(abs(value - expected[name]) for name, value in result.items())


def mteb_shared(ours: dict, theirs: dict) -> float:
    """The largest difference over the scores both report (at least 30: every retrieval measure at every k)."""
    shared = [name for name in ours if isinstance(theirs.get(name), float)]
    assert len(shared) >= 30
    for name in shared:
        assert ours[name] == pytest.approx(theirs[name], abs=MTEB_TOLERANCE), name
    return max(abs(ours[name] - theirs[name]) for name in shared)


# ----------------------------------------------------------------------------- against mteb


@pytest.mark.parametrize("name", ["retrieval", "reranking"])
def test_retrieval_and_reranking_equal_mteb_multivector_wrapper(name, colbert_run, colbert_mteb, tasks):
    from gpte.evaluate.mteb_bridge import mteb_scores

    ours = colbert_run.results[name]
    theirs = mteb_scores(tasks[name], colbert_mteb)
    assert ours["main_score_value"] == pytest.approx(theirs["main_score"], abs=MTEB_TOLERANCE)
    largest = mteb_shared(ours["scores"], theirs)
    print(
        f"\n{name}: {ours['main_score']} ours {ours['main_score_value']:.6f}, mteb {theirs['main_score']:.6f}; "
        f"largest difference {largest:.2e}"
    )
    assert 0 < ours["main_score_value"] < 1


@pytest.mark.real
def test_real_retrieval_equals_mteb_multivector_wrapper(colbert, colbert_mteb, real_tasks):
    """Cranfield's first 200 documents and 30 judged queries."""
    from gpte.evaluate.mteb_bridge import mteb_scores

    task = real_tasks["retrieval"]
    ours = evaluate(colbert, [task]).results[task.name]
    theirs = mteb_scores(task, colbert_mteb)
    largest = mteb_shared(ours["scores"], theirs)
    print(
        f"\n{task.name}: ndcg_at_10 ours {ours['main_score_value']:.6f}, mteb {theirs['main_score']:.6f}; "
        f"largest difference {largest:.2e}"
    )


def mteb_sts(task, mteb_model, encode) -> dict:
    """mteb's STS correlations (``AbsTaskSTS._calculate_scores``) of the wrapper's pairwise MaxSim of the texts as
    ``encode`` encodes them (mteb's own evaluate refuses a multi-vector model on STS)."""
    import mteb

    rows = read_rows(task.path / f"{task.split}.jsonl", ("sentence1", "sentence2", "score"))
    sts = mteb.get_task("STSBenchmark")
    sts.min_score, sts.max_score = task.metadata.get("score_range", (0, 5))
    similarity = mteb_model.similarity_pairwise(
        encode([row["sentence1"] for row in rows]), encode([row["sentence2"] for row in rows])
    ).tolist()
    distances = dict.fromkeys(("cosine_scores", "manhattan_distances", "euclidean_distances"), similarity)
    return sts._calculate_scores(
        {**distances, "similarity_scores": similarity}, [sts._normalize(r["score"]) for r in rows]
    )


def test_sts_equals_mteb_pairwise_maxsim(plain, plain_mteb, colbert_run, colbert_mteb, tasks):
    from gpte.evaluate.mteb_bridge import mteb_scores

    with pytest.raises(TypeError, match="does not support Search"):  # what mteb says to a multi-vector model on STS
        mteb_scores(tasks["sts"], plain_mteb)
    ours = evaluate(plain, [tasks["sts"]]).results["sts"]
    assert ours["main_score"] == "spearman" and set(ours["scores"]) == {"pearson", "spearman"}
    theirs = mteb_sts(tasks["sts"], plain_mteb, plain_mteb.model.encode)  # texts without a role: encode()
    largest = assert_same_scores(ours["scores"], {k: theirs[k] for k in ("pearson", "spearman")}, MTEB_TOLERANCE)
    # gpte reads a text without a role as a document (its [D] marker, its skiplist): encode_document()
    colbert_sts = colbert_run.results["sts"]["scores"]
    theirs = mteb_sts(tasks["sts"], colbert_mteb, colbert_mteb.model.encode_document)
    largest = max(largest, assert_same_scores(colbert_sts, {k: theirs[k] for k in colbert_sts}, MTEB_TOLERANCE))
    print(f"\nsts: spearman ours {ours['main_score_value']:.6f}; largest difference {largest:.2e}")


@pytest.mark.real
def test_real_sts_equals_mteb_pairwise_maxsim(plain, plain_mteb, real_tasks):
    """STS-B's first 300 test pairs."""
    task = real_tasks["sts"]
    ours = evaluate(plain, [task]).results[task.name]["scores"]
    theirs = mteb_sts(task, plain_mteb, plain_mteb.model.encode)
    largest = assert_same_scores(ours, {k: theirs[k] for k in ours}, MTEB_TOLERANCE)
    print(f"\n{task.name}: spearman ours {ours['spearman']:.6f}, mteb {theirs['spearman']:.6f}; largest {largest:.2e}")


# ----------------------------------------------------------------------------- against brute-force MaxSim


def test_every_allowed_type_equals_brute_force_maxsim(colbert, colbert_run, tasks):
    assert not colbert_run.failures, colbert_run.failures
    assert {tasks[name].type for name in ALLOWED} == set(MULTIVECTOR_TYPES)
    reference = evaluate(BruteForce(colbert), [tasks[name] for name in ALLOWED])
    assert not reference.failures, reference.failures
    largest = 0.0
    for name in ALLOWED:
        ours, theirs = colbert_run.results[name], reference.results[name]
        assert ours["main_score"] == theirs["main_score"]
        largest = max(largest, assert_same_scores(ours["scores"], theirs["scores"], REFERENCE_TOLERANCE))
        assert ours["tokens"] == theirs["tokens"]
    print(f"\nbrute-force MaxSim, {len(ALLOWED)} task types: largest difference {largest:.2e}")
    assert colbert_run.results["pairs"]["scores"]["max_ap"] == colbert_run.results["pairs"]["scores"]["similarity_ap"]
    assert colbert_run.results["summarization"]["main_score"] == "spearman"
    for name in ("retrieval", "reranking", "sts", "bitext"):  # the model tells the texts apart
        assert colbert_run.results[name]["main_score_value"] not in (0.0, 1.0)


def test_retrieval_and_sts_by_hand(colbert, colbert_run, tasks):
    """Retrieval: every (query, document) MaxSim by ``brute_force`` ranked by trec_eval; STS: scipy's correlations
    of each pair's MaxSim (sentence1 the query side); the token figures: the vectors' mean length per role."""
    beir = read_beir(tasks["retrieval"].path, "test")
    queries = judged_queries(beir)
    q = colbert.encode(list(queries.values()), role="query")
    d = colbert.encode(list(beir.corpus.values()), role="document")
    scores = brute_force(q, d)
    run = {query: dict(zip(beir.corpus, map(float, row))) for query, row in zip(queries, scores)}
    result = colbert_run.results["retrieval"]
    assert_same_scores(result["scores"], retrieval_scores(beir.qrels, run), REFERENCE_TOLERANCE)
    assert result["tokens"] == {"query_tokens": 12.0, "document_tokens": pytest.approx(d.lengths.mean())}
    rows = read_rows(tasks["sts"].path / "test.jsonl", ("sentence1", "sentence2", "score"))
    first, second = (colbert.encode([row[key] for row in rows]) for key in ("sentence1", "sentence2"))
    predicted = [brute_force(first.take([i]), second.take([i]))[0, 0] for i in range(len(rows))]
    gold = [row["score"] / 5 for row in rows]
    sts = colbert_run.results["sts"]
    assert sts["scores"]["spearman"] == pytest.approx(spearmanr(gold, predicted)[0], abs=REFERENCE_TOLERANCE)
    assert sts["scores"]["pearson"] == pytest.approx(pearsonr(gold, predicted)[0], abs=REFERENCE_TOLERANCE)
    texts = list(dict.fromkeys([row["sentence1"] for row in rows] + [row["sentence2"] for row in rows]))
    assert sts["tokens"] == {"tokens": pytest.approx(colbert.encode(texts).lengths.mean())}


def test_chunked_search_equals_one_block(colbert, colbert_run, tasks, monkeypatch):
    """Corpus chunks of 4 documents (the top k kept across chunks) and MaxSim blocks of a document or two."""
    monkeypatch.setattr(retrieval, "CORPUS_CHUNK", 4)
    monkeypatch.setattr(importlib.import_module("gpte.models.multivector.maxsim"), "SCORE_BUDGET", 500)
    chunked = evaluate(colbert, [tasks["retrieval"], tasks["bitext"]])
    for name in ("retrieval", "bitext"):
        assert_same_scores(chunked.results[name]["scores"], colbert_run.results[name]["scores"], REFERENCE_TOLERANCE)


# ----------------------------------------------------------------------------- hostile


def test_classification_and_clustering_are_refused_by_name(colbert, tasks):
    run = evaluate(colbert, [tasks["classification"], tasks["clustering"], tasks["sts"]])
    assert set(run.failures) == {"classification", "clustering"} and set(run.results) == {"sts"}
    for name, kind in (("classification", "Classification"), ("clustering", "Clustering")):
        message = run.failures[name]
        assert message.startswith(f"ValueError: task {name}: a multi-vector model")
        assert f"not on {kind}" in message and ", ".join(MULTIVECTOR_TYPES) in message


def beir_task(folder: Path, queries: dict[str, str], corpus: dict[str, str], qrels: list[tuple[str, str, int]]):
    write_task(
        folder,
        {"task_type": "Retrieval"},
        {
            "corpus.jsonl": [{"_id": doc, "title": "", "text": text} for doc, text in corpus.items()],
            "queries.jsonl": [{"_id": query, "text": text} for query, text in queries.items()],
            "qrels/test.tsv": "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{g}\n" for q, d, g in qrels),
        },
    )
    return load_task(folder, folder.name)


def test_empty_queries_and_empty_documents(colbert, colbert_mteb, tmp_path):
    from gpte.evaluate.mteb_bridge import mteb_scores

    corpus = {f"d{i}": text for i, text in enumerate(["", "The cat sleeps.", "", "Rain, rain and rain!", "..."])}
    empty_queries = beir_task(
        tmp_path / "empty-queries",
        {"q0": "", "q1": "cats", "q2": ""},
        corpus,
        [("q0", "d1", 1), ("q1", "d1", 1), ("q2", "d3", 1)],
    )
    empty_documents = beir_task(
        tmp_path / "empty-documents", {"q0": "cats", "q1": "rain"}, dict.fromkeys(corpus, ""), [("q0", "d1", 1)]
    )
    run = evaluate(colbert, [empty_queries, empty_documents])
    assert not run.failures, run.failures
    reference = evaluate(BruteForce(colbert), [empty_queries, empty_documents])
    for task in (empty_queries, empty_documents):
        result = run.results[task.name]
        assert_same_scores(result["scores"], reference.results[task.name]["scores"], REFERENCE_TOLERANCE)
        mteb_shared(result["scores"], mteb_scores(task, colbert_mteb))
    # an empty query is the [Q] marker expanded with [MASK] to 12 tokens; an empty document [CLS] [D] [SEP]
    assert run.results["empty-queries"]["tokens"]["query_tokens"] == 12
    assert run.results["empty-documents"]["tokens"] == {"query_tokens": 12, "document_tokens": 3}
    # all documents alike: one score for all, ranked by id as trec_eval ranks ties
    assert run.results["empty-documents"]["scores"]["ndcg_at_1"] == 0


def test_documents_of_no_token_vector_rank_last(colbert, tmp_path):
    """A model that keeps no token of an empty document: its MaxSim is -1e9 (sentence-transformers' empty-document
    score), so it ranks below every other; its count is 0 tokens."""
    task = beir_task(tmp_path / "t", {"q": "rain"}, {"a": "", "b": "Rain, rain!", "c": "The cat."}, [("q", "b", 1)])
    stripped = BruteForce(colbert, empty_documents=True)
    encoder = TaskEncoder(stripped)
    run = dense_run(task, encoder, {"q": "rain"}, {"a": "", "b": "Rain, rain!", "c": "The cat."})
    assert run["q"]["a"] == -1e9 and min(run["q"], key=run["q"].get) == "a"
    figures = encoder.figures(task)["tokens"]
    assert figures["document_tokens"] == pytest.approx(
        sum(colbert.encode(["Rain, rain!", "The cat."], role="document").lengths) / 3
    )
    assert colbert.similarity(colbert.encode(["rain"], role="query"), TokenVectors.from_list([np.zeros((0, 16))]))[
        0, 0
    ] == pytest.approx(-1e9)


def test_bad_multivector_models_are_refused_with_their_reason(colbert, tasks):
    class NoSimilarity:  # a foreign model (no fingerprint: ForeignEncoder)
        output_kind, name, similarity_name = "multivector", "x", "maxsim"

        def encode(self, texts, role=None, prompt=None, batch_size=32, show_progress=None):
            return colbert.encode(texts, role=role)

    class NoPairwise(NoSimilarity):  # a VectorEncoder, taken as it is
        fingerprint = None

        def similarity(self, queries, documents):
            return colbert.similarity(queries, documents)

    with pytest.raises(TypeError, match="NoSimilarity says it is multi-vector .* has no similarity or similarity_pair"):
        evaluate(NoSimilarity(), [tasks["sts"]])
    with pytest.raises(TypeError, match="NoPairwise says it is multi-vector .* has no similarity_pairwise: "):
        evaluate(NoPairwise(), [tasks["sts"]])

    class NotANumber(BruteForce):
        def encode(self, texts, role=None, prompt=None, batch_size=32, show_progress=None):
            vectors = self.model.encode(list(texts), role=role)
            return TokenVectors(
                np.where(np.arange(len(vectors.data))[:, None] == 7, np.nan, vectors.data), vectors.offsets
            )

    failure = evaluate(NotANumber(colbert), [tasks["sts"]]).failures["sts"]
    assert "NaN or infinity for text index" in failure

    class Unsaid:  # token vectors from a model that does not say it is multi-vector
        name, similarity_name, fingerprint = "unsaid", "cosine", None

        def encode(self, texts, role=None, prompt=None, batch_size=32, show_progress=None):
            return colbert.encode(texts, role=role)

    assert "does not say it is multi-vector" in evaluate(Unsaid(), [tasks["sts"]]).failures["sts"]


# ----------------------------------------------------------------------------- cache, CLI


def test_token_vectors_are_cached_ragged_across_runs(colbert, tiny_models, tasks, tmp_path):
    cache = tmp_path / "cache"
    first = evaluate(colbert, [tasks["retrieval"], tasks["sts"]], cache=cache)
    parts = list(cache.rglob("*.npz"))
    assert parts and all(part.name.startswith("token-part-") for part in parts)
    model = load_multivector_encoder(tiny_models["bert"], dimension=16, device="cpu", **COLBERT)
    assert model.fingerprint == colbert.fingerprint
    calls = []
    original = model.encode
    model.encode = lambda texts, **kw: calls.append(texts) or original(texts, **kw)
    again = evaluate(model, [tasks["retrieval"], tasks["sts"]], cache=cache)
    assert calls == []  # every token vector from the cache
    for name, result in first.results.items():
        assert again.results[name]["scores"] == result["scores"] and again.results[name]["tokens"] == result["tokens"]
    folder = parts[0].parent  # the other kinds' stores never read token parts
    stored = len(TokenVectorStore(folder))
    assert stored > 0 and len(VectorStore(folder)) == 0 and len(SparseVectorStore(folder)) == 0
    with pytest.raises(ValueError, match="16 dimensions, the token store 7"):
        TokenVectorStore(folder, dimension=7).vectors(["a"], lambda texts: None)


def test_token_store_round_trip(tmp_path):
    store = TokenVectorStore(tmp_path / "s", dimension=2)
    vectors = TokenVectors.from_list([np.ones((3, 2)), np.zeros((0, 2)), np.arange(4.0).reshape(2, 2)])
    calls = []
    got = store.vectors(["a", "b", "c", "a"], lambda texts: calls.append(texts) or vectors)
    assert calls == [["a", "b", "c"]] and got.lengths.tolist() == [3, 0, 2, 3]
    np.testing.assert_array_equal(got.data, vectors.take([0, 1, 2, 0]).data)
    reread = TokenVectorStore(tmp_path / "s").vectors(["c", "b"], lambda texts: pytest.fail("encoded again"))
    assert isinstance(reread, TokenVectors) and reread.data.dtype == np.float32 and reread.lengths.tolist() == [2, 0]
    np.testing.assert_array_equal(reread[0], vectors[2])
    empty = TokenVectorStore(tmp_path / "s").vectors([], None)
    assert len(empty) == 0 and empty.dim == 2
    with pytest.raises(ValueError, match="2 token vectors for 1 texts"):
        store.add(["z"], vectors[:2])
    with pytest.raises(ValueError, match="vectors have 3 dimensions, the token store 2"):
        store.add(["z"], [np.ones((1, 3))])


def test_cli_evaluates_a_multivector_model(colbert, tiny_models, data_root, tmp_path, capsys):
    folder = colbert.save(tmp_path / "colbert")
    output = tmp_path / "results"
    common = ["--data", str(data_root), "--tasks", "retrieval", "sts", "--output", str(output)]
    assert main(["evaluate", "--model", str(folder), *common]) == 0  # a multi-vector folder needs no flag
    out = capsys.readouterr().out
    saved = {result["task"]: result for result in read_results(output)}
    assert saved["sts"]["main_score"] == "spearman" and set(saved["sts"]["tokens"]) == {"tokens"}
    tokens = saved["retrieval"]["tokens"]
    assert saved["retrieval"]["provenance"]["model_sha256"] == colbert.fingerprint
    assert f"(q {tokens['query_tokens']:.1f}/d {tokens['document_tokens']:.1f} tokens)" in out
    assert "mean token vectors stored per query/document" in out
    expected = evaluate(colbert, [load_task(data_root / "retrieval", "retrieval")]).results["retrieval"]["scores"]
    assert saved["retrieval"]["scores"] == pytest.approx(expected, abs=1e-12)
    # --multivector: a plain encoder folder with a new (seeded) projection, as load_multivector_encoder gives it
    forced = tmp_path / "forced"
    plain_folder = str(tiny_models["bert"])
    assert main(["evaluate", "--model", plain_folder, "--multivector", *common[:-1], str(forced)]) == 0
    capsys.readouterr()
    (result,) = [result for result in read_results(forced) if result["task"] == "retrieval"]
    assert result["provenance"]["model_sha256"] == load_multivector_encoder(plain_folder, device="cpu").fingerprint
    assert "tokens" in result
    # clear errors
    assert main(["evaluate", "--model", str(folder), "--data", str(data_root), "--tasks", "classification"]) == 1
    assert "a multi-vector model (one vector per token" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(folder), "--backend", "onnx", *common]) == 1
    assert "--backend onnx apply to dense models; " in capsys.readouterr().err
    cross_encoder = str(tiny_models["bert-cross-encoder"])
    assert main(["evaluate", "--model", cross_encoder, "--multivector", *common]) == 1
    assert "--multivector loads an encoder as a multi-vector model (ColBERT)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--model", plain_folder, "--multivector", "--sparse", *common])
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_multivector_first_stage_for_a_reranker(colbert, tiny_models, tasks):
    from gpte.models.cross_encoder import CrossEncoder

    reranker = CrossEncoder.load(tiny_models["bert-cross-encoder"], device="cpu")
    run = evaluate(reranker, [tasks["retrieval"]], first_stage=colbert, top_k=4)
    assert not run.failures, run.failures
    result = run.results["retrieval"]
    assert result["provenance"]["first_stage_sha256"] == colbert.fingerprint and "tokens" not in result
