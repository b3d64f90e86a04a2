"""ONNX Runtime backends: the transformer exported to ONNX, graph-optimized, optionally int8-quantized.

Only the transformer runs in ONNX Runtime (token ids and attention mask in, last hidden states out);
tokenization, pooling, dense layers and normalization stay gpte's own code, so every pooler and prompt
works unchanged and the fp32 vectors equal PyTorch's to float rounding.

Artifacts live in an export folder: by default gpte's cache, ``$GPTE_CACHE/onnx/<key>/`` (``$GPTE_CACHE`` unset:
``~/.cache/gpte``; the key hashes the weights and the attention mode, so every copy of a model shares one export
and another model never reuses it). A folder inside an installed package (``site-packages``, ``dist-packages``) or a
read-only one is never written: the cache is used instead, with a warning. The folder holds a manifest (``gpte_onnx.json``) holding the sha256 of the
source weights and of every file. A file whose hash does not match (corrupt, truncated, or exported from
other weights) is never used: it is exported again, with a warning. Each file is written under a
temporary name and renamed when complete.

Encoders (BERT-style) are exported with eager attention and fused by ONNX Runtime's transformer optimizer
(``onnxruntime.transformers.optimizer``, model type ``bert``): each layer's attention becomes one
``Attention`` kernel, embeddings one ``EmbedLayerNormalization``, and residual + LayerNorm and bias + GELU
one kernel each. The fused graph is kept only if it gives the PyTorch states (``EXACT_TOLERANCE``) on a
padded probe batch; otherwise the plain graph is kept, with a warning. Decoders keep the plain graph
(session-level fusions only): the ``bert`` fusion patterns do not describe them.

Why these tools: ``torch.onnx.export`` is the exporter that ships with torch (no extra converter), and
ONNX Runtime's own graph optimizers and ``quantize_dynamic`` are the reference implementations of fused
attention/LayerNorm/GELU kernels and of dynamic int8 quantization on CPU (on a fused graph it makes
``QAttention``, int8 attention projections, which the plain graph cannot use).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gpte.atomic import atomic_path
from gpte.errors import BackendUnavailableError
from gpte.models.attention import AttentionMode
from gpte.models.fingerprint import file_sha256, weights_sha256
from gpte.models.tokenization import TokenBatch

MANIFEST = "gpte_onnx.json"
FILES = {"onnx": "model.onnx", "onnx-int8": "model_int8.onnx"}
OPSET = 18
# How the float32 file is made; a file made otherwise (an older gpte) is exported again.
EXPORT_SETTINGS = {"opset": OPSET, "encoder_fusion": "onnxruntime.transformers bert, eager-attention export"}
# How the int8 file is made: dynamic quantization of the projections (MatMul, and fused Attention's QKV
# projection), int8 weights with one scale per output channel, 7-bit weight range. Measured on all-MiniLM-L6-v2,
# Cranfield nDCG@10 change vs float32: per-tensor scales -1.38; per-channel full 8-bit range on the fused graph
# -0.98, because AVX2 without VNNI sums u8 x s8 products pairwise in int16 (vpmaddubsw), which saturates; 7-bit
# weights (reduce_range) cannot saturate: -0.07. The embedding table stays float32 (quantizing it saves only
# disk and costs accuracy).
INT8_SETTINGS = {
    "method": "quantize_dynamic",
    "weight_type": "QInt8",
    "per_channel": True,
    "reduce_range": True,
    "op_types": ["MatMul", "Attention"],
}
# The fused graph must give PyTorch's token states to this absolute difference, else the plain graph is kept.
EXACT_TOLERANCE = 1e-4
PACKAGE_FOLDERS = ("site-packages", "dist-packages")  # where pip installs packages: never written


def require_onnxruntime() -> Any:
    """The onnxruntime module, or an error naming the extra to install."""
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailableError(
            "the onnx backends need onnxruntime and onnx: pip install 'gpte[onnx]' "
            "(or use backend='torch', the reference)"
        ) from None
    return onnxruntime


class _LastHiddenState(nn.Module):
    """The transformer as a function of tensors only, for export."""

    def __init__(self, model: nn.Module, with_positions: bool) -> None:
        super().__init__()
        self.model = model
        self.with_positions = with_positions

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.with_positions:
            inputs["position_ids"] = position_ids
        return self.model(**inputs, return_dict=True).last_hidden_state


class OnnxBackbone:
    """Runs a backbone's transformer in ONNX Runtime; called like ``Backbone`` (batch -> states).

    Args:
        backbone: the PyTorch backbone (exported on first use; its tokenizer and config stay in use).
        folder: the export folder (None: ``default_export_dir``; see ``export_folder``).
        backend: ``"onnx"`` (fp32, graph-optimized) or ``"onnx-int8"`` (dynamic int8 weights).
        threads: ONNX Runtime intra-op threads (default: torch's thread count).
    """

    def __init__(
        self, backbone: Any, folder: str | Path | None = None, backend: str = "onnx", threads: int | None = None
    ) -> None:
        if backend not in FILES:
            raise ValueError(f"unknown onnx backend {backend!r}; choose one of: {', '.join(FILES)}")
        self.onnxruntime = require_onnxruntime()
        self.backend = backend
        self.folder = export_folder(backbone, folder)
        self.with_positions = backbone.kind == "decoder" and backbone._takes_position_ids
        path = ensure_exported(backbone, self.folder, backend, self.with_positions)
        options = self.onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = self.onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle ONNX Runtime threads sleep instead of spinning: between runs, tokenization and pooling need the
        # cores (all-MiniLM-L6-v2, STS-B, 2 cores: 434 vs 331 sentences/s fp32, 651 vs 610 int8).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = self.onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [item.name for item in self.session.get_inputs()]

    def __call__(self, batch: TokenBatch, all_layers: bool = False) -> tuple[torch.Tensor, None]:
        if all_layers:
            raise ValueError(
                "the onnx backends return only the last layer; use backend='torch' for multi-layer pooling"
            )
        feeds = {
            "input_ids": batch.input_ids.cpu().numpy(),
            "attention_mask": batch.attention_mask.cpu().numpy(),
            "position_ids": batch.position_ids.cpu().numpy(),
        }
        (hidden,) = self.session.run(None, {name: feeds[name] for name in self.input_names})
        return torch.from_numpy(hidden), None


def default_export_dir(backbone: Any) -> Path:
    """gpte's cache folder for ``backbone``'s ONNX files: ``$GPTE_CACHE/onnx/<key>`` (default ``~/.cache/gpte``),
    the key hashing the weights (``weights_sha256``, cached per state of the weights) and the attention mode."""
    source = f"{weights_sha256(backbone.model)}:{json.dumps(backbone.attention.config(), sort_keys=True)}"
    cache = Path(os.environ.get("GPTE_CACHE") or Path.home() / ".cache" / "gpte")
    return cache / "onnx" / hashlib.sha256(source.encode()).hexdigest()[:16]


def export_folder(backbone: Any, folder: str | Path | None) -> Path:
    """Where ``backbone``'s ONNX files go: ``folder``, unless it is None, inside an installed package or read-only
    (``is_protected_folder``), where ``default_export_dir`` is used (with a warning when ``folder`` was given)."""
    if folder is None:
        return default_export_dir(backbone)
    folder = Path(folder).expanduser()
    if not is_protected_folder(folder):
        return folder
    cache = default_export_dir(backbone)
    warnings.warn(
        f"not writing ONNX files into {folder} (inside an installed package or read-only); using gpte's cache "
        f"{cache} (give a writable export_dir to keep them elsewhere)",
        stacklevel=5,  # the caller of Embedder.use_backend
    )
    return cache


def is_protected_folder(folder: Path) -> bool:
    """Whether ``folder`` lies inside an installed package (a ``site-packages``/``dist-packages`` folder) or its
    nearest existing folder is read-only: not writable by this user, or with no write permission bit at all (a
    folder made read-only stays so for root, whom ``os.access`` lets write everywhere)."""
    folder = folder.absolute()
    if any(part in PACKAGE_FOLDERS for part in folder.parts):
        return True
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    return not os.access(existing, os.W_OK) or existing.stat().st_mode & 0o222 == 0


def ensure_exported(backbone: Any, folder: Path, backend: str, with_positions: bool) -> Path:
    """The path of a verified ``backend`` file in ``folder``, exporting (or re-exporting) it when needed."""
    source = weights_sha256(backbone.model)
    attention = backbone.attention.config()  # the graph differs between causal and bidirectional
    manifest = _read_manifest(folder)
    if (
        manifest.get("source_sha256") != source
        or manifest.get("attention", AttentionMode().config()) != attention
        or manifest.get("export_settings") != EXPORT_SETTINGS
    ):
        manifest = {"source_sha256": source, "attention": attention, "export_settings": EXPORT_SETTINGS, "files": {}}
    if manifest.get("int8_settings") != INT8_SETTINGS:  # made another way (an older gpte): quantize again
        manifest["files"].pop(FILES["onnx-int8"], None)
        manifest["int8_settings"] = INT8_SETTINGS
    for needed in ("onnx", backend):
        name = FILES[needed]
        path = folder / name
        recorded = manifest["files"].get(name)
        if recorded is not None and path.exists() and file_sha256(path) == recorded:
            continue
        if path.exists():
            warnings.warn(
                f"{path} does not match its checksum (corrupt, exported from other weights or made with other settings); exporting it again",
                stacklevel=3,
            )
        if needed == "onnx":
            manifest["graph"] = _export_fp32(backbone, path, with_positions)
        else:
            _quantize_int8(folder / FILES["onnx"], path)
        manifest["files"][name] = file_sha256(path)
        _write_manifest(folder, manifest)
    return folder / FILES[backend]


def _export_fp32(backbone: Any, path: Path, with_positions: bool) -> str:
    """Write the float32 graph to ``path``: fused for encoders when it passes the exactness check, else plain.

    Returns:
        ``"fused"`` or ``"plain"`` (recorded in the manifest).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as scratch:
        plain = Path(scratch) / "plain.onnx"
        if backbone.kind != "encoder":
            _torch_export(backbone, plain, with_positions)
            graph, chosen = "plain", plain
        else:
            with _eager_attention(backbone.model):  # the attention pattern ONNX Runtime's fusion recognizes
                _torch_export(backbone, plain, with_positions)
            chosen = _fuse_encoder(backbone, plain, Path(scratch) / "fused.onnx")
            graph = "fused" if chosen != plain else "plain"
        with atomic_path(path, overwrite=True) as temporary:
            os.replace(chosen, temporary)
    return graph


def _torch_export(backbone: Any, path: Path, with_positions: bool) -> None:
    """torch.onnx.export of the transformer: token ids and mask (and positions for decoders) -> last states."""
    wrapper = _LastHiddenState(backbone.model, with_positions).eval()
    ids = torch.tensor([[1, 2, 3, 4], [1, 2, 3, 0]], dtype=torch.long)
    args = (ids, torch.ones_like(ids), torch.arange(4).expand(2, 4).contiguous())
    names = ["input_ids", "attention_mask"] + (["position_ids"] if with_positions else [])
    axes = {name: {0: "batch", 1: "tokens"} for name in names} | {"last_hidden_state": {0: "batch", 1: "tokens"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            args[: len(names)],
            str(path),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


@contextmanager
def _eager_attention(model: nn.Module) -> Iterator[None]:
    """Run ``model`` with transformers' eager attention inside the block, then restore its implementation."""
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


def _fuse_encoder(backbone: Any, plain: Path, fused: Path) -> Path:
    """ONNX Runtime's ``bert`` fusion of ``plain`` into ``fused``; returns ``fused`` if its token states equal
    PyTorch's within ``EXACT_TOLERANCE`` on a padded probe batch, else ``plain`` (with a warning)."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = backbone.model.config
    try:
        optimized = optimize_model(
            str(plain),
            model_type="bert",
            num_heads=getattr(config, "num_attention_heads", 0),
            hidden_size=getattr(config, "hidden_size", 0),
            opt_level=0,
        )
        optimized.save_model_to_file(str(fused))
        difference = _largest_state_difference(backbone, fused)
    except Exception as error:
        warnings.warn(
            f"ONNX Runtime's fusion failed on this encoder ({type(error).__name__}: {error}); using the plain graph",
            stacklevel=4,
        )
        return plain
    if difference > EXACT_TOLERANCE:
        warnings.warn(
            f"the fused graph differs from PyTorch by {difference:.1e} (> {EXACT_TOLERANCE}); using the plain graph",
            stacklevel=4,
        )
        return plain
    return fused


def _largest_state_difference(backbone: Any, path: Path) -> float:
    """Largest |ONNX - PyTorch| over the real (unpadded) token states of a padded probe batch."""
    texts = ["a", "a longer probe sentence, with punctuation and several more words in it"]
    batch = backbone.tokenizer(texts, padding=True, return_tensors="pt")
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        expected = backbone.model(**inputs, return_dict=True).last_hidden_state.numpy()
    session = require_onnxruntime().InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (states,) = session.run(None, {name: tensor.numpy() for name, tensor in inputs.items()})
    real = batch["attention_mask"].numpy().astype(bool)
    return float(np.abs(states - expected)[real].max())


def _quantize_int8(fp32: Path, path: Path) -> None:
    """ONNX Runtime dynamic quantization (``INT8_SETTINGS``): int8 weights with per-output-channel scales,
    activations quantized per batch at run time. On a fused graph, attention becomes ``QAttention``."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with atomic_path(path, overwrite=True) as temporary:
        quantize_dynamic(
            str(fp32),
            str(temporary),
            weight_type=QuantType[INT8_SETTINGS["weight_type"]],
            per_channel=INT8_SETTINGS["per_channel"],
            reduce_range=INT8_SETTINGS["reduce_range"],
            op_types_to_quantize=INT8_SETTINGS["op_types"],
            extra_options={
                "DefaultTensorType": onnx.TensorProto.FLOAT
            },  # types of the fused (com.microsoft) ops' outputs
        )


def _read_manifest(folder: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) else {}


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    with atomic_path(folder / MANIFEST, overwrite=True) as temporary:
        temporary.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
