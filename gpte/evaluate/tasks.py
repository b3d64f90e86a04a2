"""Evaluation tasks are declared, not coded: a folder with a ``meta.json`` and its data files.

``meta.json`` (the layout of ../shared/data):

    {"task_type": "STS", "language": "en", "main_score": "cosine_spearman", "score_range": [0, 5],
     "split": "test", "prompts": {"query": "..."}}

``task_type`` is one of ``TASK_TYPES``; ``split`` defaults to ``test``; ``prompts`` (optional) maps a role
(``query``, ``document``) to a prompt name or template for the model; ``score_range`` is used by STS and
Summarization. A folder without ``meta.json`` that has ``corpus.jsonl`` and ``queries.jsonl`` is read as a
BEIR retrieval folder. Adding a dataset is writing its meta.json beside its files.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# task type -> mteb's main score for it
TASK_TYPES = {
    "STS": "cosine_spearman",
    "PairClassification": "max_ap",
    "Classification": "accuracy",
    "Clustering": "v_measure",
    "Reranking": "map_at_1000",
    "Retrieval": "ndcg_at_10",
    "BitextMining": "f1",
    "Summarization": "cosine_spearman",
}
META_FILE = "meta.json"


@dataclass(frozen=True)
class Task:
    """One evaluation task.

    Attributes:
        name: the task's path below the data root (``sts/stsb-en``), or its folder name.
        type: one of ``TASK_TYPES``.
        path: the folder holding the data.
        split: the evaluated split (file ``{split}.jsonl``, or ``qrels/{split}.tsv`` for retrieval).
        language: language code(s) from the metadata.
        main_score: the score that ranks models (mteb's name).
        prompts: role -> prompt name or template passed to the model for that role.
        metadata: the whole meta.json.
    """

    name: str
    type: str
    path: Path
    split: str = "test"
    language: str | None = None
    main_score: str = ""
    prompts: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def prompt(self, role: str | None) -> str | None:
        """The task's prompt for ``role``, if it declares one."""
        return self.prompts.get(role) if role else None


def load_task(folder: str | Path, name: str | None = None) -> Task:
    """Read the task in ``folder``.

    Raises:
        FileNotFoundError: the folder does not exist or is not a task folder.
        ValueError: meta.json is malformed or names an unknown task type (the types are listed).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"task folder {folder} does not exist")
    meta_path = folder / META_FILE
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{meta_path}: not valid JSON ({error.msg})") from None
    elif (folder / "corpus.jsonl").exists() and (folder / "queries.jsonl").exists():
        meta = {"task_type": "Retrieval"}
    else:
        raise FileNotFoundError(f"{folder} has no {META_FILE} and is not a BEIR folder (corpus.jsonl + queries.jsonl)")
    task_type = meta.get("task_type")
    if task_type not in TASK_TYPES:
        raise ValueError(f"{meta_path}: unknown task_type {task_type!r}; choose one of: {', '.join(TASK_TYPES)}")
    return Task(
        name=name or folder.name,
        type=task_type,
        path=folder,
        split=meta.get("split", "test"),
        language=meta.get("language"),
        main_score=TASK_TYPES[task_type],
        prompts=dict(meta.get("prompts") or {}),
        metadata=meta,
    )


def discover_tasks(root: str | Path) -> list[Task]:
    """Every task folder below ``root`` (those holding a meta.json), named by their path below it, sorted.

    ``root`` may itself be a task folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    if (root / META_FILE).exists():
        return [load_task(root)]
    folders = sorted(meta.parent for meta in root.rglob(META_FILE))
    if not folders:
        raise FileNotFoundError(f"no task folders (with {META_FILE}) below {root}")
    return [load_task(folder, folder.relative_to(root).as_posix()) for folder in folders]


def select_tasks(tasks: list[Task], names: list[str] | None) -> list[Task]:
    """The tasks named in ``names`` (by full name, or last path part: every task it names), in order; all if None.

    Raises:
        ValueError: an unknown name, with the closest names listed.
    """
    if not names:
        return tasks
    selected: list[Task] = []
    for name in names:
        matches = [task for task in tasks if name in (task.name, task.name.rsplit("/", 1)[-1])]
        if not matches:
            known = [task.name for task in tasks] + [task.name.rsplit("/", 1)[-1] for task in tasks]
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known tasks: {', '.join(t.name for t in tasks)}"
            raise ValueError(f"unknown task {name!r}{hint}")
        selected += [task for task in matches if task not in selected]
    return selected
