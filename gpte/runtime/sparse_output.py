"""Sparse vector files: what ``gpte encode --kind sparse`` writes.

``.npz``    scipy's ``save_npz`` of the CSR matrix (texts, vocab_size) float32: ``scipy.sparse.load_npz`` reads it.
``.jsonl``  one line per text, in input order: ``{"token": weight, ...}``, largest weight first (the model's
            ``decode``).

Files appear only once complete (written under a temporary name, then moved into place).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpte.atomic import atomic_path, check_destination
from gpte.errors import extra_needed

with extra_needed("sparse"):
    import scipy.sparse

SPARSE_FORMATS = (".npz", ".jsonl")


def check_sparse_output(path: str | Path, overwrite: bool) -> Path:
    """Validate a sparse output path before any work: a supported extension, a writable folder, not existing unless
    ``overwrite`` (``gpte.atomic.check_destination``)."""
    path = Path(path)
    if path.suffix.lower() not in SPARSE_FORMATS:
        raise ValueError(
            f"{path}: unsupported sparse output format {path.suffix!r}; use one of {', '.join(SPARSE_FORMATS)}"
        )
    return check_destination(path, overwrite)


def write_sparse_vectors(
    vectors: scipy.sparse.csr_matrix,
    path: str | Path,
    decode: Callable[[Any], list[tuple[str, float]]],
    overwrite: bool = False,
) -> Path:
    """Write ``vectors`` to ``path`` (.npz or .jsonl; ``decode`` turns one row into (token, weight) pairs)."""
    path = check_sparse_output(path, overwrite)
    with atomic_path(path, overwrite) as temporary:
        if path.suffix.lower() == ".npz":
            with open(temporary, "wb") as handle:
                scipy.sparse.save_npz(handle, vectors.tocsr())
        else:
            with open(temporary, "w", encoding="utf-8") as handle:
                for row in range(vectors.shape[0]):
                    handle.write(json.dumps(dict(decode(vectors[row])), ensure_ascii=False) + "\n")
    return path
