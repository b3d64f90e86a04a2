"""Multi-stage training recipes: a YAML file lists stages, each with its data, loss and settings.

    model: all-MiniLM-L6-v2            # where stage 1 starts: packaged name, folder or hub id
    output: runs/minilm-sts            # each stage writes OUTPUT/STAGE/{model,checkpoints,logs.csv}
    stages:
      - name: weak
        data: [{path: pairs.jsonl}]
        loss: {name: infonce, temperature: 0.05}
        training: {epochs: 1, batch_size: 64}
      - name: supervised               # starts from the previous stage's model (or from: NAME|PATH)
        model_options: {pooling: mean}  # Embedder.load options applied to the starting model
        data: [{path: triplets.jsonl, negatives: negatives}]
        loss: {name: infonce, matryoshka: {dims: [384, 192, 96]}}
        training: {epochs: 1, batch_size: 32, eval_tasks: [data/sts/stsb-en]}

``kind: reranker`` trains a cross-encoder instead (``gpte.models.cross_encoder``; losses from
``gpte.train.losses.reranker``): ``model`` is then a cross-encoder folder, or any encoder (all-MiniLM-L6-v2's
transformer) that gets a new one-logit head; ``model_options`` are ``CrossEncoder.load``'s.

    kind: reranker
    model: all-MiniLM-L6-v2
    stages:
      - data: [{path: sts-train.jsonl, columns: [sentence1, sentence2], score: score, score_range: [0, 5]}]
        loss: bce
        training: {epochs: 1, batch_size: 16}

``kind: sparse`` trains a SPLADE model (``gpte.models.sparse``): ``model`` is a SparseEncoder folder or any BERT-style
encoder (it gets a masked-LM head tied to its word embeddings); the loss is ``splade`` around a ranking loss, with
FLOPS regularisation (``gpte.train.losses.sparse``); ``model_options`` are ``max_seq_length``, ``top_k``,
``threshold``.

``kind: multivector`` trains a ColBERT model (``gpte.models.multivector``): ``model`` is a MultiVectorEncoder or
PyLate folder or any transformer (all-MiniLM-L6-v2's gets a new projection); the losses are ``colbert_infonce``,
``colbert_kl_distillation`` and ``colbert_margin_mse`` (``gpte.train.losses.multivector``); ``model_options`` are
``load_multivector_encoder``'s (``dimension``, ``prompts`` such as ``{query: "[Q] ", document: "[D] "}``,
``query_expansion``, ``skiplist``: a list of tokens or ``punctuation``, lengths, ``similarity``).

Relative paths are relative to the recipe file. The whole recipe (keys, loss names and options, every
row of every data source) is checked before the first training step; a file that is not YAML (or gives a key
twice) is refused naming its line and column. A stage whose model folder exists
is kept, and an interrupted stage resumes from its last complete checkpoint (and says which), so re-running the
same command continues where it stopped. A run holds the write lock of its output folder: a second run with the
same output fails at once, naming the first. Each stage's model is saved in the sentence-transformers layout
with a model card (README.md: base model, data, loss, settings, scores).
"""

from __future__ import annotations

import json
import logging
import shutil
import string
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import yaml

from gpte._version import __version__
from gpte.data.training import TrainingData, read_training_data
from gpte.evaluate import Task, evaluate, load_task
from gpte.models.cross_encoder import CrossEncoder, is_cross_encoder_folder
from gpte.models.embedder import Embedder
from gpte.models.model_card import CardNotes
from gpte.models.multivector import load_multivector_encoder
from gpte.models.sources import resolve_model
from gpte.models.sparse import load_sparse_encoder
from gpte.train.config import TrainingConfig
from gpte.train.losses import build_loss
from gpte.train.losses.distributed import world
from gpte.train.losses.reranker import build_reranker_loss
from gpte.train.trainer import TrainableModel, TrainResult, check_training_data, is_main_process, output_lock, train

logger = logging.getLogger(__name__)

RECIPE_KEYS = ("kind", "model", "output", "stages")
KINDS = ("dense", "reranker", "sparse", "multivector")
STAGE_KEYS = ("name", "from", "model_options", "data", "loss", "training", "guide")
# Embedder.load options a stage may set on the model it starts from (saved with the stage's model)
MODEL_OPTION_KEYS = (
    "attention",
    "pooling",
    "prompts",
    "default_prompt",
    "extraction",
    "normalize",
    "max_seq_length",
    "padding_side",
)
RERANKER_OPTION_KEYS = ("num_labels", "max_seq_length", "activation", "prompts", "default_prompt")
SPARSE_OPTION_KEYS = ("max_seq_length", "top_k", "threshold")
MULTIVECTOR_OPTION_KEYS = (
    "dimension",
    "max_seq_length",
    "query_length",
    "document_length",
    "query_expansion",
    "skiplist",
    "prompts",
    "similarity",
)
OPTION_KEYS = {
    "dense": MODEL_OPTION_KEYS,
    "reranker": RERANKER_OPTION_KEYS,
    "sparse": SPARSE_OPTION_KEYS,
    "multivector": MULTIVECTOR_OPTION_KEYS,
}
SKIPLISTS = {"punctuation": list(string.punctuation)}  # named skiplists a multi-vector recipe may give
DATA_KEYS = ("path", "columns", "score", "score_range", "negatives", "instruction", "limit", "hf_split", "hf_subset")


@dataclass
class Stage:
    """One stage: where it starts, its data specs, loss spec, settings and optional GIST guide model."""

    name: str
    start: str | None
    data: list[dict[str, Any]]
    loss: dict[str, Any]
    training: TrainingConfig
    guide: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    sources: list[TrainingData] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)


@dataclass
class Recipe:
    model: str | None
    output: Path
    stages: list[Stage]
    kind: str = "dense"


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe file (structure and values; data is read by ``prepare``).

    Raises:
        FileNotFoundError: no such file. ValueError: text that is not YAML (one line naming its line and column),
            a key given twice, a section of the wrong shape, unknown keys, missing stages/data/loss, bad settings.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} does not exist")
    raw = read_yaml(path)
    where = str(path)
    if raw is None:
        raw = {}
    _check_keys(raw, RECIPE_KEYS, where)
    if not raw.get("stages"):
        raise ValueError(f"{where}: the recipe has no stages")
    if not isinstance(raw["stages"], list):
        raise ValueError(f"{where}: stages must be a list of stages (mappings with keys {', '.join(STAGE_KEYS)})")
    kind = raw.get("kind", "dense")
    if kind not in KINDS:
        raise ValueError(f"{where}: unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    model = raw.get("model")
    if model is not None and not isinstance(model, str):
        raise ValueError(f"{where}: model must be a model name, folder or hub id, got {model!r:.80}")
    output = raw.get("output", "gpte-runs")
    if not isinstance(output, str) or not output:
        raise ValueError(f"{where}: output must be a folder, got {output!r:.80}")
    base = path.parent
    names: list[str] = []
    stages = []
    for number, spec in enumerate(raw["stages"], 1):
        stage = _stage(spec, number, base, names, where, kind)
        names.append(stage.name)
        stages.append(stage)
    return Recipe(_resolve(model, base) if model else None, base / output, stages, kind)


def read_yaml(path: Path) -> Any:
    """The YAML document in ``path``, with duplicate keys refused.

    Raises:
        ValueError: text that is not UTF-8 or not YAML, one line naming the file, and the line and column (1-based)
            of the problem.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from error
    try:
        return yaml.load(text, Loader=_RecipeLoader)
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: {_yaml_problem(error, text)}") from error


def _yaml_problem(error: yaml.YAMLError, text: str) -> str:
    """``error`` on one line: "line L, column C: invalid YAML: problem (context at line L, column C)"."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark, problem = error.problem_mark, error.problem or error.context or "syntax error"
        message = f"line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {problem}"
        if error.problem and error.context:
            message += f" ({error.context}"
            if error.context_mark is not None:
                message += f" at line {error.context_mark.line + 1}, column {error.context_mark.column + 1}"
            message += ")"
    elif isinstance(error, yaml.reader.ReaderError):  # a character YAML does not allow, found by position
        line = text.count("\n", 0, error.position) + 1
        column = error.position - text.rfind("\n", 0, error.position)
        character = f"#x{error.character:04x}" if isinstance(error.character, int) else repr(error.character)
        message = f"line {line}, column {column}: invalid YAML: unacceptable character {character}: {error.reason}"
    else:
        message = f"invalid YAML: {error}"
    return " ".join(message.split())


class _RecipeLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # <<: *anchor; explicit keys may override it
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the base class says so
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key!r}",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep)


def _stage(spec: Any, number: int, base: Path, earlier: list[str], where: str, kind: str) -> Stage:
    here = f"{where}: stage {number}"
    if not isinstance(spec, dict):
        raise ValueError(f"{here}: a stage is a mapping with keys {', '.join(STAGE_KEYS)}")
    _check_keys(spec, STAGE_KEYS, here)
    name = str(spec.get("name", f"stage{number}"))
    if name in earlier:
        raise ValueError(f"{here}: stage name {name!r} is used twice")
    if not spec.get("data"):
        raise ValueError(f"{here}: no data (data: [{{path: ...}}])")
    if "loss" not in spec:
        raise ValueError(f"{here}: no loss (loss: {{name: ...}})")
    if not isinstance(spec["data"], list):
        raise ValueError(f"{here}: data must be a list of sources (data: [{{path: ...}}]), got {spec['data']!r:.80}")
    data = []
    for item in spec["data"]:
        if not isinstance(item, (str, dict)):
            raise ValueError(
                f"{here} data: each source is a path or a mapping with keys {', '.join(DATA_KEYS)}, got {item!r:.80}"
            )
        item = {"path": item} if isinstance(item, str) else dict(item)
        _check_keys(item, DATA_KEYS, f"{here} data")
        if "path" not in item:
            raise ValueError(f"{here} data: each source needs a path")
        path = str(item["path"])
        item["path"] = path if path.startswith("hf:") else str(base / path)
        data.append(item)
    training = spec.get("training") or {}
    if not isinstance(training, dict):
        raise ValueError(f"{here} training: expected a mapping of settings, got {training!r:.80}")
    training = dict(training)
    tasks = training.get("eval_tasks", [])
    if not isinstance(tasks, list):
        raise ValueError(f"{here} training: eval_tasks must be a list of task folders, got {tasks!r:.80}")
    training["eval_tasks"] = [str(base / str(task)) for task in tasks]
    start = spec.get("from")
    if start is not None and start not in earlier:
        start = _resolve(start, base)
    loss = spec["loss"] if isinstance(spec["loss"], dict) else {"name": spec["loss"]}
    guide = _resolve(spec["guide"], base) if spec.get("guide") else None
    model_options = spec.get("model_options") or {}
    _check_keys(model_options, OPTION_KEYS[kind], f"{here} model_options")
    model_options = dict(model_options)
    if kind != "dense" and spec.get("guide"):
        raise ValueError(f"{here}: guide (GIST) applies to dense models, not to {kind} models")
    config = TrainingConfig.from_dict(training, f"{here} training")
    return Stage(name, start, data, dict(loss), config, guide, model_options)


def prepare(recipe: Recipe) -> None:
    """Read every stage's data and tasks and build its loss once against the starting model, so that any
    bad row, data/loss mismatch or unknown option fails before training starts. A stage's model options are
    tried on the recipe's starting model."""
    base = _load_model(recipe.model, None, recipe.kind)
    for stage in recipe.stages:
        model = _load_model(recipe.model, stage, recipe.kind) if stage.model_options else base
        stage.sources = [read_training_data(**spec) for spec in stage.data]
        stage.tasks = [load_task(task) for task in stage.training.eval_tasks]
        check_training_data(_loss(stage, model), stage.sources, stage.training)
        if isinstance(model, Embedder) and stage.training.lora and stage.training.lora.get("target_modules"):
            model.backbone.check_lora_targets(stage.training.lora["target_modules"])


def run_recipe(recipe: Recipe, resume: bool = True) -> list[Path]:
    """Check, then run the stages in order; returns each stage's model folder.

    Raises:
        OutputLockedError: another process is running a recipe with the same output (before anything is read).
    """
    with output_lock(recipe.output):
        return _run_stages(recipe, resume)


def _run_stages(recipe: Recipe, resume: bool) -> list[Path]:
    prepare(recipe)
    folders: list[Path] = []
    for stage in recipe.stages:
        folder = recipe.output / stage.name / "model"
        if folder.exists() and resume:
            logger.info(f"stage {stage.name}: kept {folder}")
        else:
            start = _start(recipe, stage, folders)
            logger.info(f"stage {stage.name}: training from {start or 'the packaged default model'}")
            _run_stage(stage, start, recipe.output / stage.name, folder, resume, recipe.kind)
        folders.append(folder)
    return folders


def _run_stage(stage: Stage, start: str | None, stage_dir: Path, folder: Path, resume: bool, kind: str) -> None:
    with output_lock(stage_dir):  # also what train() writes it in: from clearing a restart to the saved model
        _train_stage(stage, start, stage_dir, folder, resume, kind)


def _train_stage(stage: Stage, start: str | None, stage_dir: Path, folder: Path, resume: bool, kind: str) -> None:
    if not resume and is_main_process():  # a restart must not later resume from an older run's checkpoints
        shutil.rmtree(stage_dir / "checkpoints", ignore_errors=True)
        (stage_dir / "logs.csv").unlink(missing_ok=True)
    model = _load_model(start, stage, kind)
    result = train(model, _loss(stage, model), stage.sources, stage.training, stage_dir, stage.tasks, resume)
    rank, size = world()
    if rank == 0:  # under DDP every process trained the same weights; one writes them
        model.card_notes = card_notes(model, stage, result, _final_scores(model, stage.tasks))
        if isinstance(model, Embedder) and model.backbone.has_lora:
            model.backbone.save(stage_dir / "adapter")
            model.backbone.merge_lora()
        model.save(folder, overwrite=True)  # with its model card
        logger.info(f"stage {stage.name}: saved {folder}")
    if size > 1:
        torch.distributed.barrier()  # the next stage starts from this folder on every process


def _load_model(start: str | None, stage: Stage | None, kind: str) -> TrainableModel:
    """The model a stage starts from, with the stage's model options (a bad option names the stage): an
    ``Embedder``, for ``kind: reranker`` a ``CrossEncoder`` (an encoder folder gets a new one-logit head), for
    ``kind: sparse`` a ``SparseEncoder`` (an encoder folder becomes SPLADE with a masked-LM head), for
    ``kind: multivector`` a ``MultiVectorEncoder`` (an encoder folder gets a new projection)."""
    options = stage.model_options if stage is not None else {}
    try:
        if kind == "dense":
            return Embedder.load(start, **options)
        if kind == "sparse":
            return load_sparse_encoder(start, **options)
        if kind == "multivector":
            return load_multivector_encoder(start, **_multivector_options(options))
        folder = resolve_model(start).folder
        new_head = {} if is_cross_encoder_folder(folder) or "num_labels" in options else {"num_labels": 1}
        return CrossEncoder.load(start, **new_head, **options)
    except ValueError as error:
        where = f"stage {stage.name} model_options" if stage is not None else "model"
        raise ValueError(f"{where}: {error}") from error


def _multivector_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with a named skiplist (``skiplist: punctuation``) spelled out.

    Raises:
        ValueError: a skiplist that is neither a list of tokens nor a known name."""
    skiplist = options.get("skiplist")
    if skiplist is None or isinstance(skiplist, list) and all(isinstance(token, str) for token in skiplist):
        return options
    if isinstance(skiplist, str) and skiplist in SKIPLISTS:
        return {**options, "skiplist": SKIPLISTS[skiplist]}
    raise ValueError(f"skiplist must be a list of tokens or one of: {', '.join(SKIPLISTS)}; got {skiplist!r}")


def _loss(stage: Stage, model: TrainableModel) -> Any:
    """The stage's loss built for ``model``: an embedding loss, or a reranker loss for a cross-encoder."""
    if isinstance(model, CrossEncoder):
        return build_reranker_loss(stage.loss, model)
    guide = Embedder.load(stage.guide) if stage.guide else None
    return build_loss(stage.loss, model, guide)


def _start(recipe: Recipe, stage: Stage, folders: list[Path]) -> str | None:
    names = [s.name for s in recipe.stages]
    if stage.start in names:
        return str(folders[names.index(stage.start)])
    if stage.start is not None:
        return stage.start
    return str(folders[-1]) if folders else recipe.model


def _final_scores(model: TrainableModel, tasks: list[Task]) -> dict[str, float]:
    """Main score (0-1) per task of the trained model."""
    if not tasks:
        return {}
    return {name: result["main_score_value"] for name, result in evaluate(model, tasks).results.items()}


def card_notes(model: TrainableModel, stage: Stage, result: TrainResult, scores: dict[str, float]) -> CardNotes:
    """The model card's notes for a stage's trained ``model``: what it started from, the stage's data, loss and
    settings, the steps and final loss, and the scores (0-1) on the stage's eval tasks."""
    step = (
        f"Fine-tuned with gpte {__version__} on {datetime.now(timezone.utc).date().isoformat()} (recipe stage "
        f"`{stage.name}`): {result.global_step} steps, final training loss {result.training_loss:.4f}."
    )
    losses = [f"`{json.dumps(stage.loss)}`"] + ([f"guided by `{stage.guide}` (GIST)"] if stage.guide else [])
    return replace(
        model.card_notes.derived(model.name, step),
        training_data=tuple(
            f"`{source.name}`: {len(source)} rows, columns {', '.join(source.columns)}" for source in stage.sources
        ),
        losses=tuple(losses),
        training_settings=asdict(stage.training),
        results=scores,
    )


def _check_keys(mapping: Any, allowed: tuple[str, ...], where: str) -> None:
    if not isinstance(mapping, dict):
        raise ValueError(f"{where}: expected a mapping with keys {', '.join(allowed)}, got {mapping!r:.80}")
    unknown = sorted({str(key) for key in mapping} - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")


def _resolve(name: str, base: Path) -> str:
    """A path relative to the recipe if it exists there; otherwise the name as given (packaged or hub id)."""
    candidate = base / str(name)
    return str(candidate) if candidate.exists() else str(name)
