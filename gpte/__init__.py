"""gpte: general-purpose text embeddings with any pretrained language model.

The names that need torch (``Embedder``, ``EncodeReport``, ``EncodeResult``, ``similarity``) are imported on first
use (a module ``__getattr__``, PEP 562), so that ``import gpte`` and the ``gpte`` command's help and ``--version``
start in a fraction of a second; ``from gpte import Embedder`` works as before.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from gpte._lazy import lazy_attributes
from gpte._version import __version__
from gpte.errors import GpteError, ModelLoadError
from gpte.prompts import Prompts, PromptTemplate

if TYPE_CHECKING:
    from gpte.models.embedder import Embedder, EncodeReport, EncodeResult
    from gpte.similarity import similarity

__all__ = [
    "Embedder",
    "EncodeReport",
    "EncodeResult",
    "GpteError",
    "ModelLoadError",
    "PromptTemplate",
    "Prompts",
    "similarity",
    "__version__",
]


LAZY = {
    "Embedder": "gpte.models.embedder",
    "EncodeReport": "gpte.models.embedder",
    "EncodeResult": "gpte.models.embedder",
    "similarity": "gpte.similarity",
}
__getattr__, __dir__ = lazy_attributes(__name__, LAZY)


class _Package(types.ModuleType):
    """gpte's module type, for one case: ``gpte.similarity`` is both the function exported here and a submodule, and
    Python sets a submodule as an attribute of its package when any module first imports it, which would make
    ``from gpte import similarity`` give the module; a lazy name is kept for its object."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
