"""What both framework adapters do: get a gpte dense model (a loaded one, or a name or folder to load) and embed
texts in a role as lists of floats, the form LangChain and LlamaIndex pass around."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gpte.models.embedder import Embedder
from gpte.models.protocol import DenseModel, require_dense


def dense_model(model: DenseModel | str | Path | None, load_options: dict[str, Any]) -> DenseModel:
    """``model`` itself if it is a dense model (``load_options`` must then be empty), else ``Embedder.load(model,
    **load_options)`` (None: the packaged default model).

    Raises:
        TypeError: a model of another kind, or load options given with a loaded model.
    """
    if model is None or isinstance(model, (str, Path)):
        return Embedder.load(model, **load_options)
    if load_options:
        raise TypeError(f"load options {sorted(load_options)} apply to a model name or folder, not to a loaded model")
    return require_dense(model, "the framework adapter")


def embed_as_lists(model: DenseModel, texts: Sequence[str], role: str, batch_size: int) -> list[list[float]]:
    """The vectors of ``texts`` encoded in ``role`` (the model's default normalization), as lists of floats."""
    if not texts:
        return []
    return model.encode(list(texts), role=role, batch_size=batch_size, show_progress=False).tolist()
