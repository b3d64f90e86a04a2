"""Search over a collection: documents read from files, chunked by tokens, embedded into an on-disk index
(exact, HNSW or binary-with-rescoring search, metadata filters, incremental updates), BM25 lexical search,
hybrid fusion and reranking. See ``gpte.search.index.Index``.

Needs the ``search`` extra: pip install 'gpte[search]' (Milvus: ``gpte[milvus]``; Ray Data: ``gpte[scale]``)."""

from gpte.errors import require_extra

require_extra("search", "faiss", "bm25s", "Stemmer", "pyarrow", "scipy")
