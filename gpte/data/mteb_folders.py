"""Read evaluation data in the MTEB/BEIR folder layouts (see ../shared/data/README.md).

Row files are jsonl, one object per line; BEIR folders hold ``corpus.jsonl`` (``_id``, ``title``,
``text``), ``queries.jsonl`` (``_id``, ``text``) and ``qrels/{split}.tsv`` (``query-id corpus-id score``
with a header). Errors name the file and line (``gpte.data.readers``: malformed, not UTF-8, a lone surrogate).
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpte.data.readers import csv_lines, iter_jsonl


def read_rows(path: Path, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """The objects of a jsonl file, each checked to have ``fields``.

    Raises:
        FileNotFoundError: no such file. ValueError: a malformed line, a missing field, or no rows.
    """
    rows = []
    for number, row in iter_jsonl(path):
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        missing = [name for name in fields if name not in row]
        if missing:
            raise ValueError(f"{path}:{number}: missing field(s) {', '.join(missing)} (fields: {', '.join(row)})")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no rows; the task is empty")
    return rows


@dataclass
class RetrievalData:
    """A BEIR split: documents and queries by id, and graded relevance ``qrels[query][doc]``."""

    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def document_text(title: str | None, text: str) -> str:
    """A BEIR document's text as mteb builds it: ``title + " " + text`` when there is a title, stripped."""
    return (title + " " + text).strip() if title else text.strip()


def read_qrels(path: Path) -> Iterator[tuple[str, str, int]]:
    """The (query id, document id, grade) rows of a BEIR qrels file (tab-separated, with a header).

    Raises:
        FileNotFoundError: no such file. ValueError: a row with fewer than 3 fields or a non-numeric grade
            (file and line named).
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    reader = csv.reader(csv_lines(path), delimiter="\t")
    next(reader, None)  # header
    for number, fields in enumerate(reader, 2):
        if len(fields) < 3:
            raise ValueError(f"{path}:{number}: expected query-id, corpus-id, score; got {fields}")
        try:
            grade = int(float(fields[2]))
        except ValueError:
            raise ValueError(f"{path}:{number}: score {fields[2]!r} is not a number") from None
        yield fields[0], fields[1], grade


def read_corpus(folder: Path) -> dict[str, str]:
    """Document id -> text (``document_text``) of a BEIR folder's ``corpus.jsonl``."""
    return {
        str(row["_id"]): document_text(row.get("title"), row["text"])
        for row in read_rows(folder / "corpus.jsonl", ("_id", "text"))
    }


def read_beir(folder: Path, split: str) -> RetrievalData:
    """Read a BEIR folder; a document's text is ``title + " " + text`` (stripped), as mteb builds it.

    qrels naming unknown queries or documents are dropped and counted in a warning, not fatal.
    """
    corpus = read_corpus(folder)
    queries = {str(row["_id"]): row["text"] for row in read_rows(folder / "queries.jsonl", ("_id", "text"))}
    qrels: dict[str, dict[str, int]] = {}
    unknown = 0
    path = folder / "qrels" / f"{split}.tsv"
    for query, doc, grade in read_qrels(path):
        if query not in queries or doc not in corpus:
            unknown += 1
            continue
        qrels.setdefault(query, {})[doc] = grade
    if unknown:
        warnings.warn(f"{path}: {unknown} qrels name unknown queries or documents and were skipped", stacklevel=2)
    if not qrels:
        raise ValueError(f"{path}: no usable qrels; the task is empty")
    return RetrievalData(corpus, queries, qrels)
