"""Texts and labels of a task folder's split, for analyses that need sentences rather than scores."""

from __future__ import annotations

from gpte.data.mteb_folders import read_corpus, read_rows
from gpte.evaluate.tasks import Task

PAIR_TYPES = ("STS", "PairClassification")
LABELLED_TYPES = ("Classification", "Clustering")


def task_texts(task: Task, split: str | None = None) -> list[str]:
    """Distinct texts of ``split`` (default the task's): both sides of STS/pair rows, classification texts,
    or a retrieval corpus (title + text).

    Raises:
        ValueError: a task type without plain texts here (the usable types listed), or a missing split file.
    """
    split = split or task.split
    if task.type == "Retrieval":
        return list(dict.fromkeys(read_corpus(task.path).values()))
    if task.type in PAIR_TYPES:
        rows = read_rows(_split_file(task, split), ("sentence1", "sentence2"))
        return list(dict.fromkeys(row[side] for row in rows for side in ("sentence1", "sentence2")))
    if task.type in LABELLED_TYPES:
        return list(dict.fromkeys(row["text"] for row in read_rows(_split_file(task, split), ("text",))))
    raise ValueError(
        f"task {task.name} ({task.type}) has no plain texts here; use a task of type: "
        f"{', '.join(PAIR_TYPES + LABELLED_TYPES)} or Retrieval"
    )


def labelled_texts(task: Task, split: str | None = None) -> tuple[list[str], list[str]]:
    """(texts, labels) of a Classification or Clustering task's split."""
    if task.type not in LABELLED_TYPES:
        raise ValueError(f"task {task.name} is {task.type}; labelled texts come from: {', '.join(LABELLED_TYPES)}")
    rows = read_rows(_split_file(task, split or task.split), ("text", "label"))
    return [row["text"] for row in rows], [str(row["label"]) for row in rows]


def scored_pairs(task: Task, split: str | None = None) -> tuple[list[str], list[str], list[float]]:
    """(first, second, gold) of an STS (gold = score) or PairClassification (gold = label) task's split."""
    if task.type not in PAIR_TYPES:
        raise ValueError(f"task {task.name} is {task.type}; pairs come from: {', '.join(PAIR_TYPES)}")
    gold_field = "score" if task.type == "STS" else "label"
    rows = read_rows(_split_file(task, split or task.split), ("sentence1", "sentence2", gold_field))
    return [r["sentence1"] for r in rows], [r["sentence2"] for r in rows], [float(r[gold_field]) for r in rows]


def _split_file(task: Task, split: str):
    path = task.path / f"{split}.jsonl"
    if not path.exists():
        splits = sorted(p.stem for p in task.path.glob("*.jsonl"))
        raise ValueError(f"task {task.name} has no {split!r} split; it has: {', '.join(splits)}")
    return path
