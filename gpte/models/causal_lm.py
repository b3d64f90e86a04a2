"""Load a causal language model with its tokenizer, for the places that read an LLM's tokens rather than
its hidden states: the yes/no reranker (``gpte.models.llm_reranker``) and the data generator
(``gpte.datagen.generators``). Names resolve like an embedder's (``gpte.models.sources``): a packaged model
such as ``smollm2-135m-instruct`` (a GGUF file), a folder, a .gguf file or a hub id."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from gpte.errors import ModelLoadError
from gpte.models.sources import resolve_model

DEFAULT_LLM = "smollm2-135m-instruct"


def load_causal_lm(model: str | Path | None = DEFAULT_LLM) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """The tokenizer (left padding, a pad token: the eos token when it has none) and the model in eval mode.

    Raises:
        ModelLoadError: the model cannot be found or is not a causal LM (the folder and the cause named).
    """
    source = resolve_model(model)
    options = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.folder, **options)
        language_model = AutoModelForCausalLM.from_pretrained(source.folder, **options).eval()
    except Exception as error:
        raise ModelLoadError(
            f"could not load a causal LM from {source.folder}: {type(error).__name__}: {error}"
        ) from error
    tokenizer.padding_side = "left"  # the next token of every row is at the last position
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, language_model


def chat_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> str:
    """``messages`` (role/content dicts) in the model's chat template, ready for the assistant's answer;
    without a template, the contents one per paragraph followed by ``Answer:``."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(message["content"] for message in messages) + "\nAnswer:"
