"""One entry point that loads any dense model gpte can run from a name or folder: a static model folder (written by
``gpte distill-static``: ``gpte_static.json`` beside its table) as a ``StaticEmbedder``, everything else through
``Embedder.load``. Consumers that reload a model by the name they recorded (an index, a server) use this, so a
static model is indexed, served and evaluated like any other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpte.models.protocol import DenseModel
from gpte.models.static import CONFIG_FILE, StaticEmbedder

STATIC_BACKENDS = ("static", "torch")  # what a static folder accepts as backend: it has its own, "static"


def is_static_folder(name_or_path: str | Path | None) -> bool:
    """Whether ``name_or_path`` is a folder written by ``StaticEmbedder.save``."""
    return name_or_path is not None and (Path(name_or_path) / CONFIG_FILE).is_file()


def load_model(name_or_path: str | Path | None = None, backend: str = "torch", **options: Any) -> DenseModel:
    """The dense model at ``name_or_path`` (None: the packaged default).

    Args:
        name_or_path: as ``Embedder.load``, or a static model folder.
        backend: as ``Embedder.load``; a static folder runs its own way and accepts only "static" or the default.
        options: ``Embedder.load`` options (device, pooling, attention, extraction, ...); none apply to a static model.

    Raises:
        ValueError: ``backend="static"`` for a folder that is not a static model, or transformer options for one.
    """
    if is_static_folder(name_or_path):
        given = {key: value for key, value in options.items() if value is not None}
        if backend not in STATIC_BACKENDS or given:
            raise ValueError(
                f"{name_or_path} is a static model (gpte distill-static): backend {backend!r} and options "
                f"{sorted(given)} apply to transformer models only"
            )
        return StaticEmbedder.load(name_or_path)
    if backend == "static":
        raise ValueError(
            f"backend 'static' needs a folder written by gpte distill-static; {name_or_path!r} has no {CONFIG_FILE}"
        )
    from gpte.models.embedder import Embedder

    return Embedder.load(name_or_path, backend=backend, **options)
