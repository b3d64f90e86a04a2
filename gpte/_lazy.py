"""Names of a package imported on first use (PEP 562), so that importing a package stays cheap: ``import gpte`` and
``gpte --help`` do not import torch."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_attributes(
    package: str, name_to_module: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's module ``__getattr__`` and ``__dir__`` (PEP 562) for names imported on first use.

    Args:
        package: the package's ``__name__``.
        name_to_module: each lazy name and the module it is imported from.

    Returns:
        ``__getattr__``, which imports a name once and keeps it as a global of the package (raising AttributeError,
        as Python does, for any other name), and ``__dir__``: the package's globals and lazy names.
    """
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        if name not in name_to_module:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = getattr(importlib.import_module(name_to_module[name]), name)
        return namespace[name]

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(name_to_module))

    return __getattr__, __dir__
