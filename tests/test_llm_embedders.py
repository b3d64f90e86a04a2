"""LLMs as embedders on tiny random decoders: attention modes, prompt-based extraction (PromptEOL, MetaEOL,
echo), instruction masks and task instructions, the latent-attention pooler, and LLM2Vec adaptation
(MNTP, SimCSE) with LoRA through a recipe."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import yaml
from conftest import SENTENCES, bpe_tokenizer, minilm_folder
from transformers import AutoModel, AutoTokenizer, GPTNeoXConfig, LlamaConfig, LlamaForCausalLM

from gpte import Embedder
from gpte.data.training import read_training_data
from gpte.evaluate import load_task
from gpte.evaluate.encoder import TaskEncoder
from gpte.models.backbone import Backbone
from gpte.models.extraction import ECHO, EXTRACTIONS, METAEOL, PROMPTEOL
from gpte.models.tokenization import PROMPT, TextTokenizer, TokenBatch
from gpte.prompts import PromptSet, PromptTemplate
from gpte.train.config import TrainingConfig
from gpte.train.losses import build_loss
from gpte.train.recipe import load_recipe, run_recipe
from gpte.train.trainer import train

TEXTS = [text for text in SENTENCES if text]
DECODERS = ("llama", "qwen2", "mistral", "gpt2")


def _states(backbone: Backbone, rows: list[list[int]]) -> torch.Tensor:
    ids = torch.tensor(rows)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        return backbone(TokenBatch(ids, mask, mask.cumsum(1) - 1))[0]


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("kind", DECODERS)
def test_bidirectional_attention_lets_early_positions_see_later_tokens(tiny_models, kind, implementation):
    backbone = Backbone.from_pretrained(tiny_models[kind])
    backbone.model.set_attn_implementation(implementation)
    rows = [[5, 6, 7, 8, 9, 10], [5, 6, 7, 11, 9, 10]]  # the two texts differ at token 3 only

    def change_at_position_1() -> float:
        states = _states(backbone, rows)
        return (states[0, 1] - states[1, 1]).abs().max().item()

    assert change_at_position_1() == 0.0  # causal: position 1 cannot see token 3
    backbone.set_attention("bidirectional")
    assert change_at_position_1() > 1e-3
    backbone.set_attention({"mode": "bidirectional", "last_layers": 1})  # BeLLM: only the top layer looks ahead
    assert change_at_position_1() > 1e-3
    backbone.set_attention("causal")
    assert change_at_position_1() == 0.0


@pytest.mark.parametrize("kind", DECODERS)
def test_bidirectional_vectors_do_not_depend_on_padding_or_batching(tiny_models, kind):
    right = Embedder.load(tiny_models[kind], pooling="mean", attention="bidirectional", device="cpu")
    left = Embedder.load(
        tiny_models[kind], pooling="mean", attention="bidirectional", padding_side="left", device="cpu"
    )
    alone = np.stack([right.encode(text) for text in TEXTS])
    np.testing.assert_allclose(right.encode(TEXTS, batch_size=5), alone, atol=1e-5)
    np.testing.assert_allclose(left.encode(TEXTS, batch_size=5), alone, atol=1e-5)
    causal = Embedder.load(tiny_models[kind], pooling="mean", device="cpu")
    assert not np.allclose(causal.encode(TEXTS), alone, atol=1e-4)


def test_attention_mode_is_saved_and_restored(tiny_models, tmp_path):
    model = Embedder.load(
        tiny_models["llama"], pooling="mean", attention={"mode": "bidirectional", "last_layers": 1}, device="cpu"
    )
    vectors = model.encode(TEXTS)
    with pytest.warns(UserWarning, match="attention"):
        folder = model.save(tmp_path / "bellm")
    assert json.loads((folder / "gpte_config.json").read_text())["attention"] == {
        "mode": "bidirectional",
        "last_layers": 1,
    }
    reloaded = Embedder.load(folder, device="cpu")
    assert reloaded.info()["attention"] == {"mode": "bidirectional", "last_layers": 1}
    np.testing.assert_array_equal(reloaded.encode(TEXTS), vectors)
    np.testing.assert_array_equal(
        Embedder.load(folder, attention="causal", device="cpu").encode(TEXTS),
        Embedder.load(tiny_models["llama"], pooling="mean", device="cpu").encode(TEXTS),
    )


def test_bad_attention_requests_name_the_allowed_values(tiny_models):
    with pytest.raises(ValueError, match="attention modes apply to decoder backbones; this encoder"):
        Embedder.load(tiny_models["bert"], attention="bidirectional")
    with pytest.raises(ValueError, match="unknown attention mode 'sideways'; choose one of: causal, bidirectional"):
        Embedder.load(tiny_models["llama"], attention="sideways")
    with pytest.raises(ValueError, match="last_layers=3 but the model has 2 layers"):
        Embedder.load(tiny_models["llama"], attention={"mode": "bidirectional", "last_layers": 3})
    tokenizer = bpe_tokenizer("none")
    config = GPTNeoXConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    backbone = Backbone(AutoModel.from_config(config), tokenizer, "decoder")
    with pytest.raises(
        ValueError, match="not supported for 'gpt_neox' models; supported: llama, mistral, qwen2, qwen3, gpt2"
    ):
        backbone.set_attention("bidirectional")
    assert backbone.attention.mode == "causal"


# ----------------------------------------------------------------------------- prompt-based extraction


@pytest.mark.parametrize("name", list(EXTRACTIONS))
def test_extractions_install_their_prompt_and_pooling_and_survive_save(tiny_models, tmp_path, name):
    model = Embedder.load(tiny_models["llama"], extraction=name, device="cpu")
    extraction = EXTRACTIONS[name]
    assert model.info()["default_prompt"] == name and model.info()["pooling"]["name"] == extraction.pooling["name"]
    texts = TEXTS[:3]
    vectors = model.encode(texts)
    np.testing.assert_array_equal(model.encode(texts, role="query"), vectors)
    with pytest.warns(UserWarning):
        folder = model.save(tmp_path / name)
    np.testing.assert_array_equal(Embedder.load(folder, device="cpu").encode(texts), vectors)


def test_prompteol_reads_the_last_token_of_the_filled_prompt(tiny_models):
    model = Embedder.load(tiny_models["llama"], extraction="prompteol", device="cpu")
    filled = PROMPTEOL.replace("{text}", TEXTS[0])
    ids = model.backbone.tokenizer(filled)["input_ids"]
    expected = _states(model.backbone, [ids])[0, -1].numpy()
    np.testing.assert_allclose(model.encode(TEXTS[0]), expected, atol=1e-6)


def test_metaeol_averages_the_vectors_of_its_prompts(tiny_models):
    model = Embedder.load(tiny_models["llama"], extraction="metaeol", max_seq_length=128, device="cpu")
    texts = ["Two dogs run.", "A cat sat."]
    each = [model.encode(texts, prompt=template) for template in METAEOL]
    np.testing.assert_allclose(model.encode(texts), np.mean(each, axis=0), atol=1e-6)


def test_echo_pools_the_second_copy_and_refuses_unlocatable_spans(tiny_models):
    model = Embedder.load(tiny_models["llama"], extraction="echo", device="cpu")
    text = "the cat sat on the mat"
    formatted = ECHO.replace("{text}", text)
    tokenizer = model.backbone.tokenizer
    encoded = tokenizer(formatted, return_offsets_mapping=True)
    second = formatted.rindex(text)
    columns = [
        i for i, (start, end) in enumerate(encoded["offset_mapping"]) if start < second + len(text) and end > second
    ]
    expected = _states(model.backbone, [encoded["input_ids"]])[0, columns].mean(dim=0).numpy()
    np.testing.assert_allclose(model.encode(text), expected, atol=1e-6)
    assert not model.encode("").any()  # an empty text: an empty span, a zero vector (as for every pooler)
    two_copies = Embedder.load(tiny_models["llama"], pooling={"name": "span_mean", "copy": 2}, device="cpu")
    with pytest.raises(ValueError, match=r"reads copy 2 of the text, but the prompt 'Say: \{text\}' holds 1"):
        two_copies.encode("hello", prompt="Say: {text}")
    short = Embedder.load(tiny_models["llama"], extraction="echo", max_seq_length=16, device="cpu")
    with pytest.raises(
        ValueError,
        match="copy 2 of the text 'a long sentence that .*' in prompt 'Rewrite the sentence: {text}, rewritten sentence: {text}' has no tokens \\(the copy was cut off at max_seq_length",
    ):
        short.encode(["fine", "a long sentence that fills the whole budget of tokens before the copy"])


def test_prompt_sets_refuse_templates_without_the_text_slot():
    with pytest.raises(
        ValueError, match="each template of a prompt set needs a {text} slot; got 'This sentence means:'"
    ):
        PromptSet.parse(["This sentence : {text}", "This sentence means:"])
    with pytest.raises(ValueError, match="unknown extraction 'eol'; choose one of: prompteol, pcoteol, metaeol, echo"):
        Embedder.load(None, extraction="eol")


@pytest.mark.parametrize("tokenizer_name", ["bert", "bos", "eos", "none"])
def test_instruction_tokens_are_exactly_the_prompt_segment(tokenizer_name):
    tokenizer = (
        AutoTokenizer.from_pretrained(minilm_folder()) if tokenizer_name == "bert" else bpe_tokenizer(tokenizer_name)
    )
    template = PromptTemplate("Instruct: {task}\nQuery: {text}").fill("retrieve passages that answer the question.")
    text = "what is the boiling point of water?"
    out = TextTokenizer(tokenizer, 128).tokenize([text], template, with_segments=True)
    ids, labels = out.input_ids[0], out.segments[0]
    alone = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert [i for i, label in zip(ids, labels) if label == 1] == alone
    instruction = tokenizer(template.template.replace("{text}", ""), add_special_tokens=False)["input_ids"]
    assert [i for i, label in zip(ids, labels) if label == PROMPT] == instruction


def test_instruction_following_models_get_task_instructions_on_queries_only(tiny_models, shared_data):
    template = "Instruct: {task}\nQuery: {text}"
    model = Embedder.load(
        tiny_models["llama"],
        pooling={"name": "mean", "include_prompt": False},
        prompts={"query": template},
        device="cpu",
    )
    task = load_task(shared_data / "retrieval/cranfield")
    assert task.instruction.startswith("Given a query")
    encoder = TaskEncoder(model)
    queries = ["what is the boiling point of water?"]
    expected = model.encode(queries, prompt=template.replace("{task}", task.instruction))
    np.testing.assert_allclose(encoder.encode(queries, task, role="query"), expected, atol=1e-6)
    np.testing.assert_allclose(
        encoder.encode(queries, task, role="document"), model.encode(queries, role="document"), atol=1e-6
    )
    plain = Embedder.load(tiny_models["llama"], pooling="mean", device="cpu")  # no {task} slot: no instruction
    np.testing.assert_allclose(TaskEncoder(plain).encode(queries, task, role="query"), plain.encode(queries), atol=1e-6)


# ----------------------------------------------------------------------------- latent-attention pooling


def test_latent_attention_starts_as_mean_pooling_trains_and_survives_save(tiny_models, shared_data, tmp_path):
    torch.manual_seed(0)
    model = Embedder.load(
        tiny_models["llama"], pooling={"name": "latent_attention", "latents": 16, "heads": 2}, device="cpu"
    )
    mean = Embedder.load(tiny_models["llama"], pooling="mean", device="cpu")
    np.testing.assert_allclose(model.encode(TEXTS), mean.encode(TEXTS), atol=1e-6)
    data = read_training_data(shared_data / "sts/stsb-en/train.jsonl", score_range=[0, 5], limit=32)
    config = TrainingConfig(epochs=1, batch_size=16, learning_rate=1e-2, lora={"r": 4, "alpha": 8}, save_steps=100)
    train(model, build_loss("cosent", model), [data], config, tmp_path / "run")
    trained = model.encode(TEXTS)
    assert not np.allclose(trained, mean.encode(TEXTS), atol=1e-4)  # the pooler learned (and LoRA)
    model.backbone.merge_lora()
    with pytest.warns(UserWarning, match="latent_attention"):
        folder = model.save(tmp_path / "nv")
    assert (folder / "gpte_pooler.safetensors").is_file()
    np.testing.assert_allclose(Embedder.load(folder, device="cpu").encode(TEXTS), trained, atol=1e-5)


# ----------------------------------------------------------------------------- LLM2Vec adaptation


def test_mntp_predicts_masked_tokens_from_the_previous_position(tied_llama):
    model = Embedder.load(tied_llama, attention="bidirectional", pooling="mean", device="cpu")
    loss = build_loss({"name": "mntp", "mask_probability": 0.5, "mask_token": "<unk>"}, model)
    torch.manual_seed(1)
    tokens = model.tokenizer.tokenize(TEXTS)
    features = model.tokenizer.pad(tokens, list(range(len(TEXTS))))
    chosen = loss.choose(features)
    assert chosen.any() and not chosen[:, 0].any() and not (chosen & (features.attention_mask == 0)).any()
    corrupted = loss.corrupt(features.input_ids, chosen)
    assert (corrupted[~chosen] == features.input_ids[~chosen]).all()
    # the formula by hand: cross-entropy of W h_{i-1} against x_i at the chosen positions
    torch.manual_seed(2)
    from gpte.train.losses.base import TrainingBatch

    value = loss(TrainingBatch([TEXTS], [features]))
    torch.manual_seed(2)
    chosen = loss.choose(features)
    hidden = model.backbone(
        TokenBatch(loss.corrupt(features.input_ids, chosen), features.attention_mask, features.position_ids)
    )[0]
    logits = hidden[:, :-1] @ model.backbone.model.get_input_embeddings().weight.T
    expected = torch.nn.functional.cross_entropy(logits[chosen[:, 1:]], features.input_ids[:, 1:][chosen[:, 1:]])
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)


def test_mntp_refuses_encoders_untied_heads_without_a_source_and_wrappers(tiny_models, tmp_path):
    with pytest.raises(ValueError, match="mntp trains decoder backbones; this model is an encoder"):
        build_loss("mntp", Embedder.load(tiny_models["bert"]))
    untied = Embedder.load(tiny_models["llama"])
    with pytest.raises(ValueError, match="pass lm_head: PATH"):
        build_loss("mntp", untied)
    with pytest.raises(ValueError, match="mask token 'zzz' is not in the tokenizer's vocabulary"):
        build_loss({"name": "mntp", "mask_token": "zzz", "lm_head": "unused"}, untied)
    torch.manual_seed(0)
    causal_lm = LlamaForCausalLM(LlamaConfig(**{**untied.backbone.config.to_dict(), "tie_word_embeddings": False}))
    causal_lm.save_pretrained(tmp_path / "causal")
    loss = build_loss({"name": "mntp", "lm_head": str(tmp_path / "causal"), "mask_token": "<unk>"}, untied)
    torch.testing.assert_close(loss.head_weight(), causal_lm.lm_head.weight)
    with pytest.raises(ValueError, match="works on tokens, not embeddings: matryoshka cannot wrap it"):
        build_loss(
            {"name": "mntp", "lm_head": str(tmp_path / "causal"), "mask_token": "<unk>", "matryoshka": {"dims": [16]}},
            untied,
        )


def test_llm2vec_recipe_mntp_then_simcse_with_lora_saves_reloads_and_merges(tied_llama, tmp_path):
    rows = [
        {"text": text}
        for text in dict.fromkeys(SENTENCES + TEXTS + ["a dog runs in the park", "rain falls on the city"])
        if text
    ]
    (tmp_path / "sentences.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    lora = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    recipe = {
        "model": str(tied_llama),
        "output": "out",
        "stages": [
            {
                "name": "mntp",
                "model_options": {"attention": "bidirectional", "pooling": "mean"},
                "data": ["sentences.jsonl"],
                "loss": {"name": "mntp", "mask_token": "<unk>"},
                "training": {"max_steps": 1, "batch_size": 4, "learning_rate": 1e-2, "warmup_ratio": 0.0, "lora": lora},
            },
            {
                "name": "simcse",
                "data": ["sentences.jsonl"],
                "loss": "simcse",
                "training": {
                    "max_steps": 1,
                    "batch_size": 4,
                    "learning_rate": 1e-2,
                    "warmup_ratio": 0.0,
                    "lora": lora,
                    "attention_dropout": 0.1,
                },
            },
        ],
    }
    (tmp_path / "llm2vec.yaml").write_text(yaml.safe_dump(recipe))
    before = Embedder.load(tied_llama, attention="bidirectional", pooling="mean", device="cpu").encode(TEXTS)
    mntp_folder, simcse_folder = run_recipe(load_recipe(tmp_path / "llm2vec.yaml"))
    for folder in (mntp_folder, simcse_folder):
        model = Embedder.load(folder, device="cpu")
        assert model.info()["attention"]["mode"] == "bidirectional" and model.info()["pooling"]["name"] == "mean"
    middle = Embedder.load(mntp_folder, device="cpu").encode(TEXTS)
    after = Embedder.load(simcse_folder, device="cpu").encode(TEXTS)
    assert not np.allclose(middle, before, atol=1e-4) and not np.allclose(
        after, middle, atol=1e-4
    )  # both stages trained
    # the stage's adapter on the stage's starting model gives the merged model's vectors
    adapter_model = Embedder.load(mntp_folder, device="cpu")
    adapter_model.backbone.load_adapter(tmp_path / "out/simcse/adapter")
    np.testing.assert_allclose(adapter_model.encode(TEXTS), after, atol=1e-6)


def test_e5_style_instruction_tuning_trains_eos_pooling_with_instructions_masked(tied_llama, tmp_path):
    rows = [
        {"query": "how do magnets work?", "positive": "Magnets attract iron.", "task": "Retrieve physics answers."},
        {"query": "two dogs run", "positive": "Dogs are running.", "task": "Retrieve semantically similar text."},
        {
            "query": "a girl styles her hair",
            "positive": "A girl is styling her hair.",
            "task": "Retrieve semantically similar text.",
        },
        {
            "query": "men play soccer",
            "positive": "A group of men play soccer on the beach.",
            "task": "Retrieve semantically similar text.",
        },
    ]
    path = tmp_path / "instructed.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    data = read_training_data(path, columns=["query", "positive"], instruction="task")
    pooling = {"name": "last", "append_eos": True, "include_prompt": False}
    model = Embedder.load(
        tied_llama, pooling=pooling, prompts={"query": "Instruct: {task}\nQuery: {text}"}, device="cpu"
    )
    before = model.encode(["how do magnets work?"], role="query", task="Retrieve physics answers.")
    config = TrainingConfig(epochs=1, batch_size=4, learning_rate=1e-2, warmup_ratio=0.0, lora={"r": 4, "alpha": 8})
    train(model, build_loss({"name": "infonce", "temperature": 0.05}, model), [data], config, tmp_path / "run")
    after = model.encode(["how do magnets work?"], role="query", task="Retrieve physics answers.")
    assert not np.allclose(before, after, atol=1e-4)
    tokens = model.tokenizer.tokenize(
        ["how do magnets work?"],
        model.resolve_prompt(role="query", task="x"),
        model.pooler.suffix_ids(model.backbone.tokenizer),
        True,
    )
    assert tokens.input_ids[0][-1] == model.backbone.tokenizer.eos_token_id  # the pooled token is the appended EOS


def test_cli_encode_takes_attention_and_extraction(tiny_models, tmp_path, capsys):
    from gpte.cli import main

    (tmp_path / "texts.txt").write_text("\n".join(TEXTS) + "\n")
    args = ["encode", str(tmp_path / "texts.txt"), "--model", str(tiny_models["llama"]), "--no-progress"]
    assert main(args + ["-o", str(tmp_path / "v.npy"), "--attention", "bidirectional", "--extraction", "echo"]) == 0
    expected = Embedder.load(tiny_models["llama"], attention="bidirectional", extraction="echo", device="cpu").encode(
        TEXTS
    )
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), expected, atol=1e-6)
    assert main(args + ["-o", str(tmp_path / "w.npy"), "--extraction", "eol"]) != 0
    assert "unknown extraction 'eol'; choose one of: prompteol, pcoteol, metaeol, echo" in capsys.readouterr().err


def test_onnx_export_follows_the_attention_mode(tiny_models, tmp_path):
    export = tmp_path / "onnx"
    for attention in ("causal", "bidirectional", "causal"):
        reference = Embedder.load(tiny_models["llama"], pooling="mean", attention=attention, device="cpu").encode(TEXTS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the switch re-exports: the old file does not match the new mode
            onnx = Embedder.load(
                tiny_models["llama"],
                pooling="mean",
                attention=attention,
                backend="onnx",
                export_dir=export,
                device="cpu",
            )
        np.testing.assert_allclose(onnx.encode(TEXTS), reference, atol=1e-5)
