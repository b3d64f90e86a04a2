"""The LangChain and LlamaIndex adapters give the vectors of ``Embedder.encode`` in the right role, on a tiny model
whose query and document prompts differ, and name their pip line when the framework is missing."""

from __future__ import annotations

import asyncio
import importlib
import sys

import numpy as np
import pytest
from conftest import CORPUS, SENTENCES

from gpte import Embedder
from gpte.errors import MissingExtraError

PROMPTS = {"query": "query: ", "document": "passage: "}
TEXTS = list(dict.fromkeys(CORPUS + SENTENCES))


@pytest.fixture(scope="module")
def model(tiny_models) -> Embedder:
    return Embedder.load(tiny_models["bert"], pooling="mean", device="cpu", prompts=PROMPTS)


@pytest.fixture(scope="module")
def expected(model) -> dict[str, np.ndarray]:
    vectors = {role: model.encode(TEXTS, role=role) for role in ("query", "document")}
    assert not np.allclose(vectors["query"], vectors["document"])  # the roles give different vectors
    return vectors


def _equal(ours, reference) -> None:
    np.testing.assert_allclose(np.asarray(ours), reference, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def langchain():
    """The LangChain adapter module and LangChain's ``Embeddings`` (skipped without the langchain extra)."""
    embeddings = pytest.importorskip("langchain_core.embeddings")
    return importlib.import_module("gpte.integrations.langchain"), embeddings.Embeddings


@pytest.fixture(scope="module")
def llama_index():
    """The LlamaIndex adapter module and LlamaIndex's ``BaseEmbedding`` (skipped without the llamaindex extra)."""
    base = pytest.importorskip("llama_index.core.base.embeddings.base")
    return importlib.import_module("gpte.integrations.llama_index"), base.BaseEmbedding


def test_langchain_embeddings_use_the_document_and_query_roles(langchain, model, expected):
    adapter, Embeddings = langchain
    embeddings = adapter.GpteEmbeddings(model)
    assert isinstance(embeddings, Embeddings)
    documents = embeddings.embed_documents(TEXTS)
    assert isinstance(documents, list) and all(type(value) is float for value in documents[0])
    _equal(documents, expected["document"])
    _equal(embeddings.embed_query(TEXTS[2]), expected["query"][2])
    _equal(asyncio.run(embeddings.aembed_documents(TEXTS)), expected["document"])
    _equal(asyncio.run(embeddings.aembed_query(TEXTS[2])), expected["query"][2])
    assert embeddings.embed_documents([]) == []


def test_langchain_embeddings_load_a_model_by_name(langchain, tiny_models, expected):
    GpteEmbeddings = langchain[0].GpteEmbeddings
    embeddings = GpteEmbeddings(str(tiny_models["bert"]), pooling="mean", device="cpu", prompts=PROMPTS)
    _equal(embeddings.embed_query(TEXTS[0]), expected["query"][0])
    with pytest.raises(TypeError, match="load options"):
        GpteEmbeddings(embeddings.model, device="cpu")


def test_llama_index_embedding_uses_the_query_and_document_roles(llama_index, model, expected):
    adapter, BaseEmbedding = llama_index
    embedding = adapter.GpteEmbedding(model, embed_batch_size=4)
    assert isinstance(embedding, BaseEmbedding) and embedding.model_name == model.name
    _equal(embedding.get_query_embedding(TEXTS[1]), expected["query"][1])
    _equal(embedding.get_text_embedding(TEXTS[1]), expected["document"][1])
    _equal(embedding.get_text_embedding_batch(TEXTS), expected["document"])  # batches of 4 through LlamaIndex
    _equal(asyncio.run(embedding.aget_query_embedding(TEXTS[3])), expected["query"][3])
    _equal(asyncio.run(embedding.aget_text_embedding(TEXTS[3])), expected["document"][3])
    _equal(asyncio.run(embedding.aget_text_embedding_batch(TEXTS)), expected["document"])


@pytest.mark.parametrize(
    "module, framework, extra",
    [
        ("gpte.integrations.langchain", "langchain_core", "langchain"),
        ("gpte.integrations.llama_index", "llama_index", "llamaindex"),
    ],
)
def test_a_missing_framework_names_the_extra(monkeypatch, module, framework, extra):
    for name in [name for name in sys.modules if name == framework or name.startswith(framework + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, framework, None)  # import of the framework fails as if not installed
    monkeypatch.delitem(sys.modules, module)
    with pytest.raises(MissingExtraError, match=rf"pip install 'gpte\[{extra}\]'"):
        importlib.import_module(module)
