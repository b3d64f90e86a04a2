"""gpte: general-purpose text embeddings with any pretrained language model."""

from gpte._version import __version__
from gpte.errors import GpteError, ModelLoadError
from gpte.models import Embedder, EncodeReport, EncodeResult
from gpte.prompts import Prompts, PromptTemplate
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
