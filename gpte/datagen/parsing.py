"""Read what a small language model wrote, however it wrote it: one line with a label or quotes around it,
a JSON object inside code fences or with trailing commas and single quotes, a list as JSON, Python or
bullets. JSON is repaired by ``json_repair`` (a maintained parser for LLM output) rather than by hand."""

from __future__ import annotations

import re
from typing import Any

import json_repair

LABELS = (
    "relevant query",
    "search query",
    "query",
    "question",
    "paraphrase",
    "rewritten sentence",
    "sentence",
    "contradiction",
    "answer",
    "output",
    "task",
    "one-line summary",
    "summary",
)
LABEL = re.compile(
    r"^\s*(?:[-*•]\s*|\d+[.)]\s*)?(?:\*\*)?(?:(?:" + "|".join(LABELS) + r")\s*:)?(?:\*\*)?\s*", re.IGNORECASE
)
QUOTES = "\"'“”‘’`"


def parse_line(text: str) -> str | None:
    """The first non-empty line without a leading label (``Query:``, ``1.``, ``-``) or surrounding quotes;
    None when nothing is left."""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("```"):
            continue
        cleaned = LABEL.sub("", line, count=1).strip().strip(QUOTES).strip()
        return cleaned or None
    return None


def parse_json_object(text: str, keys: tuple[str, ...]) -> dict[str, str] | None:
    """The first JSON object in ``text`` (repaired) when it has every key in ``keys`` with a non-empty text
    value (surrounding whitespace removed); else None."""
    value: Any = json_repair.loads(_from_first(text, "{"))
    if isinstance(value, list):
        value = next((item for item in value if isinstance(item, dict)), None)
    if not isinstance(value, dict):
        return None
    found = {key: value.get(key) for key in keys}
    if not all(isinstance(item, str) and item.strip() for item in found.values()):
        return None
    return {key: item.strip() for key, item in found.items()}


def parse_text_list(text: str) -> list[str]:
    """The strings of a JSON or Python list in ``text``; failing that, its non-empty lines without bullets,
    numbers or quotes."""
    value = json_repair.loads(_from_first(text, "[")) if "[" in text else None
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return [item.strip() for item in value if item.strip()]
    return [line for line in (parse_line(raw) for raw in text.splitlines()) if line]


def _from_first(text: str, opener: str) -> str:
    """``text`` from the first ``opener`` on (skipping prose before the JSON)."""
    position = text.find(opener)
    return text[position:] if position >= 0 else text
