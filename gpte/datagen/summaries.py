"""One-line document summaries written by an LLM: the context line of contextual chunk embeddings
(``gpte.models.chunked.ChunkedEncoder(context=...)``; the "contextual retrieval" practice of prefixing each chunk
with what its document is about).

    summaries = document_summaries(load_generator(), documents, cache="summaries.jsonl")
    chunked = ChunkedEncoder(model, context=summaries)

Each document (its first ``max_document_words`` words) is shown to the generator with ``SUMMARY_PROMPT``; the first
line of the reply, without labels or quotes (``gpte.datagen.parsing.parse_line``) and cut to ``max_summary_words``
words, is the summary; a reply with nothing usable gives ``""`` (no context line). Greedy decoding: the same
generator gives the same summaries. With ``cache``, each finished batch is appended to a jsonl file (document sha256
-> summary), so an interrupted run resumes where it stopped; a torn last line is ignored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from gpte.datagen.generators import Generator
from gpte.datagen.parsing import parse_line

SUMMARY_PROMPT = (
    "Write one short line, at most {words} words, that says what the following document is about. "
    "Reply with that line only.\n\nDocument:\n{document}"
)
BATCH = 16  # documents per generate call, and per cache append


def document_summaries(
    generator: Generator,
    documents: Sequence[str],
    cache: str | Path | None = None,
    max_document_words: int = 300,
    max_summary_words: int = 20,
    show_progress: bool = True,
) -> dict[str, str]:
    """A one-line summary of each distinct document, by its text.

    Args:
        generator: the LLM (``gpte.datagen.generators.load_generator``).
        documents: the texts.
        cache: a jsonl file of finished summaries, read first and appended to (None: none).
        max_document_words: words of each document shown to the generator.
        max_summary_words: the longest summary kept, in words.

    Returns:
        document text -> its summary ("" where the reply held none).
    """
    distinct = list(dict.fromkeys(documents))
    done = _read_cache(Path(cache)) if cache is not None else {}
    todo = [text for text in distinct if _key(text) not in done]
    with tqdm(
        total=len(distinct), initial=len(distinct) - len(todo), desc="summaries", disable=not show_progress
    ) as bar:
        for start in range(0, len(todo), BATCH):
            batch = todo[start : start + BATCH]
            replies = generator.generate(
                [_conversation(text, max_document_words, max_summary_words) for text in batch],
                max_new_tokens=2 * max_summary_words + 8,
                temperature=0.0,
            )
            found = {_key(text): _summary(reply, max_summary_words) for text, reply in zip(batch, replies)}
            done.update(found)
            if cache is not None:
                _append_cache(Path(cache), found)
            bar.update(len(batch))
    return {text: done[_key(text)] for text in distinct}


def _conversation(text: str, max_document_words: int, max_summary_words: int) -> list[dict[str, str]]:
    words = text.split()
    shown = " ".join(words[:max_document_words]) + (" ..." if len(words) > max_document_words else "")
    return [{"role": "user", "content": SUMMARY_PROMPT.format(words=max_summary_words, document=shown)}]


def _summary(reply: str, max_words: int) -> str:
    line = parse_line(reply) or ""
    return " ".join(line.split()[:max_words])


def _key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_cache(path: Path) -> dict[str, str]:
    """sha256 -> summary from ``path`` (missing file: none); a line that does not parse (torn by a kill) is skipped."""
    if not path.is_file():
        return {}
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
            found[record["sha256"]] = record["summary"]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return found


def _append_cache(path: Path, found: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torn = path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n")
    with path.open("a", encoding="utf-8") as handle:
        if torn:  # a kill mid-line: end that line so the new records parse
            handle.write("\n")
        handle.writelines(json.dumps({"sha256": key, "summary": value}) + "\n" for key, value in found.items())
        handle.flush()
