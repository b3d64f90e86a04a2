"""gpte's exceptions. Bad arguments raise the built-in TypeError/ValueError with a message that names the
problem and the allowed values; these classes cover what the built-ins do not say well.

Optional dependencies come in extras (``pip install 'gpte[search]'``); ``require_extra`` and ``extra_needed``
turn a missing one into a ``MissingExtraError`` that names the install line."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager


class GpteError(Exception):
    """Base class of gpte's own exceptions."""


class ModelLoadError(GpteError, OSError):
    """A model could not be found, downloaded or read (missing folder, corrupt files, no network)."""


class BackendUnavailableError(GpteError, RuntimeError):
    """An inference backend cannot run here (a missing extra, or hardware without the instructions it needs);
    the message names what to install or the backend to use instead."""


class NonFiniteVectorsError(GpteError, RuntimeError):
    """A model produced NaN or infinite values (corrupt or overflowing weights); the message names the model."""


class MissingExtraError(GpteError, ModuleNotFoundError):
    """A module of an optional extra is not installed; the message names the pip line that installs it and
    ``name`` the missing module (as on ``ModuleNotFoundError``)."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"gpte's {extra} extra is not installed ({module} is missing): pip install 'gpte[{extra}]'", name=module
        )
        self.extra = extra

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # pickles across worker processes
        return type(self), (self.name, self.extra)


def require_extra(extra: str, *modules: str) -> None:
    """Check that the top-level ``modules`` (import names) of ``extra`` are installed, without importing them.

    Raises:
        MissingExtraError: the first of ``modules`` that is missing, with the install line of ``extra``.
    """
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(module, extra)


@contextmanager
def extra_needed(extra: str) -> Iterator[None]:
    """Imports in the ``with`` block that fail for a missing third-party module raise ``MissingExtraError``
    naming ``extra`` (an outer block renames an inner one: ``gpte[train]`` also installs ``gpte[eval]``).
    A missing ``gpte`` module is a broken install, not a missing extra, and passes through unchanged."""
    try:
        yield
    except ModuleNotFoundError as error:
        module = (error.name or "").partition(".")[0]
        if module in ("", "gpte"):
            raise
        raise MissingExtraError(module, extra) from error
