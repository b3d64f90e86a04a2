"""CSR training loss (Wen et al. 2025, "Beyond Matryoshka: revisiting sparse coding for adaptive
representation"): a k-sparse autoencoder on a dense embedder, trained to reconstruct the dense vector and
to rank with its sparse codes.

Per column, with x the backbone's dense vector, x_k / x_4k the decodings of the top-k / top-4k latents,
e the residual x - (x_k - b_pre) (detached) and e_aux the decoding of the top-k_aux dead latents,

    L_rec = mean_c MSE(x, x_k) + mean_c MSE(x, x_4k) / 8 + beta * mean_c NMSE(e_aux, e)
    L     = L_rec + gamma * L_rank(top-k codes)

with NMSE the MSE divided by the MSE of e to its batch mean (1 for a constant batch) and L_rank infonce
(dot, temperature 1) by default. Equals sentence-transformers' CSRLoss (summed terms).

Model contract: the model has ``autoencoder_outputs(features) -> dict`` returning, with gradients, the
tensors sentence-transformers' SparseAutoEncoder puts in its features dict (``CSR_OUTPUTS``):
``sentence_embedding`` (rows, hidden) the top-k codes, ``sentence_embedding_backbone`` (rows, dim) x,
``decoded_embedding_k`` and ``decoded_embedding_4k`` (rows, dim), ``decoded_embedding_aux`` (rows, dim)
or None (no auxiliary latents), ``decoded_embedding_k_pre_bias`` (rows, dim) x_k minus the decoder bias.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpte.models.sparse.csr import OUTPUT_KEYS
from gpte.train.losses.base import EmbeddingLoss, TrainingBatch
from gpte.train.losses.sparse.inner import build_inner

CSR_OUTPUTS = OUTPUT_KEYS  # what a CSR model's autoencoder_outputs(features) holds


def normalized_mse(reconstruction: Tensor, target: Tensor) -> Tensor:
    """MSE(reconstruction, target) / MSE(target, its batch mean); the divisor is 1 for a constant batch."""
    variance = F.mse_loss(target.mean(dim=0, keepdim=True).expand_as(target), target)
    variance = torch.where((variance == 0) | (target == target[:1]).all(), 1.0, variance)
    return F.mse_loss(reconstruction, target) / variance


class CSRReconstructionLoss(nn.Module):
    """L_rec of the module docstring over the columns' autoencoder outputs; ``beta`` weighs the auxiliary term."""

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        _check_nonnegative("beta", beta)
        self.beta = float(beta)

    def forward(self, outputs: list[dict[str, Tensor | None]]) -> Tensor:
        return sum(self.terms(outputs).values())

    def terms(self, outputs: list[dict[str, Tensor | None]]) -> dict[str, Tensor]:
        """reconstruction_loss_k, _4k (already / 8) and _aux (already x beta), each averaged over columns."""
        k = four_k = aux = 0.0
        for column in outputs:
            x = column["sentence_embedding_backbone"]
            k = k + F.mse_loss(x, column["decoded_embedding_k"])
            four_k = four_k + F.mse_loss(x, column["decoded_embedding_4k"])
            if column["decoded_embedding_aux"] is not None:
                residual = x - column["decoded_embedding_k_pre_bias"].detach()
                aux = aux + normalized_mse(column["decoded_embedding_aux"], residual)
        n = len(outputs)
        aux = aux if isinstance(aux, Tensor) else torch.zeros_like(k)
        return {
            "reconstruction_loss_k": k / n,
            "reconstruction_loss_4k": four_k / n / 8.0,
            "reconstruction_loss_aux": self.beta * (aux / n),
        }


class CSRLoss(EmbeddingLoss):
    """Autoencoder reconstruction plus ``gamma`` x a ranking loss on the sparse codes (module docstring).

    Args:
        model: a CSR model with ``autoencoder_outputs(features)`` (module docstring).
        loss: the ranking loss on the codes, as for ``SpladeLoss`` (default infonce, dot, temperature 1.0).
        beta: weight of the auxiliary (dead latents) reconstruction term.
        gamma: weight of the ranking loss.

    Reads the model's intermediate outputs, so it cannot be wrapped (matryoshka, gradcache).
    """

    name = "csr"
    needs_model_outputs: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        loss: EmbeddingLoss | str | dict[str, Any] = "infonce",
        beta: float = 0.1,
        gamma: float = 1.0,
    ) -> None:
        super().__init__(model)
        if not callable(getattr(model, "autoencoder_outputs", None)):
            raise ValueError(
                f"csr: the model ({type(model).__name__}) has no autoencoder_outputs(features); "
                "CSR trains a sparse autoencoder model"
            )
        _check_nonnegative("gamma", gamma)
        self.reconstruction = CSRReconstructionLoss(beta)
        self.base = build_inner(loss, model, "csr")
        self.beta, self.gamma = float(beta), float(gamma)
        self.name = f"csr({self.base.name})"
        self.min_columns, self.max_columns, self.needs_scores = (
            self.base.min_columns,
            self.base.max_columns,
            self.base.needs_scores,
        )

    def prepare(self, batch: TrainingBatch) -> TrainingBatch:
        return self.base.prepare(batch)

    def forward(self, batch: TrainingBatch) -> Tensor:
        batch = self.prepare(batch)
        return self.compute_outputs([self._outputs(features) for features in batch.features], batch)

    def compute_outputs(self, outputs: list[dict[str, Tensor | None]], batch: TrainingBatch) -> Tensor:
        return sum(self.terms(outputs, batch).values())

    def terms(self, outputs: list[dict[str, Tensor | None]], batch: TrainingBatch) -> dict[str, Tensor]:
        """sentence-transformers' parts: reconstruction_loss_k, _4k, _aux and base_loss (x gamma)."""
        terms = self.reconstruction.terms(outputs)
        codes = [column["sentence_embedding"] for column in outputs]
        terms["base_loss"] = self.base.compute(codes, batch) * self.gamma
        return terms

    def compute(self, embeddings: list[Tensor], batch: TrainingBatch) -> Tensor:
        raise ValueError(f"{self.name}: needs the autoencoder's outputs, not embeddings; it cannot be wrapped")

    def _outputs(self, features: Any) -> dict[str, Tensor | None]:
        outputs = self.model.autoencoder_outputs(features)
        missing = [key for key in CSR_OUTPUTS if key not in outputs]
        if missing:
            raise ValueError(f"{self.name}: model.autoencoder_outputs lacks {', '.join(missing)}")
        return outputs


def _check_nonnegative(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
