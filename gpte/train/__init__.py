"""Contrastive training of any backbone: losses, samplers, the trainer, recipes and merging.

from gpte.train import TrainingConfig, build_loss, read_training_data, train
train(model, build_loss("cosent", model), [read_training_data("sts.jsonl", score_range=[0, 5])],
      TrainingConfig(epochs=1), "runs/sts")
"""

from gpte.errors import extra_needed, require_extra

require_extra("train", "accelerate")  # transformers' Trainer cannot start without it
with extra_needed("train"):
    from gpte.data.training import TrainingData, TrainingExample, read_training_data
    from gpte.train.config import TrainingConfig
    from gpte.train.losses import LOSSES, build_loss
    from gpte.train.merging import merge_models
    from gpte.train.recipe import load_recipe, run_recipe
    from gpte.train.trainer import TrainResult, train


__all__ = [
    "LOSSES",
    "TrainResult",
    "TrainingConfig",
    "TrainingData",
    "TrainingExample",
    "build_loss",
    "load_recipe",
    "merge_models",
    "read_training_data",
    "run_recipe",
    "train",
]
