"""Checks of the user's input files that ``gpte.data.readers`` does not make yet: a file that is not UTF-8, and a
JSON string holding a lone surrogate (``"\\ud800"``: valid JSON, but no Unicode character, so no tokenizer or hash
can take it). Both otherwise surface as a codec error naming neither the file nor the line.

    with named_input_errors(source):
        texts = require_unicode(read_texts(source))
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from gpte.data.documents import document_files


def check_text(value: object, where: str, what: str) -> str:
    """``value`` if it is a string that has a UTF-8 form.

    Raises:
        ValueError: naming ``where`` (file and line) and ``what`` (the field): not a string, or a lone surrogate.
    """
    if not isinstance(value, str):
        raise ValueError(f"{where}: {what} is {type(value).__name__}, not a string: {value!r:.80}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"{where}: {what} is not valid Unicode text: {_surrogate(error)}") from None
    return value


def require_unicode(texts: Iterable[str]) -> list[str]:
    """``texts`` as a list, each encoded once to UTF-8 so that a lone surrogate raises here, inside
    ``named_input_errors``, which names its file and line."""
    texts = list(texts)
    for text in texts:
        text.encode("utf-8")
    return texts


@contextmanager
def named_input_errors(source: str | Path) -> Iterator[None]:
    """Within the block, a file of ``source`` (a file, or a folder of document files) that is not UTF-8, or a JSON
    line of it with a lone surrogate, raises ValueError naming the file and line instead of a bare codec error.
    An encoding error that no line of ``source`` explains passes through unchanged."""
    try:
        yield
    except UnicodeDecodeError as error:
        raise _undecodable(Path(source), error) from None
    except UnicodeEncodeError as error:
        located = _surrogate_line(Path(source)) if "surrogate" in error.reason else None
        if located is None:
            raise
        raise located from None


def _files(source: Path) -> list[Path]:
    return [path for path, _ in document_files(source)] if source.is_dir() else [source]


def _undecodable(source: Path, error: UnicodeDecodeError) -> ValueError:
    """ValueError naming the first line of ``source``'s files that is not UTF-8."""
    for path in _files(source):
        with path.open("rb") as handle:
            for number, line in enumerate(handle, 1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as bad:
                    return ValueError(
                        f"{path}:{number}: not UTF-8 text (byte {line[bad.start]:#04x} at column {bad.start + 1}); "
                        "save the file as UTF-8"
                    )
    return ValueError(f"{source}: not UTF-8 text ({error.reason}); save the file as UTF-8")


def _surrogate_line(source: Path) -> ValueError | None:
    """ValueError naming the first jsonl line of ``source``'s files whose JSON holds a lone surrogate, or None."""
    for path in _files(source):
        if path.suffix.lower() != ".jsonl":
            continue  # text read from UTF-8 bytes never holds a surrogate; only a JSON escape writes one
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                try:
                    strings = list(_strings(json.loads(line)))
                except json.JSONDecodeError:
                    return None
                for text in strings:
                    try:
                        text.encode("utf-8")
                    except UnicodeEncodeError as error:
                        return ValueError(f"{path}:{number}: {_surrogate(error)}")
    return None


def _strings(value: object) -> Iterator[str]:
    """The strings of a parsed JSON value (keys and values, nested)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _surrogate(error: UnicodeEncodeError) -> str:
    """What is wrong with the string ``error`` failed to encode: its lone surrogate and where it is."""
    return (
        f"a lone surrogate {error.object[error.start]!r} at character {error.start + 1} of {error.object!r:.60} "
        "(a JSON \\u escape of half a UTF-16 pair); write the whole character or remove it"
    )
