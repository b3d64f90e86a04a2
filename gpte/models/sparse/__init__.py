"""The sparse model kind (SPLADE, inference-free SPLADE, PromptReps, CSR): ``SparseEncoder`` and its loaders.

Needs the ``sparse`` extra (scipy, whose CSR matrices hold the vectors): pip install 'gpte[sparse]'."""

from gpte.errors import extra_needed

with extra_needed("sparse"):
    from gpte.models.loading import is_sparse_folder
    from gpte.models.sparse.csr import CSRHead, SparseAutoEncoder, csr_from_dense
    from gpte.models.sparse.encoder import SparseEncoder, SparseResult, active_dimensions, prune
    from gpte.models.sparse.folders import load_sparse_encoder, promptreps

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
