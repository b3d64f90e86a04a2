"""The sparse model kind (SPLADE, inference-free SPLADE, PromptReps, CSR): ``SparseEncoder`` and its loaders."""

from gpte.models.sparse.csr import CSRHead, SparseAutoEncoder, csr_from_dense
from gpte.models.sparse.encoder import SparseEncoder, SparseResult, active_dimensions, prune
from gpte.models.sparse.folders import is_sparse_folder, load_sparse_encoder, promptreps

__all__ = [
    "CSRHead",
    "SparseAutoEncoder",
    "csr_from_dense",
    "SparseEncoder",
    "SparseResult",
    "active_dimensions",
    "is_sparse_folder",
    "load_sparse_encoder",
    "promptreps",
    "prune",
]
