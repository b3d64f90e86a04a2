"""A gpte dense model as LlamaIndex's ``BaseEmbedding``: queries in the model's query role, texts (nodes) in its
document role; the async methods run the sync ones in a worker thread, so the event loop keeps running.

Needs ``pip install 'gpte[llamaindex]'`` (llama-index-core)::

    from llama_index.core import Settings
    from gpte.integrations.llama_index import GpteEmbedding
    Settings.embed_model = GpteEmbedding()               # the packaged all-MiniLM-L6-v2
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gpte.errors import extra_needed
from gpte.integrations.common import dense_model, embed_as_lists
from gpte.models.protocol import DenseModel

with extra_needed("llamaindex"):
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from pydantic import PrivateAttr


class GpteEmbedding(BaseEmbedding):
    """LlamaIndex embeddings from a gpte dense model.

    Args:
        model: a loaded dense model (``Embedder``, ``StaticEmbedder``), or a name or folder for ``Embedder.load``
            (None: the packaged default model).
        embed_batch_size: texts per LlamaIndex batch, also the model's batch size.
        load_options: ``Embedder.load`` keywords (device, dtype, prompts, ...) when ``model`` is a name.
    """

    _model: Any = PrivateAttr()

    def __init__(
        self, model: DenseModel | str | Path | None = None, embed_batch_size: int = 32, **load_options: Any
    ) -> None:
        loaded = dense_model(model, load_options)
        super().__init__(model_name=loaded.name, embed_batch_size=embed_batch_size)
        self._model = loaded

    @classmethod
    def class_name(cls) -> str:
        return "GpteEmbedding"

    @property
    def model(self) -> DenseModel:
        return self._model

    def _get_query_embedding(self, query: str) -> list[float]:
        return embed_as_lists(self._model, [query], "query", self.embed_batch_size)[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return embed_as_lists(self._model, [text], "document", self.embed_batch_size)[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return embed_as_lists(self._model, texts, "document", self.embed_batch_size)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
