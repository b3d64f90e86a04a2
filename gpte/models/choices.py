"""The choices and defaults that the library accepts and the CLI offers, in a module that imports nothing, so that
building the parser (``gpte --help``, ``gpte VERB --help``) does not import torch (tests/test_startup.py)."""

BACKENDS = ("torch", "bf16", "onnx", "onnx-int8")  # gpte.models.backends: how a transformer runs
BOUNDARIES = ("token", "sentence")  # gpte.models.chunking: where a chunk may end
AGGREGATES = ("max", "mean")  # gpte.models.chunked: a document's score from its chunks' scores
DEFAULT_BOUNDARY, DEFAULT_AGGREGATE = "sentence", "max"  # ChunkedEncoder's defaults
PRECISIONS = ("float32", "float16", "int8", "uint8", "binary", "ubinary")  # gpte.models.postprocess: stored vectors
CHUNK_TEXTS = 16_384  # gpte.runtime.streaming: texts encoded and saved per chunk of a streamed encode
