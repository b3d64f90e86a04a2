"""Documents of a collection, read from files: txt/md (one document per file) and jsonl/csv/tsv/parquet
(one document per row); a folder is read recursively (hidden files and folders skipped, sorted paths).

A row's id is its ``_id`` or ``id`` field (else ``FILE:ROW``), its text ``title + " " + text`` when a
``title`` is present, stripped (as BEIR/mteb build a document), and its other scalar fields become metadata. A
file's id is its path relative to the source (the source's file name when the source is one file).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpte.data.mteb_folders import document_text
from gpte.data.readers import RECORD_FORMATS, TEXT_FORMATS, check_text, is_hf_dataset, iter_records, read_text_file

DOCUMENT_FORMATS = TEXT_FORMATS
ID_FIELDS = ("_id", "id")
METADATA_TYPES = (str, int, float, bool)


@dataclass(frozen=True)
class Document:
    """One document: ``id`` (unique in the collection), ``text`` and scalar ``metadata``."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def content_hash(self) -> str:
        """sha256 of the text and metadata: equal hashes mean an unchanged document."""
        payload = json.dumps([self.text, self.metadata], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def read_documents(source: str | Path, text_field: str = "text") -> list[Document]:
    """All documents of ``source`` (a file or a folder), checked for duplicate ids.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: an unsupported file format (formats listed), a row without ``text_field`` or a file that
            cannot be read (file and line named: see ``gpte.data.readers``), duplicate document ids (the first ones
            named), or no documents at all.
    """
    documents = list(iter_documents(source, text_field))
    duplicates = [doc_id for doc_id, count in Counter(doc.id for doc in documents).items() if count > 1]
    if duplicates:
        raise ValueError(
            f"{source}: {len(duplicates)} duplicate document id(s), e.g. {', '.join(map(repr, duplicates[:5]))}"
        )
    if not documents:
        raise ValueError(f"{source}: no documents found (formats: {', '.join(DOCUMENT_FORMATS)})")
    return documents


def iter_documents(source: str | Path, text_field: str = "text") -> Iterator[Document]:
    """Documents of ``source`` in path order, then file order (see the module docstring); ``source`` may be a
    Hugging Face dataset, ``hf:NAME[[:SUBSET]:SPLIT]`` (one document per row, default ids ``hf:...:ROW``)."""
    if is_hf_dataset(source):
        for row_number, (where, record) in enumerate(iter_records(source)):
            yield _row_document(record, where, f"{source}:{row_number}", str(source), text_field)
        return
    for path, name in document_files(source):
        yield from file_documents(path, name, text_field)


def document_files(source: str | Path) -> list[tuple[Path, str]]:
    """The document files of ``source`` (itself if a file; else its files with a known format, recursively,
    hidden ones skipped) in path order, each with the name its documents are known by (relative path)."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"document source {source} does not exist")
    if source.is_file():
        return [(source, source.name)]
    return [
        (path, path.relative_to(source).as_posix())
        for path in sorted(source.rglob("*"))
        if path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(source).parts)
        and path.suffix.lower() in DOCUMENT_FORMATS
    ]


def file_documents(path: Path, name: str, text_field: str = "text") -> Iterator[Document]:
    """The documents of one file, known as ``name`` (their ``source`` metadata and default ids)."""
    suffix = path.suffix.lower()
    if suffix not in DOCUMENT_FORMATS:
        raise ValueError(f"{path}: unsupported document format {suffix!r}; use one of {', '.join(DOCUMENT_FORMATS)}")
    if suffix not in RECORD_FORMATS:
        yield Document(name, read_text_file(path), {"source": name})
        return
    for row_number, (where, record) in enumerate(iter_records(path)):
        yield _row_document(record, where, f"{name}:{row_number}", name, text_field)


def _row_document(record: dict[str, Any], where: str, default_id: str, source: str, text_field: str) -> Document:
    if text_field not in record:
        raise ValueError(f"{where}: no field {text_field!r} (fields: {', '.join(record)}); choose one with --field")
    text = check_text(record[text_field], where)
    title = record.get("title")
    text = document_text(title if isinstance(title, str) else None, text)
    doc_id = next((str(record[name]) for name in ID_FIELDS if record.get(name) not in (None, "")), default_id)
    skipped = {text_field, "title", *ID_FIELDS}
    metadata = {key: value for key, value in record.items() if key not in skipped and isinstance(value, METADATA_TYPES)}
    return Document(doc_id, text, {"source": source, **metadata})
