"""Train an Embedder, a reranker (``CrossEncoder``), a sparse model (``SparseEncoder``) or a multi-vector model
(``MultiVectorEncoder``) with a loss on training data, built on the Hugging Face ``Trainer``.

The Trainer supplies the loop: AdamW and the learning-rate schedule, gradient accumulation, mixed
precision, DDP under ``torchrun``/``accelerate launch``, checkpoints with optimizer/scheduler/RNG state
and exact resume (it skips the batches already seen), TensorBoard logging and the progress bar. gpte adds
what an embedding model needs: the batch sampler (no duplicate texts, one source per batch), the
collator (prompts, instructions; a reranker's losses tokenize their pairs themselves), the losses, checkpoints in the sentence-transformers layout,
evaluation on ``gpte.evaluate`` tasks with best-checkpoint selection and early stopping, and a CSV log.

A checkpoint counts as complete once its ``trainer_state.json`` exists (the Trainer writes it last);
resuming uses the newest complete one, so a run interrupted while saving resumes from the one before, and says
which one ("resuming from OUTPUT/checkpoints/checkpoint-40 (step 40 of 100)"). A run holds the write lock of its
output folder (``gpte.locking``): a second run with the same output fails at once, naming the first.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch.utils.data import ConcatDataset, DataLoader
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.integrations import is_tensorboard_available

from gpte.data.training import TrainingData
from gpte.evaluate import Task, evaluate
from gpte.locking import exclusive_output
from gpte.models.cross_encoder import CrossEncoder
from gpte.models.embedder import Embedder, load_pooler_weights
from gpte.models.multivector import MultiVectorEncoder
from gpte.models.sparse import SparseEncoder
from gpte.train.collator import MultiVectorCollator, PairCollator, RoleCollator, SparseCollator, TrainingCollator
from gpte.train.config import TrainingConfig
from gpte.train.losses import EmbeddingLoss
from gpte.train.losses.reranker import PairScoreLoss
from gpte.train.samplers import MultiDatasetBatchSampler, NoDuplicatesBatchSampler

logger = logging.getLogger(__name__)

TrainableModel = Embedder | CrossEncoder | SparseEncoder | MultiVectorEncoder
# model kinds trained by full fine-tuning only (no LoRA, no attention-dropout override), named for errors
FULL_FINE_TUNING = {
    CrossEncoder: "a cross-encoder",
    SparseEncoder: "a sparse model",
    MultiVectorEncoder: "a multi-vector model",
}
Loss = EmbeddingLoss | PairScoreLoss

CHECKPOINT_PREFIX = "checkpoint-"
COMPLETE_MARKER = "trainer_state.json"


@dataclass
class TrainResult:
    """What a training run did: steps, final training loss, best evaluation score and where it was, and the
    checkpoint it resumed from (None for a run from the start)."""

    global_step: int
    training_loss: float
    best_score: float | None
    best_checkpoint: str | None
    eval_history: list[dict[str, float]]
    resumed_from: str | None = None


def train(
    model: TrainableModel,
    loss: Loss,
    data: list[TrainingData],
    config: TrainingConfig,
    output: str | Path,
    eval_tasks: list[Task] | None = None,
    resume: bool = True,
) -> TrainResult:
    """Train ``model`` in place with ``loss`` on ``data``; checkpoints and logs go under ``output``.

    Args:
        model: the embedder (LoRA adapters are added here when ``config.lora`` is set) or the cross-encoder.
        loss: built for ``model`` (``gpte.train.losses.build_loss``; a reranker's: ``build_reranker_loss``).
        data: one or more sources; each batch comes from one source.
        config: hyper-parameters and run settings.
        output: folder for ``checkpoints/``, ``logs.csv`` and ``tensorboard/``.
        eval_tasks: tasks scored every ``eval_steps``; their mean main score picks the best checkpoint.
        resume: continue from the newest complete checkpoint under ``output`` if there is one (logged: which
            checkpoint, at which step).

    Raises:
        ValueError: data that does not fit the loss, an empty source, or a batch larger than a source --
            all before the first step.
        OutputLockedError: another process is training into ``output`` (before anything is changed or written).
    """
    check_training_data(loss, data, config)
    if config.early_stopping_patience is not None and not eval_tasks:
        raise ValueError("early_stopping_patience needs eval tasks (training: eval_tasks) to measure improvement")
    output = Path(output)
    with output_lock(output):
        return _train(model, loss, data, config, output, eval_tasks, resume)


def output_lock(output: Path) -> contextlib.AbstractContextManager[None]:
    """The write lock of a training ``output`` folder, held by the main process of a run (under DDP its other
    processes write nothing there and must not lock their own run out)."""
    return exclusive_output(output, "training output") if is_main_process() else contextlib.nullcontext()


def is_main_process() -> bool:
    """Whether this is the main process of a run: rank 0 of a DDP run (``RANK`` as torchrun and accelerate set it
    before the process group exists), or a run that is not distributed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


def _train(
    model: TrainableModel,
    loss: Loss,
    data: list[TrainingData],
    config: TrainingConfig,
    output: Path,
    eval_tasks: list[Task] | None,
    resume: bool,
) -> TrainResult:
    if config.max_seq_length:
        model.max_seq_length = config.max_seq_length
    _prepare_model(model, config)
    trainer = EmbeddingTrainer(
        model=model,
        args=_arguments(config, output, model.device, bool(eval_tasks)),
        train_dataset=ConcatDataset(data),
        eval_dataset=eval_tasks or None,
        data_collator=_collator(model),
        callbacks=_callbacks(config, output),
        loss=loss,
        sources=data,
        config=config,
    )
    checkpoint = last_complete_checkpoint(output / "checkpoints") if resume else None
    if checkpoint is not None and trainer.is_world_process_zero():
        logger.info(f"resuming from {checkpoint} ({_progress(checkpoint)})")
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    model.eval()  # the Trainer leaves train mode (dropout) on; the model is now for inference
    history = [entry for entry in trainer.state.log_history if "eval_score" in entry]
    return TrainResult(
        trainer.state.global_step,
        float(result.training_loss),
        trainer.state.best_metric,
        trainer.state.best_model_checkpoint,
        history,
        str(checkpoint) if checkpoint else None,
    )


def _progress(checkpoint: Path) -> str:
    """ "step S of N" for a complete checkpoint (its trainer state's step and planned steps; the step in its name
    when the state does not say)."""
    try:
        state = json.loads((checkpoint / COMPLETE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    state = state if isinstance(state, dict) else {}
    step = state.get("global_step", int(checkpoint.name[len(CHECKPOINT_PREFIX) :]))
    total = state.get("max_steps")
    return f"step {step} of {total}" if total else f"step {step}"


def _collator(model: TrainableModel) -> TrainingCollator | PairCollator | RoleCollator:
    if isinstance(model, CrossEncoder):
        return PairCollator()
    if isinstance(model, MultiVectorEncoder):
        return MultiVectorCollator(model)
    return SparseCollator(model) if isinstance(model, SparseEncoder) else TrainingCollator(model)


def _prepare_model(model: TrainableModel, config: TrainingConfig) -> None:
    """Apply the settings that change the model for training: LoRA adapters, attention dropout, activation
    checkpointing (a cross-encoder, a sparse or a multi-vector model takes the last only).

    Raises:
        ValueError: LoRA or attention dropout asked of a cross-encoder, a sparse or a multi-vector model.
    """
    kind = next((name for cls, name in FULL_FINE_TUNING.items() if isinstance(model, cls)), None)
    if kind is not None:
        unsupported = [name for name in ("lora", "attention_dropout") if getattr(config, name) is not None]
        if unsupported:
            raise ValueError(f"training {kind} does not support {', '.join(unsupported)} yet")
        if config.gradient_checkpointing:
            _enable_checkpointing(model)
        return
    if config.lora is not None:
        model.backbone.add_lora(**config.lora)
    if config.attention_dropout is not None:
        model.backbone.set_attention_dropout(config.attention_dropout)
    if config.gradient_checkpointing:
        _enable_checkpointing(model)


def _enable_checkpointing(model: TrainableModel) -> None:
    """Activation checkpointing: the model's ``Backbone``'s (non-reentrant) where it has one (an embedder, a
    multi-vector model), else the first Hugging Face submodule's."""
    backbone = getattr(model, "backbone", None)
    if backbone is not None:
        backbone.enable_activation_checkpointing()
        return
    for module in model.modules():
        if hasattr(module, "gradient_checkpointing_enable") and module is not model:
            module.gradient_checkpointing_enable()
            break


class EmbeddingTrainer(Trainer):
    """``transformers.Trainer`` for a model and its loss (see the module docstring)."""

    def __init__(
        self, *args: Any, loss: Loss, sources: list[TrainingData], config: TrainingConfig, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.loss = loss
        self.sources = sources
        self.config = config

    # ----------------------------------------------------------------- data

    def get_train_dataloader(self) -> DataLoader:
        offsets, samplers = 0, []
        for source in self.sources:
            samplers.append(self._source_sampler(source, offsets))
            offsets += len(source)
        batch_sampler = (
            samplers[0]
            if len(samplers) == 1
            else MultiDatasetBatchSampler(samplers, self.config.sampling, self.args.seed)
        )
        loader = DataLoader(
            self.train_dataset,
            batch_sampler=batch_sampler,
            collate_fn=self._collate,
            num_workers=self.args.dataloader_num_workers,
        )
        return self.accelerator.prepare(loader)

    def _source_sampler(self, source: TrainingData, offset: int) -> NoDuplicatesBatchSampler:
        drop_last = self.args.world_size > 1  # equal batches on every process (negatives are gathered)
        if self.config.no_duplicates:
            return NoDuplicatesBatchSampler(source, self.config.batch_size, drop_last, self.args.seed, offset)
        return _ShuffledBatchSampler(source, self.config.batch_size, drop_last, self.args.seed, offset)

    def _collate(self, examples: list) -> dict[str, Any]:
        return {"batch": self.data_collator(examples)}

    # ----------------------------------------------------------------- loss

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ):
        batch = inputs["batch"]
        batch.features = [features.to(self.args.device) for features in batch.features]
        if batch.scores is not None:
            batch.scores = batch.scores.to(self.args.device)
        _point_loss_at(self.loss, model)
        _report_progress(self.loss, self.state.global_step, self.state.max_steps)
        value = self.loss(batch)
        return (value, {}) if return_outputs else value

    # ----------------------------------------------------------------- evaluation

    def evaluate(
        self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        """Score the model on the eval tasks (main scores x 100) and their mean as ``eval_score``."""
        tasks = eval_dataset or self.eval_dataset
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        run = evaluate(model, list(tasks), batch_size=self.args.per_device_eval_batch_size)
        model.train(was_training)
        if run.failures:
            raise RuntimeError(f"evaluation failed: {run.failures}")
        metrics = {
            f"{metric_key_prefix}_{name}": 100 * result["main_score_value"] for name, result in run.results.items()
        }
        metrics[f"{metric_key_prefix}_score"] = sum(metrics.values()) / len(metrics)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    # ----------------------------------------------------------------- checkpoints

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Checkpoints hold the model in the sentence-transformers layout (LoRA: the adapter)."""
        if self.args.should_save:
            model = self.accelerator.unwrap_model(self.model)
            model.save(output_dir or self.args.output_dir, overwrite=True)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: torch.nn.Module | None = None) -> None:
        load_checkpoint_weights(self.accelerator.unwrap_model(model or self.model), Path(resume_from_checkpoint))

    def _load_best_model(self) -> None:
        load_checkpoint_weights(self.accelerator.unwrap_model(self.model), Path(self.state.best_model_checkpoint))


class _ShuffledBatchSampler(NoDuplicatesBatchSampler):
    """Plain shuffled batches (duplicates allowed), seeded like the no-duplicates sampler."""

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = [i + self.offset for i in torch.randperm(len(self.data), generator=generator).tolist()]
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            if len(rows) == self.batch_size or not self.drop_last:
                yield rows


def load_checkpoint_weights(model: TrainableModel, checkpoint: Path) -> None:
    """Load the weights saved in ``checkpoint`` (a full model, or a LoRA adapter) into ``model``."""
    if isinstance(model, Embedder) and model.backbone.has_lora:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model.backbone.model, load_file(checkpoint / "adapter_model.safetensors"))
        load_pooler_weights(model.pooler, checkpoint)
        return
    saved = type(model).load(checkpoint, device=model.device)
    model.load_state_dict(saved.state_dict())


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest ``checkpoint-N`` under ``folder`` whose trainer state was written; None if none is."""
    if not folder.is_dir():
        return None
    complete = [
        p
        for p in folder.glob(f"{CHECKPOINT_PREFIX}*")
        if (p / COMPLETE_MARKER).is_file() and p.name[len(CHECKPOINT_PREFIX) :].isdigit()
    ]
    return max(complete, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]), default=None)


def _point_loss_at(loss: torch.nn.Module, model: torch.nn.Module) -> None:
    """Make the loss (and wrapped losses) call ``model`` -- the DDP-wrapped model when distributed, so that
    gradients synchronise."""
    for module in loss.modules():
        if isinstance(module, (EmbeddingLoss, PairScoreLoss)) and module.model is not model:
            module.model = model


def _report_progress(loss: torch.nn.Module, step: int, total_steps: int) -> None:
    """Tell losses that schedule a weight by training progress (SPLADE's regulariser warm-up) the step about to run."""
    for module in loss.modules():
        if callable(getattr(module, "set_progress", None)):
            module.set_progress(step, total_steps)


def check_training_data(loss: Loss, data: list[TrainingData], config: TrainingConfig) -> None:
    """Raise ValueError (naming the source) for no data, an empty source, data that does not fit the
    loss's columns/scores, or a batch larger than a source."""
    if not data:
        raise ValueError("no training data given")
    for source in data:
        if not len(source):
            raise ValueError(f"{source.name}: the training data is empty")
        loss.check_columns(len(source.columns), source.has_scores, source.name)
        if config.batch_size > len(source):
            raise ValueError(
                f"{source.name}: batch size {config.batch_size} is larger than the data ({len(source)} rows)"
            )


def _arguments(config: TrainingConfig, output: Path, device: torch.device, evaluating: bool) -> TrainingArguments:
    precision = config.precision(device)
    steps = config.checkpoint_steps
    return TrainingArguments(
        output_dir=str(output / "checkpoints"),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=float(config.warmup_ratio),
        lr_scheduler_type=config.lr_scheduler,
        seed=config.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device.type == "cpu",
        save_strategy="steps",
        save_steps=steps,
        save_total_limit=config.save_total_limit,
        eval_strategy="steps" if evaluating else "no",
        eval_steps=steps if evaluating else None,
        load_best_model_at_end=evaluating,
        metric_for_best_model="eval_score" if evaluating else None,
        greater_is_better=True,
        logging_steps=config.logging_steps,
        report_to=["tensorboard"] if is_tensorboard_available() else [],
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )


def _callbacks(config: TrainingConfig, output: Path) -> list[TrainerCallback]:
    callbacks: list[TrainerCallback] = [CsvLogCallback(output / "logs.csv")]
    if config.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    return callbacks


class CsvLogCallback(TrainerCallback):
    """Appends every logged value as a ``step,epoch,name,value`` row to a CSV file (main process only)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(
        self, args: TrainingArguments, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["step", "epoch", "name", "value"])
            for name, value in logs.items():
                if isinstance(value, (int, float)):
                    writer.writerow([state.global_step, state.epoch, name, value])
