"""Sparse models in gpte evaluate: the tiny SPLADE on a small task of every type gives the scores of its densified
vectors through the dense code (a brute-force reference), and mteb's scores (its SparseEncoderWrapper around
sentence-transformers' SparseEncoder on the same folder) on real STS and Retrieval data; the active-dimension figures
are those of the vectors; roles and prompts reach the model; the sparse vector cache; the CLI; dense results keep
their shape."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch

from gpte.cli import main
from gpte.data.mteb_folders import read_beir, read_rows
from gpte.evaluate import TASK_TYPES, TaskEncoder, evaluate, load_task
from gpte.evaluate.results import read_results
from gpte.evaluate.sparse import pairwise_similarity, similarity
from gpte.models.sparse import SparseEncoder, active_dimensions, load_sparse_encoder
from gpte.models.sparse.heads import StaticQueryHead
from gpte.runtime.vector_store import SparseVectorStore, VectorStore

SUMMARIZATION_FIXTURE = Path(__file__).parent / "data" / "summarization" / "toy"
MTEB_TOLERANCE = 1e-4 + 1e-6  # the live mteb cross-checks' tolerance (0.01 on the × 100 scale)
TOP_K = 64
REFERENCE_TOLERANCE = 1e-5  # the same scores from the dense form of the same vectors: float rounding only
TOPICS = {
    "cat": ["The cat sleeps on the warm mat.", "A kitten chases a ball of yarn.", "Cats purr when they are happy."],
    "rain": ["Heavy rain floods the streets.", "Take an umbrella, it will rain.", "The storm brought a lot of rain."],
    "bread": ["Bake the bread for forty minutes.", "Fresh bread smells wonderful.", "Knead the dough for the loaf."],
    "train": ["The train leaves at noon.", "Trains run late in winter.", "The railway station is crowded."],
    "guitar": ["He plays the guitar every night.", "Tune the guitar strings first.", "A song on an acoustic guitar."],
    "moon": ["The moon is full tonight.", "Astronauts walked on the moon.", "Moonlight shines on the lake."],
}
QUESTIONS = {
    "cat": "what do cats do",
    "rain": "will it rain today",
    "bread": "how to bake bread",
    "train": "when does the train leave",
    "guitar": "how to play the guitar",
    "moon": "facts about the moon",
}


def write_task(folder: Path, meta: dict, files: dict[str, list[dict] | str]) -> Path:
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps(meta))
    for name, rows in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        text = rows if isinstance(rows, str) else "".join(json.dumps(row) + "\n" for row in rows)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """A small task of every type, from the sentences above (Summarization: the hand-written fixture)."""
    root = tmp_path_factory.mktemp("sparse-tasks")
    topics = list(TOPICS)
    sentences = [(topic, text) for topic in topics for text in TOPICS[topic]]
    pairs = [
        {"sentence1": a, "sentence2": b, "topic1": ta, "topic2": tb}
        for i, (ta, a) in enumerate(sentences)
        for tb, b in sentences[i + 1 :: 4]
    ]
    write_task(
        root / "sts",
        {"task_type": "STS", "score_range": [0, 5]},
        {"test.jsonl": [{**p, "score": 5 if p["topic1"] == p["topic2"] else len(p["sentence2"]) % 4} for p in pairs]},
    )
    write_task(
        root / "pairs",
        {"task_type": "PairClassification"},
        {
            "test.jsonl": [
                {**p, "label": int(p["topic1"] == p["topic2"] or len(p["sentence1"]) % 3 == 0)} for p in pairs
            ]
        },
    )
    labelled = [{"text": text, "label": topic} for topic, text in sentences]
    extra = [{"text": f"{QUESTIONS[topic]}?", "label": topic} for topic in topics]
    write_task(
        root / "classification",
        {"task_type": "Classification"},
        {"train.jsonl": labelled, "test.jsonl": extra + labelled[::2]},
    )
    write_task(root / "clustering", {"task_type": "Clustering"}, {"test.jsonl": labelled + extra})
    write_task(
        root / "reranking",
        {"task_type": "Reranking"},
        {
            "test.jsonl": [
                {
                    "query": QUESTIONS[topic],
                    "positive": TOPICS[topic][: 1 + i % 3],
                    "negative": TOPICS[topics[(i + 1) % 6]] + TOPICS[topics[(i + 3) % 6]][:2],
                }
                for i, topic in enumerate(topics)
            ]
        },
    )
    corpus = [
        {"_id": f"{topic}-{i}", "title": topic, "text": text}
        for topic in topics
        for i, text in enumerate(TOPICS[topic])
    ]
    qrels = "".join(f"q-{topic}\t{topic}-{i}\t{1 + i % 2}\n" for topic in topics for i in range(3))
    write_task(
        root / "retrieval",
        {"task_type": "Retrieval"},
        {
            "corpus.jsonl": corpus,
            "queries.jsonl": [{"_id": f"q-{topic}", "text": QUESTIONS[topic]} for topic in topics],
            "qrels/test.tsv": "query-id\tcorpus-id\tscore\n" + qrels,
        },
    )
    write_task(
        root / "bitext",
        {"task_type": "BitextMining"},
        # sentence1: every other word of sentence2, a rough "translation" the tiny model matches a third of the time
        {
            "test.jsonl": [
                {"sentence1": " ".join(text.rstrip(".").split()[1::2]), "sentence2": text} for _, text in sentences
            ]
        },
    )
    summarization = root / "summarization"
    summarization.mkdir()
    for name in ("meta.json", "test.jsonl"):
        (summarization / name).write_bytes((SUMMARIZATION_FIXTURE / name).read_bytes())
    return root


@pytest.fixture(scope="module")
def tasks(data_root):
    found = {name: load_task(data_root / name, name) for name in sorted(p.name for p in data_root.iterdir())}
    assert {task.type for task in found.values()} == set(TASK_TYPES)  # every task type
    return found


@pytest.fixture(scope="module")
def sparse_model(tiny_models):
    """The tiny SPLADE keeping each vector's 64 largest weights: vectors as sparse as a trained SPLADE's, so they
    differ from text to text (the unpruned random model gives every text nearly the same ~22,000 weights)."""
    return load_sparse_encoder(tiny_models["bert-mlm"], top_k=TOP_K, device="cpu")


@pytest.fixture(scope="module")
def sparse_run(sparse_model, tasks):
    return evaluate(sparse_model, list(tasks.values()))


class Densified:
    """The brute-force reference: a dense encoder whose vectors are the sparse model's made dense (``toarray``; only
    ``columns`` of them when given), compared by the same dot product; evaluated by the dense code of every type."""

    def __init__(self, model, columns=None):
        self.model = model
        self.columns = columns
        self.name = "densified"
        self.similarity_name = model.similarity_name
        self.prompts = model.prompts
        self.fingerprint = None
        self.calls = []

    def encode(self, texts, role=None, prompt=None, batch_size=32, show_progress=None):
        self.calls.append((role, prompt))
        vectors = self.model.encode(list(texts), role=role, prompt=prompt, batch_size=batch_size).toarray()
        return vectors if self.columns is None else vectors[:, self.columns]


def assert_same_scores(result, expected, tolerance=REFERENCE_TOLERANCE):
    assert result["main_score"] == expected["main_score"] == TASK_TYPES[result["task_type"]]
    assert set(result["scores"]) == set(expected["scores"])
    for score, value in result["scores"].items():
        assert value == pytest.approx(expected["scores"][score], abs=tolerance), (result["task"], score)


def test_every_task_type_equals_the_densified_vectors_through_the_dense_code(sparse_run, sparse_model, tasks):
    assert not sparse_run.failures and set(sparse_run.results) == set(tasks)
    full = [task for task in tasks.values() if task.type != "Clustering"]
    reference = evaluate(Densified(sparse_model), full)
    assert not reference.failures
    for task in full:
        assert_same_scores(sparse_run.results[task.name], reference.results[task.name])
        assert "sparsity" in sparse_run.results[task.name] and "sparsity" not in reference.results[task.name]
    # Clustering: k-means on 16,384 draws of 30,522 dense columns takes minutes, so the reference keeps the columns
    # active in some text (found here from the dense vectors); that dropping the others changes nothing is checked
    # by test_dense_features_over_the_active_columns_only
    rows = read_rows(tasks["clustering"].path / "test.jsonl", ("text", "label"))
    dense = sparse_model.encode([row["text"] for row in rows]).toarray()
    columns = np.flatnonzero((dense != 0).any(axis=0))
    clustering = evaluate(Densified(sparse_model, columns), [tasks["clustering"]]).results["clustering"]
    assert_same_scores(sparse_run.results["clustering"], clustering)
    for name in ("retrieval", "reranking", "sts", "clustering", "bitext"):  # the model tells the texts apart
        assert 0 < sparse_run.results[name]["main_score_value"] < 1


def test_dense_features_over_the_active_columns_only(sparse_model, tasks):
    """Classification and Clustering densify a sparse model's vectors over their active columns: the same
    logistic regression (weights of the other columns exactly 0) and the same k-means as over every column."""
    from sklearn.linear_model import LogisticRegression

    from gpte.evaluate.sparse import dense_rows, feature_columns
    from gpte.evaluate.tasktypes.clustering import clustering_scores

    rows = read_rows(tasks["clustering"].path / "test.jsonl", ("text", "label"))
    vectors = sparse_model.encode([row["text"] for row in rows])
    labels = np.array([row["label"] for row in rows])
    columns = feature_columns(vectors)
    full, compact = vectors.toarray(), dense_rows(vectors, columns)
    assert len(columns) < vectors.shape[1] / 10 and np.array_equal(full[:, columns], compact)
    assert not full[:, np.setdiff1d(np.arange(full.shape[1]), columns)].any()
    everything = clustering_scores(full, labels, draws=2, draw_size=500)
    assert clustering_scores(compact, labels, draws=2, draw_size=500) == pytest.approx(everything, abs=1e-12)
    model = LogisticRegression(max_iter=100, random_state=42).fit(full[::2], labels[::2])
    small = LogisticRegression(max_iter=100, random_state=42).fit(compact[::2], labels[::2])
    assert not model.coef_[:, np.setdiff1d(np.arange(full.shape[1]), columns)].any()
    # the rest agrees within the solver's tolerance (tol 1e-4 on float32 sums: a float64 fit of the same vectors
    # moves the probabilities by ~5e-4 too), and so do the predictions
    np.testing.assert_allclose(model.predict_proba(full), small.predict_proba(compact), atol=2e-3)
    assert (model.predict(full) == small.predict(compact)).all()


def test_sparse_similarities_equal_the_dense_ones(splade):
    texts = [text for topic in TOPICS.values() for text in topic]
    a = splade.encode(texts[:9], role="query")
    b = splade.encode(texts[9:18])
    a = scipy.sparse.vstack([a, scipy.sparse.csr_matrix((1, a.shape[1]), dtype=np.float32)]).tocsr()  # a zero row
    b = scipy.sparse.vstack([b, b[:1]]).tocsr()
    from gpte.similarity import pairwise_similarity as dense_pairwise
    from gpte.similarity import similarity as dense_similarity

    for name in ("dot", "cosine", "euclidean", "manhattan"):
        np.testing.assert_allclose(
            similarity(a, b, name), dense_similarity(a.toarray(), b.toarray(), name), rtol=1e-5, atol=1e-4
        )
        np.testing.assert_allclose(
            pairwise_similarity(a, b, name), dense_pairwise(a.toarray(), b.toarray(), name), rtol=1e-5, atol=1e-4
        )
    assert pairwise_similarity(a, b, "cosine")[-1] == 0  # a zero vector has cosine 0, as torch's normalize gives


def test_active_dimension_figures_are_those_of_the_vectors(tiny_models, tasks):
    pruned = load_sparse_encoder(tiny_models["bert-mlm"], threshold=1.2, device="cpu")  # rows of unequal length
    run = evaluate(pruned, [tasks["retrieval"], tasks["sts"], tasks["reranking"]])
    assert not run.failures
    beir = read_beir(tasks["retrieval"].path, "test")
    queries = pruned.encode(list(beir.queries.values()), role="query")
    documents = pruned.encode(list(beir.corpus.values()), role="document")
    sparsity = run.results["retrieval"]["sparsity"]
    assert list(sparsity) == ["query_active_dims", "document_active_dims", "flops"]
    assert sparsity["query_active_dims"] == pytest.approx(active_dimensions(queries))
    assert sparsity["document_active_dims"] == pytest.approx(active_dimensions(documents))
    assert 0 < sparsity["document_active_dims"] < pruned.vocab_size
    assert len(set(np.diff(documents.indptr))) > 1  # the figure is a mean over rows of different lengths
    q_active = (queries.toarray() > 0).astype(float)
    d_active = (documents.toarray() > 0).astype(float)
    assert sparsity["flops"] == pytest.approx((q_active @ d_active.T).mean())  # mean shared active dims of a pair
    rows = read_rows(tasks["sts"].path / "test.jsonl", ("sentence1", "sentence2"))
    texts = list(dict.fromkeys([row["sentence1"] for row in rows] + [row["sentence2"] for row in rows]))
    assert run.results["sts"]["sparsity"] == {"active_dims": pytest.approx(active_dimensions(pruned.encode(texts)))}
    reranking = run.results["reranking"]["sparsity"]
    rerank_rows = read_rows(tasks["reranking"].path / "test.jsonl", ("query", "positive", "negative"))
    candidates = list(dict.fromkeys(text for row in rerank_rows for text in row["positive"] + row["negative"]))
    assert reranking["query_active_dims"] == pytest.approx(
        active_dimensions(pruned.encode([row["query"] for row in rerank_rows], role="query"))
    )
    assert reranking["document_active_dims"] == pytest.approx(active_dimensions(pruned.encode(candidates)))


def test_roles_prompts_and_instructions_reach_the_sparse_model(splade, tasks, monkeypatch):
    weights = torch.rand(splade.vocab_size, generator=torch.Generator().manual_seed(0))
    inference_free = SparseEncoder(
        splade.document_head, splade.tokenizer, 64, query_head=StaticQueryHead(weights), top_k=TOP_K
    )
    task = tasks["retrieval"]
    result = evaluate(inference_free, [task]).results["retrieval"]
    beir = read_beir(task.path, "test")
    static = inference_free.encode(list(beir.queries.values()), role="query")
    assert result["sparsity"]["query_active_dims"] == pytest.approx(active_dimensions(static))
    assert active_dimensions(static) < result["sparsity"]["document_active_dims"]  # the query head: its own tokens
    expected = evaluate(Densified(inference_free), [task]).results["retrieval"]["scores"]
    assert result["scores"] == pytest.approx(expected, abs=REFERENCE_TOLERANCE)
    # prompts: the model's role prompts, a task's prompt, an instruction in a {task} slot, as for a dense model
    prompted = SparseEncoder(
        splade.document_head,
        splade.tokenizer,
        64,
        prompts={"query": "Instruct: {task}\nQuery: {text}", "document": "passage: "},
    )
    calls = []
    original = prompted.encode
    monkeypatch.setattr(
        prompted, "encode", lambda texts, **kw: calls.append((kw["role"], kw["prompt"])) or original(texts, **kw)
    )
    evaluate(prompted, [task, tasks["sts"]])
    instruction = f"Instruct: {task.instruction}\nQuery: {{text}}"
    sts_instruction = f"Instruct: {tasks['sts'].instruction}\nQuery: {{text}}"
    assert set(calls) == {("query", instruction), ("document", None), (None, sts_instruction)}
    sparse_calls = list(calls)
    densified = Densified(prompted)
    run = evaluate(densified, [task, tasks["sts"]])
    assert not run.failures, run.failures
    assert densified.calls == sparse_calls  # what a dense model is given
    vectors = TaskEncoder(prompted).encode(["hello world"], task, role="document")
    np.testing.assert_array_equal(vectors.toarray(), original(["hello world"], role="document").toarray())


@pytest.fixture(scope="module")
def st_model(splade, tmp_path_factory):
    """sentence-transformers' SparseEncoder on the tiny SPLADE's saved folder, keeping the same 64 weights per vector
    (``max_active_dims``), in mteb's SparseEncoderWrapper."""
    pytest.importorskip("mteb")
    from mteb.models.sentence_transformer_wrapper import SparseEncoderWrapper
    from sentence_transformers.sparse_encoder import SparseEncoder as STSparseEncoder

    folder = splade.save(tmp_path_factory.mktemp("saved") / "m")
    return SparseEncoderWrapper(STSparseEncoder(str(folder), device="cpu", max_active_dims=TOP_K))


@pytest.fixture(scope="module")
def real_tasks(shared_data, tmp_path_factory):
    """Real data, cut to what the tiny model encodes in seconds: STS-B's first 300 test pairs, and Cranfield's first
    200 documents with the first 30 queries that have graded qrels among them."""
    root = tmp_path_factory.mktemp("real")
    rows = read_rows(shared_data / "sts/stsb-en/test.jsonl", ("sentence1", "sentence2", "score"))[:300]
    meta = json.loads((shared_data / "sts/stsb-en/meta.json").read_text())
    sts = write_task(root / "stsb-en", meta, {"test.jsonl": rows})
    source = shared_data / "retrieval/cranfield"
    kept_corpus = read_rows(source / "corpus.jsonl", ("_id", "title", "text"))[:200]
    docs = {row["_id"] for row in kept_corpus}
    qrels = [line.split("\t") for line in (source / "qrels/test.tsv").read_text().splitlines()[1:]]
    judged = {query for query, doc, _ in qrels if doc in docs}
    kept_queries = [row for row in read_rows(source / "queries.jsonl", ("_id", "text")) if row["_id"] in judged][:30]
    ids = {row["_id"] for row in kept_queries}
    kept_qrels = [q for q in qrels if q[0] in ids and q[1] in docs]
    retrieval = write_task(
        root / "cranfield",
        json.loads((source / "meta.json").read_text()),
        {
            "corpus.jsonl": kept_corpus,
            "queries.jsonl": kept_queries,
            "qrels/test.tsv": "query-id\tcorpus-id\tscore\n" + "".join("\t".join(q) + "\n" for q in kept_qrels),
        },
    )
    return {"sts": load_task(sts, "stsb-en"), "retrieval": load_task(retrieval, "cranfield")}


@pytest.mark.real
@pytest.mark.parametrize("kind", ["sts", "retrieval"])
def test_mteb_sparse_encoder_wrapper_gives_the_same_scores(kind, sparse_model, st_model, real_tasks):
    from gpte.evaluate.mteb_bridge import mteb_scores

    task = real_tasks[kind]
    ours = evaluate(sparse_model, [task]).results[task.name]
    theirs = mteb_scores(task, st_model)
    assert ours["main_score_value"] == pytest.approx(theirs["main_score"], abs=MTEB_TOLERANCE)
    shared = [name for name in ours["scores"] if isinstance(theirs.get(name), float)]
    assert len(shared) >= 6
    largest = max(abs(ours["scores"][name] - theirs[name]) for name in shared)
    print(
        f"\n{task.name}: {task.main_score} ours {ours['main_score_value']:.6f}, mteb {theirs['main_score']:.6f}; "
        f"largest difference over {len(shared)} scores {largest:.2e}"
    )
    for name in shared:  # every score both report
        assert ours["scores"][name] == pytest.approx(theirs[name], abs=MTEB_TOLERANCE), name


def test_mteb_agrees_on_every_task_type(sparse_run, st_model, tasks):
    """mteb densifies all but Retrieval: the small tasks of the other types give its scores too (Clustering left
    out: mteb's k-means on 16,384 draws of 30,522 dense columns takes minutes)."""
    from gpte.evaluate.mteb_bridge import mteb_scores

    for name, task in tasks.items():
        if task.type == "Clustering":
            continue
        ours = sparse_run.results[name]
        theirs = mteb_scores(task, st_model)
        print(f"\n{name}: {task.main_score} ours {ours['main_score_value']:.6f}, mteb {theirs['main_score']:.6f}")
        assert ours["main_score_value"] == pytest.approx(theirs["main_score"], abs=MTEB_TOLERANCE), name


def test_sparse_vectors_are_cached_as_sparse_rows(splade, tiny_models, tasks, tmp_path):
    cache = tmp_path / "cache"
    first = evaluate(splade, [tasks["retrieval"], tasks["sts"]], cache=cache)
    parts = list(cache.rglob("*.npz"))
    assert parts and all(part.name.startswith("sparse-part-") for part in parts)
    model = load_sparse_encoder(tiny_models["bert-mlm"], device="cpu")
    assert model.fingerprint == splade.fingerprint
    calls = []
    original = model.encode
    model.encode = lambda texts, **kw: calls.append(texts) or original(texts, **kw)
    again = evaluate(model, [tasks["retrieval"], tasks["sts"]], cache=cache)
    assert calls == []  # every vector from the cache
    for name, result in first.results.items():
        assert again.results[name]["scores"] == result["scores"]
        assert again.results[name]["sparsity"] == result["sparsity"]
    # a dense store in the same folder never reads sparse parts, nor a sparse store dense ones
    folder = parts[0].parent
    stored = len(SparseVectorStore(folder))
    assert stored > 0 and len(VectorStore(folder)) == 0
    VectorStore(folder).add(["x"], np.ones((1, 3), dtype=np.float32))
    assert len(SparseVectorStore(folder)) == stored and len(VectorStore(folder)) == 1
    with pytest.raises(ValueError, match="30522 dimensions, the sparse store 7"):
        SparseVectorStore(folder, dimension=7).vectors(["a"], lambda texts: None)


def test_sparse_store_round_trip(tmp_path):
    store = SparseVectorStore(tmp_path / "s", dimension=6)
    matrix = scipy.sparse.csr_matrix(
        np.array([[0, 1.5, 0, 0, 0, 2], [0, 0, 0, 0, 0, 0], [3, 0, 0, 0.5, 0, 0]], dtype=np.float32)
    )
    calls = []
    got = store.vectors(["a", "b", "c", "a"], lambda texts: calls.append(texts) or matrix)
    assert calls == [["a", "b", "c"]]
    np.testing.assert_array_equal(got.toarray(), matrix[[0, 1, 2, 0]].toarray())
    reread = SparseVectorStore(tmp_path / "s").vectors(["c", "b"], lambda texts: pytest.fail("encoded again"))
    assert isinstance(reread, scipy.sparse.csr_matrix) and reread.dtype == np.float32
    np.testing.assert_array_equal(reread.toarray(), matrix[[2, 1]].toarray())
    assert SparseVectorStore(tmp_path / "s").vectors([], None).shape == (0, 6)
    with pytest.raises(ValueError, match="2 sparse vectors for 1 texts"):
        store.add(["z"], matrix[:2])


def test_cli_evaluates_a_sparse_folder_and_reports_its_active_dimensions(
    splade, tiny_models, data_root, tmp_path, capsys
):
    folder = splade.save(tmp_path / "splade")
    output = tmp_path / "results"
    common = ["--data", str(data_root), "--tasks", "retrieval", "sts", "--output", str(output)]
    assert main(["evaluate", "--model", str(folder), *common]) == 0
    out = capsys.readouterr().out
    saved = {result["task"]: result for result in read_results(output)}
    assert set(saved) == {"retrieval", "sts"}
    retrieval = saved["retrieval"]["sparsity"]
    assert set(retrieval) == {"query_active_dims", "document_active_dims", "flops"}
    assert set(saved["sts"]["sparsity"]) == {"active_dims"}
    q, d = retrieval["query_active_dims"], retrieval["document_active_dims"]
    assert f"(q {q:.1f}/d {d:.1f})" in out and "mean active dimensions" in out
    assert main(["report", str(output)]) == 0
    assert f"(q {q:.1f}/d {d:.1f})" in capsys.readouterr().out
    # --sparse: a plain masked-LM folder evaluated as SPLADE, equal to loading it as one
    forced = tmp_path / "forced"
    assert main(["evaluate", "--model", str(tiny_models["bert-mlm"]), "--sparse", *common[:-1], str(forced)]) == 0
    capsys.readouterr()
    (forced_result,) = [result for result in read_results(forced) if result["task"] == "retrieval"]
    assert forced_result["scores"] == saved["retrieval"]["scores"]
    assert forced_result["provenance"]["model_sha256"] == splade.fingerprint
    # clear errors
    assert main(["evaluate", "--model", str(folder), *common, "--first-stage", "bm25"]) == 1
    assert "--first-stage applies to a reranker --model" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(folder), "--backend", "onnx", *common]) == 1
    assert "--backend onnx apply to dense models" in capsys.readouterr().err
    cross_encoder = str(tiny_models["bert-cross-encoder"])
    assert main(["evaluate", "--model", cross_encoder, "--sparse", *common]) == 1
    assert "--sparse loads an encoder as a sparse model" in capsys.readouterr().err


def test_dense_results_have_no_sparsity(embedder, tasks, capsys):
    run = evaluate(embedder, [tasks["retrieval"], tasks["sts"]])
    assert not run.failures
    for result in run.results.values():
        assert list(result) == [
            "task",
            "task_type",
            "split",
            "language",
            "main_score",
            "main_score_value",
            "scores",
            "provenance",
        ]
    from gpte.evaluate.report import format_table

    table = format_table({"dense": run.results})
    assert "active" not in table and all(len(line) <= 24 + 2 + 18 for line in table.splitlines())


def test_a_sparse_first_stage_for_a_reranker(splade, tiny_models, tasks):
    from gpte.models.cross_encoder import CrossEncoder

    reranker = CrossEncoder.load(tiny_models["bert-cross-encoder"], device="cpu")
    run = evaluate(reranker, [tasks["retrieval"]], first_stage=splade, top_k=4)
    assert not run.failures
    result = run.results["retrieval"]
    assert result["provenance"]["first_stage_sha256"] == splade.fingerprint and "sparsity" not in result
