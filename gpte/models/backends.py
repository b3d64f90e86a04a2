"""Inference backends: what runs the transformer behind ``Embedder.encode``.

- ``torch``: PyTorch in the model's dtype (float32 by default): the reference every other backend is
  measured against.
- ``bf16``: PyTorch with bfloat16 weights and activations; token states are cast back to float32 before
  pooling. Refused on a CPU without native bfloat16 instructions (avx512_bf16 or AMX), where PyTorch
  would emulate it more slowly than float32.
- ``onnx``: ONNX Runtime, float32, graph-optimized (see ``gpte.models.onnx_backend``).
- ``onnx-int8``: ONNX Runtime with dynamically quantized int8 weights.

A backend is a callable ``(TokenBatch, all_layers) -> (last hidden states, all layers or None)``, the
signature of ``Backbone.forward``; tokenization and pooling never change with the backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gpte.errors import BackendUnavailableError
from gpte.models.choices import BACKENDS

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def select_backend(backbone: Any, backend: str, export_dir: str | Path | None = None) -> Any:
    """The callable that runs ``backbone``'s transformer with ``backend``.

    Raises:
        ValueError: an unknown backend, or an onnx backend without ``export_dir``.
        BackendUnavailableError: the backend cannot run on this machine or device.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if backend == "torch":
        return backbone
    if backend == "bf16":
        _require_native_bf16(backbone.device)
        backbone.model.to(torch.bfloat16)
        return _Float32States(backbone)
    if backbone.device.type != "cpu":
        raise BackendUnavailableError(
            f"the {backend} backend runs on CPU; load the model with device='cpu' or use backend='torch'"
        )
    if export_dir is None:
        raise ValueError(f"the {backend} backend needs an export_dir for its ONNX files")
    from gpte.models.onnx_backend import OnnxBackbone

    return OnnxBackbone(backbone, export_dir, backend)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (Linux: avx512_bf16 or amx_bf16 in /proc/cpuinfo)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def _require_native_bf16(device: torch.device) -> None:
    if device.type == "cuda":
        if not torch.cuda.is_bf16_supported():
            raise BackendUnavailableError("this GPU has no bfloat16 support; use backend='torch' (float32)")
        return
    if device.type == "cpu" and not cpu_has_native_bf16():
        raise BackendUnavailableError(
            "this CPU has no native bfloat16 instructions (avx512_bf16 or AMX); PyTorch would emulate bfloat16, "
            "slower than float32. Use backend='onnx-int8' or 'onnx' for speed, or 'torch' (float32); "
            "Embedder.load(dtype='bfloat16') still runs bfloat16 weights if you want them anyway"
        )


class _Float32States:
    """A bfloat16 backbone whose token states are handed to pooling as float32."""

    def __init__(self, backbone: Any) -> None:
        self.backbone = backbone

    def __call__(self, batch: Any, all_layers: bool = False) -> tuple[torch.Tensor, Any]:
        hidden, layers = self.backbone(batch, all_layers=all_layers)
        return hidden.float(), (tuple(layer.float() for layer in layers) if layers is not None else None)
