"""Training data from models: hard-negative mining through a corpus index (``mining``, rules in ``negatives``)
and LLM synthesis (``synthesis``: generators, recipes, answer parsing, filters), as chunked resumable jsonl jobs
(``resumable``). This layer consumes ``gpte.search``; ``gpte.data`` below it only reads and writes files.

Needs the ``datagen`` extra: pip install 'gpte[datagen]'."""

from gpte.errors import require_extra

require_extra("datagen", "json_repair", "py3langid", "httpx")
