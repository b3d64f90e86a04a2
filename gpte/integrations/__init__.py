"""Adapters that let other frameworks use a gpte dense model as their embedding model:

- ``gpte.integrations.langchain.GpteEmbeddings``: LangChain's ``Embeddings`` (``pip install 'gpte[langchain]'``).
- ``gpte.integrations.llama_index.GpteEmbedding``: LlamaIndex's ``BaseEmbedding`` (``pip install 'gpte[llamaindex]'``).

Both embed queries with the model's ``query`` role and documents with its ``document`` role (``Embedder.encode``),
so models with query and document prompts are used as they were trained. Importing this package needs neither
framework; each adapter module raises ``MissingExtraError`` naming its pip line when its framework is missing.
"""
