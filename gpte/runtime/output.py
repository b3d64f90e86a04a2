"""Vector file formats (.npy, .parquet) and the check of an output path; ``gpte.runtime.streaming`` writes them."""

from __future__ import annotations

from pathlib import Path

from gpte.atomic import check_destination
from gpte.errors import require_extra

VECTOR_FORMATS = (".npy", ".parquet")
PARQUET_COLUMN = "embedding"


def check_output(path: str | Path, overwrite: bool) -> Path:
    """Validate an output path before any work: a supported extension, a writable folder, not existing unless
    ``overwrite`` (``gpte.atomic.check_destination``)."""
    path = Path(path)
    if path.suffix.lower() not in VECTOR_FORMATS:
        raise ValueError(f"{path}: unsupported output format {path.suffix!r}; use one of {', '.join(VECTOR_FORMATS)}")
    if path.suffix.lower() == ".parquet":
        require_extra("parquet", "pyarrow")
    return check_destination(path, overwrite)
