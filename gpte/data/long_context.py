"""Long-context retrieval tasks, built locally and deterministically: LongEmbed's synthetic tasks and a
long-document Cranfield.

LongEmbed (Zhu et al. 2024, arXiv:2404.12096; mteb's ``LEMBPasskeyRetrieval`` / ``LEMBNeedleRetrieval``) has
two synthetic Retrieval tasks with one split per context length (``test_256`` ... ``test_8192``, main score
``ndcg_at_1``): each split's corpus holds documents of that length only and each query has one relevant
document.

- passkey (after Mohtashami & Jaggi 2023, arXiv:2305.16300): a task description, then a filler text repeated,
  with "{name}'s pass key is {passkey}. ..." inserted between two repeats at a uniformly random depth; the
  query asks for the pass key of that name.
- needle (Kamradt's "needle in a haystack", github.com/gkamradt/LLMTest_NeedleInAHaystack): consecutive
  sentences of real text (the haystack) with one fact sentence (the needle) inserted at a random sentence
  boundary; the query asks for that fact.

Lengths are counted by a callable the caller passes (``count_tokens(texts) -> counts``, without special
tokens), so this module runs no model. A document's count is within ``[length - WINDOW, length]``: the filler
is cut at a word boundary (as Kamradt's haystack is cut at a token count); its size is estimated from the
token counts of its source texts and then corrected with a few ``count_tokens`` calls per document.

``long_cranfield`` concatenates Cranfield documents into long multi-topic documents, and
``write_retrieval_task`` writes any of these tasks as a BEIR folder that ``read_beir`` reads back.
"""

from __future__ import annotations

import json
import random
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpte.atomic import atomic_path
from gpte.data.mteb_folders import RetrievalData

CountTokens = Callable[[list[str]], list[int]]

KINDS = ("passkey", "needle")
LENGTHS = (256, 512, 1024, 2048, 4096, 8192)
WINDOW = 16  # a document's token count lies in [length - WINDOW, length]
_SLACK = 1.25  # the filler prepared per document holds this many times the estimated tokens needed

DESCRIPTION = (
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
    "I will quiz you about the important information there."
)
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
PASSKEY_SENTENCE = "{name}'s pass key is {passkey}. Remember it. {passkey} is the pass key for {name}."
PASSKEY_QUERY = "what is the pass key for {name}?"
FIRST_NAMES = (
    "Alice", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiroshi",
    "Ingrid", "Jonas", "Kamala", "Lucas", "Marta", "Nikolai", "Olivia", "Pablo",
)  # fmt: skip
LAST_NAMES = (
    "Abbott", "Bianchi", "Castillo", "Dubois", "Eriksson", "Fischer", "Gallagher", "Haddad",
    "Ivanova", "Jensen", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Petrov",
)  # fmt: skip


@dataclass(frozen=True)
class NeedleTemplate:
    """A needle: ``fact`` and ``question`` templates; ``key`` is the one slot of the question, and its
    ``keys`` values are used once per task, so a question's key value identifies one document; the
    other slots of the fact are filled from ``answers``."""

    fact: str
    question: str
    key: str
    keys: tuple[str, ...]
    answers: dict[str, tuple[str, ...]]


NEEDLE_TEMPLATES = (
    NeedleTemplate(
        "The best thing to do in {city} is {activity}.",
        "What is the best thing to do in {city}?",
        "city",
        ("Lisbon", "Kyoto", "Oaxaca", "Tbilisi", "Bergen", "Valparaiso", "Marrakesh", "Ljubljana",
         "Hanoi", "Cartagena", "Tallinn", "Hobart", "Zanzibar", "Cusco", "Tromso", "Sarajevo"),
        {"activity": ("eating a sandwich in a sunny park", "riding the old tram to the harbour",
                      "watching the sunset from the fortress walls", "tasting the street food at the night market",
                      "swimming at the pebble beach at dawn", "visiting the tiny museum of clocks",
                      "hiking up the hill behind the cathedral", "listening to music in the central square")},
    ),
    NeedleTemplate(
        "The secret ingredient in {cook}'s soup is {ingredient}.",
        "What is the secret ingredient in {cook}'s soup?",
        "cook",
        ("Ottilie", "Bartholomew", "Esperanza", "Fenwick", "Ingeborg", "Leopold", "Marisol", "Thaddeus",
         "Winifred", "Cosimo", "Henrietta", "Ignatius", "Philippa", "Rupert", "Seraphina", "Augustin"),
        {"ingredient": ("smoked paprika", "a spoonful of honey", "roasted fennel seeds", "grated lemon zest",
                        "a splash of apple cider", "toasted sesame oil", "fresh tarragon", "a pinch of saffron")},
    ),
    NeedleTemplate(
        "The {color} lighthouse on {island} was built in {year}.",
        "When was the lighthouse on {island} built?",
        "island",
        ("Skye", "Gotland", "Texel", "Lampedusa", "Bornholm", "Hiddensee", "Ischia", "Saaremaa",
         "Inishmore", "Sark", "Mljet", "Fogo", "Lundy", "Spetses", "Vlieland", "Unst"),
        {"color": ("red", "white", "yellow", "green", "striped"),
         "year": tuple(str(year) for year in range(1821, 1960, 7))},
    ),
    NeedleTemplate(
        "The captain of the ship {ship} always reads {book} before a storm.",
        "What does the captain of the ship {ship} read before a storm?",
        "ship",
        ("Albatross", "Marigold", "Calypso", "Gannet", "Halcyon", "Kestrel", "Nautilus", "Osprey",
         "Pelican", "Quetzal", "Sirocco", "Valkyrie", "Zephyr", "Bellatrix", "Cormorant", "Dauntless"),
        {"book": ("an old atlas of the Pacific", "a collection of sea shanties", "a cookbook from Naples",
                  "the letters of her grandmother", "a guide to lichens", "a book of crossword puzzles",
                  "a novel about a lost glacier", "a manual on knots")},
    ),
    NeedleTemplate(
        "The tortoise in the {garden} garden is named {pet}.",
        "What is the name of the tortoise in the {garden} garden?",
        "garden",
        ("Rosewood", "Willowbrook", "Thistledown", "Foxglove", "Juniper", "Primrose", "Hawthorn", "Bluebell",
         "Cedarwood", "Elderberry", "Goldenrod", "Heather", "Marshmallow", "Nightshade", "Snowdrop", "Periwinkle"),
        {"pet": ("Admiral", "Biscuit", "Clementine", "Dumpling", "Gregory", "Humphrey", "Pudding", "Sir Reginald")},
    ),
    NeedleTemplate(
        "The band {band} recorded its first album in {place}.",
        "Where did the band {band} record its first album?",
        "band",
        ("Copper Owls", "Midnight Tram", "Velvet Kites", "Paper Lanterns", "Glass Otters", "Neon Badgers",
         "Rusty Comets", "Hollow Pines", "Amber Foxes", "Iron Tulips", "Lunar Moths", "Static Swans",
         "Crimson Ferns", "Wooden Whales", "Electric Pears", "Quiet Volcanoes"),
        {"place": ("a barn in Vermont", "an abandoned church in Lyon", "a garage in Perth", "a houseboat in Amsterdam",
                   "a basement in Montreal", "a castle in Wales", "a mountain hut in Tyrol", "a bakery in Porto")},
    ),
    NeedleTemplate(
        "Professor {professor} keeps the spare keys {hiding}.",
        "Where does Professor {professor} keep the spare keys?",
        "professor",
        ("Abernathy", "Castellano", "Delacroix", "Everhart", "Fairweather", "Grimsby", "Holloway", "Isherwood",
         "Jablonski", "Kingsley", "Lockhart", "Montague", "Pemberton", "Quigley", "Ravensworth", "Sutherland"),
        {"hiding": ("under the blue flowerpot", "inside a hollow book on the top shelf",
                    "in the pocket of an old raincoat", "taped beneath the kitchen drawer", "in a tin of peppermints",
                    "behind the painting of a horse", "in the left boot by the door", "inside the piano bench")},
    ),
    NeedleTemplate(
        "The annual festival in {village} celebrates {occasion}.",
        "What does the annual festival in {village} celebrate?",
        "village",
        ("Ashcombe", "Bramblewick", "Cragsmoor", "Dunmere", "Elmsworth", "Fernhollow", "Glenbrook", "Hollowmere",
         "Kettleby", "Larkwhistle", "Nettlefield", "Oakhurst", "Pebblecombe", "Quillby", "Thornbury", "Yarrowdale"),
        {"occasion": ("the first cherry harvest", "a goose that once saved the mill", "the longest night of the year",
                      "the return of the swallows", "the invention of the local cheese", "a famous snowball fight",
                      "the founding of the brass band", "the day the river froze")},
    ),
)  # fmt: skip


@dataclass(frozen=True)
class _Needle:
    """One drawn needle: the ``fact`` put in a document and the ``question`` asking for it."""

    fact: str
    question: str


@dataclass(frozen=True)
class _Filler:
    """Words to fill a document with: ``prefix[m]`` is the estimated token count of ``words[:m]``,
    ``boundaries`` the sorted word indices where the inserted sentence may go (0 first), ``source`` what
    the words come from (for messages)."""

    words: list[str]
    prefix: list[float]
    boundaries: list[int]
    source: str


def split_name(length: int) -> str:
    """The split of the documents of ``length`` tokens, as LongEmbed names it: ``test_{length}``."""
    return f"test_{length}"


def passkey_task(
    length: int, count_tokens: CountTokens, n_documents: int = 100, n_queries: int = 50, seed: int = 0
) -> RetrievalData:
    """LongEmbed's passkey retrieval at one context length.

    Args:
        length: a document's token count is in ``[length - WINDOW, length]``.
        count_tokens: texts -> their token counts, without special tokens.
        n_documents: documents, each with its own name (``FIRST_NAMES`` x ``LAST_NAMES``) and 5-digit passkey.
        n_queries: queries "what is the pass key for {name}?", for as many distinct documents (grade 1); the
            other documents are distractors.
        seed: the seed of ``random.Random``; the same arguments give the same task.

    Returns:
        ``RetrievalData`` with ids ``doc{i}`` and ``q{i}``, zero-padded.

    Raises:
        ValueError: a bad size, more documents than names, or ``length`` too small for the description
            and the pass key sentence.
    """
    _check_sizes(length, n_documents, n_queries)
    capacity = len(FIRST_NAMES) * len(LAST_NAMES)
    if n_documents > capacity:
        raise ValueError(f"n_documents={n_documents} exceeds the {capacity} distinct names; pass at most {capacity}")
    rng = random.Random(seed)
    names = [_name(index) for index in rng.sample(range(capacity), n_documents)]
    passkeys = rng.sample(range(10_000, 100_000), n_documents)
    depths = [rng.random() for _ in names]
    targets = rng.sample(range(n_documents), n_queries)
    keys = [PASSKEY_SENTENCE.format(name=name, passkey=key) for name, key in zip(names, passkeys)]
    description_cost, filler_cost, *key_costs = _counts(count_tokens, [DESCRIPTION, FILLER, *keys])
    repeats = int(_SLACK * length / filler_cost) + 2
    filler = _filler([(FILLER.split(), [0], filler_cost)] * repeats, "the passkey filler")
    documents = [
        _fit(filler, (DESCRIPTION,), key, depth, description_cost + key_cost, length, count_tokens)
        for key, key_cost, depth in zip(keys, key_costs, depths)
    ]
    return _retrieval_data(documents, [PASSKEY_QUERY.format(name=names[target]) for target in targets], targets)


def needle_task(
    length: int,
    count_tokens: CountTokens,
    haystack: Sequence[str],
    n_documents: int = 100,
    n_queries: int = 50,
    seed: int = 0,
) -> RetrievalData:
    """LongEmbed's needle retrieval at one context length.

    Each document is consecutive sentences of ``haystack`` texts, from a random text on (wrapping around, no
    text twice in a document), cut at a word boundary to the length, with one needle fact (drawn from
    ``NEEDLE_TEMPLATES``, a distinct key value per document) inserted at a random sentence boundary; the
    query is the needle's question (grade 1). Key values found in the haystack (case-insensitive) are not used.

    Args:
        length: a document's token count is in ``[length - WINDOW, length]``.
        count_tokens: texts -> their token counts, without special tokens.
        haystack: real texts, unrelated to each other and to the needles (e.g. Cranfield abstracts).
        n_documents, n_queries, seed: as for ``passkey_task``.

    Returns:
        ``RetrievalData`` with ids ``doc{i}`` and ``q{i}``, zero-padded.

    Raises:
        ValueError: a bad size, an empty haystack or one too short for a document, or more documents than
            distinct needles.
    """
    _check_sizes(length, n_documents, n_queries)
    texts = _haystack_texts(haystack)
    rng = random.Random(seed)
    needles = _draw_needles(n_documents, rng, avoid="\n".join(texts))
    starts = [rng.randrange(len(texts)) for _ in needles]
    depths = [rng.random() for _ in needles]
    targets = rng.sample(range(n_documents), n_queries)
    costs = _counts(count_tokens, [*texts, *(needle.fact for needle in needles)])
    text_costs, needle_costs = costs[: len(texts)], costs[len(texts) :]
    _check_haystack(sum(text_costs), max(needle_costs), len(texts), length)
    parsed = [(text.split(), _sentence_starts(text), cost) for text, cost in zip(texts, text_costs)]
    documents = [
        _fit(_haystack_filler(parsed, start, length), (), needle.fact, depth, cost, length, count_tokens)
        for needle, cost, start, depth in zip(needles, needle_costs, starts, depths)
    ]
    return _retrieval_data(documents, [needles[target].question for target in targets], targets)


def _draw_needles(count: int, rng: random.Random, avoid: str = "") -> list[_Needle]:
    """``count`` needles with distinct key values, drawn from ``NEEDLE_TEMPLATES`` with ``rng``; key values
    that occur in ``avoid`` (case-insensitive) are left out.

    Raises:
        ValueError: fewer distinct needles than ``count``.
    """
    avoid = avoid.lower()
    choices = [(template, key) for template in NEEDLE_TEMPLATES for key in template.keys if key.lower() not in avoid]
    if count > len(choices):
        raise ValueError(
            f"n_documents={count} exceeds the {len(choices)} distinct needles (key values not found in the "
            f"haystack); pass at most {len(choices)}"
        )
    return [_needle(template, key, rng) for template, key in rng.sample(choices, count)]


def longembed_tasks(
    kind: str,
    lengths: Sequence[int] = LENGTHS,
    *,
    count_tokens: CountTokens,
    haystack: Sequence[str] | None = None,
    n_documents: int = 100,
    n_queries: int = 50,
    seed: int = 0,
) -> dict[int, RetrievalData]:
    """LongEmbed's ``kind`` task ("passkey" or "needle") at each of ``lengths``: length -> its split's data
    (name the split ``split_name(length)``). ``haystack`` is required by "needle" and refused by "passkey";
    the other arguments are those of ``passkey_task`` / ``needle_task``.

    Raises:
        ValueError: an unknown ``kind`` (the choices are named), a missing or unexpected ``haystack``, or an
            error of the task builder.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of: {', '.join(KINDS)}")
    if (haystack is None) == (kind == "needle"):
        raise ValueError(f"haystack is {'required' if kind == 'needle' else 'only used'} by kind='needle'")
    sizes = {"n_documents": n_documents, "n_queries": n_queries, "seed": seed}
    if kind == "passkey":
        return {length: passkey_task(length, count_tokens, **sizes) for length in lengths}
    return {length: needle_task(length, count_tokens, haystack, **sizes) for length in lengths}


def long_cranfield(
    data: RetrievalData, titles: dict[str, str], parts: int = 8, seed: int = 0
) -> tuple[RetrievalData, dict[str, str]]:
    """Concatenate a corpus into long multi-topic documents of ``parts`` documents each.

    The document ids are sorted, shuffled with ``random.Random(seed)`` and cut into consecutive groups of
    ``parts`` (the last may be shorter); long document ``long{i}`` (zero-padded) is its parts' texts in
    ``data.corpus`` (as ``read_beir`` gives them: ``document_text(title, text)``) joined by "\\n\\n". A query's
    grade for a long document is the highest grade of its parts; only positive grades are kept. The queries
    are unchanged.

    Args:
        data: the corpus (document texts by id), queries and qrels, e.g. Cranfield read by ``read_beir``.
        titles: every document's original title by id (``title`` of corpus.jsonl).
        parts: documents per long document.
        seed: the shuffle's seed.

    Returns:
        The long-document data, and each long document's title: its parts' titles joined by " / " (a
        "contextual chunk" prefix).

    Raises:
        ValueError: ``parts`` < 1, a document without a title, or qrels naming an unknown document.
    """
    if not isinstance(parts, int) or parts < 1:
        raise ValueError(f"parts must be an integer >= 1, got {parts!r}")
    untitled = [doc for doc in data.corpus if doc not in titles]
    if untitled:
        raise ValueError(f"titles lacks {len(untitled)} document(s) of data.corpus, e.g. {untitled[:3]}")
    ids = sorted(data.corpus)
    random.Random(seed).shuffle(ids)
    groups = [ids[start : start + parts] for start in range(0, len(ids), parts)]
    names = _ids("long", len(groups))
    corpus = {name: "\n\n".join(data.corpus[doc] for doc in group) for name, group in zip(names, groups)}
    long_titles = {name: " / ".join(titles[doc] for doc in group) for name, group in zip(names, groups)}
    owner = {doc: name for name, group in zip(names, groups) for doc in group}
    return RetrievalData(corpus, dict(data.queries), _merged_qrels(data.qrels, owner)), long_titles


def write_retrieval_task(folder: Path, data: RetrievalData, split: str, meta: dict[str, Any]) -> None:
    """Write ``data`` as a BEIR folder: ``corpus.jsonl`` (``_id``, ``title`` "", ``text``), ``queries.jsonl``,
    ``qrels/{split}.tsv`` (header ``query-id corpus-id score``) and ``meta.json`` (``task_type`` "Retrieval",
    ``split`` and the keys of ``meta``, e.g. ``main_score``). It is written in a temporary sibling folder
    and renamed into place (``gpte.atomic.atomic_path``); ``read_beir(folder, split)`` reads back ``data``.

    Raises:
        FileExistsError: ``folder`` exists. ValueError: ``meta`` sets ``task_type`` or ``split``, or ``data``
            would not read back the same (a document text with surrounding whitespace, qrels naming an
            unknown query or document, or no qrels).
    """
    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"{folder} already exists; write the task to a new folder")
    reserved = sorted({"task_type", "split"} & set(meta))
    if reserved:
        raise ValueError(f"meta must not set {', '.join(reserved)}: write_retrieval_task sets them")
    _check_round_trip(data)
    with atomic_path(folder) as temporary:
        (temporary / "qrels").mkdir(parents=True)
        _write_jsonl(temporary / "corpus.jsonl", ({"_id": i, "title": "", "text": t} for i, t in data.corpus.items()))
        _write_jsonl(temporary / "queries.jsonl", ({"_id": i, "text": t} for i, t in data.queries.items()))
        rows = [f"{query}\t{doc}\t{grade}\n" for query, docs in data.qrels.items() for doc, grade in docs.items()]
        (temporary / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(rows), "utf-8")
        meta_text = json.dumps({"task_type": "Retrieval", "split": split, **meta}, indent=2, ensure_ascii=False)
        (temporary / "meta.json").write_text(meta_text + "\n", encoding="utf-8")


def _check_sizes(length: int, n_documents: int, n_queries: int) -> None:
    """Raise ValueError naming the first bad size."""
    if isinstance(length, bool) or not isinstance(length, int) or length <= WINDOW:
        raise ValueError(f"length must be an integer > {WINDOW}, got {length!r}")
    if isinstance(n_documents, bool) or not isinstance(n_documents, int) or n_documents < 1:
        raise ValueError(f"n_documents must be an integer >= 1, got {n_documents!r}")
    if isinstance(n_queries, bool) or not isinstance(n_queries, int) or not 1 <= n_queries <= n_documents:
        raise ValueError(f"n_queries must be an integer in [1, n_documents={n_documents}], got {n_queries!r}")


def _counts(count_tokens: CountTokens, texts: list[str]) -> list[int]:
    """``count_tokens(texts)``, checked to give one count per text."""
    counts = list(count_tokens(texts))
    if len(counts) != len(texts):
        raise ValueError(f"count_tokens returned {len(counts)} counts for {len(texts)} texts")
    return counts


def _name(index: int) -> str:
    """The ``index``-th name of ``FIRST_NAMES`` x ``LAST_NAMES``."""
    first, last = divmod(index, len(LAST_NAMES))
    return f"{FIRST_NAMES[first]} {LAST_NAMES[last]}"


def _needle(template: NeedleTemplate, key: str, rng: random.Random) -> _Needle:
    """``template`` with ``key`` in its key slot and answers drawn with ``rng``."""
    slots = {slot: rng.choice(values) for slot, values in template.answers.items()}
    slots[template.key] = key
    return _Needle(template.fact.format(**slots), template.question.format(**slots))


def _haystack_texts(haystack: Sequence[str]) -> list[str]:
    """The non-blank texts of ``haystack``, stripped; ValueError if there are none or it is one string."""
    if isinstance(haystack, str):
        raise ValueError("haystack must be a sequence of texts, not one string")
    texts = [text.strip() for text in haystack if text.strip()]
    if not texts:
        raise ValueError("haystack is empty: pass a sequence of non-blank texts (e.g. Cranfield abstracts)")
    return texts


def _check_haystack(available: int, needle_cost: int, n_texts: int, length: int) -> None:
    """ValueError when all haystack texts (``available`` tokens) cannot fill a document of ``length``."""
    needed = length - WINDOW - needle_cost
    if available < needed:
        raise ValueError(
            f"haystack too short: its {n_texts} texts hold {available} tokens in all, and a document of "
            f"length={length} needs at least {needed} besides the needle (a text is not repeated within a document)"
        )


def _sentence_starts(text: str) -> list[int]:
    """The indices, in ``text.split()``, of the words that start a sentence (0 first)."""
    starts, position = [], 0
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        starts.append(position)
        position += len(sentence.split())
    return starts


def _filler(segments: Iterable[tuple[list[str], list[int], float]], source: str) -> _Filler:
    """The filler made of ``segments`` (words, insertion points among them, token cost), in order."""
    words: list[str] = []
    prefix, boundaries = [0.0], []
    for segment, starts, cost in segments:
        boundaries.extend(len(words) + start for start in starts)
        per_word = cost / len(segment)
        for word in segment:
            words.append(word)
            prefix.append(prefix[-1] + per_word)
    return _Filler(words, prefix, boundaries, source)


def _haystack_filler(parsed: list[tuple[list[str], list[int], int]], start: int, length: int) -> _Filler:
    """The haystack texts from ``start`` on, wrapping around, until they hold ``_SLACK * length`` tokens
    (or all of them)."""
    chosen, total = [], 0
    for offset in range(len(parsed)):
        if total >= _SLACK * length:
            break
        chosen.append(parsed[(start + offset) % len(parsed)])
        total += chosen[-1][2]
    return _filler(chosen, f"the haystack ({len(chosen)} texts from text {start} on, none repeated)")


def _compose(head: tuple[str, ...], filler: _Filler, words: int, inserted: str, depth: float) -> str:
    """``head``, then the first ``words`` filler words with ``inserted`` at the insertion point at fraction
    ``depth`` of those available, joined by spaces."""
    allowed = filler.boundaries[: bisect_right(filler.boundaries, words)]
    at = allowed[int(depth * len(allowed))]
    return " ".join([*head, *filler.words[:at], inserted, *filler.words[at:words]])


def _fit(
    filler: _Filler,
    head: tuple[str, ...],
    inserted: str,
    depth: float,
    base: float,
    length: int,
    count_tokens: CountTokens,
) -> str:
    """The document ``_compose(head, filler, m, inserted, depth)`` whose count is in ``[length - WINDOW,
    length]``: ``m`` is estimated from the filler's costs (``base``: the estimated cost of head and inserted),
    each count corrects it (aiming at the window's middle), within the bounds measured so far.

    Raises:
        ValueError: ``length`` too small for head and inserted, the filler too short, or a word too long
            for the window.
    """
    target = length - WINDOW / 2
    counts: dict[int, int] = {}
    low, high = -1, len(filler.words) + 1  # most words known too few, fewest known too many
    words = _words_within(filler, target - base)
    while low < words < high:
        text = _compose(head, filler, words, inserted, depth)
        counts[words] = _counts(count_tokens, [text])[0]
        if length - WINDOW <= counts[words] <= length:
            return text
        low, high = (words, high) if counts[words] < length else (low, words)
        guess = _words_within(filler, filler.prefix[words] + target - counts[words])
        words = min(max(guess, low + 1), high - 1)
    raise ValueError(_fit_failure(filler, counts, low, high, length))


def _words_within(filler: _Filler, budget: float) -> int:
    """The most filler words whose estimated cost is at most ``budget`` (0 if none)."""
    return max(bisect_right(filler.prefix, budget) - 1, 0)


def _fit_failure(filler: _Filler, counts: dict[int, int], low: int, high: int, length: int) -> str:
    """Why no number of filler words gives a count in the window, from the counts measured."""
    if high == 0:
        return f"length={length} is too small: the document without filler already has {counts[0]} tokens"
    if low == len(filler.words):
        return (
            f"{filler.source} is too short: all its {low} words give {counts[low]} tokens, fewer than "
            f"length - {WINDOW} = {length - WINDOW}"
        )
    return (
        f"no document of {filler.source} fits in [{length - WINDOW}, {length}] tokens: {low} words give "
        f"{counts[low]} tokens and {high} give {counts[high]}; one word must add at most {WINDOW} tokens"
    )


def _ids(prefix: str, count: int) -> list[str]:
    """``prefix`` + 0 .. count - 1, zero-padded so that they sort."""
    width = len(str(max(count - 1, 0)))
    return [f"{prefix}{index:0{width}d}" for index in range(count)]


def _retrieval_data(documents: list[str], questions: list[str], targets: list[int]) -> RetrievalData:
    """Documents ``doc{i}``, queries ``q{j}`` and the qrel (grade 1) of query j on document ``targets[j]``."""
    doc_ids, query_ids = _ids("doc", len(documents)), _ids("q", len(questions))
    return RetrievalData(
        dict(zip(doc_ids, documents)),
        dict(zip(query_ids, questions)),
        {query: {doc_ids[target]: 1} for query, target in zip(query_ids, targets)},
    )


def _merged_qrels(qrels: dict[str, dict[str, int]], owner: dict[str, str]) -> dict[str, dict[str, int]]:
    """Qrels on the long documents: a query's grade for one is the highest positive grade of its parts."""
    merged: dict[str, dict[str, int]] = {}
    for query, docs in qrels.items():
        for doc, grade in docs.items():
            if doc not in owner:
                raise ValueError(f"qrels of query {query!r} name document {doc!r}, which is not in data.corpus")
            if grade > 0:
                long = merged.setdefault(query, {})
                long[owner[doc]] = max(grade, long.get(owner[doc], grade))
    return merged


def _check_round_trip(data: RetrievalData) -> None:
    """ValueError when ``read_beir`` would not read ``data`` back the same."""
    padded = [doc for doc, text in data.corpus.items() if text != text.strip()]
    if padded:
        raise ValueError(f"document text(s) with surrounding whitespace would be read back stripped: {padded[:3]}")
    unknown = [(q, d) for q, docs in data.qrels.items() for d in docs if q not in data.queries or d not in data.corpus]
    if unknown:
        raise ValueError(f"qrels name unknown queries or documents: {unknown[:3]}")
    if not data.qrels or not all(data.qrels.values()):
        raise ValueError("data has no qrels, or a query with empty qrels; read_beir would not read it back")


def _write_jsonl(path: Path, rows: Iterable[dict[str, str]]) -> None:
    """One JSON object per line, UTF-8."""
    with path.open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
