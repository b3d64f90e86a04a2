"""Multi-vector models on disk: sentence-transformers 6's MultiVectorEncoder folder layout, read and written, and
PyLate's (v3, ``model_type: ColBERT``) read.

MultiVectorEncoder  ``modules.json``: the transformer at the root (``Transformer``; its ``sentence_bert_config.json``
                    carries ``query_length``, ``document_length``, ``query_expansion``), ``1_Dense`` (``config.json``
                    with in/out features, bias, identity activation; ``model.safetensors`` with ``linear.weight``),
                    ``2_MultiVectorMask`` (``skiplist_words``, ``skiplist_tasks``), ``3_Normalize``, and optionally a
                    ``HierarchicalTokenPooling`` folder; ``config_sentence_transformers.json`` has
                    ``model_type: MultiVectorEncoder``, the prompts (the ``[Q] ``/``[D] `` markers) and
                    ``similarity_fn_name`` (``maxsim`` or ``meanmaxsim``).
PyLate v3           ``modules.json`` lists the transformer and PyLate's ``Dense`` only; the markers, lengths,
                    expansion and skiplist are top-level keys of ``config_sentence_transformers.json``
                    (``query_prefix``, ``document_prefix``, ``query_length``, ``document_length``,
                    ``do_query_expansion``, ``attend_to_expansion_tokens``, ``skiplist_words``; no skiplist key
                    means ``string.punctuation``), read as sentence-transformers reads them; a marker the tokenizer
                    knows as one token (``[unused0]``, an added ``[Q] ``) is registered as a special token so that it
                    stays one piece.
Anything else       a transformer folder, hub id or packaged model (a dense sentence-transformers model keeps its
                    transformer and drops its pooling) gets a new projection to ``dimension`` (128) token vectors,
                    started as ``torch.nn.Linear`` starts (Kaiming-uniform) from a fixed seed, so two loads give one
                    model: the start of ColBERT training.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AddedToken

from gpte.atomic import atomic_path
from gpte.errors import ModelLoadError
from gpte.models.backbone import Backbone, resolve_device
from gpte.models.loading import is_multivector_folder
from gpte.models.model_card import CARD_FILE, model_card
from gpte.models.multivector.encoder import MultiVectorEncoder, QueryExpansion
from gpte.models.sources import resolve_model
from gpte.models.st_format import read_json, read_layout, st_model_config, write_json
from gpte.models.tokenization import tokenizer_limit
from gpte.prompts import Prompts

ST_CONFIG = "config_sentence_transformers.json"
ST_MODULE_CONFIG = "sentence_bert_config.json"
DEFAULT_DIMENSION = 128
PROJECTION_SEED = 0
ST_TYPES = {
    "Transformer": "sentence_transformers.base.modules.transformer.Transformer",
    "Dense": "sentence_transformers.base.modules.dense.Dense",
    "MultiVectorMask": "sentence_transformers.multi_vector_encoder.modules.multi_vector_mask.MultiVectorMask",
    "Normalize": "sentence_transformers.base.modules.normalize.Normalize",
    "HierarchicalTokenPooling": "sentence_transformers.multi_vector_encoder.modules.token_pooling.HierarchicalTokenPooling",
}
IDENTITY = "torch.nn.modules.linear.Identity"
TEXT_MODALITY = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}
PYLATE_KEYS = (
    "query_prefix",
    "document_prefix",
    "query_length",
    "document_length",
    "query_expansion",
    "do_query_expansion",
    "attend_to_expansion_tokens",
    "attend_to_mask_tokens",
    "skiplist_words",
)


def load_multivector_encoder(
    name_or_path: str | Path | None = None,
    *,
    dimension: int | None = None,
    max_seq_length: int | None = None,
    query_length: int | None = None,
    document_length: int | None = None,
    query_expansion: QueryExpansion | dict[str, Any] | None = None,
    skiplist: list[str] | str | None = None,
    prompts: dict[str, str] | None = None,
    similarity: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
) -> MultiVectorEncoder:
    """The multi-vector model at ``name_or_path`` (None: the packaged all-MiniLM-L6-v2 with a new projection).

    Args:
        dimension: the token vector length of a new projection (default 128); a saved model keeps its own.
        max_seq_length, query_length, document_length, query_expansion, skiplist, prompts, similarity: override
            what the folder says (for a new model: ColBERT's settings are not implied; pass them). ``skiplist`` is a
            list of tokens or ``"punctuation"`` (``string.punctuation``, ColBERT's).

    Raises:
        ModelLoadError: the model cannot be found or read as a multi-vector model.
    """
    source = resolve_model(name_or_path, revision)
    folder = source.folder
    st_config = read_json(folder / ST_CONFIG) or {}
    modules = read_json(folder / "modules.json") or []
    if is_multivector_folder(folder):
        settings = _saved_settings(folder, modules, st_config, dtype)
    else:
        settings = _new_settings(source, folder, dimension, dtype)
    if isinstance(skiplist, str):
        if skiplist != "punctuation":
            raise ValueError(f"skiplist must be a list of tokens or 'punctuation', got {skiplist!r}")
        skiplist = list(string.punctuation)
    given = {
        "max_seq_length": max_seq_length,
        "query_length": query_length,
        "document_length": document_length,
        "skiplist": skiplist,
        "similarity_name": similarity,
    }
    settings.update({key: value for key, value in given.items() if value is not None})
    if query_expansion is not None:
        settings["query_expansion"] = (
            query_expansion
            if isinstance(query_expansion, QueryExpansion)
            else QueryExpansion.from_config(query_expansion)
        )
    if prompts is not None:
        settings["prompts"] = Prompts.from_strings(prompts)
    if dimension is not None and dimension != settings["projection"].out_features:
        raise ValueError(
            f"{source.name} has {settings['projection'].out_features}-d token vectors; dimension={dimension} applies "
            "to a new projection only"
        )
    return MultiVectorEncoder(name=source.name, **settings).to(resolve_device(device))


def write_multivector_folder(model: MultiVectorEncoder, folder: Path, overwrite: bool = False) -> Path:
    """Write ``model`` in sentence-transformers 6's MultiVectorEncoder layout with a model card; the folder appears only
    once complete.

    Raises:
        FileExistsError: ``folder`` exists and ``overwrite`` is False.
    """
    with atomic_path(folder, overwrite) as temporary:
        temporary.mkdir()
        _write_layout(model, temporary)
        (temporary / CARD_FILE).write_text(model_card(model.info(), model.card_notes, folder.name), encoding="utf-8")
    return folder


# ----------------------------------------------------------------- reading


def _saved_settings(
    folder: Path, modules: list[dict[str, Any]], st_config: dict[str, Any], dtype: Any
) -> dict[str, Any]:
    """The settings of a MultiVectorEncoder or PyLate v3 folder."""
    by_kind = {str(m.get("type", "")).rsplit(".", 1)[-1]: folder / m.get("path", "") for m in modules}
    unknown = set(by_kind) - set(ST_TYPES)
    if unknown or "Transformer" not in by_kind or "Dense" not in by_kind:
        raise ModelLoadError(
            f"{folder / 'modules.json'} lists modules {sorted(by_kind)}; gpte reads Transformer -> Dense -> "
            "MultiVectorMask -> Normalize (-> HierarchicalTokenPooling)"
        )
    pylate = st_config.get("model_type") == "ColBERT"
    if not pylate and "Normalize" not in by_kind:
        raise ModelLoadError(f"{folder} has no Normalize module; gpte's multi-vector models give unit-length vectors")
    transformer_folder = by_kind["Transformer"]
    transformer_config = read_json(transformer_folder / ST_MODULE_CONFIG) or {}
    backbone = _backbone(transformer_folder, None, dtype)
    mask = read_json(by_kind["MultiVectorMask"] / "config.json") if "MultiVectorMask" in by_kind else {}
    if mask.get("keep_only_token_ids") or mask.get("skiplist_tasks", ["document"]) != ["document"]:
        raise ModelLoadError(
            f"{folder}'s MultiVectorMask has keep_only_token_ids or skiplist_tasks other than ['document']; gpte "
            "applies a skiplist to documents only"
        )
    settings: dict[str, Any] = {
        "backbone": backbone,
        "projection": _read_projection(by_kind["Dense"], backbone),
        "max_seq_length": transformer_config.get("max_seq_length")
        or tokenizer_limit(backbone.tokenizer, backbone.model),
        "query_length": transformer_config.get("query_length"),
        "document_length": transformer_config.get("document_length"),
        "query_expansion": QueryExpansion.from_config(transformer_config.get("query_expansion")),
        "skiplist": mask.get("skiplist_words") or [],
        "similarity_name": st_config.get("similarity_fn_name")
        if st_config.get("similarity_fn_name") in ("maxsim", "meanmaxsim")
        else "maxsim",
    }
    prompts = dict(st_config.get("prompts") or {})
    if pylate:
        prompts = _read_pylate(st_config, prompts, settings)
    if "HierarchicalTokenPooling" in by_kind:
        from gpte.models.multivector.token_pooling import HierarchicalTokenPooling

        pooling_config = by_kind["HierarchicalTokenPooling"] / "config.json"
        try:
            settings["token_pooling"] = HierarchicalTokenPooling.from_config(read_json(pooling_config))
        except ValueError as error:
            raise ModelLoadError(f"{pooling_config}: {error}") from error
    settings["prompts"] = Prompts.from_strings(
        {name: value for name, value in prompts.items() if value}, st_config.get("default_prompt_name") or None
    )
    return settings


def _read_pylate(st_config: dict[str, Any], prompts: dict[str, str], settings: dict[str, Any]) -> dict[str, str]:
    """PyLate v3's top-level settings, as sentence-transformers reads them (``MultiVectorEncoder._parse_model_config``):
    the markers composed onto the prompts (and registered as special tokens where the tokenizer knows them), the
    lengths, expansion (on, fixed to ``query_length`` or 32, unless ``do_query_expansion`` is false), skiplist."""
    markers = {}
    for key, role in (("query_prefix", "query"), ("document_prefix", "document")):
        if key in st_config:
            markers[role] = st_config[key] or ""
            prompts[role] = markers[role] + (prompts.get(role) or "").removeprefix(markers[role])
    _register_markers(settings["backbone"].tokenizer, markers)
    settings["document_length"] = st_config.get("document_length") or settings["document_length"]
    if "query_expansion" in st_config:
        settings["query_expansion"] = QueryExpansion.from_config(st_config["query_expansion"])
        settings["query_length"] = st_config.get("query_length") or settings["query_length"]
    elif st_config.get("do_query_expansion") is False:
        settings["query_expansion"] = None
        settings["query_length"] = st_config.get("query_length") or settings["query_length"]
    else:
        attend = st_config.get("attend_to_expansion_tokens", st_config.get("attend_to_mask_tokens"))
        settings["query_expansion"] = QueryExpansion(int(st_config.get("query_length") or 32), "fixed", bool(attend))
    skiplist = st_config.get("skiplist_words")
    settings["skiplist"] = list(string.punctuation) if skiplist is None else list(skiplist)
    return prompts


def _register_markers(tokenizer: Any, markers: dict[str, str]) -> None:
    """Mark each marker (or its first word) the tokenizer knows as a special, non-normalised token, so that the text
    prefix tokenizes as the one token PyLate inserted (sentence-transformers' ``_register_prefix_tokens``)."""
    added, vocab = set(getattr(tokenizer, "added_tokens_encoder", None) or {}), tokenizer.get_vocab()
    register = []
    for value in markers.values():
        if not value or not value.split():
            continue
        for marker in (value, value.split(None, 1)[0]):
            if marker not in added and marker not in vocab:
                continue
            if tokenizer.tokenize(marker) != [marker]:
                register.append(AddedToken(marker, normalized=False, special=True))
            break
    if register:
        tokenizer.add_special_tokens({"additional_special_tokens": register})


def _read_projection(folder: Path, backbone: Backbone) -> nn.Linear:
    config = read_json(folder / "config.json")
    activation = config.get("activation_function", IDENTITY)
    if not str(activation).endswith("Identity") or config.get("use_residual"):
        raise ModelLoadError(
            f"{folder}'s Dense has activation {activation} (residual: {bool(config.get('use_residual'))}); gpte's "
            "multi-vector projection is linear (torch.nn.Identity activation, no residual)"
        )
    projection = nn.Linear(int(config["in_features"]), int(config["out_features"]), bias=bool(config.get("bias", True)))
    weights = _read_weights(folder)
    state = {key.removeprefix("linear."): value for key, value in weights.items() if key.startswith("linear.")}
    try:
        projection.load_state_dict(state)
    except RuntimeError as error:
        raise ModelLoadError(f"the weights in {folder} do not fit its Dense config: {error}") from error
    return projection.to(backbone.dtype)


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    if (folder / "model.safetensors").is_file():
        return load_file(folder / "model.safetensors")
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise ModelLoadError(f"{folder} has no model.safetensors or pytorch_model.bin")


def _new_settings(source: Any, folder: Path, dimension: int | None, dtype: Any) -> dict[str, Any]:
    """A transformer (or a dense sentence-transformers model's transformer) and a new projection."""
    layout = read_layout(folder) if source.gguf_file is None else None
    transformer_folder = layout.transformer_folder if layout is not None else folder
    backbone = _backbone(transformer_folder, source.gguf_file, dtype)
    size = DEFAULT_DIMENSION if dimension is None else dimension
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"dimension must be a positive integer, got {dimension!r}")
    generator = torch.Generator().manual_seed(PROJECTION_SEED)
    projection = nn.Linear(backbone.hidden_size, size, bias=False)
    with torch.no_grad():  # nn.Linear's own start, U(-1/sqrt(in), 1/sqrt(in)), from a fixed seed
        bound = 1 / backbone.hidden_size**0.5
        projection.weight.copy_(torch.empty_like(projection.weight).uniform_(-bound, bound, generator=generator))
    limit = (layout.max_seq_length if layout is not None else None) or tokenizer_limit(
        backbone.tokenizer, backbone.model
    )
    return {
        "backbone": backbone,
        "projection": projection.to(backbone.dtype),
        "max_seq_length": limit,
        "prompts": Prompts.from_strings({k: v for k, v in (layout.prompts if layout else {}).items() if v}),
    }


def _backbone(folder: Path, gguf_file: str | None, dtype: Any) -> Backbone:
    backbone = Backbone.from_pretrained(folder, gguf_file=gguf_file, dtype=dtype)
    if backbone.kind == "encoder-decoder":
        raise ModelLoadError(f"{folder} is an encoder-decoder; multi-vector models take an encoder or a decoder")
    return backbone


# ----------------------------------------------------------------- writing


def _write_layout(model: MultiVectorEncoder, folder: Path) -> None:
    backbone = model.backbone
    backbone.model.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)
    transformer_config = {
        "transformer_task": "feature-extraction",
        "modality_config": TEXT_MODALITY,
        "module_output_name": "token_embeddings",
        "max_seq_length": model.max_seq_length,
        "query_length": model.query_length,
        "document_length": model.document_length,
        "query_expansion": None if model.query_expansion is None else model.query_expansion.to_config(),
    }
    write_json(
        folder / ST_MODULE_CONFIG, {key: value for key, value in transformer_config.items() if value is not None}
    )
    projection = model.projection
    write_json(
        folder / "1_Dense" / "config.json",
        {
            "in_features": projection.in_features,
            "out_features": projection.out_features,
            "bias": projection.bias is not None,
            "activation_function": IDENTITY,
            "module_input_name": "token_embeddings",
            "module_output_name": "token_embeddings",
        },
    )
    weights = {f"linear.{key}": value.detach().cpu().contiguous() for key, value in projection.state_dict().items()}
    save_file(weights, folder / "1_Dense" / "model.safetensors")
    write_json(
        folder / "2_MultiVectorMask" / "config.json",
        {"skiplist_words": model.skiplist, "skiplist_tasks": ["document"], "keep_only_token_ids": None},
    )
    write_json(
        folder / "3_Normalize" / "config.json",
        {"module_input_name": "token_embeddings", "module_output_name": "token_embeddings"},
    )
    kinds = ["Transformer", "Dense", "MultiVectorMask", "Normalize"]
    paths = ["", "1_Dense", "2_MultiVectorMask", "3_Normalize"]
    if model.token_pooling is not None:
        kinds.append("HierarchicalTokenPooling")
        paths.append("4_HierarchicalTokenPooling")
        write_json(folder / paths[-1] / "config.json", model.token_pooling.config())
    write_json(
        folder / "modules.json",
        [
            {"idx": i, "name": str(i), "path": path, "type": ST_TYPES[kind]}
            for i, (kind, path) in enumerate(zip(kinds, paths))
        ],
    )
    write_json(folder / ST_CONFIG, st_model_config("MultiVectorEncoder", model.prompts, model.similarity_name))
