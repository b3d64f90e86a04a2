"""HTTP serving: an OpenAI-compatible embeddings endpoint and index search (``gpte.serve.app``).

Needs the ``serve`` extra: pip install 'gpte[serve]'."""

from gpte.errors import require_extra

require_extra("serve", "fastapi", "uvicorn", "prometheus_client")
