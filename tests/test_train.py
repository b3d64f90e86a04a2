"""Training runs on tiny models: InfoNCE overfits SICK triplets, exact resume, checkpoints that survive an
interruption, LoRA adapters, evaluation with best-checkpoint selection and early stopping, recipes through
the CLI, model merging, and bad input rejected before any step."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from transformers import TrainerCallback

import gpte.train.trainer as trainer_module
from gpte import Embedder
from gpte.cli import main
from gpte.data.training import read_training_data
from gpte.evaluate import load_task
from gpte.train.config import TrainingConfig
from gpte.train.losses import build_loss
from gpte.train.merging import merge_models
from gpte.train.trainer import last_complete_checkpoint, train


def _sick_triplets(shared_data: Path, path: Path, rows: int = 64) -> Path:
    """(anchor, entailed positive, non-entailed hard negative) from SICK-E train. SICK-E's label 0 joins
    neutral and contradiction, so the hard negative is a non-entailed sentence of the same premise. Rows
    whose texts recur in another row are skipped: a text equal to another row's query cannot be ranked
    below it."""
    pairs = [json.loads(line) for line in (shared_data / "pair_classification/sick-e/train.jsonl").open()]
    negative = {}
    for pair in pairs:
        if pair["label"] == 0:
            negative.setdefault(pair["sentence1"], pair["sentence2"])
    seen, triplets = set(), []
    for pair in pairs:
        texts = (pair["sentence1"], pair["sentence2"], negative.get(pair["sentence1"]))
        if pair["label"] == 1 and texts[2] and not seen & set(texts[:2]):
            seen.update(texts[:2])
            triplets.append(dict(zip(("anchor", "positive", "negative"), texts)))
    path.write_text("".join(json.dumps(t) + "\n" for t in triplets[:rows]), encoding="utf-8")
    return path


def _max_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_infonce_overfits_sick_triplets_to_recall_one(tiny_models, shared_data, tmp_path):
    model = Embedder.load(tiny_models["bert"], device="cpu")
    data = read_training_data(_sick_triplets(shared_data, tmp_path / "sick.jsonl"))
    config = TrainingConfig(
        epochs=40, batch_size=32, learning_rate=1e-3, warmup_ratio=0.0, logging_steps=10, save_steps=10_000
    )
    train(model, build_loss("infonce", model), [data], config, tmp_path / "run")
    logged = [
        float(row["value"]) for row in csv.DictReader((tmp_path / "run/logs.csv").open()) if row["name"] == "loss"
    ]
    assert logged[0] > 1.0 and logged[-1] < 0.05
    anchors = model.encode([row.texts[0] for row in data.rows])
    positives = model.encode([row.texts[1] for row in data.rows])
    recall_at_1 = (model.similarity(anchors, positives).argmax(axis=1) == np.arange(len(data))).mean()
    assert recall_at_1 == 1.0


class _Interrupt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def _run(folder: Path, output: Path, data, config: TrainingConfig, interrupt_at: int | None = None, monkeypatch=None):
    model = Embedder.load(folder, device="cpu")
    if interrupt_at is not None:
        original = trainer_module._callbacks
        monkeypatch.setattr(trainer_module, "_callbacks", lambda c, o: original(c, o) + [_Interrupt(interrupt_at)])
    try:
        train(model, build_loss("infonce", model), [data], config, output)
    except KeyboardInterrupt:
        monkeypatch.undo()
    return model


def test_resume_after_interruption_gives_identical_weights(tiny_models, shared_data, tmp_path, monkeypatch):
    data = read_training_data(shared_data / "sts/stsb-en/train.jsonl", columns=["sentence1", "sentence2"], limit=100)
    config = TrainingConfig(epochs=2, batch_size=16, save_steps=3)  # 7 batches per epoch: resume lands in epoch 2
    straight = _run(tiny_models["bert"], tmp_path / "a", data, config)
    _run(tiny_models["bert"], tmp_path / "b", data, config, interrupt_at=10, monkeypatch=monkeypatch)
    assert last_complete_checkpoint(tmp_path / "b/checkpoints").name == "checkpoint-9"
    resumed = _run(tiny_models["bert"], tmp_path / "b", data, config)
    assert _max_difference(straight, resumed) <= 1e-6


def test_half_written_checkpoint_is_skipped_and_the_last_complete_one_kept(tmp_path):
    for step, complete in ((3, True), (6, True), (9, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-6"
    assert last_complete_checkpoint(tmp_path / "missing") is None


def test_lora_adapter_is_saved_loadable_and_mergeable(tiny_models, shared_data, tmp_path):
    data = read_training_data(shared_data / "sts/stsb-en/train.jsonl", score_range=[0, 5], limit=64)
    model = Embedder.load(tiny_models["bert"], device="cpu")
    lora = {"r": 4, "alpha": 8, "target_modules": ["query", "value"]}
    config = TrainingConfig(epochs=1, batch_size=16, learning_rate=1e-2, lora=lora, save_steps=2)
    train(model, build_loss("cosent", model), [data], config, tmp_path / "run")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    texts = ["a man plays guitar", "rain in the city", "two dogs run"]
    trained = model.encode(texts)
    model.backbone.save(tmp_path / "adapter")
    assert (tmp_path / "adapter/adapter_config.json").is_file()
    reloaded = Embedder.load(tiny_models["bert"], device="cpu")
    assert not np.allclose(reloaded.encode(texts), trained, atol=1e-4)  # the adapter changed the vectors
    reloaded.backbone.load_adapter(tmp_path / "adapter")
    np.testing.assert_allclose(reloaded.encode(texts), trained, atol=1e-6)
    reloaded.backbone.merge_lora()
    assert not reloaded.backbone.has_lora
    np.testing.assert_allclose(reloaded.encode(texts), trained, atol=1e-5)


def test_evaluation_picks_the_best_checkpoint_and_stops_early(tiny_models, shared_data, tmp_path):
    data = read_training_data(shared_data / "sts/stsb-en/train.jsonl", score_range=[0, 5], limit=96)
    model = Embedder.load(tiny_models["bert"], device="cpu")
    task = load_task(shared_data / "sts/stsb-en")
    config = TrainingConfig(epochs=30, batch_size=16, learning_rate=5e-3, eval_steps=6, early_stopping_patience=1)
    result = train(model, build_loss("cosent", model), [data], config, tmp_path / "run", eval_tasks=[task])
    scores = [entry["eval_score"] for entry in result.eval_history]
    assert result.global_step < 30 * 6  # stopped early
    assert result.best_score == max(scores)
    best = Embedder.load(result.best_checkpoint, device="cpu")
    assert _max_difference(model, best) == 0.0  # the best checkpoint's weights are loaded at the end
    assert (tmp_path / "run/logs.csv").read_text().count("eval_stsb-en") == len(scores)


def test_recipe_runs_stages_through_the_cli_and_keeps_finished_stages(tiny_models, shared_data, tmp_path, capsys):
    recipe = {
        "model": str(tiny_models["bert"]),
        "output": "runs",
        "stages": [
            {
                "name": "pairs",
                "data": [
                    {
                        "path": str(shared_data / "sts/stsb-en/train.jsonl"),
                        "columns": ["sentence1", "sentence2"],
                        "limit": 48,
                    }
                ],
                "loss": {"name": "infonce", "temperature": 0.05},
                "training": {"epochs": 1, "batch_size": 16},
            },
            {
                "name": "graded",
                "data": [{"path": str(shared_data / "sts/stsb-en/train.jsonl"), "score_range": [0, 5], "limit": 48}],
                "loss": {"name": "cosent", "matryoshka": {"dims": [32, 16, 8]}},
                "training": {"epochs": 1, "batch_size": 16},
            },
        ],
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", str(path)]) == 0
    first, second = tmp_path / "runs/pairs/model", tmp_path / "runs/graded/model"
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("model:")]
    assert printed == [f"model: {first}", f"model: {second}"]
    card = (second / "README.md").read_text()
    assert f"Made from `{first}`" in card and "matryoshka" in card and "48 rows" in card
    from sentence_transformers import SentenceTransformer

    texts = ["a cat", "the weather is fine"]
    np.testing.assert_allclose(
        SentenceTransformer(str(second), device="cpu").encode(texts), Embedder.load(second).encode(texts), atol=1e-5
    )
    stamp = (second / "model.safetensors").stat().st_mtime_ns
    assert main(["train", str(path)]) == 0  # finished stages are kept
    assert (second / "model.safetensors").stat().st_mtime_ns == stamp
    (tmp_path / "runs/graded/checkpoints/checkpoint-999").mkdir()  # a leftover of an older run
    assert main(["train", str(path), "--restart"]) == 0  # every stage trained again, old checkpoints gone
    assert (second / "model.safetensors").stat().st_mtime_ns != stamp
    assert not (tmp_path / "runs/graded/checkpoints/checkpoint-999").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"loss": {"name": "cosent"}}, r"loss 'cosent' needs a score for each row; the data has no score column"),
        ({"loss": {"name": "infonse"}}, r"unknown loss 'infonse'; choose one of: infonce"),
        ({"training": {"batch_size": 64}}, r"batch size 64 is larger than the data \(48 rows\)"),
        (
            {"training": {"lora": {"target_modules": ["qkv"]}}},
            r"LoRA target module\(s\) qkv not found; the model's linear layers: dense, key",
        ),
        ({"training": {"epoch": 1}}, r"unknown setting\(s\) epoch; known: epochs"),
        ({"data": [{"path": "missing.jsonl"}]}, r"missing.jsonl does not exist"),
    ],
)
def test_bad_recipes_fail_before_any_training(tiny_models, tmp_path, change, message):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"anchor": f"text {i}", "positive": f"other {i}"}) + "\n" for i in range(48)))
    stage = {"name": "s", "data": [{"path": str(pairs)}], "loss": {"name": "infonce"}, "training": {"batch_size": 16}}
    path = tmp_path / "recipe.yaml"
    path.write_text(
        yaml.safe_dump({"model": str(tiny_models["bert"]), "output": "runs", "stages": [{**stage, **change}]})
    )
    from gpte.train.recipe import load_recipe, run_recipe

    with pytest.raises((ValueError, FileNotFoundError), match=message):
        run_recipe(load_recipe(path))
    assert not (tmp_path / "runs").exists()


def test_empty_data_and_batch_larger_than_data_are_refused_by_train(tiny_models, tmp_path):
    from gpte.data.training import TrainingData, TrainingExample

    model = Embedder.load(tiny_models["bert"], device="cpu")
    with pytest.raises(ValueError, match="mem: the training data is empty"):
        train(model, build_loss("infonce", model), [TrainingData("mem", ["a", "b"], [])], TrainingConfig(), tmp_path)
    tiny = TrainingData("mem", ["a", "b"], [TrainingExample(("x", "y"))] * 4)
    with pytest.raises(ValueError, match="mem: batch size 32 is larger than the data \\(4 rows\\)"):
        train(model, build_loss("infonce", model), [tiny], TrainingConfig(), tmp_path)


def test_two_d_matryoshka_trains_and_last_layer_vectors_equal_forward(tiny_models, shared_data, tmp_path):
    model = Embedder.load(tiny_models["bert"], device="cpu")
    from gpte.train.collator import TrainingCollator

    batch = TrainingCollator(model)(read_training_data(shared_data / "sts/stsb-en/train.jsonl", limit=4).rows)
    model.eval()
    torch.testing.assert_close(model.forward_layers(batch.features[0], [2])[0], model(batch.features[0]))
    data = read_training_data(shared_data / "sts/stsb-en/train.jsonl", score_range=[0, 5], limit=32)
    loss = build_loss({"name": "cosent", "matryoshka_2d": {"dims": [32, 8]}}, model)
    result = train(model, loss, [data], TrainingConfig(epochs=1, batch_size=16), tmp_path / "run")
    assert result.global_step == 2 and np.isfinite(result.training_loss)


def test_merge_methods(tiny_models, tmp_path):
    a = Embedder.load(tiny_models["bert"], device="cpu")
    b = Embedder.load(tiny_models["bert"], device="cpu")
    with torch.no_grad():
        for parameter in b.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    texts = ["a cat sat", "rain"]
    assert _max_difference(merge_models([tmp_path / "a", tmp_path / "b"], "slerp", t=0.0), a) <= 1e-6
    assert _max_difference(merge_models([tmp_path / "a", tmp_path / "b"], "slerp", t=1.0), b) <= 1e-6
    average = merge_models([tmp_path / "a", tmp_path / "b"], "average", weights=[3, 1])
    expected = {
        k: (3 * a.state_dict()[k] + b.state_dict()[k]) / 4
        for k in a.state_dict()
        if a.state_dict()[k].is_floating_point()
    }
    assert max((average.state_dict()[k] - v).abs().max().item() for k, v in expected.items()) <= 1e-6
    arithmetic = merge_models([tmp_path / "b"], "task_arithmetic", base=tmp_path / "a", scale=1.0)
    np.testing.assert_allclose(arithmetic.encode(texts), b.encode(texts), atol=1e-5)
    assert (
        main(
            [
                "merge",
                str(tmp_path / "a"),
                str(tmp_path / "b"),
                "-o",
                str(tmp_path / "m"),
                "--method",
                "slerp",
                "--t",
                "0.3",
            ]
        )
        == 0
    )
    assert (tmp_path / "m/modules.json").is_file()
    with pytest.raises(ValueError, match="unknown merge method 'ties'; choose one of: average, slerp, task_arithmetic"):
        merge_models([tmp_path / "a", tmp_path / "b"], "ties")
    with pytest.raises(ValueError, match="slerp merges exactly 2 models, got 3"):
        merge_models([tmp_path / "a"] * 3, "slerp")


def test_gradient_checkpointing_trains_the_same_weights(tiny_models, shared_data, tmp_path):
    data = read_training_data(shared_data / "sts/stsb-en/train.jsonl", score_range=[0, 5], limit=32)
    models = []
    for checkpointing in (False, True):
        model = Embedder.load(tiny_models["bert"], device="cpu")
        config = TrainingConfig(epochs=1, batch_size=16, learning_rate=1e-3, gradient_checkpointing=checkpointing)
        train(model, build_loss("cosent", model), [data], config, tmp_path / str(checkpointing))
        models.append(model)
    assert models[1].backbone.model.is_activation_checkpointing
    assert _max_difference(*models) <= 1e-6


def test_torchrun_two_processes_train_a_recipe_with_shared_negatives(tiny_models, tmp_path):
    """DDP through torchrun (gloo on CPU): each process takes its own batches of 8, the loss gathers the
    other process's embeddings, rank 0 writes the model."""
    import subprocess
    import sys

    rows = [{"anchor": f"sentence {i} on topic {i % 7}", "positive": f"text {i} about {i % 5}"} for i in range(64)]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {
        "model": str(tiny_models["bert"]),
        "output": "runs",
        "stages": [
            {
                "name": "s",
                "data": [{"path": "pairs.jsonl"}],
                "loss": {"name": "infonce"},
                "training": {"batch_size": 8, "save_steps": 4},
            }
        ],
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "-m",
        "gpte.cli",
        "train",
        "recipe.yaml",
    ]
    finished = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    state = json.loads((tmp_path / "runs/s/checkpoints/checkpoint-4/trainer_state.json").read_text())
    assert state["global_step"] == 4  # 64 rows / (2 processes x 8)
    assert (tmp_path / "runs/s/model/README.md").is_file()
