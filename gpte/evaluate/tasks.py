"""Evaluation tasks are declared, not coded: a folder with a ``meta.json`` and its data files.

``meta.json`` (the layout of ../shared/data):

    {"task_type": "STS", "language": "en", "main_score": "cosine_spearman", "score_range": [0, 5],
     "split": "test", "prompts": {"query": "..."}}

``task_type`` is one of ``TASK_TYPES``; ``main_score`` is the type's (``TASK_TYPES``) except where a Retrieval task
names another of its cut-offs (``MAIN_SCORE_CHOICES``: LongEmbed's tasks rank by ``ndcg_at_1``); ``split`` defaults to ``test``; ``prompts`` (optional) maps a role
(``query``, ``document``) to a prompt name or template for the model; ``instruction`` (optional, default
``DEFAULT_INSTRUCTIONS`` of the type) is the task instruction given to instruction-following models; ``score_range`` is used by STS and
Summarization. A folder without ``meta.json`` that has ``corpus.jsonl`` and ``queries.jsonl`` is read as a
BEIR retrieval folder. Adding a dataset is writing its meta.json beside its files.

The data can also live on the Hugging Face Hub: ``"hf_dataset": "org/name"`` (optional ``hf_revision``,
``hf_subfolder``) in meta.json, with no data files beside it. The dataset repository must hold the same
files (row ``{split}.jsonl`` files, or BEIR's corpus/queries/qrels, as mteb's BEIR-format datasets do);
it is downloaded (or found in the Hugging Face cache) when the task runs, not when it is discovered.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import re
from dataclasses import dataclass, field, replace
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
# task type -> the main scores a meta.json may choose instead of the type's own
MAIN_SCORE_CHOICES = {"Retrieval": re.compile(r"(ndcg|map|recall|precision|mrr|hit_rate)_at_(1|3|5|10|20|100|1000)")}
META_FILE = "meta.json"
# task type -> the instruction an instruction-following model gets when meta.json names none (the generic
# instructions of E5-mistral, Wang et al. 2024, arXiv:2401.00368, Table 13 style)
DEFAULT_INSTRUCTIONS = {
    "STS": "Retrieve semantically similar text.",
    "PairClassification": "Retrieve text that is semantically similar to the given text.",
    "Classification": "Classify the given text into its category.",
    "Clustering": "Identify the main topic or theme of the given text.",
    "Reranking": "Given a query, retrieve passages that answer it.",
    "Retrieval": "Given a query, retrieve relevant documents that answer the query.",
    "BitextMining": "Retrieve parallel sentences.",
    "Summarization": "Given a news summary, retrieve other semantically similar summaries.",
}


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
        instruction: what the task asks for, for models whose query prompt has a ``{task}`` slot: it fills
            that slot for every input that is not a document (see ``gpte.evaluate.encoder``).
        metadata: the whole meta.json.
        hf_dataset: a Hugging Face dataset repository holding the data (``path`` then holds only meta.json
            until ``fetch_data`` points it at the downloaded files).
    """

    name: str
    type: str
    path: Path
    split: str = "test"
    language: str | None = None
    main_score: str = ""
    prompts: dict[str, str] = field(default_factory=dict)
    instruction: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    hf_dataset: str | None = None

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
        main_score=_main_score(task_type, meta.get("main_score")),
        prompts=dict(meta.get("prompts") or {}),
        instruction=meta.get("instruction") or DEFAULT_INSTRUCTIONS[task_type],
        metadata=meta,
        hf_dataset=meta.get("hf_dataset"),
    )


def _main_score(task_type: str, named: Any) -> str:
    """``named`` where the type lets a task choose its main score and it is one of the choices, else the type's."""
    choices = MAIN_SCORE_CHOICES.get(task_type)
    return (
        named if choices is not None and isinstance(named, str) and choices.fullmatch(named) else TASK_TYPES[task_type]
    )


def fetch_data(task: Task) -> Task:
    """``task`` with ``path`` at its data: unchanged for local data; for ``hf_dataset``, the dataset's
    snapshot from the Hugging Face Hub (or the local Hugging Face cache with HF_HUB_OFFLINE=1).

    Raises:
        ConnectionError: the dataset cannot be downloaded; the message names the task and the offline ways.
    """
    if task.hf_dataset is None:
        return task
    from huggingface_hub import snapshot_download

    try:
        folder = Path(
            snapshot_download(task.hf_dataset, repo_type="dataset", revision=task.metadata.get("hf_revision"))
        )
    except Exception as error:
        raise ConnectionError(
            f"task {task.name}: could not get dataset {task.hf_dataset!r} from the Hugging Face Hub "
            f"({type(error).__name__}: {error}). Without network, download it into a folder and point a task "
            "folder at it, or use a dataset already in the Hugging Face cache (set HF_HUB_OFFLINE=1)."
        ) from error
    return replace(task, path=folder / task.metadata.get("hf_subfolder", ""))


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
    """The tasks named in ``names``, in order; all if None. A name is a task's full name, its last path
    part (every task it names), or a glob pattern over either (``sts/stsb-*``, ``tatoeba-*``).

    Raises:
        ValueError: a name that matches no task, with the closest names listed.
    """
    if not names:
        return tasks
    selected: list[Task] = []
    for name in names:
        matches = [task for task in tasks if _matches(task.name, name)]
        if not matches:
            known = [task.name for task in tasks] + [task.name.rsplit("/", 1)[-1] for task in tasks]
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = (
                f"; did you mean {', '.join(close)}?" if close else f"; known tasks: {', '.join(t.name for t in tasks)}"
            )
            raise ValueError(f"unknown task {name!r}{hint}")
        selected += [task for task in matches if task not in selected]
    return selected


def _matches(task_name: str, pattern: str) -> bool:
    return any(fnmatch.fnmatchcase(candidate, pattern) for candidate in (task_name, task_name.rsplit("/", 1)[-1]))
