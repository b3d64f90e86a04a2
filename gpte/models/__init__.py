"""Models: the Embedder and its steps (backbone, pooling, dense, post-processing), loading and saving.

The names below are imported on first use (``gpte._lazy``, PEP 562): importing one submodule, say
``gpte.models.loading``, does not import the Embedder and transformers through this package."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpte._lazy import lazy_attributes

if TYPE_CHECKING:
    from gpte.models.embedder import Embedder, EncodeReport, EncodeResult
    from gpte.models.pooling import POOLERS, Pooler, build_pooler

__all__ = ["Embedder", "EncodeReport", "EncodeResult", "POOLERS", "Pooler", "build_pooler"]
__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "Embedder": "gpte.models.embedder",
        "EncodeReport": "gpte.models.embedder",
        "EncodeResult": "gpte.models.embedder",
        "POOLERS": "gpte.models.pooling",
        "Pooler": "gpte.models.pooling",
        "build_pooler": "gpte.models.pooling",
    },
)
