"""Quality filters for synthesized records, applied in this order (the cheap ones first): length, language,
copied examples and duplicates, then retrieval consistency.

- length: every generated text has ``min_words`` to ``max_words`` words (whitespace-split).
- language: every generated text is identified as ``language`` by py3langid (a maintained, offline
  fork of langid.py; ISO 639-1 codes).
- copied examples: a ``dedup_field`` equal to one of the prompt's few-shot answers (small models copy them).
- duplicates: the recipe's ``dedup_field`` after case folding, whitespace collapsing and dropping final
  punctuation; the first occurrence is kept.
- round trip (query recipes, Promptagator/InPars-v2-style consistency filtering): the source document
  must be among the top ``round_trip_k`` documents a retriever returns for the generated query over the
  corpus. For records with a hard negative: the positive must score above the negative for the query.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpte.models.protocol import DenseModel
from gpte.similarity import pairwise_similarity

FINAL_PUNCTUATION = re.compile(r"[\s.?!;:,]+$")


@dataclass(frozen=True)
class SynthesisFilters:
    """Settings of the filters (None turns the language or round-trip filter off)."""

    min_words: int = 2
    max_words: int = 1024
    language: str | None = "en"
    dedup: bool = True
    round_trip_k: int | None = 10

    def __post_init__(self) -> None:
        if not isinstance(self.min_words, int) or not 0 <= self.min_words <= self.max_words:
            raise ValueError(
                f"min_words must be a whole number in [0, max_words={self.max_words}], got {self.min_words!r}"
            )
        if self.round_trip_k is not None and (not isinstance(self.round_trip_k, int) or self.round_trip_k < 1):
            raise ValueError(
                f"round_trip_k must be a whole number >= 1 or None (no round-trip filter), got {self.round_trip_k!r}"
            )


def generated_texts(record: dict[str, Any], fields: tuple[str, ...]) -> list[str]:
    """The texts the model wrote in ``record`` (list fields flattened)."""
    texts = []
    for name in fields:
        value = record[name]
        texts += value if isinstance(value, list) else [value]
    return texts


def dedup_key(text: str) -> str:
    """``text`` case-folded, whitespace collapsed, final punctuation dropped."""
    return FINAL_PUNCTUATION.sub("", " ".join(text.casefold().split()))


class RecordFilter:
    """Applies the filters to a recipe's records and counts what each one removed.

    Args:
        settings: the filters.
        generated: the recipe's generated fields; dedup_field: its duplicate key field.
        round_trip: decides for a list of records which pass the retrieval-consistency check (None: no check).
        known: the prompt's few-shot answers; a record repeating one is removed as ``copied_example``.
    """

    def __init__(
        self,
        settings: SynthesisFilters,
        generated: tuple[str, ...],
        dedup_field: str,
        round_trip: Callable[[list[dict[str, Any]]], np.ndarray] | None,
        known: tuple[str, ...] = (),
    ) -> None:
        self.settings, self.generated, self.dedup_field, self.round_trip = settings, generated, dedup_field, round_trip
        self.known = {dedup_key(text) for text in known}
        self.removed: Counter[str] = Counter()

    def apply(self, records: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
        """The records that pass every filter, in order; None entries (unparsable answers) are counted."""
        kept, seen = [], set()
        for record in records:
            reason = self._rejection(record, seen)
            if reason:
                self.removed[reason] += 1
            else:
                kept.append(record)
        if self.round_trip is None or not kept:
            return kept
        passed = self.round_trip(kept)
        self.removed["round_trip"] += int((~passed).sum())
        return [record for record, ok in zip(kept, passed.tolist()) if ok]

    def _rejection(self, record: dict[str, Any] | None, seen: set[str]) -> str | None:
        if record is None:
            return "unparsable"
        texts = generated_texts(record, self.generated)
        if not all(self.settings.min_words <= len(text.split()) <= self.settings.max_words for text in texts):
            return "length"
        if self.settings.language and not all(_language(text) == self.settings.language for text in texts):
            return "language"
        key = dedup_key(record[self.dedup_field])
        if key in self.known:
            return "copied_example"
        if self.settings.dedup:
            if key in seen:
                return "duplicate"
            seen.add(key)
        return None


def _language(text: str) -> str:
    import py3langid

    return py3langid.classify(text)[0]


@functools.cache
def known_languages() -> tuple[str, ...]:
    """The language codes py3langid can identify (ISO 639-1 where one exists), sorted (its model loads, 0.7 s)."""
    import py3langid

    return tuple(sorted(code for code, _ in py3langid.rank("")))


def check_language(language: str | None) -> None:
    """Raise ValueError naming the known codes unless ``language`` is None or one of ``known_languages``."""
    if language is not None and language not in known_languages():
        raise ValueError(
            f"unknown language {language!r}; choose an ISO 639-1 code py3langid identifies "
            f"({', '.join(known_languages())}), or none ('' on the command line) to keep every language"
        )


def source_in_top_k(index: Any, k: int, batch_size: int = 32) -> Callable[[list[dict[str, Any]]], np.ndarray]:
    """The round-trip check of query records: is ``positive_id`` among the top ``k`` hits of ``query`` in
    ``index`` (a ``gpte.search.index.Index`` over the source corpus)?"""

    def check(records: list[dict[str, Any]]) -> np.ndarray:
        hits = index.search([record["query"] for record in records], k=k, batch_size=batch_size)
        return np.array(
            [record["positive_id"] in {hit.doc_id for hit in found} for record, found in zip(records, hits)], dtype=bool
        )

    return check


def positive_above_negative(
    embedder: DenseModel, anchor_field: str, negative_field: str, batch_size: int = 32
) -> Callable[[list[dict[str, Any]]], np.ndarray]:
    """The consistency check of triples: does ``embedder`` score the positive above the (first) negative for the anchor?"""

    def check(records: list[dict[str, Any]]) -> np.ndarray:
        anchors = embedder.encode(
            [r[anchor_field] for r in records], role="query", batch_size=batch_size, show_progress=False
        )
        negatives = [
            r[negative_field][0] if isinstance(r[negative_field], list) else r[negative_field] for r in records
        ]
        positives, negatives = (
            embedder.encode(texts, role="document", batch_size=batch_size, show_progress=False)
            for texts in ([r["positive"] for r in records], negatives)
        )
        name = embedder.similarity_name
        return np.asarray(pairwise_similarity(anchors, positives, name)) > np.asarray(
            pairwise_similarity(anchors, negatives, name)
        )

    return check
