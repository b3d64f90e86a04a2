"""Training data: pairs, triplets and n-tuples of texts, with optional scores and instructions.

A ``TrainingData`` holds rows of text columns in a fixed order -- column 0 the anchor/query, column 1
the positive (or the second sentence of a scored pair), columns 2.. hard negatives -- plus optional
per-row scores (a gold score, or several teacher scores) and instructions. ``read_training_data`` reads
jsonl/csv/tsv/parquet files and Hugging Face datasets (``hf:org/name`` on the hub, or a folder written
by ``datasets.save_to_disk``) and checks every row before any training step, naming the file and line.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpte.data.readers import is_hf_dataset, iter_dataset_records, iter_records

# column layouts recognised when a data source does not name its columns (first match wins)
KNOWN_LAYOUTS = (
    ("anchor", "positive", "negative"),
    ("query", "positive", "negative"),
    ("anchor", "positive"),
    ("query", "positive"),
    ("query", "document"),
    ("sentence1", "sentence2"),
    ("text",),
)
SCORE_FIELDS = ("score", "label", "scores")


@dataclass(frozen=True)
class TrainingExample:
    """One row: its texts (one per column), score(s) and instruction."""

    texts: tuple[str, ...]
    score: float | tuple[float, ...] | None = None
    instruction: str | None = None


@dataclass
class TrainingData:
    """Rows of one data source (a torch map-style dataset of ``TrainingExample``).

    Attributes:
        name: the source (path or hub id), for messages and the model card.
        columns: the names of the text columns, in order.
        rows: the examples.
    """

    name: str
    columns: list[str]
    rows: list[TrainingExample]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> TrainingExample:
        return self.rows[index]

    @property
    def has_scores(self) -> bool:
        return bool(self.rows) and self.rows[0].score is not None


def read_training_data(
    path: str | Path,
    columns: Sequence[str] | None = None,
    score: str | None = None,
    score_range: Sequence[float] | None = None,
    negatives: str | None = None,
    instruction: str | None = None,
    limit: int | None = None,
    hf_split: str = "train",
    hf_subset: str | None = None,
) -> TrainingData:
    """Read and check a training data source.

    Args:
        path: a .jsonl/.csv/.tsv/.parquet file; ``hf:NAME[[:SUBSET]:SPLIT]`` (a Hugging Face dataset:
            ``gpte.data.readers.load_hf_dataset``); or a ``save_to_disk`` folder.
        columns: the text fields in order (anchor, positive, negatives...); default: a known layout
            (``KNOWN_LAYOUTS``) found in the first row.
        score: the field with the score (a number) or teacher scores (a list of numbers); default
            ``score``/``label``/``scores`` when present.
        score_range: (low, high): scores are mapped to [0, 1] by (s - low) / (high - low).
        negatives: a field holding a list of hard-negative texts, appended as columns (same count per row).
        instruction: the field with a per-row instruction for the query.
        limit: read at most this many rows.
        hf_split, hf_subset: the split and configuration of a Hugging Face dataset (those in ``hf:...`` win).

    Raises:
        FileNotFoundError: no such file or folder.
        ValueError: an empty source, a row missing a field or holding a non-string text / non-numeric
            score, or a different number of negatives or scores than the first row (file and line named).
    """
    records = _records(str(path), hf_split, hf_subset)
    rows: list[TrainingExample] = []
    layout: _Layout | None = None
    for where, record in records:
        if limit is not None and len(rows) >= limit:
            break
        layout = layout or _Layout.infer(record, where, columns, score, negatives, instruction)
        rows.append(layout.example(record, where, score_range))
    if not rows:
        raise ValueError(f"{path}: the training data is empty")
    return TrainingData(str(path), layout.column_names(), rows)


def _records(path: str, split: str, subset: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
    if is_hf_dataset(path) or Path(path).is_dir():
        return iter_dataset_records(path, split, subset)
    return iter_records(path)


@dataclass
class _Layout:
    """Which fields of a record make the example."""

    columns: list[str]
    score: str | None
    negatives: str | None
    instruction: str | None
    n_negatives: int = 0
    score_shape: int | None = None  # after the first row: 0 for a single score, else the number of scores

    @classmethod
    def infer(cls, record: dict[str, Any], where: str, columns, score, negatives, instruction) -> _Layout:
        fields = list(record)
        if columns is None:
            columns = next((list(layout) for layout in KNOWN_LAYOUTS if all(f in record for f in layout)), None)
            if columns is None:
                raise ValueError(
                    f"{where}: cannot tell the text columns from the fields {', '.join(fields)}; name them with "
                    f"columns: [anchor, positive, ...] (known layouts: {'; '.join(', '.join(layout) for layout in KNOWN_LAYOUTS)})"
                )
        if score is None:
            score = next((f for f in SCORE_FIELDS if f in record and f not in columns), None)
        if negatives is None and "negatives" in record and "negatives" not in columns:
            negatives = "negatives"
        layout = cls(list(columns), score, negatives, instruction)
        for name in [*layout.columns, score, negatives, instruction]:
            if name is not None and name not in record:
                raise ValueError(f"{where}: no field {name!r} (fields: {', '.join(fields)})")
        layout.n_negatives = len(record[negatives]) if negatives and isinstance(record[negatives], list) else 0
        return layout

    def column_names(self) -> list[str]:
        return self.columns + [f"{self.negatives}[{i}]" for i in range(self.n_negatives)]

    def example(self, record: dict[str, Any], where: str, score_range: Sequence[float] | None) -> TrainingExample:
        texts = [self._text(record, name, where) for name in self.columns]
        if self.negatives:
            values = self._field(record, self.negatives, where)
            if not isinstance(values, list) or len(values) != self.n_negatives:
                raise ValueError(
                    f"{where}: field {self.negatives!r} must be a list of {self.n_negatives} texts like the first row's, got {values!r:.80}"
                )
            texts += [_string(value, f"{where}: {self.negatives}[{i}]") for i, value in enumerate(values)]
        score = self._score(record, where, score_range) if self.score else None
        instruction = self._text(record, self.instruction, where) if self.instruction else None
        return TrainingExample(tuple(texts), score, instruction)

    def _score(
        self, record: dict[str, Any], where: str, score_range: Sequence[float] | None
    ) -> float | tuple[float, ...]:
        value = self._field(record, self.score, where)
        values = value if isinstance(value, list) else [value]
        numbers = [_number(v, f"{where}: {self.score}") for v in values]
        if score_range is not None:
            low, high = score_range
            numbers = [(n - low) / (high - low) for n in numbers]
        shape = len(numbers) if isinstance(value, list) else 0
        if self.score_shape is None:
            self.score_shape = shape
        elif shape != self.score_shape:
            raise ValueError(
                f"{where}: {shape or 'a single'} score(s) in {self.score!r}; the first row has {self.score_shape or 'a single'}"
            )
        return tuple(numbers) if isinstance(value, list) else numbers[0]

    def _text(self, record: dict[str, Any], name: str, where: str) -> str:
        return _string(self._field(record, name, where), f"{where}: {name}")

    @staticmethod
    def _field(record: dict[str, Any], name: str, where: str) -> Any:
        if name not in record or record[name] is None:
            raise ValueError(
                f"{where}: missing field {name!r} (fields: {', '.join(k for k, v in record.items() if v is not None)})"
            )
        return record[name]


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where} is {type(value).__name__}, not a text: {value!r:.80}")
    return value


def _number(value: Any, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} is not a number: {value!r:.80}") from None
