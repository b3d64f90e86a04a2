"""Read texts from a user's file: txt/md (one text per line), jsonl, csv/tsv, parquet.

``iter_texts`` streams them (memory stays flat for files of millions of texts); ``read_texts`` lists
them. Errors name the file and the line (or row) and, for a missing field, the fields that exist.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gpte.errors import extra_needed

TEXT_FORMATS = (".txt", ".md", ".jsonl", ".csv", ".tsv", ".parquet")
DEFAULT_FIELD = "text"


def read_texts(path: str | Path, field: str | None = None) -> list[str]:
    """Texts of ``path``, in file order, as a list (see ``iter_texts``)."""
    return list(iter_texts(path, field))


def iter_texts(path: str | Path, field: str | None = None) -> Iterator[str]:
    """Texts of ``path``, in file order, read as they are consumed.

    Args:
        path: a .txt/.md file (one text per line; an empty line is an empty text), .jsonl (one object
            per line, or one JSON string per line), .csv/.tsv (with a header row) or .parquet file.
        field: the field/column holding the text for jsonl/csv/tsv/parquet (default ``"text"``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: unsupported extension, malformed line, missing field, or a value that is not a string.
    """
    path, suffix = _checked_file(path, TEXT_FORMATS)
    field = field or DEFAULT_FIELD
    if suffix in (".txt", ".md"):
        return _iter_lines(path)
    if suffix == ".jsonl":
        return _iter_jsonl(path, field)
    if suffix == ".parquet":
        return _iter_parquet(path, field)
    return _iter_delimited(path, field, "\t" if suffix == ".tsv" else ",")


def _checked_file(path: str | Path, formats: tuple[str, ...]) -> tuple[Path, str]:
    """``path`` as a Path and its lower-case suffix; FileNotFoundError or ValueError (formats listed) otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in formats:
        raise ValueError(f"{path}: unsupported input format {suffix!r}; use one of {', '.join(formats)}")
    return path, suffix


def _iter_lines(path: Path) -> Iterator[str]:
    """Lines split on ``\\n`` only (a ``\\r`` before it is dropped); a final newline ends the last line."""
    with path.open(encoding="utf-8", newline="\n") as handle:
        for line in handle:
            yield line.removesuffix("\n").removesuffix("\r")


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for each line of a jsonl file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line that is not valid JSON (file and line named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from None


RECORD_FORMATS = (".jsonl", ".csv", ".tsv", ".parquet")


def iter_records(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, record) for each row of a jsonl/csv/tsv/parquet file; ``where`` is ``file:line`` (or ``file: row i``).

    csv/tsv values are strings as written. Raises FileNotFoundError, or ValueError for an unsupported
    extension, a malformed line or a jsonl line that is not an object.
    """
    path, suffix = _checked_file(path, RECORD_FORMATS)
    if suffix == ".jsonl":
        for number, value in iter_jsonl(path):
            if not isinstance(value, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {type(value).__name__}")
            yield f"{path}:{number}", value
    elif suffix == ".parquet":
        with extra_needed("parquet"):
            import pyarrow.parquet as pq

        index = 0
        for batch in pq.ParquetFile(path).iter_batches():
            for record in batch.to_pylist():
                yield f"{path}: row {index}", record
                index += 1
    else:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",")
            for row in reader:
                yield f"{path}:{reader.line_num}", dict(row)


def _iter_jsonl(path: Path, field: str) -> Iterator[str]:
    for number, value in iter_jsonl(path):
        if isinstance(value, dict):
            if field not in value:
                raise ValueError(
                    f"{path}:{number}: no field {field!r} (fields: {', '.join(value)}); choose one with --field"
                )
            value = value[field]
        yield _string(value, f"{path}:{number}")


def _iter_delimited(path: Path, field: str, delimiter: str) -> Iterator[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        if field not in (reader.fieldnames or []):
            raise ValueError(
                f"{path}: no column {field!r} (columns: {', '.join(reader.fieldnames or [])}); choose one with --field"
            )
        for row in reader:
            yield _string(row[field], f"{path}:{reader.line_num}")


def _iter_parquet(path: Path, field: str) -> Iterator[str]:
    with extra_needed("parquet"):
        import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    if field not in parquet.schema_arrow.names:
        raise ValueError(
            f"{path}: no column {field!r} (columns: {', '.join(parquet.schema_arrow.names)}); choose one with --field"
        )
    index = 0
    for batch in parquet.iter_batches(columns=[field]):
        for value in batch.column(0).to_pylist():
            yield _string(value, f"{path}: row {index}")
            index += 1


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where}: the text is {type(value).__name__}, not a string: {value!r:.80}")
    return value
