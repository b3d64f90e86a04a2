"""A gpte dense model as LangChain's ``Embeddings``: ``embed_documents`` in the model's document role,
``embed_query`` in its query role; the async variants are LangChain's defaults (the sync call in an executor).

Needs ``pip install 'gpte[langchain]'`` (langchain-core)::

    from gpte.integrations.langchain import GpteEmbeddings
    embeddings = GpteEmbeddings()                       # the packaged all-MiniLM-L6-v2
    embeddings = GpteEmbeddings("intfloat/e5-small-v2", device="cpu")  # Embedder.load options
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpte.errors import extra_needed
from gpte.integrations.common import dense_model, embed_as_lists
from gpte.models.protocol import DenseModel

with extra_needed("langchain"):
    from langchain_core.embeddings import Embeddings


class GpteEmbeddings(Embeddings):
    """LangChain embeddings from a gpte dense model.

    Args:
        model: a loaded dense model (``Embedder``, ``StaticEmbedder``), or a name or folder for ``Embedder.load``
            (None: the packaged default model).
        batch_size: texts per forward pass.
        load_options: ``Embedder.load`` keywords (device, dtype, prompts, ...) when ``model`` is a name.
    """

    def __init__(self, model: DenseModel | str | Path | None = None, batch_size: int = 32, **load_options: Any) -> None:
        self.model = dense_model(model, load_options)
        self.batch_size = batch_size

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, encoded in the model's document role."""
        return embed_as_lists(self.model, texts, "document", self.batch_size)

    def embed_query(self, text: str) -> list[float]:
        """The vector of ``text`` encoded in the model's query role."""
        return embed_as_lists(self.model, [text], "query", self.batch_size)[0]
