"""Texts and labels of a task folder's split, for analyses that need sentences rather than scores. Every text is
checked here, before a model sees it: a value that is not a string, a string with a lone surrogate (a JSON
``\\ud800`` escape, which has no UTF-8 form) and a file that is not UTF-8 are refused naming the file and line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gpte.data.mteb_folders import read_corpus, read_rows
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
        with _named_decoding(path):
            texts = read_corpus(task.path)
        return list(dict.fromkeys(_text(text, f"{path} document {doc!r}", "text") for doc, text in texts.items()))
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
    with _named_decoding(path):
        rows = read_rows(path, texts + others)
    return [
        (*(_text(row[name], f"{path}:{number}", name) for name in texts), *(row[name] for name in others))
        for number, row in enumerate(rows, 1)
    ]


def _text(value: object, where: str, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where}: {name} is {type(value).__name__}, not a string: {value!r:.80}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{where}: {name} is not valid Unicode text: a lone surrogate {value[error.start]!r} at character "
            f"{error.start + 1} (a JSON \\u escape of half a UTF-16 pair)"
        ) from None
    return value


def _number(value: object, where: str, name: str) -> float:
    try:
        return float(value)  # a number, or a number written as text
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name} {value!r:.80} is not a number") from None


@contextmanager
def _named_decoding(path: Path) -> Iterator[None]:
    """A file that is not UTF-8 read in the block raises ValueError naming ``path`` and the first bad line."""
    try:
        yield
    except UnicodeDecodeError:
        raise ValueError(f"{path}:{_undecodable_line(path)}: not UTF-8 text; save the file as UTF-8") from None


def _undecodable_line(path: Path) -> int:
    """The number of the first line of ``path`` that is not UTF-8 (0 if none is)."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


def _split_file(task: Task, split: str) -> Path:
    path = task.path / f"{split}.jsonl"
    if not path.exists():
        splits = sorted(p.stem for p in task.path.glob("*.jsonl"))
        raise ValueError(f"task {task.name} has no {split!r} split; it has: {', '.join(splits)}")
    return path
