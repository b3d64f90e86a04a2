"""The multi-vector model kind (ColBERT late interaction): ``MultiVectorEncoder`` gives one unit vector per token,
``TokenVectors`` holds them ragged, MaxSim scores them (``gpte.models.multivector.maxsim``), and
``load_multivector_encoder`` reads sentence-transformers' MultiVectorEncoder and PyLate folders or starts a new model
from any transformer."""

from gpte.models.multivector.encoder import MultiVectorBatch, MultiVectorEncoder, QueryExpansion
from gpte.models.multivector.folders import load_multivector_encoder
from gpte.models.multivector.maxsim import maxsim, maxsim_matrix, maxsim_pairwise, maxsim_rows
from gpte.models.multivector.vectors import TokenVectors

__all__ = [
    "MultiVectorBatch",
    "MultiVectorEncoder",
    "QueryExpansion",
    "TokenVectors",
    "load_multivector_encoder",
    "maxsim",
    "maxsim_matrix",
    "maxsim_pairwise",
    "maxsim_rows",
]
