"""Read texts from a user's file: txt/md (one text per line), jsonl, csv/tsv, parquet; or from a Hugging Face
dataset, ``hf:NAME[[:SUBSET]:SPLIT]`` (split ``train`` by default): NAME is a hub id (downloaded once into the
Hugging Face cache), a local folder of data files, or a folder written by ``datasets.save_to_disk``.

``iter_texts`` streams them (memory stays flat for files of millions of texts); ``read_texts`` lists
them. Errors name the file and the line (or row) and, for a missing field, the fields that exist.

Every reader of a user's file goes through here, so two errors that would otherwise surface later as a bare codec
error naming neither file nor line are raised here, naming both: a line that is not UTF-8 (``decoded_lines``,
``read_text_file``), and a jsonl string holding a lone surrogate (``"\\ud800"``: valid JSON, but no Unicode
character, so no tokenizer or hash takes it; ``iter_jsonl``). Text decoded from UTF-8 bytes (txt/md, csv/tsv) and
parquet text (Arrow checks it is UTF-8) never holds a surrogate.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gpte.errors import extra_needed

TEXT_FORMATS = (".txt", ".md", ".jsonl", ".csv", ".tsv", ".parquet")
DEFAULT_FIELD = "text"
HF_PREFIX = "hf:"
HF_EXTRA = "train"  # the extra that installs Hugging Face datasets
HF_SAVED_FILES = ("state.json", "dataset_dict.json")  # a folder written by save_to_disk holds one of these


def read_texts(path: str | Path, field: str | None = None) -> list[str]:
    """Texts of ``path``, in file order, as a list (see ``iter_texts``)."""
    return list(iter_texts(path, field))


def iter_texts(path: str | Path, field: str | None = None) -> Iterator[str]:
    """Texts of ``path``, in file order, read as they are consumed.

    Args:
        path: a .txt/.md file (one text per line; an empty line is an empty text), .jsonl (one object
            per line, or one JSON string per line), .csv/.tsv (with a header row) or .parquet file; or
            ``hf:NAME[[:SUBSET]:SPLIT]`` (see the module docstring).
        field: the field/column holding the text for jsonl/csv/tsv/parquet and datasets (default ``"text"``).

    Raises:
        FileNotFoundError: no such file, or a dataset that cannot be found or fetched.
        ValueError: unsupported extension, malformed line, missing field, or a value that is not a string.
    """
    if is_hf_dataset(path):
        return _iter_dataset_texts(str(path), field or DEFAULT_FIELD)
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


def decoded_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number from 1, line) for each line of ``path``, read as bytes, split after each ``\\n`` (kept) and
    decoded as UTF-8.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line that is not UTF-8, naming the file, the line, the byte and its column.
    """
    with Path(path).open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise _not_utf8(path, number, raw, error) from None


def read_text_file(path: str | Path) -> str:
    """The whole text of ``path``, decoded as UTF-8 with ``\\r\\n`` and ``\\r`` read as ``\\n`` (as
    ``Path.read_text`` reads it).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not UTF-8, naming its first line that is not (see ``decoded_lines``).
    """
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        for _ in decoded_lines(path):  # raises naming the first line that is not UTF-8
            pass
        raise ValueError(f"{path}: not UTF-8 text ({error.reason}); save the file as UTF-8") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _not_utf8(path: str | Path, number: int, raw: bytes, error: UnicodeDecodeError) -> ValueError:
    return ValueError(
        f"{path}:{number}: not UTF-8 text (byte {raw[error.start]:#04x} at column {error.start + 1}); "
        "save the file as UTF-8"
    )


def _iter_lines(path: Path) -> Iterator[str]:
    """Lines split on ``\\n`` only (a ``\\r`` before it is dropped); a final newline ends the last line."""
    for _, line in decoded_lines(path):
        yield line.removesuffix("\n").removesuffix("\r")


_LONE_CR = re.compile(r"(?<=\r)(?!\n)")  # after a \r that no \n follows: where a newline="" file splits too
_INNER_CR = re.compile(r"\r(?!\n|$)")  # a \r that neither ends the line nor comes before its \n


def csv_lines(path: str | Path) -> Iterator[str]:
    """The lines of a csv/tsv file for ``csv.reader``/``csv.DictReader``, split as a file opened with ``newline=""``
    splits them (after ``\\n``, ``\\r\\n`` or a lone ``\\r``, endings kept) and decoded as ``decoded_lines``
    decodes them (a line that is not UTF-8 is named)."""
    for _, line in decoded_lines(path):
        if _INNER_CR.search(line):  # a lone \r before the line's end: split there too
            yield from (part for part in _LONE_CR.split(line) if part)
        else:
            yield line


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for each line of a jsonl file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file and line, a line that is not UTF-8, not valid JSON (a blank line included: it
            is refused, not skipped) or holding a string with a lone surrogate (a ``\\ud800`` escape).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    for number, line in decoded_lines(path):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            reason = "an empty line" if not line.strip() else error.msg
            raise ValueError(f"{path}:{number}: not valid JSON ({reason})") from None
        if "\\ud" in line or "\\uD" in line:  # only such an escape writes a surrogate
            _check_surrogates(value, f"{path}:{number}")
        yield number, value


def _check_surrogates(value: object, where: str) -> None:
    """ValueError naming ``where`` for the first string of a parsed JSON value (keys and values, nested) with a
    lone surrogate."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(
                f"{where}: a lone surrogate {value[error.start]!r} at character {error.start + 1} of {value!r:.60} "
                "(a JSON \\u escape of half a UTF-16 pair); write the whole character or remove it"
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_surrogates(key, where)
            _check_surrogates(item, where)
    elif isinstance(value, list):
        for item in value:
            _check_surrogates(item, where)


RECORD_FORMATS = (".jsonl", ".csv", ".tsv", ".parquet")


def iter_records(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, record) for each row of a jsonl/csv/tsv/parquet file; ``where`` is ``file:line`` (or ``file: row i``).

    csv/tsv values are strings as written. ``path`` may also be ``hf:NAME[[:SUBSET]:SPLIT]`` (``where``:
    ``hf:NAME row i``). Raises FileNotFoundError, or ValueError for an unsupported extension, a malformed line or
    a jsonl line that is not an object.
    """
    if is_hf_dataset(path):
        yield from iter_dataset_records(str(path))
        return
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
        reader = csv.DictReader(csv_lines(path), delimiter="\t" if suffix == ".tsv" else ",")
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
        yield check_text(value, f"{path}:{number}")


def _iter_delimited(path: Path, field: str, delimiter: str) -> Iterator[str]:
    reader = csv.DictReader(csv_lines(path), delimiter=delimiter)
    if field not in (reader.fieldnames or []):
        raise ValueError(
            f"{path}: no column {field!r} (columns: {', '.join(reader.fieldnames or [])}); choose one with --field"
        )
    for row in reader:
        yield check_text(row[field], f"{path}:{reader.line_num}")


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
            yield check_text(value, f"{path}: row {index}")
            index += 1


def check_text(value: object, where: str, what: str = "the text") -> str:
    """``value`` if it is a string, else ValueError naming ``where`` (file and line) and ``what`` (the field).

    Strings read here need no Unicode check: ``iter_jsonl`` refuses a lone surrogate, and other formats cannot
    hold one."""
    if not isinstance(value, str):
        raise ValueError(f"{where}: {what} is {type(value).__name__}, not a string: {value!r:.80}")
    return value


def is_hf_dataset(source: object) -> bool:
    """Whether ``source`` names a Hugging Face dataset (``hf:...``)."""
    return isinstance(source, (str, Path)) and str(source).startswith(HF_PREFIX)


def load_hf_dataset(source: str, split: str = "train", subset: str | None = None) -> Any:
    """The ``datasets.Dataset`` that ``source`` names: ``hf:NAME[[:SUBSET]:SPLIT]`` (its SUBSET and SPLIT override
    ``subset`` and ``split``), or a folder written by ``save_to_disk`` (with or without ``hf:``).

    Raises:
        MissingExtraError: ``datasets`` is not installed (the extra is named).
        FileNotFoundError: the dataset cannot be found or fetched (naming it and, for the hub, the offline options).
        ValueError: a malformed ``hf:`` name, or no such split (the splits are listed).
    """
    name, subset, split = _hf_parts(source, split, subset)
    with extra_needed(HF_EXTRA):
        import datasets

    if any((Path(name) / saved).is_file() for saved in HF_SAVED_FILES):
        dataset = datasets.load_from_disk(name)
    else:
        try:
            dataset = datasets.load_dataset(name, subset, split=split)
        except (ValueError, KeyError) as error:
            if "split" in str(error).lower():
                raise ValueError(f"{source}: no split {split!r} ({error})") from None
            raise
        except Exception as error:  # the hub's and the file system's many errors: one message, the cause chained
            raise FileNotFoundError(
                f"could not load the dataset {source} ({type(error).__name__}: {error}). Without network, give "
                "hf:FOLDER for a local folder of data files or a save_to_disk folder, or set HF_DATASETS_OFFLINE=1 "
                "to use a dataset already in the Hugging Face cache"
            ) from error
    if hasattr(dataset, "keys"):  # a DatasetDict: take the split
        if split not in dataset:
            raise ValueError(f"{source}: no split {split!r} (splits: {', '.join(dataset)})")
        dataset = dataset[split]
    return dataset


def _hf_parts(source: str, split: str, subset: str | None) -> tuple[str, str | None, str]:
    """(name, subset, split) of ``hf:NAME[[:SUBSET]:SPLIT]``, or of a folder given without ``hf:``."""
    if not is_hf_dataset(source):
        return str(source), subset, split
    parts = str(source).removeprefix(HF_PREFIX).split(":")
    if len(parts) > 3 or not all(parts):
        raise ValueError(f"{source}: a Hugging Face dataset is hf:NAME, hf:NAME:SPLIT or hf:NAME:SUBSET:SPLIT")
    name, *rest = parts
    if len(rest) == 2:
        return name, rest[0], rest[1]
    return name, subset, rest[0] if rest else split


def iter_dataset_records(
    source: str, split: str = "train", subset: str | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(``SOURCE row i``, row) for each row of the dataset ``source`` (see ``load_hf_dataset``)."""
    for index, row in enumerate(load_hf_dataset(source, split, subset)):
        yield f"{source} row {index}", row


def dataset_fingerprint(source: str) -> str:
    """The ``datasets`` fingerprint of the dataset ``source`` names: it changes when its data does."""
    return load_hf_dataset(source)._fingerprint


def _iter_dataset_texts(source: str, field: str) -> Iterator[str]:
    dataset = load_hf_dataset(source)
    if field not in dataset.column_names:
        raise ValueError(
            f"{source}: no column {field!r} (columns: {', '.join(dataset.column_names)}); choose one with --field"
        )
    index = 0
    for batch in dataset.select_columns([field]).iter(batch_size=1024):
        for value in batch[field]:
            yield check_text(value, f"{source} row {index}")
            index += 1
