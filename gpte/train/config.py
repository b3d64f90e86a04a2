"""Training settings of one stage (a recipe's ``training`` section), checked before anything runs."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
SAMPLING = ("proportional", "round_robin")


@dataclass
class TrainingConfig:
    """Hyper-parameters and run settings.

    Attributes:
        epochs: passes over the data (fractions allowed); ``max_steps`` > 0 overrides it.
        max_steps: optimizer steps to run in all; -1 (the default) runs ``epochs`` instead.
        batch_size: rows per batch (per process under DDP).
        learning_rate, weight_decay, warmup_ratio, lr_scheduler: AdamW and its schedule (transformers' names).
        gradient_accumulation: batches per optimizer step.
        gradient_checkpointing: recompute activations in backward (less memory, ~30% slower).
        mixed_precision: auto (bf16 on CUDA where supported, else fp16 on CUDA, float32 on CPU), no, bf16, fp16.
        seed: seeds weights of new heads, dropout and the batch order.
        no_duplicates: batches never hold a text twice.
        sampling: how several data sources mix (one source per batch).
        save_steps: checkpoint every N steps (default: every ``eval_steps``, else every 500).
        save_total_limit: checkpoints kept.
        logging_steps: loss/learning-rate log interval.
        eval_tasks: gpte.evaluate task folders (in a recipe: relative to the recipe file) scored during training.
        eval_steps: evaluation (and checkpoint) interval in steps (default: ``save_steps``, else 500).
        early_stopping_patience: stop after this many evaluations without improvement (needs eval_tasks).
        lora: LoRA options (``r``, ``alpha``, ``dropout``, ``target_modules``) or None for full fine-tuning.
        max_seq_length: override the model's token limit for training.
        attention_dropout: dropout on attention weights while training (SimCSE's noise for LLMs, whose
            pretrained default is 0; LLM2Vec uses 0.3); None keeps the model's.
    """

    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 32
    learning_rate: float = 2e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    lr_scheduler: str = "linear"
    gradient_accumulation: int = 1
    gradient_checkpointing: bool = False
    mixed_precision: str = "auto"
    seed: int = 42
    no_duplicates: bool = True
    sampling: str = "proportional"
    save_steps: int | None = None
    save_total_limit: int = 2
    logging_steps: int = 10
    eval_tasks: list[str] = field(default_factory=list)
    eval_steps: int | None = None
    early_stopping_patience: int | None = None
    lora: dict[str, Any] | None = None
    max_seq_length: int | None = None
    attention_dropout: float | None = None

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None, where: str = "training") -> TrainingConfig:
        """Build from a recipe mapping. Raises ValueError for unknown keys (the known ones listed) or bad values."""
        if values is not None and not isinstance(values, dict):
            raise ValueError(f"{where}: expected a mapping of settings, got {values!r:.80}")
        values = dict(values or {})
        known = [f.name for f in fields(cls)]
        unknown = sorted({str(name) for name in values} - set(known))
        if unknown:
            raise ValueError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
        config = cls(**values)
        config.check(where)
        return config

    def check(self, where: str = "training") -> None:
        for name in ("batch_size", "gradient_accumulation", "save_total_limit", "logging_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{where}: {name} must be a positive integer, got {value!r}")
        if not self.epochs > 0 and self.max_steps <= 0:
            raise ValueError(f"{where}: epochs must be positive (or set max_steps), got {self.epochs!r}")
        if not isinstance(self.learning_rate, (int, float)) or self.learning_rate <= 0:
            raise ValueError(f"{where}: learning_rate must be a positive number, got {self.learning_rate!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(
                f"{where}: unknown mixed_precision {self.mixed_precision!r}; choose one of: {', '.join(MIXED_PRECISION)}"
            )
        if self.sampling not in SAMPLING:
            raise ValueError(f"{where}: unknown sampling {self.sampling!r}; choose one of: {', '.join(SAMPLING)}")
        if self.lora is not None:
            allowed = {"r", "alpha", "dropout", "target_modules"}
            if not isinstance(self.lora, dict) or set(self.lora) - allowed:
                raise ValueError(
                    f"{where}: lora takes a mapping with keys {', '.join(sorted(allowed))}, got {self.lora!r}"
                )

    def precision(self, device: torch.device) -> str:
        """The mixed precision actually used on ``device`` ("no", "bf16" or "fp16")."""
        if self.mixed_precision != "auto":
            return self.mixed_precision
        if device.type != "cuda":
            return "no"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"

    @property
    def checkpoint_steps(self) -> int:
        return self.save_steps or self.eval_steps or 500
