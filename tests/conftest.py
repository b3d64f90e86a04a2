"""Shared fixtures: tiny random models of each backbone family, saved as plain Hugging Face folders,
and the paths of the packaged real models and ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModel,
    BertConfig,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    MPNetConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    RobertaConfig,
    T5Config,
    T5EncoderModel,
    XLMRobertaConfig,
)

from gpte.models.sources import resolve_model

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CORPUS = [
    "A girl is styling her hair.",
    "A group of men play soccer on the beach.",
    "The cat sat on the mat while the dog slept.",
    "Rewrite the sentence: a man plays the guitar, rewritten sentence: a man plays the guitar",
    "Instruct: retrieve passages that answer the question. Query: what is the boiling point of water?",
    "query: passage: This sentence means in one word: quick brown fox jumps over the lazy dog 0123456789",
]
SENTENCES = [
    "A man is playing a guitar.",
    "A woman is slicing an onion.",
    "",
    "The quick brown fox jumps over the lazy dog near the river bank at dawn.",
    "A man is playing a guitar.",
    "Two dogs run.",
]


def bpe_tokenizer(template: str) -> PreTrainedTokenizerFast:
    """A small BPE tokenizer trained on CORPUS; ``template`` is "bos" (Llama), "eos" (T5), "cls_sep"
    (RoBERTa) or "none" (GPT-2)."""
    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(
        CORPUS * 3, trainers.BpeTrainer(vocab_size=200, special_tokens=specials, show_progress=False)
    )
    if template == "cls_sep":  # RoBERTa style: <s> text </s>
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", special_tokens=[("<s>", 2), ("</s>", 3)]
        )
    elif template == "bos":
        tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    elif template == "eos":
        tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 3)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def minilm_folder() -> Path:
    return resolve_model(None).folder


def _save(folder: Path, model, tokenizer) -> Path:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _tiny_model(kind: str, folder: Path) -> Path:
    torch.manual_seed(0)
    small = dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=128
    )
    if kind == "bert":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
        return _save(folder, AutoModel.from_config(BertConfig(vocab_size=tokenizer.vocab_size, **small)), tokenizer)
    if kind in ("roberta", "xlm-roberta", "mpnet"):
        tokenizer = bpe_tokenizer("cls_sep")
        config_class = {"roberta": RobertaConfig, "xlm-roberta": XLMRobertaConfig, "mpnet": MPNetConfig}[kind]
        config = config_class(
            vocab_size=len(tokenizer),
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=3,
            **{**small, "max_position_embeddings": 66},
        )
        return _save(folder, AutoModel.from_config(config), tokenizer)
    if kind == "t5":
        tokenizer = bpe_tokenizer("eos")
        config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2)
        return _save(folder, T5EncoderModel(config), tokenizer)
    if kind == "gpt2":
        tokenizer = bpe_tokenizer("none")
        config = GPT2Config(
            vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=128, bos_token_id=2, eos_token_id=3
        )
        return _save(folder, AutoModel.from_config(config), tokenizer)
    config_class = {"llama": LlamaConfig, "qwen2": Qwen2Config, "mistral": MistralConfig}[kind]
    tokenizer = bpe_tokenizer("bos")
    config = config_class(vocab_size=len(tokenizer), num_key_value_heads=1, **small)
    return _save(folder, AutoModel.from_config(config), tokenizer)


TINY_KINDS = ("bert", "roberta", "xlm-roberta", "mpnet", "llama", "qwen2", "mistral", "gpt2", "t5")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Folders of tiny random models of every family in TINY_KINDS."""
    root = tmp_path_factory.mktemp("tiny")
    return {kind: _tiny_model(kind, root / kind) for kind in TINY_KINDS}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"real-data tests need ../shared/data beside the repository ({SHARED_DATA})"
    return SHARED_DATA
