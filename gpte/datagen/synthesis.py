"""LLM-synthesized training data (``gpte synth``): a recipe (``gpte.datagen.recipes``) prompts a generator
(``gpte.datagen.generators``) for every input item, the answers are parsed, and the records are filtered
(``gpte.datagen.synthesis_filters``) into a jsonl file that ``gpte train`` reads (and ``gpte mine`` can add
negatives to).

    report = synthesize("queries", "synth.jsonl", source="corpus.jsonl")          # InPars/Promptagator
    report = synthesize("e5", "e5.jsonl", tasks=20)                                # E5-mistral two-step
    report = synthesize("paraphrase", "nli.jsonl", source="sentences.txt")         # SynCSE

Items are generated in chunks (``gpte.datagen.resumable``): a restart skips finished chunks. An item whose
answer cannot be parsed is asked again with another seed, up to ``max_attempts`` times; a chunk in which no
item gave anything usable stops the run with a ``GeneratorError`` that says where the finished chunks are
kept. Filters run once all chunks are done, so their counts cover the whole run.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from gpte.atomic import check_destination
from gpte.data.documents import read_documents
from gpte.data.readers import iter_records, read_texts
from gpte.datagen import generators
from gpte.datagen.corpus_index import open_corpus_index
from gpte.datagen.generators import Generator, GeneratorError
from gpte.datagen.recipes import RECIPES, E5TaskRecipe, QueryRecipe, Recipe, SourceItem
from gpte.datagen.resumable import ResumableJsonl
from gpte.datagen.synthesis_filters import (
    RecordFilter,
    SynthesisFilters,
    check_language,
    positive_above_negative,
    source_in_top_k,
)
from gpte.locking import one_writer
from gpte.models.causal_lm import DEFAULT_LLM
from gpte.models.protocol import DenseModel

CHUNK_ITEMS = 32  # items generated (and resumed) at a time
MAX_NEW_TOKENS = {"queries": 48, "paraphrase": 64, "e5": 768}
TASKS_FILE = "tasks.json"
BRAINSTORM_TOKENS = 1024  # room for about 20 one-sentence tasks
RETRY_TEMPERATURE = 0.7  # retries sample even when the first attempt was greedy


@dataclass
class SynthesisReport:
    """What a run produced: ``items`` asked, ``parsed`` answers usable as records, ``removed`` per filter
    (``unparsable`` included), ``kept`` records written, ``generator_calls`` made by this run (retries
    included) and ``resumed_chunks`` found finished."""

    recipe: str
    items: int
    parsed: int
    removed: dict[str, int]
    kept: int
    generator_calls: int
    resumed_chunks: int
    seconds: float


@one_writer("output")  # a second run writing one output fails at once, naming the first
def synthesize(
    recipe: str,
    output: str | Path,
    source: str | Path | None = None,
    generator: Generator | str | None = None,
    text_field: str = "text",
    limit: int | None = None,
    tasks: int = 20,
    per_task: int = 1,
    examples: list[tuple[str, str]] | None = None,
    filters: SynthesisFilters = SynthesisFilters(),
    embedder: DenseModel | None = None,
    model: str | None = None,
    index_dir: str | Path | None = None,
    max_attempts: int = 3,
    chunk_size: int = CHUNK_ITEMS,
    max_new_tokens: int | None = None,
    temperature: float = 0.7,
    seed: int = 0,
    overwrite: bool = False,
    restart: bool = False,
    show_progress: bool = True,
    generator_batch_size: int = 16,
) -> SynthesisReport:
    """Generate, parse, filter and write a recipe's records to ``output`` (jsonl).

    Args:
        recipe: "queries" (``source``: a corpus; records query/positive/positive_id), "e5" (``source``: a file of
            tasks, one per line, or None to brainstorm ``tasks`` of them; ``per_task`` examples each) or
            "paraphrase" (``source``: sentences; records anchor/positive/negative).
        generator: a ``Generator``, or a name for ``load_generator`` (default SmolLM2-135M-Instruct), loaded with
            ``generator_batch_size`` once the inputs and output are checked.
        text_field: the text field of jsonl/csv/parquet sources. limit: use the first ``limit`` items.
        examples: few-shot (document, query) pairs of the "queries" recipe.
        filters: ``SynthesisFilters``; the round-trip filter uses ``embedder``/``model`` (default
            all-MiniLM-L6-v2) and, for "queries", an index of the corpus at ``index_dir`` (default ``OUTPUT.index``).
        max_attempts: tries per item (and for the brainstorm) before it counts as unparsable.
        chunk_size: items per finished (resumable) chunk.
        max_new_tokens: answer length (default per recipe: ``MAX_NEW_TOKENS``); temperature, seed: sampling.

    Raises:
        ValueError: an unknown recipe or filter language; a missing or empty source, or one that cannot be read
            (the file and line named: malformed, not UTF-8, a lone surrogate); bad numbers.
        FileExistsError, FileNotFoundError, NotADirectoryError, IsADirectoryError: ``output`` cannot be written
            (``gpte.atomic.check_destination``).
        OutputLockedError: another process is writing ``output``.
        GeneratorError: a chunk (or the brainstorm) gave nothing usable in ``max_attempts`` tries.
    All but the last are raised before the generator loads.
    """
    started = time.perf_counter()
    steps = _recipe(recipe, examples, seed)
    _check_numbers(limit=limit, tasks=tasks, per_task=per_task, max_attempts=max_attempts, chunk_size=chunk_size)
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0: greedy), got {temperature!r}")
    check_language(filters.language)
    output = check_destination(output, overwrite)
    items = _source_items(recipe, source, text_field)
    generator = (
        generator
        if generator is not None and not isinstance(generator, str | Path)
        else generators.load_generator(generator or DEFAULT_LLM, batch_size=generator_batch_size)
    )
    tokens = max_new_tokens or MAX_NEW_TOKENS[recipe]
    sampling = {"max_new_tokens": tokens, "temperature": temperature, "seed": seed, "max_attempts": max_attempts}
    job = ResumableJsonl(
        output,
        {
            "recipe": recipe,
            "source": _fingerprint(items) if items is not None else f"brainstorm {tasks}",
            "per_task": per_task,
            "limit": limit,
            "generator": getattr(generator, "name", type(generator).__name__),
            "examples": _fingerprint(examples or []),
            "chunk_size": chunk_size,
            **sampling,
        },
        overwrite,
        restart,
    )
    if items is None:
        items = _brainstormed_tasks(job, generator, tasks, sampling)
    if recipe == "e5":
        items = [SourceItem(f"{item.id}:{copy}", item.text) for item in items for copy in range(per_task)]
    items = items[:limit] if limit else items
    resumed = len(job.finished_chunks)
    calls = 0
    starts = range(0, len(items), chunk_size)
    for number, start in enumerate(tqdm(starts, desc=f"synth {recipe}", unit="chunk", disable=not show_progress)):
        if not job.done(number):
            records, used = _generate_chunk(
                steps, items[start : start + chunk_size], generator, sampling, seed + 1000 * number, job.folder
            )
            job.write_chunk(number, records)
            calls += used
    parsed = [None if "unparsable" in record else record for record in job.records()]
    record_filter = RecordFilter(
        filters,
        steps.generated,
        steps.dedup_field,
        _round_trip(recipe, filters, source, output, embedder, model, text_field, index_dir, show_progress),
        steps.example_outputs,
    )
    kept = job.finish(record_filter.apply(parsed))
    return SynthesisReport(
        recipe,
        len(items),
        sum(r is not None for r in parsed),
        dict(record_filter.removed),
        kept,
        calls,
        resumed,
        time.perf_counter() - started,
    )


def _recipe(name: str, examples: list[tuple[str, str]] | None, seed: int) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    if name == "queries":
        return QueryRecipe(examples)
    return E5TaskRecipe(seed=seed) if name == "e5" else RECIPES[name]()


def _check_numbers(**values: int | None) -> None:
    for name, value in values.items():
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")


def _source_items(recipe: str, source: str | Path | None, text_field: str) -> list[SourceItem] | None:
    """The recipe's inputs: corpus documents (queries), lines/rows (paraphrase, e5 tasks), empty ones left out;
    None: brainstorm tasks.

    Raises:
        ValueError: no source where the recipe needs one, no non-empty input, or a file that cannot be read (its
            file and line named: malformed, not UTF-8, a lone surrogate).
    """
    if source is None:
        if recipe != "e5":
            raise ValueError(
                f"the {recipe!r} recipe needs a source ({'a corpus' if recipe == 'queries' else 'sentences'})"
            )
        return None
    if recipe == "queries":
        documents = read_documents(source, text_field)
        items = [SourceItem(doc.id, doc.text) for doc in documents if doc.text.strip()]
        what = "documents"
    else:
        texts = read_texts(source, None if Path(source).suffix.lower() in (".txt", ".md") else text_field)
        items = [SourceItem(str(number), text.strip()) for number, text in enumerate(texts) if text.strip()]
        what = "texts"
    if not items:
        raise ValueError(f"{source}: no non-empty {what}")
    return items


def read_examples(path: str | Path) -> list[tuple[str, str]]:
    """The few-shot (document, query) pairs of the "queries" recipe: rows of a jsonl/csv/tsv/parquet file with the
    text fields ``document`` and ``query``.

    Raises:
        ValueError: no rows, or, naming the file and line, a row without both text fields, a malformed line, a
            file that is not UTF-8 or a text with a lone surrogate.
    """
    examples = []
    for where, row in iter_records(path):
        if not all(isinstance(row.get(name), str) and row[name].strip() for name in ("document", "query")):
            raise ValueError(f"{where}: an example needs the text fields document and query, got {row!r:.120}")
        examples.append((row["document"], row["query"]))
    if not examples:
        raise ValueError(f"{path}: no examples (rows with document and query fields)")
    return examples


def _fingerprint(value: Any) -> str:
    serial = [[item.id, item.text] if isinstance(item, SourceItem) else item for item in value]
    return hashlib.sha256(json.dumps(serial, ensure_ascii=False).encode("utf-8")).hexdigest()


def _brainstormed_tasks(
    job: ResumableJsonl, generator: Generator, count: int, sampling: dict[str, Any]
) -> list[SourceItem]:
    """E5 step 1: ``count`` tasks asked for (kept in the progress folder, so a resumed run reuses them)."""
    tasks = job.read_json(TASKS_FILE)
    for attempt in range(sampling["max_attempts"]):
        if tasks:
            break
        answer = generator.generate(
            [E5TaskRecipe.brainstorm(count)],
            BRAINSTORM_TOKENS,
            _temperature(sampling, attempt),
            sampling["seed"] + attempt,
        )[0]
        tasks = E5TaskRecipe.parse_tasks(answer)[:count]
    if not tasks:
        raise GeneratorError(
            f"the generator listed no retrieval tasks in {sampling['max_attempts']} attempts (last answer: {answer!r:.200}); "
            "give tasks in a file instead (one per line)"
        )
    job.write_json(TASKS_FILE, tasks)
    return [SourceItem(str(number), task) for number, task in enumerate(tasks)]


def _temperature(sampling: dict[str, Any], attempt: int) -> float:
    return sampling["temperature"] if attempt == 0 else max(sampling["temperature"], RETRY_TEMPERATURE)


def _generate_chunk(
    steps: Recipe, items: list[SourceItem], generator: Generator, sampling: dict[str, Any], seed: int, kept_in: Path
) -> tuple[list[dict[str, Any]], int]:
    """Records for ``items`` (an ``{"unparsable": ...}`` entry for an item that failed every attempt) and the
    number of generator calls made."""
    records: dict[int, dict[str, Any]] = {}
    answers: dict[int, list[str]] = {}
    pending = list(range(len(items)))
    calls = 0
    for attempt in range(sampling["max_attempts"]):
        conversations = [steps.conversations(items[i]) for i in pending]
        flat = [c for per_item in conversations for c in per_item]
        answers_now = generator.generate(
            flat, sampling["max_new_tokens"], _temperature(sampling, attempt), seed + attempt
        )
        if len(answers_now) != len(flat):
            raise GeneratorError(f"the generator returned {len(answers_now)} answers for {len(flat)} conversations")
        texts = iter(answers_now)
        calls += 1
        for i, per_item in zip(pending, conversations):
            answers[i] = [next(texts) for _ in per_item]
            record = steps.parse(items[i], answers[i])
            if record is not None:
                records[i] = record
        pending = [i for i in pending if i not in records]
        if not pending:
            break
    if not records:
        raise GeneratorError(
            f"the generator gave nothing usable for items {items[0].id}..{items[-1].id} in {sampling['max_attempts']} attempts each "
            f"(last answer: {answers[pending[0]][0]!r:.200}); finished chunks are kept in {kept_in}, and a rerun resumes after them"
        )
    return [
        records.get(i) or {"unparsable": True, "item": items[i].id, "answers": [a[:500] for a in answers[i]]}
        for i in range(len(items))
    ], calls


def _round_trip(
    recipe: str,
    filters: SynthesisFilters,
    source,
    output: Path,
    embedder: DenseModel,
    model: str | None,
    text_field: str,
    index_dir,
    show_progress: bool,
):
    """The recipe's retrieval-consistency check, or None when ``filters.round_trip_k`` is None."""
    if filters.round_trip_k is None:
        return None
    if recipe == "queries":
        index = open_corpus_index(
            source,
            index_dir or output.with_name(output.name + ".index"),
            embedder,
            model,
            text_field,
            show_progress=show_progress,
        )
        return source_in_top_k(index, filters.round_trip_k)
    if embedder is None:
        from gpte.models.embedder import Embedder

        embedder = Embedder.load(model)
    return positive_above_negative(
        embedder, "query" if recipe == "e5" else "anchor", "negatives" if recipe == "e5" else "negative"
    )
