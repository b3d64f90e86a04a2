"""Write vectors to .npy or .parquet atomically (a crash leaves no file under the final name)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gpte.atomic import atomic_path, refuse_existing

VECTOR_FORMATS = (".npy", ".parquet")
PARQUET_COLUMN = "embedding"


def check_output(path: str | Path, overwrite: bool) -> Path:
    """Validate an output path before any work: a supported extension, not existing unless ``overwrite``."""
    path = Path(path)
    if path.suffix.lower() not in VECTOR_FORMATS:
        raise ValueError(f"{path}: unsupported output format {path.suffix!r}; use one of {', '.join(VECTOR_FORMATS)}")
    refuse_existing(path, overwrite)
    return path


def write_vectors(path: str | Path, vectors: np.ndarray, overwrite: bool = False) -> Path:
    """Write a 2-D array as .npy, or as parquet with one fixed-size list column ``embedding`` per row."""
    path = check_output(path, overwrite)
    with atomic_path(path, overwrite) as temporary:
        if path.suffix.lower() == ".npy":
            with temporary.open("wb") as handle:
                np.save(handle, vectors)
        else:
            _write_parquet(temporary, vectors)
    return path


def _write_parquet(path: Path, vectors: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = pa.array(np.ascontiguousarray(vectors).reshape(-1))
    column = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
    pq.write_table(pa.table({PARQUET_COLUMN: column}), path)
