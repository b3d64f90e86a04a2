"""One JSON file per (model, task): every score, the main score, and provenance.

    {"task": "sts/stsb-en", "task_type": "STS", "split": "test", "language": "en",
     "main_score": "cosine_spearman", "main_score_value": 0.8203, "scores": {...},
     "provenance": {"gpte_version", "model", "model_sha256", "dataset_path", "dataset_sha256", "prompts",
                    "dtype", "batch_size", "wall_seconds", "encode_seconds", "finished"}}

A reranker's result on a Retrieval task adds "first_stage", "first_stage_sha256" and "top_k" to its provenance.

A sparse model's result (``gpte.evaluate.sparse``) adds, after "scores", the mean number of active (non-zero)
dimensions of its vectors, over the distinct texts the task encoded, per role: "sparsity": {"query_active_dims",
"document_active_dims", "flops"} for Retrieval and Reranking (flops: the expected multiplications of one
query-document dot product, SPLADE's FLOPS), {"active_dims"} for the tasks that encode texts without a role. Dense
results have no "sparsity".

A multi-vector model's result (``gpte.evaluate.multivector``) adds, after "scores", the mean number of token vectors
stored per distinct text, per role: "tokens": {"query_tokens", "document_tokens"} (Retrieval, Reranking), {"tokens"}
for texts without a role; its STS and Summarization "main_score" is "spearman" (its own MaxSim's), as it has no
vector per text for cosine.

Files are written atomically under ``OUTPUT/MODEL/TASK.json`` (``/`` in names becomes ``__``). "model_sha256" (the
model's fingerprint, None for a model that has none) and "dataset_sha256" (``dataset_sha256``) are what a resumed run
compares before it keeps a result (``gpte.evaluate.runner``).

Each result is also written in mteb's result format under ``OUTPUT/results/`` (``gpte.evaluate.mteb_format``), which
``read_results`` skips.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from gpte.atomic import atomic_path


def model_folder(output: Path, model_name: str) -> Path:
    """The folder of one model's result files in ``output``."""
    return Path(output) / slug(model_name)


def result_path(output: Path, model_name: str, task_name: str) -> Path:
    return model_folder(output, model_name) / f"{slug(task_name)}.json"


def write_result(path: Path, result: dict[str, Any]) -> None:
    with atomic_path(path, overwrite=True) as temporary:
        temporary.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_result(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_results(folder: Path) -> list[dict[str, Any]]:
    """Every gpte result file below ``folder``, in path order; files of other shapes, such as the mteb-format copies
    a run writes beside them (``gpte.evaluate.mteb_format``: ``results/MODEL/REVISION/*.json``), are skipped."""
    results = (read_result(path) for path in sorted(Path(folder).rglob("*.json")))
    return [result for result in results if is_gpte_result(result)]


def is_gpte_result(data: Any) -> bool:
    """Whether ``data`` (a parsed JSON file) has a gpte result's shape: its task, main score and scores."""
    return isinstance(data, dict) and all(key in data for key in ("task", "main_score_value", "scores"))


def folder_sha256(folder: Path) -> str:
    """sha256 over the relative paths and contents of every file below ``folder``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def dataset_sha256(task_folder: Path, data_folder: Path) -> str:
    """The hash a result records of the data it was computed on ("dataset_sha256"), so that a resumed run can tell
    whether a task's data changed since: ``folder_sha256`` of a local task's folder (its meta.json and every data file
    in it, in path order); for a task whose data lies elsewhere (a Hugging Face dataset fetched by
    ``gpte.evaluate.tasks.fetch_data``), sha256 over the task folder's hash (its meta.json: split, prompts, revision)
    and the data folder's."""
    task_folder, data_folder = Path(task_folder), Path(data_folder)
    if task_folder.resolve() == data_folder.resolve():
        return folder_sha256(data_folder)
    both = f"task:{folder_sha256(task_folder)}\ndata:{folder_sha256(data_folder)}"
    return hashlib.sha256(both.encode()).hexdigest()


def slug(name: str) -> str:
    """``name`` as one file or folder name: ``/`` and other characters outside ``[A-Za-z0-9._-]`` become ``__``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "__", name.strip("/")) or "model"
