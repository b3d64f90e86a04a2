"""Texts and labels of a task folder's split, for analyses that need sentences rather than scores. Every text is
checked before a model sees it: a value that is not a string is refused here, and a file that is not UTF-8 or a
string with a lone surrogate (a JSON ``\\ud800`` escape) by ``gpte.data.readers``, each naming the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpte.data.mteb_folders import read_corpus, read_rows
from gpte.data.readers import check_text
from gpte.evaluate.tasks import Task

PAIR_TYPES = ("STS", "PairClassification")
LABELLED_TYPES = ("Classification", "Clustering")


def task_texts(task: Task, split: str | None = None) -> list[str]:
    """Distinct texts of ``split`` (default the task's): both sides of STS/pair rows, classification texts,
    or a retrieval corpus (title + text).

    Raises:
        ValueError: a task type without plain texts here (the usable types listed), a missing split file, or a row
            that cannot be read (see the module docstring).
    """
    split = split or task.split
    if task.type == "Retrieval":
        path = task.path / "corpus.jsonl"
        texts = read_corpus(task.path)
        return list(dict.fromkeys(check_text(text, f"{path} document {doc!r}", "text") for doc, text in texts.items()))
    if task.type in PAIR_TYPES:
        rows = _rows(_split_file(task, split), ("sentence1", "sentence2"))
        return list(dict.fromkeys(text for texts in rows for text in texts))
    if task.type in LABELLED_TYPES:
        return list(dict.fromkeys(text for (text,) in _rows(_split_file(task, split), ("text",))))
    raise ValueError(
        f"task {task.name} ({task.type}) has no plain texts here; use a task of type: "
        f"{', '.join(PAIR_TYPES + LABELLED_TYPES)} or Retrieval"
    )


def labelled_texts(task: Task, split: str | None = None) -> tuple[list[str], list[str]]:
    """(texts, labels) of a Classification or Clustering task's split."""
    if task.type not in LABELLED_TYPES:
        raise ValueError(f"task {task.name} is {task.type}; labelled texts come from: {', '.join(LABELLED_TYPES)}")
    rows = _rows(_split_file(task, split or task.split), ("text",), ("label",))
    return [text for text, _ in rows], [str(label) for _, label in rows]


def scored_pairs(task: Task, split: str | None = None) -> tuple[list[str], list[str], list[float]]:
    """(first, second, gold) of an STS (gold = score) or PairClassification (gold = label) task's split.

    Raises:
        ValueError: naming the file and line, a gold value that is not a number, or a row ``task_texts`` refuses.
    """
    if task.type not in PAIR_TYPES:
        raise ValueError(f"task {task.name} is {task.type}; pairs come from: {', '.join(PAIR_TYPES)}")
    gold_field = "score" if task.type == "STS" else "label"
    path = _split_file(task, split or task.split)
    rows = _rows(path, ("sentence1", "sentence2"), (gold_field,))
    return (
        [r[0] for r in rows],
        [r[1] for r in rows],
        [_number(r[2], f"{path}:{i}", gold_field) for i, r in enumerate(rows, 1)],
    )


def _rows(path: Path, texts: tuple[str, ...], others: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
    """The ``texts`` fields (checked: see the module docstring) then the ``others`` fields of each row of ``path``;
    a row's line is its number (``read_rows`` refuses blank lines)."""
    rows = read_rows(path, texts + others)
    return [
        (*(check_text(row[name], f"{path}:{number}", name) for name in texts), *(row[name] for name in others))
        for number, row in enumerate(rows, 1)
    ]


def _number(value: object, where: str, name: str) -> float:
    try:
        return float(value)  # a number, or a number written as text
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name} {value!r:.80} is not a number") from None


def _split_file(task: Task, split: str) -> Path:
    path = task.path / f"{split}.jsonl"
    if not path.exists():
        splits = sorted(p.stem for p in task.path.glob("*.jsonl"))
        raise ValueError(f"task {task.name} has no {split!r} split; it has: {', '.join(splits)}")
    return path
