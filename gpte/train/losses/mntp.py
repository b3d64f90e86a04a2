"""Masked next-token prediction (MNTP; LLM2Vec, BehnamGhader et al. 2024, arXiv:2404.05961).

A decoder switched to bidirectional attention learns to use the tokens after each position. A fraction
``p`` of each text's tokens (not special tokens, not a text's first token) is chosen; of those, 80% are
replaced by the mask token, 10% by a random token and 10% kept (BERT's recipe). Token ``x_i`` is then
predicted from the hidden state one position earlier through the model's language-model head W, as in
next-token prediction, so the pretrained head is reused:

    L = -(1/|M|) sum_{i in M} log softmax(W h_{i-1})[x_i]

Logits are computed only at the chosen positions (a 49k-word softmax over every token would dominate
memory). Data: one text column (extra columns are ignored). The head is the input embedding matrix when
the model ties them (SmolLM2, Llama-3.2-1B, ...), else the output layer of the causal-LM checkpoint named by
``lm_head`` (a folder or a ``.gguf`` file), kept frozen. Llama-family tokenizers have no mask token; LLM2Vec
uses ``_`` there, and so does gpte unless ``mask_token`` says otherwise.

This is a token-level loss, not a loss on embeddings: it cannot be wrapped (Matryoshka, GradCache), and it
runs in one process (it reads the backbone's token states directly, which DDP would not synchronise).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpte.models.tokenization import TokenBatch
from gpte.train.losses.base import EmbeddingLoss, TrainingBatch, check_positive

DEFAULT_MASK_TOKEN = "_"
REPLACE_WITH_MASK, REPLACE_WITH_RANDOM = 0.8, 0.1


class MNTPLoss(EmbeddingLoss):
    """Masked next-token prediction for a (bidirectional) decoder Embedder.

    Args:
        model: the Embedder being trained (its backbone must be a decoder).
        mask_probability: share of eligible tokens chosen per text (LLM2Vec: 0.2 for Llama-2/Mistral).
        mask_token: the token that replaces chosen tokens (default: the tokenizer's mask token, else ``_``).
        lm_head: where to read an untied output layer (causal-LM folder or .gguf file); unused when tied.

    Raises:
        ValueError: a non-decoder backbone, a probability outside (0, 1), a mask token the tokenizer does not
            know, or an untied model without ``lm_head``.
    """

    name = "mntp"
    min_columns = 1
    token_level = True

    def __init__(
        self, model: nn.Module, mask_probability: float = 0.2, mask_token: str | None = None, lm_head: str | None = None
    ) -> None:
        super().__init__(model)
        check_positive("mask_probability", mask_probability)
        if mask_probability >= 1:
            raise ValueError(f"mask_probability must be below 1, got {mask_probability!r}")
        backbone = model.backbone
        if backbone.kind != "decoder":
            raise ValueError(f"mntp trains decoder backbones; this model is an {backbone.kind}")
        tied = bool(getattr(backbone.config, "tie_word_embeddings", False))
        if not tied and lm_head is None:
            raise ValueError(
                "mntp needs the model's language-model head: this model does not tie it to the input embeddings; "
                "pass lm_head: PATH (the causal-LM folder or .gguf file it came from)"
            )
        self.mask_probability = float(mask_probability)
        self.mask_id = _mask_id(backbone.tokenizer, mask_token)
        self.special_ids = torch.tensor(sorted(set(backbone.tokenizer.all_special_ids)), dtype=torch.long)
        self.vocab_size = backbone.model.get_input_embeddings().num_embeddings
        self.untied_head = None if tied else _load_head(lm_head)

    def forward(self, batch: TrainingBatch) -> Tensor:
        if isinstance(self.model, nn.parallel.DistributedDataParallel):
            raise RuntimeError("mntp runs in a single process (its token-level pass bypasses DDP's gradient sync)")
        features = batch.features[0]
        chosen = self.choose(features)
        hidden, _ = self.model.backbone(
            TokenBatch(self.corrupt(features.input_ids, chosen), features.attention_mask, features.position_ids)
        )
        targets = chosen[:, 1:]  # token i is predicted from position i-1
        logits = F.linear(hidden[:, :-1][targets], self.head_weight().to(hidden.device, hidden.dtype))
        return F.cross_entropy(logits.float(), features.input_ids[:, 1:][targets])

    def choose(self, features: TokenBatch) -> Tensor:
        """(batch, length) bool: the positions to predict (at least one per batch)."""
        ids = features.input_ids
        eligible = (
            features.attention_mask.bool()
            & (features.position_ids > 0)
            & ~torch.isin(ids, self.special_ids.to(ids.device))
        )
        chosen = eligible & (torch.rand(ids.shape, device=ids.device) < self.mask_probability)
        if not chosen.any():  # a short batch can draw nothing: predict its first eligible token
            first = eligible.flatten().nonzero()[:1]
            chosen.view(-1)[first] = True
        if not chosen.any():
            raise ValueError("mntp: the batch has no token to predict (only special tokens or one-token texts)")
        return chosen

    def corrupt(self, ids: Tensor, chosen: Tensor) -> Tensor:
        """The input with chosen tokens replaced: 80% by the mask token, 10% by a random token, 10% kept."""
        draw = torch.rand(ids.shape, device=ids.device)
        corrupted = ids.clone()
        corrupted[chosen & (draw < REPLACE_WITH_MASK)] = self.mask_id
        random_slots = chosen & (draw >= REPLACE_WITH_MASK) & (draw < REPLACE_WITH_MASK + REPLACE_WITH_RANDOM)
        corrupted[random_slots] = torch.randint(self.vocab_size, (int(random_slots.sum()),), device=ids.device)
        return corrupted

    def head_weight(self) -> Tensor:
        if self.untied_head is not None:
            return self.untied_head
        return self.model.backbone.model.get_input_embeddings().weight

    def compute(self, embeddings: list[Tensor], batch: TrainingBatch) -> Tensor:
        raise TypeError("mntp is a token-level loss: it has no formula on embeddings and cannot be wrapped")


def _mask_id(tokenizer, mask_token: str | None) -> int:
    if mask_token is None and tokenizer.mask_token_id is not None:
        return int(tokenizer.mask_token_id)
    token = mask_token or DEFAULT_MASK_TOKEN
    ids = tokenizer.convert_tokens_to_ids([token])
    if not ids or ids[0] is None or (ids[0] == tokenizer.unk_token_id and token != tokenizer.unk_token):
        raise ValueError(f"mask token {token!r} is not in the tokenizer's vocabulary; pass mask_token: TOKEN")
    return int(ids[0])


def _load_head(path: str) -> Tensor:
    """The output-embedding matrix of the causal LM at ``path`` (frozen)."""
    from transformers import AutoModelForCausalLM

    where = Path(path)
    options = {"gguf_file": where.name} if where.suffix == ".gguf" else {}
    folder = where.parent if options else where
    causal = AutoModelForCausalLM.from_pretrained(folder, **options)
    return causal.get_output_embeddings().weight.detach().clone()
