"""An embedding-inversion probe in the manner of GEIA (Li et al. 2023, "Sentence embedding leaks more
information than you expect", Findings of ACL): a decoder learns to write a sentence back from its
embedding, which is fed as the decoder's first input position.

    h_0 = W e + b  (the embedding, projected to the decoder's width),  h_t = token embedding of y_t
    loss = - sum_t log p(y_t | h_0, y_<t)   (teacher forcing; y ends with an end token)

GEIA fine-tunes a pretrained GPT-2. Here the decoder is a small GPT-2 trained from scratch (no hub, two
CPU cores), over the embedding model's own tokenizer, its vocabulary cut to the tokens of the training
sentences: what it recovers is a lower bound on what a larger pretrained decoder would. The probe is an
attacker's tool: measure it on sentences it did not see (another dataset), next to the same decoder fed
random vectors of the same norms, which recovers only what a language model guesses without the embedding.

Metrics (``inversion_scores``), on lowercased word tokens (``\\w+``), averaged over sentences:
token F1 (harmonic mean of multiset precision and recall), exact match (same word sequence), and corpus
BLEU (sacrebleu, the field's reference implementation, lowercased) / 100.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sacrebleu
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerBase

from gpte.analysis.geometry import check_vectors
from gpte.analysis.views import Embed

WORD = re.compile(r"\w+")


@dataclass
class ProbeConfig:
    """Size and training of the decoder.

    Attributes:
        layers, width, heads: the GPT-2 decoder's depth, hidden size and attention heads.
        max_tokens: tokens of a sentence learned and generated (longer sentences are cut).
        epochs, batch_size, learning_rate: AdamW training with linear warm-up (5 %) and linear decay.
        seed: initialization, shuffling and the random-vector baseline.
    """

    layers: int = 2
    width: int = 128
    heads: int = 4
    max_tokens: int = 32
    epochs: int = 6
    batch_size: int = 64
    learning_rate: float = 2e-3
    seed: int = 0

    def check(self) -> None:
        for name in ("layers", "width", "heads", "max_tokens", "epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be a multiple of heads {self.heads}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")


@dataclass
class InversionScores:
    """Recovery of sentences from their embeddings (fractions, 0..1)."""

    token_f1: float
    exact_match: float
    bleu: float
    n_sentences: int


class InversionProbe(nn.Module):
    """Embedding -> sentence decoder. Build with :meth:`train_on`; read with :meth:`generate`.

    Args:
        embedding_dim: length of the embeddings it reads.
        tokenizer: the tokenizer whose tokens it writes (usually the embedding model's).
        vocabulary: the tokenizer ids it can write, in order; the decoder's id i means ``vocabulary[i]``,
            and id ``len(vocabulary)`` ends a sentence.
        config: the decoder's size and training.
    """

    def __init__(
        self, embedding_dim: int, tokenizer: PreTrainedTokenizerBase, vocabulary: Sequence[int], config: ProbeConfig
    ) -> None:
        super().__init__()
        config.check()
        self.config = config
        self.tokenizer = tokenizer
        self.vocabulary = list(vocabulary)
        self.end = len(self.vocabulary)
        self.embedding_dim = embedding_dim
        self.projection = nn.Linear(embedding_dim, config.width)
        self.decoder = GPT2LMHeadModel(
            GPT2Config(
                vocab_size=self.end + 1,
                n_positions=config.max_tokens + 2,
                n_embd=config.width,
                n_layer=config.layers,
                n_head=config.heads,
                bos_token_id=self.end,
                eos_token_id=self.end,
            )
        )

    # ----------------------------------------------------------------- training

    @classmethod
    def train_on(
        cls,
        embeddings: np.ndarray,
        texts: Sequence[str],
        tokenizer: PreTrainedTokenizerBase,
        config: ProbeConfig | None = None,
        show_progress: bool = True,
    ) -> InversionProbe:
        """Train a probe to write ``texts[i]`` from ``embeddings[i]``.

        The probe trains on the CPU. Its weight initialization (transformers' GPT-2 init) and dropout draw from
        torch's global CPU generator, which take no ``torch.Generator``; that generator is seeded with
        ``config.seed`` inside ``torch.random.fork_rng``, so the probe is reproducible and the caller's random
        state is restored afterwards.

        Raises:
            ValueError: embeddings and texts of different lengths, fewer than 2 sentences, or a bad config.
        """
        config = config or ProbeConfig()
        array = check_vectors(embeddings)
        if len(array) != len(texts):
            raise ValueError(f"{len(array)} embeddings but {len(texts)} texts")
        token_ids = [_token_ids(tokenizer, text, config.max_tokens) for text in texts]
        vocabulary = sorted({token for ids in token_ids for token in ids})
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(config.seed)
            probe = cls(array.shape[1], tokenizer, vocabulary, config)
            probe._fit(torch.from_numpy(array.astype(np.float32)), probe._compact(token_ids), show_progress)
        return probe.eval()

    def _compact(self, token_ids: list[list[int]]) -> list[list[int]]:
        index = {token: position for position, token in enumerate(self.vocabulary)}
        return [[index[token] for token in ids if token in index] + [self.end] for ids in token_ids]

    def _fit(self, embeddings: torch.Tensor, targets: list[list[int]], show_progress: bool) -> None:
        config = self.config
        steps = config.epochs * math.ceil(len(targets) / config.batch_size)
        optimizer = torch.optim.AdamW(self.parameters(), lr=config.learning_rate)
        warmup = max(1, steps // 20)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min((step + 1) / warmup, max(0.0, (steps - step) / max(1, steps - warmup)))
        )
        generator = torch.Generator().manual_seed(config.seed)
        self.train()
        with tqdm(total=steps, desc="inversion probe", unit="step", disable=not show_progress) as bar:
            for _ in range(config.epochs):
                for rows in _length_batches([len(ids) for ids in targets], config.batch_size, generator):
                    loss = self._loss(embeddings[rows], [targets[row] for row in rows.tolist()])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.3f}")

    def _loss(self, embeddings: torch.Tensor, targets: list[list[int]]) -> torch.Tensor:
        """Mean next-token cross-entropy of ``targets`` given the embeddings (teacher forcing)."""
        length = max(len(ids) for ids in targets)
        labels = torch.full((len(targets), length), -100, dtype=torch.long)
        inputs = torch.full((len(targets), length - 1), self.end, dtype=torch.long)
        for row, ids in enumerate(targets):
            labels[row, : len(ids)] = torch.tensor(ids)
            inputs[row, : len(ids) - 1] = torch.tensor(ids[:-1])
        mask = (labels != -100).long()
        hidden = torch.cat([self._prefix(embeddings), self.decoder.get_input_embeddings()(inputs)], dim=1)
        logits = self.decoder(inputs_embeds=hidden, attention_mask=mask).logits
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)

    def _prefix(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(n, d') embeddings -> (n, 1, width); shorter vectors (truncated dimensions) are zero-padded."""
        if embeddings.shape[1] > self.embedding_dim:
            raise ValueError(f"the probe reads {self.embedding_dim}-dimensional embeddings, got {embeddings.shape[1]}")
        padded = F.pad(embeddings, (0, self.embedding_dim - embeddings.shape[1]))
        return self.projection(padded).unsqueeze(1)

    # ----------------------------------------------------------------- reading

    @torch.inference_mode()
    def generate(self, embeddings: np.ndarray, batch_size: int = 256) -> list[str]:
        """Greedy decoding: the sentence the probe writes for each embedding (n, d'), d' <= its dimension."""
        array = torch.from_numpy(check_vectors(embeddings, minimum=1).astype(np.float32))
        texts: list[str] = []
        for start in range(0, len(array), batch_size):
            texts += self._greedy(array[start : start + batch_size])
        return texts

    def _greedy(self, embeddings: torch.Tensor) -> list[str]:
        hidden, past = self._prefix(embeddings), None
        written = torch.empty((len(embeddings), 0), dtype=torch.long)
        finished = torch.zeros(len(embeddings), dtype=torch.bool)
        for _ in range(self.config.max_tokens + 1):
            output = self.decoder(inputs_embeds=hidden, past_key_values=past, use_cache=True)
            past = output.past_key_values
            token = output.logits[:, -1].argmax(dim=-1)
            token[finished] = self.end
            written = torch.cat([written, token[:, None]], dim=1)
            finished |= token == self.end
            if finished.all():
                break
            hidden = self.decoder.get_input_embeddings()(token[:, None])
        return [self._decode(row) for row in written.tolist()]

    def _decode(self, ids: list[int]) -> str:
        kept = ids[: ids.index(self.end)] if self.end in ids else ids
        return self.tokenizer.decode([self.vocabulary[i] for i in kept], skip_special_tokens=True).strip()


def _length_batches(
    lengths: list[int], batch_size: int, generator: torch.Generator, pool: int = 32
) -> list[torch.Tensor]:
    """Shuffled batches of similar lengths (less padding): a random order cut into pools of ``pool`` batches,
    each pool sorted by length and cut into batches, the batches then shuffled."""
    order = torch.randperm(len(lengths), generator=generator)
    batches = []
    for chunk in order.split(batch_size * pool):
        ranked = chunk[torch.argsort(torch.tensor([lengths[i] for i in chunk.tolist()]), stable=True)]
        batches += list(ranked.split(batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def _token_ids(tokenizer: PreTrainedTokenizerBase, text: str, max_tokens: int) -> list[int]:
    return tokenizer(text, add_special_tokens=False, truncation=True, max_length=max_tokens)["input_ids"]


def random_like(embeddings: np.ndarray, seed: int = 0) -> np.ndarray:
    """Gaussian random vectors with the norms of ``embeddings``: the baseline that carries no information."""
    array = check_vectors(embeddings, minimum=1)
    noise = np.random.default_rng(seed).standard_normal(array.shape)
    noise *= np.linalg.norm(array, axis=1, keepdims=True) / np.linalg.norm(noise, axis=1, keepdims=True)
    return noise.astype(np.float32)


def words(text: str) -> list[str]:
    """Lowercased word tokens (``\\w+``)."""
    return WORD.findall(text.lower())


def token_f1(predicted: str, reference: str) -> float:
    """F1 of the word multisets of ``predicted`` and ``reference`` (1.0 when both are empty)."""
    guess, truth = Counter(words(predicted)), Counter(words(reference))
    if not guess or not truth:
        return float(guess == truth)
    overlap = sum((guess & truth).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / sum(guess.values()), overlap / sum(truth.values())
    return 2 * precision * recall / (precision + recall)


def inversion_scores(predicted: Sequence[str], references: Sequence[str]) -> InversionScores:
    """Token F1, exact match and BLEU of ``predicted`` sentences against ``references`` (same order).

    Raises:
        ValueError: the two lists differ in length or are empty.
    """
    if len(predicted) != len(references) or not references:
        raise ValueError(
            f"need as many predictions as references (and at least one): {len(predicted)} vs {len(references)}"
        )
    f1 = float(np.mean([token_f1(p, r) for p, r in zip(predicted, references)]))
    exact = float(np.mean([words(p) == words(r) for p, r in zip(predicted, references)]))
    bleu = sacrebleu.corpus_bleu(list(predicted), [list(references)], lowercase=True).score / 100
    return InversionScores(f1, exact, bleu, len(references))


@dataclass
class ProbeRun:
    """A trained probe and what it recovers on held-out sentences from true and from random vectors."""

    probe: InversionProbe
    held_out: InversionScores
    random_baseline: InversionScores
    examples: list[tuple[str, str]]
    train_seconds: float


def run_probe(
    embed: Embed,
    train_texts: Sequence[str],
    test_texts: Sequence[str],
    tokenizer: PreTrainedTokenizerBase,
    config: ProbeConfig | None = None,
    show_progress: bool = True,
) -> ProbeRun:
    """Train on ``train_texts`` and score on ``test_texts`` against the random-vector baseline.

    Args:
        embed: texts -> (n, d) vectors (the model under attack).
        train_texts, test_texts: distinct sentence lists (a different dataset for the test is the point).
    """
    config = config or ProbeConfig()
    started = time.perf_counter()
    probe = InversionProbe.train_on(embed(list(train_texts)), train_texts, tokenizer, config, show_progress)
    seconds = time.perf_counter() - started
    test_vectors = embed(list(test_texts))
    written = probe.generate(test_vectors)
    guessed = probe.generate(random_like(test_vectors, config.seed))
    return ProbeRun(
        probe,
        inversion_scores(written, test_texts),
        inversion_scores(guessed, test_texts),
        list(zip(test_texts[:5], written[:5])),
        seconds,
    )
