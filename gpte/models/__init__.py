"""Models: the Embedder and its steps (backbone, pooling, dense, post-processing), loading and saving."""

from gpte.models.embedder import Embedder, EncodeReport, EncodeResult
from gpte.models.pooling import POOLERS, Pooler, build_pooler

__all__ = ["Embedder", "EncodeReport", "EncodeResult", "POOLERS", "Pooler", "build_pooler"]
