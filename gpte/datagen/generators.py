"""Text generators for data synthesis: any transformers causal LM (default SmolLM2-135M-Instruct from the
packaged GGUF file) or an OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp server, Ollama,
OpenAI ...), behind one small protocol.

    generator = load_generator("smollm2-135m-instruct")          # or "openai:http://host:8000/v1#model-name"
    texts = generator.generate([[{"role": "user", "content": "Write a search query about wings."}]], seed=1)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import torch

from gpte.errors import GpteError
from gpte.models.causal_lm import DEFAULT_LLM, chat_prompt, load_causal_lm

Messages = list[dict[str, str]]
OPENAI_PREFIX = "openai:"


class GeneratorError(GpteError, RuntimeError):
    """A generator could not produce text (an unreachable endpoint, an error reply), or produced nothing
    usable after the allowed attempts."""


class Generator(Protocol):
    """Answers chat conversations: one completion text per conversation."""

    def generate(
        self, conversations: list[Messages], max_new_tokens: int = 256, temperature: float = 0.7, seed: int = 0
    ) -> list[str]: ...


class TransformersGenerator:
    """Samples from a causal LM with ``model.generate`` in batches (left padding), the conversation in the
    model's chat template.

    Args:
        model: a packaged model name, folder, .gguf file or hub id (``gpte.models.causal_lm``).
        batch_size: conversations generated together.
        max_prompt_tokens: prompts are cut to their last this many tokens.
    """

    def __init__(
        self, model: str | Path | None = DEFAULT_LLM, batch_size: int = 16, max_prompt_tokens: int = 1024
    ) -> None:
        self.tokenizer, self.model = load_causal_lm(model)
        self.tokenizer.truncation_side = "left"  # a long prompt keeps its end, where the task is asked
        self.name = str(model)
        self.batch_size = batch_size
        self.max_prompt_tokens = max_prompt_tokens

    def prompt(self, conversation: Messages) -> str:
        """The text the model continues for ``conversation``."""
        return chat_prompt(self.tokenizer, conversation)

    @torch.inference_mode()
    def generate(
        self, conversations: list[Messages], max_new_tokens: int = 256, temperature: float = 0.7, seed: int = 0
    ) -> list[str]:
        """One completion per conversation (greedy when ``temperature`` is 0); the same seed gives the same texts.

        transformers' ``generate`` samples from torch's global random generators (it takes no ``torch.Generator``),
        so they are seeded for the call and the caller's random state is restored afterwards (``_seeded``).
        """
        with _seeded(seed, {p.device for p in self.model.parameters()}):
            return self._generate(conversations, max_new_tokens, temperature)

    def _generate(self, conversations: list[Messages], max_new_tokens: int, temperature: float) -> list[str]:
        texts = []
        for start in range(0, len(conversations), self.batch_size):
            prompts = [self.prompt(conversation) for conversation in conversations[start : start + self.batch_size]]
            batch = self.tokenizer(
                prompts,
                padding=True,
                truncation=True,
                max_length=self.max_prompt_tokens,
                return_tensors="pt",
                add_special_tokens=False,
            )
            sampling = (
                {"do_sample": True, "temperature": temperature, "top_p": 0.95}
                if temperature > 0
                else {"do_sample": False}
            )
            output = self.model.generate(
                **batch, max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.pad_token_id, **sampling
            )
            texts += self.tokenizer.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        return texts


@contextmanager
def _seeded(seed: int, devices: set[torch.device]) -> Iterator[None]:
    """Seed torch's global CPU generator and those of the CUDA ``devices`` with ``seed`` for the ``with`` block,
    then restore their earlier states (``torch.random.fork_rng``), so that the caller's random stream is untouched.
    Other devices are neither seeded nor initialized."""
    cuda = sorted({device.index for device in devices if device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


class OpenAIChatGenerator:
    """Calls ``POST {base_url}/chat/completions`` (the OpenAI chat API), one request per conversation.

    Args:
        base_url: the API root, e.g. ``http://localhost:8000/v1``.
        model: the model name the server expects.
        api_key: sent as a bearer token (default: ``$OPENAI_API_KEY`` when set).
        timeout: seconds per request.
        transport: an httpx transport (tests use ``httpx.MockTransport``).
    """

    def __init__(
        self, base_url: str, model: str, api_key: str | None = None, timeout: float = 120.0, transport=None
    ) -> None:
        import httpx

        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport)
        self.name = f"{base_url}#{model}"
        self.model = model

    def generate(
        self, conversations: list[Messages], max_new_tokens: int = 256, temperature: float = 0.7, seed: int = 0
    ) -> list[str]:
        """One completion per conversation (``choices[0].message.content``)."""
        return [self._complete(conversation, max_new_tokens, temperature, seed) for conversation in conversations]

    def _complete(self, conversation: Messages, max_new_tokens: int, temperature: float, seed: int) -> str:
        import httpx

        body = {
            "model": self.model,
            "messages": conversation,
            "max_tokens": max_new_tokens,
            "temperature": temperature,
            "seed": seed,
        }
        try:
            reply = self.client.post("/chat/completions", json=body)
        except httpx.HTTPError as error:
            raise GeneratorError(
                f"the chat endpoint {self.client.base_url} cannot be reached: {type(error).__name__}: {error}"
            ) from error
        if reply.status_code != 200:
            raise GeneratorError(
                f"the chat endpoint {self.client.base_url} answered {reply.status_code}: {reply.text[:200]}"
            )
        try:
            return reply.json()["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise GeneratorError(
                f"the chat endpoint {self.client.base_url} sent no choices[0].message.content: {reply.text[:200]}"
            ) from error


def load_generator(spec: str | Path | None = DEFAULT_LLM, batch_size: int = 16) -> Generator:
    """A generator from a name: ``openai:BASE_URL#MODEL`` for a chat endpoint, else a transformers causal LM."""
    if isinstance(spec, str) and spec.startswith(OPENAI_PREFIX):
        base_url, _, model = spec.removeprefix(OPENAI_PREFIX).partition("#")
        if not base_url or not model:
            raise ValueError(
                f"an endpoint generator is written openai:BASE_URL#MODEL (e.g. openai:http://localhost:8000/v1#qwen2.5), got {spec!r}"
            )
        return OpenAIChatGenerator(base_url, model)
    return TransformersGenerator(spec, batch_size=batch_size)
