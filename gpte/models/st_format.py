"""Read and write the sentence-transformers folder layout, plus gpte's own ``gpte_config.json``.

A sentence-transformers folder lists its modules in ``modules.json``; gpte reads the chain
``Transformer -> Pooling -> Dense* -> Normalize`` (the layout of nearly every published embedding model),
``sentence_bert_config.json`` (max_seq_length, do_lower_case) and ``config_sentence_transformers.json``
(prompts, default_prompt_name, similarity_fn_name). ``gpte_config.json`` carries what sentence-transformers
cannot express (templates with a ``{text}`` slot, span and multi-layer pooling, EOS appending, padding
side); when present it wins over the sentence-transformers files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpte._version import __version__
from gpte.errors import ModelLoadError

GPTE_CONFIG = "gpte_config.json"
GPTE_FORMAT_VERSION = 1
# sentence-transformers pooling mode -> gpte pooler name
ST_POOLING_MODES = {
    "cls": "cls",
    "mean": "mean",
    "max": "max",
    "mean_sqrt_len_tokens": "mean_sqrt_len",
    "weightedmean": "weighted_mean",
    "lasttoken": "last",
}
ST_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
ST_MODULE_ORDER = ("Transformer", "Pooling", "Dense", "Normalize")
GPTE_CONFIG_KEYS = (
    "pooling",
    "normalize",
    "max_seq_length",
    "prompts",
    "default_prompt",
    "similarity",
    "padding_side",
    "attention",
)


@dataclass
class ModelLayout:
    """Everything a model folder says about the steps around its transformer.

    ``pooling`` is ``{"name": ..., **options}``; None fields mean "not said, use gpte's default".
    """

    transformer_folder: Path
    pooling: dict[str, Any] | None = None
    dense_folders: list[Path] = field(default_factory=list)
    normalize: bool | None = None
    max_seq_length: int | None = None
    lowercase: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt: str | None = None
    similarity: str | None = None
    padding_side: str | None = None
    attention: dict[str, Any] | None = None


def read_layout(folder: Path) -> ModelLayout:
    """Read a folder's sentence-transformers files (if any), then ``gpte_config.json`` (if any).

    Raises:
        ModelLoadError: a file is not valid JSON, or modules.json lists a module gpte cannot run.
    """
    layout = ModelLayout(transformer_folder=folder)
    if (folder / "modules.json").exists():
        _read_st_modules(folder, layout)
        _read_st_model_config(folder, layout)
    gpte_config = read_json(folder / GPTE_CONFIG)
    if gpte_config:
        for key in GPTE_CONFIG_KEYS:
            if key in gpte_config:
                setattr(layout, key, gpte_config[key])
    return layout


def _read_st_modules(folder: Path, layout: ModelLayout) -> None:
    modules = read_json(folder / "modules.json")
    kinds = [str(module.get("type", "")).rsplit(".", 1)[-1] for module in modules]
    order = [ST_MODULE_ORDER.index(kind) if kind in ST_MODULE_ORDER else -1 for kind in kinds]
    if -1 in order or order != sorted(order) or kinds.count("Transformer") != 1 or kinds[0] != "Transformer":
        raise ModelLoadError(
            f"{folder / 'modules.json'} lists modules {kinds}; gpte reads the chain "
            "Transformer -> Pooling -> Dense* -> Normalize"
        )
    for kind, module in zip(kinds, modules):
        path = folder / module.get("path", "")
        if kind == "Transformer":
            layout.transformer_folder = path
            bert_config = read_json(path / "sentence_bert_config.json")
            layout.max_seq_length = bert_config.get("max_seq_length")
            layout.lowercase = bool(bert_config.get("do_lower_case", False))
        elif kind == "Pooling":
            layout.pooling = pooling_from_st(read_json(path / "config.json"), path)
        elif kind == "Dense":
            layout.dense_folders.append(path)
        else:
            layout.normalize = True
    if layout.normalize is None:
        layout.normalize = False


def _read_st_model_config(folder: Path, layout: ModelLayout) -> None:
    config = read_json(folder / "config_sentence_transformers.json")
    layout.prompts = dict(config.get("prompts") or {})
    layout.default_prompt = config.get("default_prompt_name") or None
    layout.similarity = config.get("similarity_fn_name") or None


def pooling_from_st(config: dict[str, Any], where: Path) -> dict[str, Any]:
    """sentence-transformers Pooling config (legacy booleans or ``pooling_mode``) -> gpte pooling spec."""
    modes = config.get("pooling_mode")
    if modes is None:
        modes = [mode for key, mode in ST_LEGACY_POOLING_KEYS.items() if config.get(key)] or ["mean"]
    modes = [modes] if isinstance(modes, str) else list(modes)
    if len(modes) != 1 or modes[0] not in ST_POOLING_MODES:
        raise ModelLoadError(
            f"{where}: pooling mode {modes} is not supported; gpte reads one of {', '.join(ST_POOLING_MODES)}"
        )
    return {"name": ST_POOLING_MODES[modes[0]], "include_prompt": bool(config.get("include_prompt", True))}


def pooling_to_st(name: str, options: dict[str, Any], dimension: int) -> dict[str, Any] | None:
    """gpte pooling -> sentence-transformers Pooling config, or None when sentence-transformers has no equal."""
    st_mode = next((mode for mode, gpte_name in ST_POOLING_MODES.items() if gpte_name == name), None)
    if st_mode is None or options.get("append_eos"):
        return None
    config: dict[str, Any] = {"word_embedding_dimension": dimension}
    config.update({key: mode == st_mode for key, mode in ST_LEGACY_POOLING_KEYS.items()})
    config["include_prompt"] = options.get("include_prompt", True)
    return config


def write_layout(
    folder: Path,
    layout: ModelLayout,
    pooling_dimension: int,
    dense_modules: list[Any],
    st_prompts: dict[str, str],
) -> None:
    """Write modules.json and the module configs for ``layout`` into ``folder`` (transformer files at the root).

    ``st_prompts`` holds the prompts sentence-transformers can express (prefixes); ``gpte_config.json``
    holds them all.
    """
    modules = [_module(0, "", "Transformer")]
    st_pooling = pooling_to_st(layout.pooling["name"], layout.pooling, pooling_dimension)
    if st_pooling is not None:
        write_json(folder / "1_Pooling" / "config.json", st_pooling)
        modules.append(_module(1, "1_Pooling", "Pooling"))
    for dense in dense_modules:
        path = f"{len(modules)}_Dense"
        dense.save(folder / path)
        modules.append(_module(len(modules), path, "Dense"))
    if layout.normalize:
        path = f"{len(modules)}_Normalize"
        (folder / path).mkdir()
        modules.append(_module(len(modules), path, "Normalize"))
    write_json(folder / "modules.json", modules)
    write_json(
        folder / "sentence_bert_config.json",
        {"max_seq_length": layout.max_seq_length, "do_lower_case": layout.lowercase},
    )
    write_json(
        folder / "config_sentence_transformers.json",
        {
            "model_type": "SentenceTransformer",
            "prompts": st_prompts,
            "default_prompt_name": layout.default_prompt if layout.default_prompt in st_prompts else None,
            "similarity_fn_name": layout.similarity,
        },
    )
    write_json(
        folder / GPTE_CONFIG,
        {
            "format_version": GPTE_FORMAT_VERSION,
            "pooling": layout.pooling,
            "normalize": layout.normalize,
            "max_seq_length": layout.max_seq_length,
            "prompts": layout.prompts,
            "default_prompt": layout.default_prompt,
            "similarity": layout.similarity,
            "padding_side": layout.padding_side,
            "attention": layout.attention,
        },
    )


def _module(index: int, path: str, kind: str) -> dict[str, Any]:
    return {"idx": index, "name": str(index), "path": path, "type": f"sentence_transformers.models.{kind}"}


def read_json(path: Path) -> Any:
    """Parsed JSON of ``path``; {} if it does not exist."""
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"{path} is not valid JSON: {error}") from error


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def st_model_config(model_type: str, prompts: Any, similarity: str, **extra: Any) -> dict[str, Any]:
    """A ``config_sentence_transformers.json`` for a model of ``model_type`` (``SparseEncoder``,
    ``MultiVectorEncoder``) written by gpte: its prompts (``gpte.prompts.Prompts`` or None) as sentence-transformers
    prefixes (a template that is not ``prefix + {text}`` as it is), the default prompt, the similarity and ``extra``
    keys, sorted as sentence-transformers sorts them."""
    import torch

    strings = {"query": "", "document": ""}
    if prompts is not None:
        strings |= {
            name: template.prefix if template.prefix is not None else template.template
            for name, template in prompts.templates.items()
        }
    config = {
        "__version__": {"gpte": __version__, "pytorch": torch.__version__},
        "default_prompt_name": prompts.default if prompts is not None else None,
        "model_type": model_type,
        "prompts": strings,
        "similarity_fn_name": similarity,
        **extra,
    }
    return dict(sorted(config.items()))
