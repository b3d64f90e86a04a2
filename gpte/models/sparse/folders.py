"""Sparse models on disk: sentence-transformers' SparseEncoder folder layout, read and written.

SPLADE        ``modules.json``: the masked-LM transformer at the root (``Transformer`` with ``transformer_task``
              ``fill-mask``, or the older ``MLMTransformer``), then ``1_SpladePooling/config.json``
              (``pooling_strategy``, ``activation_function``); ``config_sentence_transformers.json`` has
              ``model_type: SparseEncoder``, the prompts and ``similarity_fn_name: dot``.
inference-free ``modules.json`` holds one ``Router``; ``router_config.json`` maps ``query`` to a
              ``SparseStaticEmbedding`` folder (``model.safetensors`` with a ``weight`` per vocabulary entry,
              ``config.json`` with ``frozen``) and ``document`` to the transformer and pooling folders.
CSR           a dense model's modules (transformer, pooling, normalize) then a ``SparseAutoEncoder`` folder
              (``gpte.models.sparse.csr``).
Every layout's ``config_sentence_transformers.json`` carries ``max_active_dims``: the model's default ``top_k``.
PromptReps    training-free: ``gpte_sparse.json`` names the LLM and the settings; no weights are copied.

A folder holding only an encoder (a BERT-style model, e.g. all-MiniLM-L6-v2, whose folder has no MLM head) loads as
SPLADE with a new masked-LM head started from its word embeddings (``init_mlm_head``): the start of SPLADE training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForMaskedLM, AutoTokenizer

from gpte.atomic import atomic_path
from gpte.errors import ModelLoadError
from gpte.models.backbone import parse_dtype, resolve_device
from gpte.models.causal_lm import DEFAULT_LLM, chat_prompt, load_causal_lm
from gpte.models.loading import SPARSE_SETTINGS_FILE as SETTINGS_FILE
from gpte.models.model_card import CARD_FILE, model_card
from gpte.models.sources import resolve_model
from gpte.models.sparse.csr import CSRHead, is_csr_modules, read_csr, write_csr
from gpte.models.sparse.encoder import SparseEncoder
from gpte.models.sparse.heads import PromptRepsHead, SpladeHead, StaticQueryHead
from gpte.models.st_format import read_json, st_model_config, write_json
from gpte.models.tokenization import tokenizer_limit
from gpte.prompts import Prompts

ST_CONFIG = "config_sentence_transformers.json"
ST_MODULE_CONFIG = "sentence_bert_config.json"
ROUTER_CONFIG = "router_config.json"
ST_TYPES = {
    "transformer": "sentence_transformers.base.modules.transformer.Transformer",
    "pooling": "sentence_transformers.sparse_encoder.modules.splade_pooling.SpladePooling",
    "static": "sentence_transformers.sparse_encoder.modules.sparse_static_embedding.SparseStaticEmbedding",
    "router": "sentence_transformers.base.modules.router.Router",
}
NEW_HEAD_BIAS = -4.0  # a new MLM head's decoder bias (init_mlm_head): a fresh model starts sparse
MLM_SETTINGS = {
    "transformer_task": "fill-mask",
    "modality_config": {"text": {"method": "forward", "method_output_name": "logits"}},
    "module_output_name": "token_embeddings",
}
PROMPTREPS_SYSTEM = "You are an AI assistant that can understand human language."
PROMPTREPS_USER = (
    '{role}: "{{text}}". Use one word to represent the {noun} in a retrieval task. Make sure your word is in lowercase.'
)
PROMPTREPS_ANSWER = 'The word is "'


def load_sparse_encoder(
    name_or_path: str | Path | None = None,
    *,
    max_seq_length: int | None = None,
    top_k: int | None = None,
    threshold: float | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
) -> SparseEncoder:
    """The sparse model at ``name_or_path``: a SparseEncoder folder or hub id, a PromptReps folder, ``"promptreps"``
    (PromptReps on the packaged SmolLM2), or any BERT-style encoder (SPLADE with a new MLM head; None: the packaged
    all-MiniLM-L6-v2).

    Raises:
        ModelLoadError: the model cannot be found or read as a sparse model.
    """
    options = {"top_k": top_k, "threshold": threshold, "max_seq_length": max_seq_length}
    if name_or_path == "promptreps":
        return promptreps(DEFAULT_LLM, device=device, **options)
    source = resolve_model(name_or_path, revision)
    folder = source.folder
    settings = read_json(folder / SETTINGS_FILE) if source.gguf_file is None else None
    if source.gguf_file is not None or settings:
        saved = settings or {}
        chosen = {key: value for key, value in options.items() if value is not None}
        llm = saved.get("llm", name_or_path) if settings else name_or_path
        return promptreps(llm, device=device, **{**_saved_options(saved), **chosen})
    st_config = read_json(folder / ST_CONFIG) or {}
    modules = read_json(folder / "modules.json") or []
    router = next((m for m in modules if str(m.get("type", "")).endswith("Router")), None)
    query_head = None
    top_k = top_k if top_k is not None else st_config.get("max_active_dims")  # sentence-transformers' pruning
    if is_csr_modules(modules):
        head, tokenizer, limit = read_csr(folder, dtype)
    else:
        if router is not None:
            document_folder, pooling, query_folder = _router_parts(folder / router.get("path", ""))
            query_head = _static_head(query_folder) if query_folder is not None else None
        else:
            document_folder, pooling = folder, _pooling_settings(folder, modules)
        head, tokenizer, limit = _splade(document_folder, pooling, dtype)
    encoder = SparseEncoder(
        head,
        tokenizer,
        max_seq_length or limit,
        query_head,
        {key: value for key, value in (st_config.get("prompts") or {}).items() if value},
        top_k,
        threshold or 0.0,
        source.name,
    )
    encoder.prompts.default = st_config.get("default_prompt_name") or None
    return encoder.to(resolve_device(device))


def promptreps(
    llm: str | Path | None = DEFAULT_LLM,
    top_k: int | None = None,
    threshold: float | None = None,
    max_seq_length: int | None = None,
    device: str | torch.device | None = None,
) -> SparseEncoder:
    """PromptReps on a causal LLM: the paper's prompts in the model's chat template (system message, then
    ``Passage: "<text>". Use one word to represent the passage ...`` for documents, ``Query: ...`` for queries),
    ending with the answer's opening ``The word is "``; ``top_k`` (default 128) entries kept per text."""
    tokenizer, model = load_causal_lm(llm)
    head = PromptRepsHead(model, tokenizer, top_k=top_k or 128)
    templates = {role: _promptreps_prompt(tokenizer, role) for role in ("query", "document")}
    prompts = Prompts.from_strings(templates, default="document")  # a text of no role is read as a passage
    encoder = SparseEncoder(head, tokenizer, max_seq_length or 512, None, prompts, None, threshold or 0.0, str(llm))
    return encoder.to(resolve_device(device))


def write_sparse_folder(model: SparseEncoder, folder: Path, overwrite: bool = False) -> Path:
    """Write ``model`` (see the module docstring for the layouts) with a model card; the folder appears only once
    complete.

    Raises:
        FileExistsError: ``folder`` exists and ``overwrite`` is False.
    """
    with atomic_path(folder, overwrite) as temporary:
        temporary.mkdir()
        if isinstance(model.document_head, PromptRepsHead):
            write_json(temporary / SETTINGS_FILE, _promptreps_settings(model))
        else:
            _write_st_layout(model, temporary)
        (temporary / CARD_FILE).write_text(model_card(model.info(), model.card_notes, folder.name), encoding="utf-8")
    return folder


# ----------------------------------------------------------------- reading


def _splade(folder: Path, pooling: dict[str, Any], dtype: Any) -> tuple[SpladeHead, Any, int]:
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        mlm, loading = AutoModelForMaskedLM.from_pretrained(folder, dtype=parse_dtype(dtype), output_loading_info=True)
    except Exception as error:
        raise ModelLoadError(
            f"could not load a masked-LM model from {folder}: {type(error).__name__}: {error}"
        ) from error
    if any(".transform." in key for key in loading["missing_keys"]):  # an encoder without its MLM head
        init_mlm_head(mlm)
    mlm.eval()
    head = SpladeHead(mlm, pooling.get("pooling_strategy", "max"), pooling.get("activation_function", "relu"))
    settings = read_json(folder / ST_MODULE_CONFIG) or {}
    return head, tokenizer, settings.get("max_seq_length") or tokenizer_limit(tokenizer, mlm)


def init_mlm_head(mlm: Any) -> None:
    """Start a new masked-LM head from the word embeddings: the transform layer an identity (dense = I, bias 0;
    the LayerNorm's default), the decoder tied to the word embeddings (transformers' tie), and its bias
    ``NEW_HEAD_BIAS``. A token's logit is then the match of its word embedding with the normalised last hidden
    state, which on a sentence encoder already ranks the text's own words and their neighbours first (all-MiniLM-L6-v2
    on "aerodynamic heating of a flat plate in supersonic flow": flat, super, flow, plate, ##sonic, flows,
    aerodynamic, ...), and the negative bias leaves a few hundred tokens active per text, where a random transform
    activates nearly the whole vocabulary and gives noise."""
    decoder = mlm.get_output_embeddings()
    predictions = getattr(getattr(mlm, "cls", None), "predictions", None)
    dense = getattr(getattr(predictions, "transform", None), "dense", None)
    if dense is None or dense.weight.shape[0] != dense.weight.shape[1]:
        return  # not a BERT-style head: keep transformers' initialisation
    with torch.no_grad():
        dense.weight.copy_(torch.eye(dense.weight.shape[0], dtype=dense.weight.dtype))
        dense.bias.zero_()
        if decoder.bias is not None:
            decoder.bias.fill_(NEW_HEAD_BIAS)


def _pooling_settings(folder: Path, modules: list[dict[str, Any]]) -> dict[str, Any]:
    pooling = next((m for m in modules if str(m.get("type", "")).endswith("SpladePooling")), None)
    return (read_json(folder / pooling["path"] / "config.json") or {}) if pooling else {}


def _router_parts(folder: Path) -> tuple[Path, dict[str, Any], Path | None]:
    """The document transformer folder, the document pooling settings and the query static-embedding folder (None:
    queries take the document route) of a Router folder."""
    config = read_json(folder / ROUTER_CONFIG) or {}
    types, structure = config.get("types") or {}, config.get("structure") or {}
    document = structure.get("document") or []
    transformer = next((name for name in document if str(types.get(name, "")).endswith("Transformer")), None)
    if transformer is None:
        raise ModelLoadError(f"{folder / ROUTER_CONFIG}: the document route has no transformer: {document}")
    pooling = next((name for name in document if str(types.get(name, "")).endswith("SpladePooling")), None)
    pooling_settings = (read_json(folder / pooling / "config.json") or {}) if pooling else {}
    query = structure.get("query") or []
    static = next((name for name in query if str(types.get(name, "")).endswith("SparseStaticEmbedding")), None)
    if query and static is None:
        raise ModelLoadError(
            f"{folder / ROUTER_CONFIG}: gpte reads a query route of one SparseStaticEmbedding: {query}"
        )
    return folder / transformer, pooling_settings, (folder / static if static else None)


def _static_head(folder: Path) -> StaticQueryHead:
    weights = load_file(folder / "model.safetensors")
    frozen = bool((read_json(folder / "config.json") or {}).get("frozen", False))
    return StaticQueryHead(weights["weight"], frozen=frozen)


def _saved_options(saved: dict[str, Any]) -> dict[str, Any]:
    return {key: saved[key] for key in ("top_k", "threshold", "max_seq_length") if saved.get(key) is not None}


def _promptreps_prompt(tokenizer: Any, role: str) -> str:
    role_name, noun = ("Query", "query") if role == "query" else ("Passage", "passage")
    messages = [
        {"role": "system", "content": PROMPTREPS_SYSTEM},
        {"role": "user", "content": PROMPTREPS_USER.format(role=role_name, noun=noun)},
    ]
    return chat_prompt(tokenizer, messages) + PROMPTREPS_ANSWER


# ----------------------------------------------------------------- writing


def _write_st_layout(model: SparseEncoder, folder: Path) -> None:
    if isinstance(model.document_head, CSRHead):
        write_csr(model, folder)
        return
    if model.query_head is None:
        _write_transformer(model, folder)
        write_json(folder / "1_SpladePooling" / "config.json", _pooling_config(model.document_head))
        modules = [_module(0, "", "transformer"), _module(1, "1_SpladePooling", "pooling")]
    else:
        query, transformer, pooling = (
            "query_0_SparseStaticEmbedding",
            "document_0_Transformer",
            "document_1_SpladePooling",
        )
        _write_transformer(model, folder / transformer)
        write_json(folder / pooling / "config.json", _pooling_config(model.document_head))
        (folder / query).mkdir()
        model.tokenizer.save_pretrained(folder / query)
        save_file({"weight": model.query_head.weight.detach().cpu().contiguous()}, folder / query / "model.safetensors")
        write_json(folder / query / "config.json", {"frozen": model.query_head.frozen})
        types = {query: ST_TYPES["static"], transformer: ST_TYPES["transformer"], pooling: ST_TYPES["pooling"]}
        router = {
            "types": types,
            "structure": {"query": [query], "document": [transformer, pooling]},
            "parameters": {"default_route": "document", "allow_empty_key": True, "route_mappings": {}},
        }
        write_json(folder / ROUTER_CONFIG, router)
        modules = [_module(0, "", "router")]
    write_json(folder / "modules.json", modules)
    config = st_model_config("SparseEncoder", model.prompts, "dot", max_active_dims=model.top_k)
    write_json(folder / ST_CONFIG, config)


def _write_transformer(model: SparseEncoder, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.document_head.mlm.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)
    write_json(folder / ST_MODULE_CONFIG, MLM_SETTINGS | {"max_seq_length": model.max_seq_length})


def _pooling_config(head: SpladeHead) -> dict[str, Any]:
    return {"pooling_strategy": head.pooling, "activation_function": head.activation, "embedding_dimension": None}


def _module(index: int, path: str, kind: str) -> dict[str, Any]:
    return {"idx": index, "name": str(index), "path": path, "type": ST_TYPES[kind]}


def _promptreps_settings(model: SparseEncoder) -> dict[str, Any]:
    return {
        "architecture": "promptreps",
        "llm": model.name,
        "top_k": model.document_head.top_k,
        "threshold": model.threshold,
        "max_seq_length": model.max_seq_length,
    }
