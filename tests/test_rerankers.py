"""The pair-scoring kind (gpte.models.cross_encoder, gpte.models.llm_reranker): scores equal sentence-transformers'
CrossEncoder.predict on the same folder, batch-invariant, long pairs lose the text and never the query, folders
round-trip both ways, hostile arguments are refused, and the LLM reranker's score is its yes/no log-odds — on tiny
random models (exact checks)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from gpte.models.cross_encoder import CrossEncoder
from gpte.models.llm_reranker import LLMReranker
from gpte.models.loading import is_reranker_folder, load_reranker
from gpte.models.protocol import PairScorer, require_dense, require_pair_scorer

PAIRS = [
    ("what is a wing stall", "a stall happens when the wing exceeds its critical angle of attack"),
    ("heat transfer", "the boundary layer carries heat from the plate"),
    ("x", ""),
    ("what is a wing stall", "a stall happens when the wing exceeds its critical angle of attack"),
    ("shock waves", "supersonic flow " * 12),
]


@pytest.fixture(scope="module")
def cross_encoder(tiny_models) -> CrossEncoder:
    return CrossEncoder.load(tiny_models["bert-cross-encoder"], device="cpu")


@pytest.fixture(scope="module")
def st_cross_encoder(tiny_models):
    from sentence_transformers import CrossEncoder as STCrossEncoder

    return STCrossEncoder(str(tiny_models["bert-cross-encoder"]), device="cpu")


def test_scores_equal_sentence_transformers_predict(cross_encoder, st_cross_encoder):
    expected = st_cross_encoder.predict(PAIRS, batch_size=2)
    assert cross_encoder.max_seq_length == st_cross_encoder.max_seq_length == 128
    assert np.ptp(expected) > 0.05  # the scores differ, so the check means something
    np.testing.assert_allclose(cross_encoder.predict(PAIRS, batch_size=3), expected, atol=1e-5)
    raw = st_cross_encoder.predict(PAIRS, activation_fn=torch.nn.Identity())
    np.testing.assert_allclose(cross_encoder.predict(PAIRS, activation=False), raw, atol=1e-5)


def test_prompts_and_activation_round_trip_through_sentence_transformers(cross_encoder, tmp_path):
    from sentence_transformers import CrossEncoder as STCrossEncoder

    ours = CrossEncoder.load(
        cross_encoder.name, prompts={"web": "Find the passage: "}, default_prompt="web", activation="identity"
    )
    ours.save(tmp_path / "ce")
    saved = json.loads((tmp_path / "ce" / "config_sentence_transformers.json").read_text())
    assert saved["model_type"] == "CrossEncoder" and saved["default_prompt_name"] == "web"
    theirs = STCrossEncoder(str(tmp_path / "ce"))
    np.testing.assert_allclose(ours.predict(PAIRS), theirs.predict(PAIRS), atol=1e-5)
    plain = ours.predict(PAIRS, prompt="")  # an empty prompt switches the default off
    assert not np.allclose(plain, ours.predict(PAIRS))
    reloaded = CrossEncoder.load(tmp_path / "ce")
    assert reloaded.fingerprint == ours.fingerprint and reloaded.info()["activation"].endswith("Identity")
    theirs.save(str(tmp_path / "st"))
    np.testing.assert_allclose(CrossEncoder.load(tmp_path / "st").predict(PAIRS), ours.predict(PAIRS), atol=1e-6)


def test_batch_invariant_and_deduplicated(cross_encoder):
    one = cross_encoder.predict_with_report(PAIRS, batch_size=1)
    many = cross_encoder.predict_with_report(PAIRS, batch_size=32)
    np.testing.assert_allclose(one.scores, many.scores, atol=1e-6)
    assert one.scores[0] == one.scores[3]
    assert (many.report.n_texts, many.report.n_unique) == (5, 4)


def test_a_long_pair_loses_its_text_never_its_query(cross_encoder):
    short = CrossEncoder.load(cross_encoder.name, max_seq_length=16)
    query = "what is a wing stall"
    input_ids, _, truncated = short.tokenize_pairs([query, "q"], ["angle of attack " * 20, "short"])
    query_ids = short.tokenizer(query, add_special_tokens=False)["input_ids"]
    assert len(input_ids[0]) == 16 and input_ids[0][1 : 1 + len(query_ids)] == query_ids
    assert truncated.tolist() == [True, False]
    report = short.predict_with_report([(query, "angle of attack " * 20), ("q", "short")]).report
    assert report.truncated_indices == [0]
    long_query = "wing " * 30  # leaves no room for the text: both are cut, the longer first
    ids, _, cut = short.tokenize_pairs([long_query], ["a short text"])
    assert len(ids[0]) == 16 and cut.tolist() == [True]


def test_rank_and_score(cross_encoder):
    texts = [text for _, text in PAIRS[:3]]
    scores = cross_encoder.score("what is a wing stall", texts)
    ranking = cross_encoder.rank("what is a wing stall", texts, top_k=2)
    order = np.argsort(-scores, kind="stable")[:2]
    assert [hit["corpus_id"] for hit in ranking] == order.tolist()
    assert [hit["score"] for hit in ranking] == pytest.approx(scores[order].tolist())


def test_contract_and_refusals(cross_encoder, tmp_path):
    assert isinstance(cross_encoder, PairScorer) and cross_encoder.output_kind == "pair_score"
    assert require_pair_scorer(cross_encoder, "rerank") is cross_encoder
    with pytest.raises(TypeError, match="takes a dense model"):
        require_dense(cross_encoder, "an index")
    with pytest.raises(ValueError, match="pair 1 is not a"):
        cross_encoder.predict([("a", "b"), "just a text"])
    with pytest.raises(ValueError, match="pair 0 must hold two texts"):
        cross_encoder.predict([("a", None)])
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        cross_encoder.predict(PAIRS, batch_size=0)
    with pytest.raises(ValueError, match="unknown prompt name 'web'"):
        cross_encoder.predict(PAIRS, prompt_name="web")
    with pytest.raises(ValueError, match="exceeds the model's 128 positions"):
        cross_encoder.max_seq_length = 4096
    with pytest.raises(ValueError, match="unknown activation 'os.system'"):
        CrossEncoder.load(cross_encoder.name, activation="os.system")
    three = CrossEncoder.load(cross_encoder.name, num_labels=3)
    assert three.predict(PAIRS[:2]).shape == (2, 3)
    with pytest.raises(ValueError, match="one-label cross-encoder"):
        three.rank("q", ["a"])
    assert cross_encoder.predict([]).shape == (0,)


def test_llm_reranker_scores_yes_no_log_odds_and_cuts_the_document(tmp_path):
    folder = _word_llama(tmp_path / "llm")
    reranker = LLMReranker(folder, max_length=60)
    long_document = "wing stall heat " * 30
    prompt, cut = reranker.fitted_prompt("wing stall", long_document)
    assert cut and prompt.endswith("\nAnswer:") and reranker._length(prompt) == 60
    kept = prompt.split("<Document>: ")[1].split("\nAnswer:")[0]
    assert long_document.startswith(kept) and len(kept) < len(long_document)
    result = reranker.predict_with_report([("wing stall", long_document), ("wing stall", "heat")], activation=False)
    assert result.report.truncated_indices == [0]
    for (query, text), raw in zip([("wing stall", kept), ("wing stall", "heat")], result.scores):
        ids = reranker.tokenizer(reranker.prompt(query, text), add_special_tokens=False, return_tensors="pt")
        with torch.no_grad():
            last = reranker.model(**ids).logits[0, -1]
        assert raw == pytest.approx(float(last[reranker.true_id] - last[reranker.false_id]), abs=1e-4)
    probabilities = reranker.predict([("wing stall", "heat")])
    assert probabilities[0] == pytest.approx(1 / (1 + np.exp(-result.scores[1])), abs=1e-6)
    with pytest.raises(ValueError, match="the query takes the whole LLM reranker input of 60 tokens"):
        reranker.fitted_prompt("wing " * 80, "heat")


def test_load_reranker_tells_the_kinds_apart(tiny_models, tmp_path):
    cross = tiny_models["bert-cross-encoder"]
    assert is_reranker_folder(cross) and not is_reranker_folder(tiny_models["bert"])
    assert isinstance(load_reranker(cross), CrossEncoder)
    llm = load_reranker(_word_llama(tmp_path / "llm"), max_length=50)
    assert isinstance(llm, LLMReranker) and llm.max_seq_length == 50
    llm.save(tmp_path / "saved")
    assert is_reranker_folder(tmp_path / "saved") and load_reranker(tmp_path / "saved").max_seq_length == 50


def test_search_reranks_with_a_cross_encoder(tiny_models, tmp_path, embedder):
    from gpte.search.index import Index, build_index

    source = tmp_path / "docs.jsonl"
    texts = ["a wing stall", "heat transfer in a boundary layer", "shock waves at supersonic speed"]
    source.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts)))
    build_index(tmp_path / "index", source, embedder=embedder, show_progress=False)
    index = Index.open(tmp_path / "index", embedder=embedder)
    reranker = CrossEncoder.load(tiny_models["bert-cross-encoder"])
    hits = index.search("wing stall", k=3, reranker=reranker)
    expected = reranker.rank("wing stall", [hit.text for hit in index.search("wing stall", k=3)])
    assert [hit.score for hit in hits] == pytest.approx([row["score"] for row in expected], abs=1e-6)


def _word_llama(folder):
    """A tiny random Llama with a word-level vocabulary in which "yes" and "no" are one token each."""
    words = (
        "judge whether the document meets requirements based on query and instruct provided . note that answer "
        'can only be yes or no given a web search retrieve relevant passages answers wing stall heat < > : " ?'
    )
    vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3}
    vocab.update({word: len(vocab) + i for i, word in enumerate(dict.fromkeys(words.lower().split()))})
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.normalizer = None
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", unk_token="<unk>", eos_token="</s>")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            intermediate_size=64,
            max_position_embeddings=256,
        )
        LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_copied_folder_is_left_alone(tiny_models, tmp_path):
    """Saving over a copy never touches the shared tiny folder."""
    copy = shutil.copytree(tiny_models["bert-cross-encoder"], tmp_path / "copy")
    CrossEncoder.load(copy).save(copy, overwrite=True)
    assert is_reranker_folder(copy)


def test_a_reranker_recipe_trains_saves_and_loads_in_sentence_transformers(tiny_models, tmp_path):
    from sentence_transformers import CrossEncoder as STCrossEncoder

    from gpte.train.recipe import load_recipe, run_recipe

    rows = [  # the tiny random model can learn which text is relevant, not yet how it matches the query
        {"query": query, "text": text, "label": label}
        for query in ("wing stall", "heat transfer")
        for text, label in (("a stall happens at the critical angle", 1.0), ("heat flows through the plate", 0.0))
    ] * 4
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"kind: reranker\nmodel: {tiny_models['bert-cross-encoder']}\noutput: runs\nstages:\n"
        "  - name: pointwise\n"
        "    data: [{path: pairs.jsonl, columns: [query, text], score: label}]\n"
        "    loss: bce\n"
        "    training: {epochs: 3, batch_size: 4, learning_rate: 0.001, no_duplicates: false, warmup_ratio: 0}\n"
    )
    untrained = CrossEncoder.load(tiny_models["bert-cross-encoder"])
    pairs = [(row["query"], row["text"]) for row in rows[:4]]
    (folder,) = run_recipe(load_recipe(recipe))
    trained = CrossEncoder.load(folder)
    scores = trained.predict(pairs)
    labels = torch.tensor([row["label"] for row in rows[:4]])

    def bce(model: CrossEncoder) -> float:
        return float(torch.nn.functional.binary_cross_entropy(torch.from_numpy(model.predict(pairs)), labels))

    assert bce(trained) < bce(untrained) - 0.05  # it learned the labels
    np.testing.assert_allclose(STCrossEncoder(str(folder)).predict(pairs), scores, atol=1e-5)
    assert (folder / "README.md").is_file() and run_recipe(load_recipe(recipe)) == [folder]  # kept on a rerun


def test_reranker_recipes_are_checked(tmp_path):
    from gpte.train.recipe import load_recipe

    example = load_recipe(Path(__file__).resolve().parents[1] / "examples" / "recipe-reranker.yaml")
    assert example.kind == "reranker" and example.stages[0].loss == {"name": "bce"}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "kind: reranker\nstages:\n  - data: [a.jsonl]\n    loss: bce\n    model_options: {pooling: cls}\n"
    )
    with pytest.raises(ValueError, match="unknown key\\(s\\) pooling; allowed: num_labels, max_seq_length"):
        load_recipe(recipe)
    recipe.write_text("kind: colbert\nstages:\n  - data: [a.jsonl]\n    loss: bce\n")
    with pytest.raises(ValueError, match="unknown kind 'colbert'; choose one of dense, reranker, sparse"):
        load_recipe(recipe)


def test_reranker_training_resumes_to_identical_weights(tiny_models, tmp_path, monkeypatch):
    from transformers import TrainerCallback

    import gpte.train.trainer as trainer_module
    from gpte.data.training import read_training_data
    from gpte.train.config import TrainingConfig
    from gpte.train.losses.reranker import build_reranker_loss
    from gpte.train.trainer import last_complete_checkpoint, train

    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5:
                raise KeyboardInterrupt

    rows = [{"query": f"query {i}", "text": text, "label": float(i % 2)} for i, (_, text) in enumerate(PAIRS * 4)]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    data = read_training_data(tmp_path / "pairs.jsonl", columns=["query", "text"], score="label")
    config = TrainingConfig(epochs=2, batch_size=4, save_steps=2, no_duplicates=False)  # 5 batches an epoch

    def run(output, interrupt: bool = False) -> CrossEncoder:
        model = CrossEncoder.load(tiny_models["bert-cross-encoder"], device="cpu")
        if interrupt:
            original = trainer_module._callbacks
            monkeypatch.setattr(trainer_module, "_callbacks", lambda c, o: original(c, o) + [Interrupt()])
        try:
            train(model, build_reranker_loss("bce", model), [data], config, output)
        except KeyboardInterrupt:
            monkeypatch.undo()
        return model

    straight = run(tmp_path / "a")
    run(tmp_path / "b", interrupt=True)
    assert last_complete_checkpoint(tmp_path / "b" / "checkpoints").name == "checkpoint-4"
    loaded = []
    load = trainer_module.load_checkpoint_weights
    monkeypatch.setattr(trainer_module, "load_checkpoint_weights", lambda m, c: loaded.append(c.name) or load(m, c))
    resumed = run(tmp_path / "b")
    assert loaded == ["checkpoint-4"]  # it resumed, rather than starting again
    difference = max(
        (x - y).abs().max().item() for x, y in zip(straight.state_dict().values(), resumed.state_dict().values())
    )
    assert difference <= 1e-6
