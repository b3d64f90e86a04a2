"""Search over a collection: documents read from files, chunked by tokens, embedded into an on-disk index
(exact, HNSW or binary-with-rescoring search, metadata filters, incremental updates), BM25 lexical search,
hybrid fusion and reranking. See ``gpte.search.index.Index``."""
