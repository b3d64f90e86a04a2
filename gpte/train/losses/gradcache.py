"""GradCache (Gao et al. 2021, "Scaling deep contrastive learning batch size under memory limited setup"):
the loss and gradients of a large batch with the activation memory of a mini-batch.

1. Embed every column in mini-batches without building a graph (the RNG state of each mini-batch is
   kept, so that dropout can be replayed).
2. Compute the base loss on these embeddings as leaves and backpropagate to them: d loss / d embedding.
3. When the trainer backpropagates the returned loss, re-embed each mini-batch with a graph (same RNG
   state, same dropout) and backpropagate the cached embedding gradients through it.

The result equals the full-batch gradient of the base loss (up to float rounding). The base loss is any
``EmbeddingLoss``; its ``compute`` is reused unchanged. A multi-vector model's columns are ``(token vectors, mask)``
(``gpte.train.losses.multivector.tokens``): each mini-batch is cut to its own width, the cached vectors are
zero-padded to the widest and the mask is carried along (around ``colbert_infonce`` this is sentence-transformers'
CachedMultiVectorMultipleNegativesRankingLoss). Not combined with DDP gradient synchronisation
(the replay happens outside DDP's forward); 2D Matryoshka needs per-layer passes and is not supported.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch
from torch import Tensor

from gpte.models.multivector import MultiVectorBatch
from gpte.models.tokenization import TokenBatch
from gpte.train.losses.base import EmbeddingLoss, TrainingBatch
from gpte.train.losses.multivector.tokens import TokenColumn, cat_rows, select_rows

Features = TokenBatch | MultiVectorBatch
Output = Tensor | TokenColumn  # a column's embeddings: (rows, dim), or (rows, tokens, dim) vectors and their mask


class CachedLoss(EmbeddingLoss):
    """``base`` computed with GradCache over mini-batches of ``mini_batch_size`` texts per column."""

    def __init__(self, base: EmbeddingLoss, mini_batch_size: int = 32) -> None:
        super().__init__(base.model)
        if not isinstance(mini_batch_size, int) or mini_batch_size < 1:
            raise ValueError(f"gradcache mini_batch_size must be a positive integer, got {mini_batch_size!r}")
        if type(base).forward is not EmbeddingLoss.forward:
            raise ValueError(f"gradcache cannot wrap {base.name}: it embeds the batch its own way (e.g. per layer)")
        self.base = base
        self.mini_batch_size = mini_batch_size
        self.name = f"gradcache({base.name})"
        self.min_columns, self.max_columns, self.needs_scores = base.min_columns, base.max_columns, base.needs_scores

    def forward(self, batch: TrainingBatch) -> Tensor:
        batch = self.base.prepare(batch)
        chunks = [list(_split(features, self.mini_batch_size)) for features in batch.features]
        states: list[list[_RngState]] = []
        leaves = []
        with torch.no_grad():
            for column in chunks:
                column_states, outputs = [], []
                for chunk in column:
                    column_states.append(_RngState.capture(_input_ids(chunk).device))
                    outputs.append(self.model(chunk))
                states.append(column_states)
                leaves.append(_leaf(outputs))
        with torch.enable_grad():
            loss = self.base.compute(leaves, batch)
            loss.backward()
        gradients = [_vectors(leaf).grad for leaf in leaves]
        output = loss.detach().requires_grad_()
        output.register_hook(partial(self._replay, chunks, states, gradients))
        return output

    def _replay(
        self,
        chunks: list[list[Features]],
        states: list[list[_RngState]],
        gradients: list[Tensor],
        grad_output: Tensor,
    ) -> None:
        """Re-embed each mini-batch with a graph and backpropagate its cached gradient (times grad_output)."""
        with torch.enable_grad():
            for column, column_states, gradient in zip(chunks, states, gradients):
                start = 0
                for chunk, state in zip(column, column_states):
                    with state.restored():
                        vectors = _vectors(self.model(chunk))
                    rows, width = vectors.shape[0], vectors.shape[1]  # token vectors: the chunk's own width
                    vectors.backward(gradient[start : start + rows, :width] * grad_output)
                    start += rows


def _split(features: Features, size: int) -> Iterator[Features]:
    """``features`` in consecutive row slices of at most ``size`` rows, each without unused padding."""
    for start in range(0, _input_ids(features).shape[0], size):
        rows = slice(start, start + size)
        yield select_rows(features, rows) if isinstance(features, MultiVectorBatch) else features.select(rows)


def _input_ids(features: Features) -> Tensor:
    return features.tokens.input_ids if isinstance(features, MultiVectorBatch) else features.input_ids


def _leaf(outputs: list[Output]) -> Output:
    """The mini-batches' outputs joined, detached, as a leaf that collects the loss's gradient."""
    if isinstance(outputs[0], tuple):
        vectors, mask = cat_rows(outputs)
        return vectors.detach().requires_grad_(), mask
    return torch.cat(outputs).detach().requires_grad_()


def _vectors(output: Output) -> Tensor:
    """The differentiable part of a column's output."""
    return output[0] if isinstance(output, tuple) else output


class _RngState:
    """The CPU (and current CUDA device's) RNG state, to replay dropout exactly."""

    def __init__(self, cpu: Tensor, cuda: Tensor | None) -> None:
        self.cpu, self.cuda = cpu, cuda

    @classmethod
    def capture(cls, device: torch.device) -> _RngState:
        cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        return cls(torch.get_rng_state(), cuda)

    @contextmanager
    def restored(self) -> Iterator[None]:
        devices = [torch.cuda.current_device()] if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda)
            yield
