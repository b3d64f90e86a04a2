"""Logging for the ``gpte`` command, and only for it: the library logs to ``logging.getLogger(__name__)`` and
configures nothing; the CLI decides what reaches the terminal.

- gpte's messages (the ``gpte`` logger and its children) at INFO by default, DEBUG with ``-v``, WARNING with ``-q``,
  on stderr: INFO as the bare message, other levels as ``gpte: warning: ...``.
- Other libraries are quiet unless ``-v``: transformers' logs and its "Loading weights" bars, the Hugging Face Hub's
  and datasets' progress bars, onnxruntime's Python warnings (the quantizer's "Please consider to run
  pre-processing"), and any other library that logs through ``logging``: only their errors show. With ``-v`` they
  keep their own defaults (and Python's: warnings and errors of a library without a handler of its own).

``cli_logging`` undoes all of it on exit, so that ``gpte.cli.main`` can be called in-process (tests) without
changing the logging of the caller.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator

QUIET_LIBRARY_LEVEL = logging.ERROR  # what other libraries may still say without -v
DATASETS_BARS_VARIABLE = "HF_DATASETS_DISABLE_PROGRESS_BARS"


class StderrHandler(logging.StreamHandler):
    """A stream handler on whatever ``sys.stderr`` is when a record comes (it is replaced under pytest's capture)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def is_gpte(name: str) -> bool:
    return name == "gpte" or name.startswith("gpte.")


class LibraryFilter(logging.Filter):
    """Lets gpte's records through (the ``gpte`` logger's level chose them) and other libraries' from
    ``threshold`` up, whatever level a library gave its own logger (bm25s logs at DEBUG)."""

    def __init__(self, threshold: int) -> None:
        super().__init__()
        self.threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        return is_gpte(record.name) or record.levelno >= self.threshold


class CliFormatter(logging.Formatter):
    """gpte's INFO messages as they are (progress for the user); the rest with where and how bad."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        ours = is_gpte(record.name)
        if ours and record.levelno == logging.INFO:
            return message
        if ours and record.levelno >= logging.WARNING:
            return f"gpte: {record.levelname.lower()}: {message}"
        return f"{record.name}: {record.levelname.lower()}: {message}"


@contextlib.contextmanager
def cli_logging(level: int) -> Iterator[None]:
    """Log gpte's messages at ``level`` and above to stderr; quiet other libraries unless ``level`` is DEBUG (-v)."""
    root, gpte, onnxruntime = logging.getLogger(), logging.getLogger("gpte"), logging.getLogger("onnxruntime")
    saved = [(logger, logger.level) for logger in (root, gpte, onnxruntime)]
    quiet = level > logging.DEBUG
    handler = StderrHandler()
    handler.setFormatter(CliFormatter())
    handler.addFilter(LibraryFilter(QUIET_LIBRARY_LEVEL if quiet else logging.WARNING))
    root.addHandler(handler)
    gpte.setLevel(level)
    undo: list[Callable[[], None]] = []
    if quiet:
        root.setLevel(QUIET_LIBRARY_LEVEL)
        onnxruntime.setLevel(QUIET_LIBRARY_LEVEL)
        undo = _quiet_libraries()
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an environment variable that has priority says so on every call
            for step in reversed(undo):
                step()
        root.removeHandler(handler)
        for logger, old in saved:
            logger.setLevel(old)


def _quiet_libraries() -> list[Callable[[], None]]:
    """Silence transformers, huggingface_hub and datasets with their own switches; returns how to undo each."""
    undo: list[Callable[[], None]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from huggingface_hub import utils as hub

        hub_disabled = hub.are_progress_bars_disabled()
        undo.append(hub.disable_progress_bars if hub_disabled else hub.enable_progress_bars)
        try:
            from transformers.utils import logging as transformers_logging
        except ImportError:
            pass
        else:
            verbosity, bars = transformers_logging.get_verbosity(), transformers_logging.is_progress_bar_enabled()
            transformers_logging.set_verbosity_error()
            transformers_logging.disable_progress_bar()  # also the Hub's
            undo.append(functools.partial(transformers_logging.set_verbosity, verbosity))
            if bars:
                undo.append(transformers_logging.enable_progress_bar)
        hub.disable_progress_bars()
        undo.extend(_quiet_datasets())
    return undo


def _quiet_datasets() -> list[Callable[[], None]]:
    """datasets' progress bars off: through its API when it is loaded already, else through the variable it reads
    when imported (importing it here would cost every command 1-2 s; only ``train`` uses it). Its log lines are
    dropped by the handler's filter like every other library's."""
    if "datasets" not in sys.modules:
        previous = os.environ.get(DATASETS_BARS_VARIABLE)
        os.environ[DATASETS_BARS_VARIABLE] = "1"
        restore = functools.partial(os.environ.__setitem__, DATASETS_BARS_VARIABLE, previous)
        return [functools.partial(os.environ.pop, DATASETS_BARS_VARIABLE, None) if previous is None else restore]
    import datasets

    if datasets.utils.are_progress_bars_disabled():
        return []
    datasets.disable_progress_bars()
    return [datasets.enable_progress_bars]
