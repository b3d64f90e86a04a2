"""gpte: general-purpose text embeddings with any pretrained language model."""

from gpte.errors import GpteError, ModelLoadError
from gpte.models import Embedder, EncodeReport, EncodeResult
from gpte.prompts import PromptTemplate, Prompts
from gpte.similarity import similarity

__version__ = "0.1.0"

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
