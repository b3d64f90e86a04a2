"""HTTP serving: an OpenAI-compatible embeddings endpoint and index search (``gpte.serve.app``)."""
