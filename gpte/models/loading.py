"""Entry points that load a model by kind. ``load_model``: any dense model gpte can run from a name or folder: a static model folder (written by
``gpte distill-static``: ``gpte_static.json`` beside its table) as a ``StaticEmbedder``, everything else through
``Embedder.load``. Consumers that reload a model by the name they recorded (an index, a server) use this, so a
static model is indexed, served and evaluated like any other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpte.models.protocol import DenseModel, PairScorer
from gpte.models.st_format import read_json
from gpte.models.static import CONFIG_FILE, StaticEmbedder

STATIC_BACKENDS = ("static", "torch")  # what a static folder accepts as backend: it has its own, "static"


def is_static_folder(name_or_path: str | Path | None) -> bool:
    """Whether ``name_or_path`` is a folder written by ``StaticEmbedder.save``."""
    return name_or_path is not None and (Path(name_or_path) / CONFIG_FILE).is_file()


def load_model(name_or_path: str | Path | None = None, backend: str = "torch", **options: Any) -> DenseModel:
    """The dense model at ``name_or_path`` (None: the packaged default).

    Args:
        name_or_path: as ``Embedder.load``, or a static model folder.
        backend: as ``Embedder.load``; a static folder runs its own way and accepts only "static" or the default.
        options: ``Embedder.load`` options (device, pooling, attention, extraction, ...); none apply to a static model.

    Raises:
        ValueError: ``backend="static"`` for a folder that is not a static model, or transformer options for one.
    """
    if is_sparse_folder(name_or_path):
        raise ValueError(
            f"{name_or_path} is a sparse model (one weight per vocabulary token), not a dense one: load it with "
            "gpte.models.sparse.load_sparse_encoder (CLI: gpte encode --kind sparse, gpte serve --sparse, "
            "gpte index --sparse)"
        )
    if is_multivector_folder(name_or_path):
        raise ValueError(
            f"{name_or_path} is a multi-vector model (one vector per token, MaxSim), not a dense one: load it with "
            "gpte.models.multivector.load_multivector_encoder (CLI: gpte encode --kind multivector, gpte serve "
            "--multivector, gpte index --multivector)"
        )
    if is_static_folder(name_or_path):
        given = {key: value for key, value in options.items() if value is not None}
        if backend not in STATIC_BACKENDS or given:
            raise ValueError(
                f"{name_or_path} is a static model (gpte distill-static): backend {backend!r} and options "
                f"{sorted(given)} apply to transformer models only"
            )
        return StaticEmbedder.load(name_or_path)
    if backend == "static":
        raise ValueError(
            f"backend 'static' needs a folder written by gpte distill-static; {name_or_path!r} has no {CONFIG_FILE}"
        )
    from gpte.models.embedder import Embedder

    return Embedder.load(name_or_path, backend=backend, **options)


SPARSE_SETTINGS_FILE = "gpte_sparse.json"  # a PromptReps folder's settings (gpte.models.sparse.folders)


def is_sparse_folder(name_or_path: str | Path | None) -> bool:
    """Whether ``name_or_path`` is a folder holding a sparse model (sentence-transformers' SparseEncoder layout or a
    PromptReps settings file); needs no scipy, so a core install can tell."""
    if name_or_path is None or not Path(name_or_path).is_dir():
        return False
    folder = Path(name_or_path)
    st_config = read_json(folder / "config_sentence_transformers.json") or {}
    return (folder / SPARSE_SETTINGS_FILE).is_file() or st_config.get("model_type") == "SparseEncoder"


def is_multivector_folder(name_or_path: str | Path | None) -> bool:
    """Whether ``name_or_path`` is a folder holding a multi-vector model (sentence-transformers' MultiVectorEncoder
    layout or PyLate's ColBERT)."""
    if name_or_path is None or not Path(name_or_path).is_dir():
        return False
    st_config = read_json(Path(name_or_path) / "config_sentence_transformers.json") or {}
    return st_config.get("model_type") in ("MultiVectorEncoder", "ColBERT")


def is_reranker_folder(name_or_path: str | Path | None) -> bool:
    """Whether ``name_or_path`` is a folder holding a reranker: a cross-encoder (sentence-transformers' CrossEncoder
    layout or a ``...ForSequenceClassification``) or an LLM reranker saved by gpte."""
    from gpte.models.cross_encoder import is_cross_encoder_folder
    from gpte.models.llm_reranker import SETTINGS_FILE

    if name_or_path is None or not Path(name_or_path).is_dir():
        return False
    return is_cross_encoder_folder(name_or_path) or (Path(name_or_path) / SETTINGS_FILE).is_file()


def load_reranker(name_or_path: str | Path | None = "llm", **options: Any) -> PairScorer:
    """The reranker at ``name_or_path``: ``"llm"`` (or None) for the packaged SmolLM2-135M-Instruct yes/no reranker;
    a GGUF file, packaged LLM or causal-LM folder as an ``LLMReranker``; anything else (a cross-encoder folder or
    hub id, or an encoder to start training from) as a ``CrossEncoder``.

    Args:
        options: the chosen class's options (``CrossEncoder.load``: num_labels, max_seq_length, activation, prompts,
            device, dtype; ``LLMReranker``: max_length, instruction, true_token, false_token).

    Raises:
        ModelLoadError: the model cannot be found or read.
    """
    from gpte.models.causal_lm import DEFAULT_LLM
    from gpte.models.cross_encoder import CrossEncoder, is_cross_encoder_folder
    from gpte.models.llm_reranker import LLMReranker
    from gpte.models.sources import resolve_model
    from gpte.models.st_format import read_json

    if name_or_path in (None, "llm"):
        return LLMReranker.load(DEFAULT_LLM, **options)
    source = resolve_model(name_or_path)
    architectures = read_json(source.folder / "config.json").get("architectures") or []
    causal = any(str(name).endswith("ForCausalLM") for name in architectures)
    if source.gguf_file is not None or (causal and not is_cross_encoder_folder(source.folder)):
        return LLMReranker.load(name_or_path, **options)
    return CrossEncoder.load(name_or_path, **options)
