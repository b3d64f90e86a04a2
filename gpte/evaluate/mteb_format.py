"""gpte's results also written in mteb's result format, so that mteb's own tools read them.

Beside each gpte result file (``OUTPUT/MODEL/TASK.json``, ``gpte.evaluate.results``), the run writes mteb's result
cache layout (``mteb.cache.ResultCache``, mteb >= 2):

    OUTPUT/results/MTEB_MODEL/REVISION/MTEB_TASK.json    an mteb ``TaskResult``
    OUTPUT/results/MTEB_MODEL/REVISION/model_meta.json   an mteb ``ModelMeta``

so ``mteb.TaskResult.from_disk(path)`` loads one file and ``mteb.ResultCache(OUTPUT).load_results()`` the folder.
Writing needs no mteb (the JSON is built here; mteb's pydantic models validate it on load).

- MTEB_MODEL: the model's mteb name with ``/`` as ``__`` (mteb's ``ModelMeta.model_name_as_path``); the name is gpte's
  model name when it is ``org/name`` shaped (its gpte folder name with ``__`` read back as ``/``), else
  ``gpte/NAME`` (mteb requires an organisation part).
- REVISION: the model's fingerprint (``model_sha256``: a changed model gets a new revision folder, as a new
  checkpoint does in mteb), or mteb's ``no_revision_available`` for a model without one.
- MTEB_TASK: gpte tasks are local folders, not tasks of mteb's registry, and mteb does not check a result's task name
  against its registry when loading; the name is the task folder's ``"mteb_task"`` in meta.json when it declares
  one (for a folder holding the very data of a registered mteb task, e.g. ``"STSBenchmark"``, so mteb's task
  metadata apply), else gpte's task name as its file name (``sts/stsb-en`` -> ``sts__stsb-en``).
- Scores: gpte already names its scores as mteb does (``cosine_spearman``, ``ndcg_at_10``, ...); the entry of the
  task's split adds mteb's ``main_score`` (its value), ``hf_subset`` (``default``) and ``languages`` (the task's
  language code as meta.json gives it, ``und`` when none). ``dataset_revision`` is gpte's ``dataset_sha256``,
  ``evaluation_time`` its ``wall_seconds``, ``date`` its ``finished`` time; ``mteb_version`` is None (mteb did not
  compute them). gpte's provenance stays in gpte's own file.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from gpte.atomic import atomic_path
from gpte.evaluate.results import slug
from gpte.evaluate.tasks import Task

MTEB_FOLDER = "results"  # mteb's ResultCache reads CACHE/results/MODEL/REVISION/TASK.json
NO_REVISION = "no_revision_available"  # mteb's revision for a model that has none
MODEL_META_FILE = "model_meta.json"
# gpte's output kind -> mteb's ModelMeta.model_type
MODEL_TYPES = {"dense": "dense", "sparse": "sparse", "multivector": "late-interaction", "pair_score": "cross-encoder"}
# gpte's similarity -> mteb's ScoringFunction among those ModelMeta accepts by name (others: None)
SIMILARITIES = {"cosine": "cosine", "dot": "dot"}
TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def mteb_model_name(model_name: str) -> str:
    """mteb's name for a gpte model name: ``org/name`` (see the module docstring)."""
    folder = slug(model_name)
    return folder.replace("__", "/") if "__" in folder else f"gpte/{folder}"


def mteb_task_name(task: Task) -> str:
    """The task's name in mteb's result files: meta.json's ``"mteb_task"``, else gpte's task name as a file name.

    Raises:
        ValueError: ``"mteb_task"`` is not a file-name-safe name (letters, digits, ``.``, ``_``, ``-``).
    """
    declared = task.metadata.get("mteb_task")
    if declared is None:
        return slug(task.name)
    if not isinstance(declared, str) or not TASK_NAME.fullmatch(declared):
        raise ValueError(
            f"task {task.name}: meta.json's mteb_task {declared!r} must be an mteb task name made of letters, "
            "digits, '.', '_' and '-' (e.g. 'STSBenchmark')"
        )
    return declared


def mteb_revision_folder(output: Path, model_name: str, fingerprint: str | None) -> Path:
    """``OUTPUT/results/MTEB_MODEL/REVISION``: where a model's mteb-format files go."""
    return Path(output) / MTEB_FOLDER / slug(mteb_model_name(model_name)) / (fingerprint or NO_REVISION)


def task_result(result: dict[str, Any], task_name: str) -> dict[str, Any]:
    """A gpte result (``gpte.evaluate.results``) as mteb's ``TaskResult`` JSON, named ``task_name``."""
    provenance = result.get("provenance", {})
    finished = provenance.get("finished")
    entry = {
        **result["scores"],
        "main_score": result["main_score_value"],
        "hf_subset": "default",
        "languages": [result.get("language") or "und"],
    }
    return {
        "dataset_revision": provenance.get("dataset_sha256") or "no_revision_available",
        "task_name": task_name,
        "mteb_version": None,
        "scores": {result["split"]: [entry]},
        "evaluation_time": provenance.get("wall_seconds"),
        "kg_co2_emissions": None,
        "date": datetime.fromisoformat(finished).timestamp() if finished else None,
    }


def model_meta(model: Any, model_name: str, fingerprint: str | None) -> dict[str, Any]:
    """mteb's ``ModelMeta`` JSON for a gpte model: its name, revision, kind, dimension, token limit, similarity;
    what gpte cannot know (license, parameters, training data, release date) is None."""
    kind = getattr(model, "output_kind", "dense")
    similarity = "MaxSim" if kind == "multivector" else SIMILARITIES.get(getattr(model, "similarity_name", ""))
    dimension = getattr(model, "dimension", None)
    max_tokens = getattr(model, "max_seq_length", None)
    return {
        "loader": None,
        "name": mteb_model_name(model_name),
        "revision": fingerprint or NO_REVISION,
        "release_date": None,
        "languages": None,
        "n_parameters": None,
        "memory_usage_mb": None,
        "max_tokens": max_tokens if isinstance(max_tokens, int) else None,
        "embed_dim": dimension if isinstance(dimension, int) and kind != "sparse" else None,
        "license": None,
        "open_weights": None,
        "public_training_code": None,
        "public_training_data": None,
        "framework": ["PyTorch"],
        "similarity_fn_name": None if kind == "pair_score" else similarity,
        "use_instructions": None,
        "training_datasets": None,
        "model_type": [MODEL_TYPES.get(kind, "dense")],
    }


def write_mteb_result(folder: Path, result: dict[str, Any], task: Task, meta: dict[str, Any]) -> Path:
    """Write ``result`` as ``folder/MTEB_TASK.json`` and the model's ``model_meta.json`` beside it, each atomically
    (``folder``: ``mteb_revision_folder``); returns the result file's path."""
    path = Path(folder) / f"{mteb_task_name(task)}.json"
    _write_json(path, task_result(result, path.stem))
    _write_json(Path(folder) / MODEL_META_FILE, meta)
    return path


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_path(path, overwrite=True) as temporary:
        temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
