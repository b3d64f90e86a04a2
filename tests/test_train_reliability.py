"""Training that fails clearly and never corrupts its output: a malformed or mis-shaped recipe is one
``gpte: error:`` line naming the file, line and column; a resumed run says which checkpoint it resumed from;
two runs with the same output folder do not both write it."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from conftest import lock_held_elsewhere
from transformers import TrainerCallback

import gpte.train.trainer as trainer_module
from gpte import Embedder
from gpte.cli import main
from gpte.data.training import read_training_data
from gpte.locking import OutputLockedError
from gpte.train.config import TrainingConfig
from gpte.train.losses import build_loss
from gpte.train.recipe import load_recipe
from gpte.train.trainer import last_complete_checkpoint, train


def _error_lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


# ----------------------------------------------------------------- malformed recipes


@pytest.mark.parametrize(
    "text, line, column, problem",
    [
        (  # an unclosed flow sequence
            "model: x\nstages:\n  - name: a\n    data: [{path: p.jsonl}\n    loss: infonce\n",
            5,
            5,
            "expected ',' or ']'",
        ),
        ("model: x\n\tstages: []\n", 2, 1, "found character '\\t' that cannot start any token"),
        ("model: !!python/object:os.system x\n", 1, 8, "could not determine a constructor"),
        ('model: "a\x01"\nstages: []\n', 1, 10, "unacceptable character #x0001"),
        ("stages: []\nmodel: x\nstages: []\n", 3, 1, "found duplicate key 'stages'"),
        ("stages:\n  - name: a\n    loss: infonce\n    loss: cosent\n", 4, 5, "found duplicate key 'loss'"),
    ],
)
def test_malformed_yaml_is_one_error_line_with_file_line_and_column(tmp_path, capsys, text, line, column, problem):
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as raised:
        load_recipe(path)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: line {line}, column {column}: invalid YAML: ")
    assert problem in message
    assert main(["train", str(path)]) == 1
    assert _error_lines(capsys) == [f"gpte: error: {message}"]  # one line, no traceback


def test_yaml_merge_keys_may_override_merged_values(tmp_path):
    """``<<: *anchor`` then an explicit key is an override, not a duplicate."""
    text = (
        "stages:\n"
        "  - &base {name: a, data: [p.jsonl], loss: infonce, training: {batch_size: 4}}\n"
        "  - <<: *base\n"
        "    name: b\n"
    )
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    assert [stage.name for stage in load_recipe(path).stages] == ["a", "b"]


def test_a_recipe_that_is_not_utf8_names_the_file(tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_bytes(b"model: caf\xe9\n")
    assert main(["train", str(path)]) == 1
    [line] = _error_lines(capsys)
    assert line.startswith(f"gpte: error: {path}: not UTF-8 text")


@pytest.mark.parametrize(
    "text, message",
    [
        ("- a\n- b\n", "expected a mapping with keys kind, model, output, stages, got ['a', 'b']"),
        ("just text\n", "expected a mapping with keys kind, model, output, stages, got 'just text'"),
        ("model: x\nstage: []\n", "unknown key(s) stage; allowed: kind, model, output, stages"),
        ("model: x\n1: 2\nstages: [a]\n", "unknown key(s) 1; allowed: kind, model, output, stages"),
        ("model: x\nstages: abc\n", "stages must be a list of stages (mappings with keys name, from,"),
        ("model: [a]\nstages: [{data: [p], loss: infonce}]\n", "model must be a model name, folder or hub id"),
        ("output: 5\nstages: [{data: [p], loss: infonce}]\n", "output must be a folder"),
        (
            "stages: [{data: [5], loss: infonce}]\n",
            "stage 1 data: each source is a path or a mapping with keys path, columns,",
        ),
        ("stages: [{data: p, loss: infonce}]\n", "stage 1: data must be a list of sources"),
        ("stages: [{data: [p], loss: infonce, training: 5}]\n", "stage 1 training: expected a mapping of settings"),
        (
            "stages: [{data: [p], loss: infonce, model_options: [a]}]\n",
            "stage 1 model_options: expected a mapping with keys attention,",
        ),
        (
            "stages: [{data: [p], loss: infonce, training: {eval_tasks: 5}}]\n",
            "stage 1 training: eval_tasks must be a list of task folders",
        ),
    ],
)
def test_a_recipe_of_the_wrong_shape_is_one_clear_error_line(tmp_path, capsys, text, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    assert main(["train", str(path)]) == 1
    [line] = _error_lines(capsys)
    assert line.startswith(f"gpte: error: {path}: ")
    assert message in line


# ----------------------------------------------------------------- resume names its checkpoint


class _Interrupt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


@contextmanager
def _interrupted_at(step: int, monkeypatch) -> Iterator[None]:
    original = trainer_module._callbacks
    with monkeypatch.context() as patch:
        patch.setattr(
            trainer_module, "_callbacks", lambda config, output: original(config, output) + [_Interrupt(step)]
        )
        yield


def _pairs(shared_data: Path):
    return read_training_data(shared_data / "sts/stsb-en/train.jsonl", columns=["sentence1", "sentence2"], limit=48)


def _train(tiny_models, output: Path, data, config: TrainingConfig):
    model = Embedder.load(tiny_models["bert"], device="cpu")
    return train(model, build_loss("infonce", model), [data], config, output)


def _can_lock(path: Path) -> bool:
    """Whether another process can take the write lock of ``path`` now."""
    code = f"from gpte.locking import exclusive_output\nwith exclusive_output({str(path)!r}):\n    pass"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120).returncode == 0


def test_resume_says_which_checkpoint_it_resumed_from(tiny_models, shared_data, tmp_path, monkeypatch, caplog):
    data = _pairs(shared_data)
    config = TrainingConfig(epochs=2, batch_size=16, save_steps=2)  # 3 batches an epoch: 6 steps
    output = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="gpte"):
        with _interrupted_at(3, monkeypatch), pytest.raises(KeyboardInterrupt):
            _train(tiny_models, output, data, config)
        assert not [r for r in caplog.records if "resuming" in r.getMessage()]  # a fresh run resumes nothing
        assert _can_lock(output)  # the interrupted run let go of its output
        checkpoint = output / "checkpoints/checkpoint-2"
        assert last_complete_checkpoint(output / "checkpoints") == checkpoint
        result = _train(tiny_models, output, data, config)
    assert [r.getMessage() for r in caplog.records if "resuming" in r.getMessage()] == [
        f"resuming from {checkpoint} (step 2 of 6)"
    ]
    assert result.resumed_from == str(checkpoint) and result.global_step == 6
    assert _train(tiny_models, tmp_path / "fresh", data, TrainingConfig(batch_size=16)).resumed_from is None


def _recipe(tiny_models, shared_data: Path, folder: Path) -> Path:
    recipe = {
        "model": str(tiny_models["bert"]),
        "output": "runs",
        "stages": [
            {
                "name": "s",
                "data": [
                    {
                        "path": str(shared_data / "sts/stsb-en/train.jsonl"),
                        "columns": ["sentence1", "sentence2"],
                        "limit": 48,
                    }
                ],
                "loss": {"name": "infonce"},
                "training": {"epochs": 2, "batch_size": 16, "save_steps": 2},
            }
        ],
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def test_gpte_train_prints_the_checkpoint_it_resumes_from(tiny_models, shared_data, tmp_path, monkeypatch, capsys):
    path = _recipe(tiny_models, shared_data, tmp_path)
    with _interrupted_at(5, monkeypatch):
        assert main(["train", str(path)]) == 130
    capsys.readouterr()
    assert main(["train", str(path)]) == 0
    assert f"resuming from {tmp_path / 'runs/s/checkpoints/checkpoint-4'} (step 4 of 6)" in capsys.readouterr().err
    state = json.loads((tmp_path / "runs/s/checkpoints/checkpoint-6/trainer_state.json").read_text())
    assert state["global_step"] == 6


# ----------------------------------------------------------------- one writer per output


def test_train_refuses_an_output_another_process_is_writing(tiny_models, shared_data, tmp_path):
    output = tmp_path / "run"
    model = Embedder.load(tiny_models["bert"], device="cpu")
    config = TrainingConfig(batch_size=16, lora={"r": 4, "target_modules": ["query"]})
    with lock_held_elsewhere(output) as holder, pytest.raises(OutputLockedError, match=f"pid {holder.pid}"):
        train(model, build_loss("infonce", model), [_pairs(shared_data)], config, output)
    assert not output.exists()  # nothing written
    assert not model.backbone.has_lora  # and the model is as it was


def test_gpte_train_refuses_a_recipe_output_another_run_is_writing(tiny_models, shared_data, tmp_path, capsys):
    path = _recipe(tiny_models, shared_data, tmp_path)
    leftover = tmp_path / "runs/s/checkpoints/checkpoint-2"
    leftover.mkdir(parents=True)
    with lock_held_elsewhere(tmp_path / "runs") as holder:
        assert main(["train", str(path), "--restart"]) == 1
    [line] = _error_lines(capsys)
    assert line.startswith(f"gpte: error: training output {tmp_path / 'runs'} is being written by another process")
    assert f"pid {holder.pid}" in line
    assert leftover.is_dir()  # --restart cleared nothing of the other run's


@pytest.mark.parametrize("environment, main_process", [({}, True), ({"RANK": "0"}, True), ({"RANK": "1"}, False)])
def test_only_the_main_process_of_a_distributed_run_takes_the_lock(monkeypatch, environment, main_process):
    monkeypatch.delenv("RANK", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert trainer_module.is_main_process() is main_process
