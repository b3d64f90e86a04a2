"""Model cards: the README.md written beside every saved model.

A card is rendered from the model's ``info()`` (backbone, pooling, dimension, max length, prompts, similarity) and
its ``CardNotes``: where it came from and how it was made (training data and losses, merging, whitening,
distillation) and the scores gpte measured for it. Whatever makes a model (``gpte.train``, ``merge_models``,
``add_whitening``, ``distill_static``) sets the new model's ``card_notes``, so the card is right whoever saves it
later. The card opens with Hugging Face front matter (``library_name``, ``pipeline_tag``, tags, ``base_model``);
sentence-transformers reads the folder the same with or without it.

    (folder / CARD_FILE).write_text(model_card(embedder.info(), embedder.card_notes, title=folder.name))
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from gpte._version import __version__
from gpte.prompts import TEXT_SLOT

CARD_FILE = "README.md"
ST_LIBRARY = "sentence-transformers"
TAGS = ("gpte", "sentence-transformers", "feature-extraction", "sentence-similarity")
# packaged models whose weights are a hub repository's (``gpte.models.sources.PACKAGED_ALIASES``, reversed)
PACKAGED_HUB_IDS = {"all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2"}
HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")


@dataclass(frozen=True)
class CardNotes:
    """What a model card tells beyond the model's settings; a model carries them as ``card_notes``.

    Attributes:
        base_models: the models this one was made from (names, hub ids or folders).
        made: how it was made, one Markdown sentence per step, oldest first.
        training_data: one Markdown line per training source.
        losses: one Markdown line per training loss.
        training_settings: the training hyper-parameters, shown as YAML.
        results: task name -> main score (0-1) that gpte measured for exactly this model.
    """

    base_models: tuple[str, ...] = ()
    made: tuple[str, ...] = ()
    training_data: tuple[str, ...] = ()
    losses: tuple[str, ...] = ()
    training_settings: Mapping[str, Any] = field(default_factory=dict)
    results: Mapping[str, float] = field(default_factory=dict)

    def derived(self, source: str, step: str) -> CardNotes:
        """The notes of a model made from the one these notes describe (named ``source``) by ``step`` (a Markdown
        sentence): the history and training carry over, the base models are kept (``source`` when there were
        none), and the scores, which were measured on the source, are dropped."""
        return replace(self, base_models=self.base_models or (source,), made=(*self.made, step), results={})


def model_card(
    info: Mapping[str, Any],
    notes: CardNotes | None = None,
    title: str | None = None,
    library_name: str | None = ST_LIBRARY,
    unsupported: Sequence[str] = (),
) -> str:
    """The README.md text for a model.

    Args:
        info: the model's ``info()`` (an ``Embedder``'s or a ``StaticEmbedder``'s).
        notes: provenance, training and scores (default: none).
        title: the card's heading, usually the saved folder's name (default: ``info["name"]``).
        library_name: the library that loads the folder (front matter and usage); None for gpte-only folders.
        unsupported: settings that library does not reproduce (gpte keeps them in its own config); the card warns.
    """
    notes = notes or CardNotes()
    title = title or str(info.get("name") or "gpte model")
    sections = [
        _front_matter(notes, library_name),
        f"# {title}\n\n{_summary(info, library_name, unsupported)}",
        _made(notes),
        "## Model\n\n" + _table(("setting", "value"), _settings(info)),
        _prompts(info),
        _training(notes),
        _results(notes.results),
        _usage(info, title, library_name),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def hub_id(name: str) -> str | None:
    """``name`` as a Hugging Face Hub id (packaged models map to the repository whose weights they carry), or
    None for a local folder or file."""
    name = PACKAGED_HUB_IDS.get(name, name)
    return name if HUB_ID.fullmatch(name) and not Path(name).exists() else None


# ----------------------------------------------------------------- sections


def _front_matter(notes: CardNotes, library_name: str | None) -> str:
    metadata: dict[str, Any] = {}
    if library_name:
        metadata["library_name"] = library_name
    metadata["pipeline_tag"] = "sentence-similarity"
    metadata["tags"] = list(TAGS) if library_name == ST_LIBRARY else ["gpte", "static-embeddings", "feature-extraction"]
    base = [found for found in map(hub_id, notes.base_models) if found]
    if base:
        metadata["base_model"] = base[0] if len(base) == 1 else base
    return f"---\n{yaml.safe_dump(metadata, sort_keys=False).strip()}\n---"


def _summary(info: Mapping[str, Any], library_name: str | None, unsupported: Sequence[str]) -> str:
    kind = "static (token table)" if info.get("backend") == "static" else "text-embedding"
    similarity = info.get("similarity", "cosine")
    loads = f"; it loads in gpte and in {library_name}" if library_name else "; it loads in gpte"
    summary = (
        f"A {kind} model saved by gpte {__version__}: it maps text to {info.get('dimension')}-dimensional vectors "
        f"compared by {similarity} similarity{loads}."
    )
    if unsupported:
        summary += (
            f"\n\n**Note:** {library_name} does not reproduce {', '.join(unsupported)}: use gpte for its vectors."
        )
    return summary


def _made(notes: CardNotes) -> str:
    lines = [f"- Made from {', '.join(f'`{name}`' for name in notes.base_models)}."] if notes.base_models else []
    lines += [f"- {step}" for step in notes.made]
    return "## How it was made\n\n" + "\n".join(lines) if lines else ""


def _settings(info: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(setting, value) rows for the keys of ``info`` that describe the saved model (not where it runs)."""
    rows = []
    if info.get("backbone"):
        layers = f", {info['layers']} layers" if info.get("layers") else ""
        rows.append(
            (
                "backbone",
                f"{info['backbone']} ({info.get('model_type')}, {info.get('kind')}{layers}, "
                f"hidden size {info.get('hidden_size')})",
            )
        )
    if info.get("parameters"):
        rows.append(("parameters", f"{info['parameters']:,}"))
    if info.get("source"):
        rows.append(("distilled from", f"`{info['source']}`"))
    if info.get("vocabulary"):
        rows.append(("vocabulary", f"{info['vocabulary']:,} tokens"))
    rows.append(("dimension", str(info.get("dimension"))))
    if info.get("pooling"):
        rows.append(("pooling", _pooling(info["pooling"])))
    rows += [(f"dense layer {number}", _dense(layer)) for number, layer in enumerate(info.get("dense") or [], 1)]
    if info.get("pca_dims"):
        rows.append(("PCA dimensions", str(info["pca_dims"])))
    if info.get("sif_coefficient"):
        rows.append(("SIF weighting a", str(info["sif_coefficient"])))
    rows.append(("normalized", "yes" if info.get("normalize") else "no"))
    max_length = info.get("max_seq_length")
    rows.append(("max sequence length", f"{max_length} tokens" if max_length else "none (every token is read)"))
    if info.get("lowercase"):
        rows.append(("lowercase", "yes"))
    if info.get("attention"):
        rows.append(("attention", _options(info["attention"])))
    if info.get("kind") == "decoder" or info.get("padding_side") == "left":
        rows.append(("padding side", str(info.get("padding_side"))))
    rows.append(("similarity", str(info.get("similarity", "cosine"))))
    if info.get("dtype"):
        rows.append(("weights", str(info["dtype"])))
    return rows


def _pooling(pooling: Mapping[str, Any]) -> str:
    options = {key: value for key, value in pooling.items() if key != "name"}
    return f"`{pooling['name']}`" + (f" ({_options(options)})" if options else "")


def _dense(layer: Mapping[str, Any]) -> str:
    activation = str(layer.get("activation_function", "")).rsplit(".", 1)[-1]
    bias = "" if layer.get("bias", True) else ", no bias"
    return f"{layer.get('in_features')} -> {layer.get('out_features')}, {activation}{bias}"


def _options(options: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in options.items())


def _prompts(info: Mapping[str, Any]) -> str:
    prompts = info.get("prompts") or {}
    if not prompts:
        return ""
    default = info.get("default_prompt")
    rows = [
        (f"`{name}`" + (" (default)" if name == default else ""), _code(template)) for name, template in prompts.items()
    ]
    return (
        "## Prompts\n\nEach text is put into its prompt's template (`{text}` marks the text) before it is encoded.\n\n"
        + _table(("prompt", "template"), rows)
    )


def _code(template: str | Sequence[str]) -> str:
    """A template as inline code; a prompt set (several templates, their vectors averaged) joined by <br>."""
    templates = [template] if isinstance(template, str) else list(template)
    return "<br>".join("`" + one.replace("`", "'").replace("|", "\\|").replace("\n", "\\n") + "`" for one in templates)


def _training(notes: CardNotes) -> str:
    parts = []
    if notes.training_data:
        parts.append("### Data\n\n" + "\n".join(f"- {line}" for line in notes.training_data))
    if notes.losses:
        parts.append("### Losses\n\n" + "\n".join(f"- {line}" for line in notes.losses))
    if notes.training_settings:
        settings = yaml.safe_dump(dict(notes.training_settings), sort_keys=False).strip()
        parts.append(f"### Settings\n\n```yaml\n{settings}\n```")
    return "## Training\n\n" + "\n\n".join(parts) if parts else ""


def _results(results: Mapping[str, float]) -> str:
    if not results:
        return ""
    rows = [(task, f"{100 * score:.2f}") for task, score in results.items()]
    return "## Evaluation\n\nMain score of each task (x 100), measured by gpte.\n\n" + _table(
        ("task", "main score"), rows
    )


def _usage(info: Mapping[str, Any], title: str, library_name: str | None) -> str:
    prompt = next(iter(info.get("prompts") or {}), None)
    prefixes = [name for name, template in (info.get("prompts") or {}).items() if _is_prefix(template)]
    path = f"path/to/{title}"
    if library_name != ST_LIBRARY:
        return (
            "## Usage\n\n```python\nfrom gpte.models.static import StaticEmbedder\n\n"
            f'model = StaticEmbedder.load("{path}")\nvectors = model.encode(["A sentence to embed."])\n```'
        )
    st_prompt = f', prompt_name="{prefixes[0]}"' if prefixes else ""
    gpte_prompt = f', role="{prompt}"' if prompt else ""
    return (
        "## Usage\n\n```python\nfrom sentence_transformers import SentenceTransformer\n\n"
        f'model = SentenceTransformer("{path}")\nvectors = model.encode(["A sentence to embed."]{st_prompt})\n```\n\n'
        f'With gpte:\n\n```python\nfrom gpte import Embedder\n\nmodel = Embedder.load("{path}")\n'
        f'vectors = model.encode(["A sentence to embed."]{gpte_prompt})\n```'
    )


def _is_prefix(template: str | Sequence[str]) -> bool:
    """Whether sentence-transformers can express the template: one text slot, at the end (a prefix prompt)."""
    return isinstance(template, str) and template.count(TEXT_SLOT) == 1 and template.endswith(TEXT_SLOT)


def _table(header: tuple[str, str], rows: Sequence[tuple[str, str]]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    return "\n".join(lines + [f"| {name} | {value} |" for name, value in rows])
