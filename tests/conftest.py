"""Shared fixtures: tiny random models of each backbone family, saved as plain Hugging Face folders and
built lazily (a model is built the first time a test of the session asks for it, and only once), the tiny
BERT as an Embedder, and the paths of the packaged real models and ../shared/data."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    GPT2Config,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MPNetConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    RobertaConfig,
    T5Config,
    T5EncoderModel,
    XLMRobertaConfig,
)

from gpte import Embedder
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
CHAT_TEMPLATE = "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} </s>{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
SMALL = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=128
)


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


# Each builder returns (model, tokenizer); build_tiny_model seeds torch with 0 before calling it.


def _bert():
    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())  # the real WordPiece vocabulary of all-MiniLM-L6-v2
    return AutoModel.from_config(BertConfig(vocab_size=tokenizer.vocab_size, **SMALL)), tokenizer


def _bert_cross_encoder():
    """A BERT with a one-logit sequence-classification head: a cross-encoder (plain Hugging Face folder)."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    config = BertConfig(vocab_size=tokenizer.vocab_size, num_labels=1, initializer_range=0.5, **SMALL)
    return BertForSequenceClassification(config), tokenizer


def _bert_mlm():
    """A BERT with its masked-LM head: a SPLADE backbone (plain Hugging Face folder)."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    return BertForMaskedLM(BertConfig(vocab_size=tokenizer.vocab_size, initializer_range=0.2, **SMALL)), tokenizer


def _roberta_like(config_class):
    tokenizer = bpe_tokenizer("cls_sep")
    config = config_class(
        vocab_size=len(tokenizer),
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        **{**SMALL, "max_position_embeddings": 66},
    )
    return AutoModel.from_config(config), tokenizer


def _t5():
    tokenizer = bpe_tokenizer("eos")
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2)
    return T5EncoderModel(config), tokenizer


def _gpt2():
    tokenizer = bpe_tokenizer("none")
    config = GPT2Config(
        vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=128, bos_token_id=2, eos_token_id=3
    )
    return AutoModel.from_config(config), tokenizer


def _decoder(config_class, **overrides):
    tokenizer = bpe_tokenizer("bos")
    config = config_class(vocab_size=len(tokenizer), num_key_value_heads=1, **SMALL, **overrides)
    return AutoModel.from_config(config), tokenizer


def _chat_llama():
    """A Llama with its LM head and a chat template: a text generator."""
    tokenizer = bpe_tokenizer("bos")
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        num_key_value_heads=1,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=0,
        **{**SMALL, "max_position_embeddings": 512},
    )
    return LlamaForCausalLM(config), tokenizer


TINY_KINDS = ("bert", "roberta", "xlm-roberta", "mpnet", "llama", "qwen2", "mistral", "gpt2", "t5")
BUILDERS: dict[str, Callable[[], tuple]] = {
    "bert": _bert,
    "roberta": partial(_roberta_like, RobertaConfig),
    "xlm-roberta": partial(_roberta_like, XLMRobertaConfig),
    "mpnet": partial(_roberta_like, MPNetConfig),
    "llama": partial(_decoder, LlamaConfig),
    "qwen2": partial(_decoder, Qwen2Config),
    "mistral": partial(_decoder, MistralConfig),
    "gpt2": _gpt2,
    "t5": _t5,
    "llama-tied": partial(_decoder, LlamaConfig, tie_word_embeddings=True),  # LM head = input embeddings (SmolLM2)
    "llama-chat": _chat_llama,
    "bert-cross-encoder": _bert_cross_encoder,
    "bert-mlm": _bert_mlm,
}


def build_tiny_model(kind: str, folder: Path) -> Path:
    """Save the tiny random model ``kind`` (a key of BUILDERS), initialised from seed 0, with its tokenizer
    into ``folder``; returns ``folder``. The caller's torch random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model, tokenizer = BUILDERS[kind]()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _stamp(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, modification time) of every file under ``folder``, by relative path."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in folder.rglob("*")
        if path.is_file()
    }


class TinyModels(Mapping[str, Path]):
    """The folders of the tiny models of BUILDERS under ``root``: each is built on first access, once.
    TINY_KINDS are one model per backbone family; "llama-tied" and "llama-chat" are Llama variants;
    "bert-cross-encoder" is the tiny BERT with a one-logit classification head; "bert-mlm" the tiny BERT with its
    masked-LM head (SPLADE)."""

    def __init__(self, root: Path):
        self.root = root
        self._stamps: dict[str, dict[str, tuple[int, int]]] = {}

    def __getitem__(self, kind: str) -> Path:
        if kind not in BUILDERS:
            raise KeyError(kind)
        folder = self.root / kind
        if kind not in self._stamps:
            self._stamps[kind] = _stamp(build_tiny_model(kind, folder))
        return folder

    def __iter__(self) -> Iterator[str]:
        return iter(BUILDERS)

    def __len__(self) -> int:
        return len(BUILDERS)

    def changed(self) -> list[str]:
        """The kinds whose folder's files differ from those the build wrote."""
        return [kind for kind, stamp in self._stamps.items() if _stamp(self.root / kind) != stamp]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Iterator[TinyModels]:
    """Folders of the tiny random models, shared by the whole session: a test that changes a model folder
    (ONNX export beside it, save with overwrite) copies it first (shutil.copytree to its tmp_path); the
    session fails at its end when one was written into."""
    tiny = TinyModels(tmp_path_factory.mktemp("tiny"))
    yield tiny
    changed = tiny.changed()
    assert not changed, f"tests wrote into the shared tiny model folders {changed}: copy a folder before changing it"


@pytest.fixture(scope="session")
def tied_llama(tiny_models) -> Path:
    """A tiny random Llama whose LM head is its input embedding matrix (as in SmolLM2)."""
    return tiny_models["llama-tied"]


@pytest.fixture(scope="session")
def chat_llama(tiny_models) -> Path:
    """A tiny random Llama with its LM head and a chat template: a transformers text generator."""
    return tiny_models["llama-chat"]


@pytest.fixture(scope="module")
def splade(tiny_models):
    """The tiny random BERT masked-LM as a SPLADE ``SparseEncoder`` on the CPU, one per test module."""
    from gpte.models.sparse import load_sparse_encoder

    return load_sparse_encoder(tiny_models["bert-mlm"], device="cpu")


@pytest.fixture(scope="module")
def embedder(tiny_models) -> Embedder:
    """The tiny random BERT with mean pooling on the CPU, one per test module."""
    return Embedder.load(tiny_models["bert"], pooling="mean", device="cpu")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"real-data tests need ../shared/data beside the repository ({SHARED_DATA})"
    return SHARED_DATA


@contextmanager
def lock_held_elsewhere(path: Path) -> Iterator[subprocess.Popen]:
    """Another process holding the write lock of ``path`` (``gpte.locking``, as a running gpte writer does) for the
    block; killed at its end."""
    code = (
        "import time\nfrom gpte.locking import exclusive_output\n"
        f"with exclusive_output({str(path)!r}):\n    print('held', flush=True)\n    time.sleep(120)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait(timeout=30)


@pytest.fixture(scope="module")
def index(embedder, tmp_path_factory):
    """An index of two documents built with the tiny BERT ``embedder``, opened: what the serving tests serve."""
    from gpte.search.index import Index, build_index

    folder = tmp_path_factory.mktemp("docs")
    for name, text in {
        "a.txt": "Wings stall at high angles of attack.",
        "b.txt": "Hypersonic heat transfer is large.",
    }.items():
        (folder / name).write_text(text, encoding="utf-8")
    build_index(folder.parent / "index", folder, embedder=embedder, show_progress=False)
    return Index.open(folder.parent / "index", embedder=embedder)
