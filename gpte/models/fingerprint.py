"""Fingerprints of model weights, for provenance and for caches keyed by a model."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch


def weights_sha256(model: Any) -> str | None:
    """sha256 over a model's ``state_dict()`` tensors (names, shapes, dtypes, bytes): a torch module's
    parameters and buffers, or a static model's table; None for a model without one."""
    if not callable(getattr(model, "state_dict", None)):
        return None
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path: Any) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_key(fingerprint: str, model: Any) -> str:
    """sha256 of a weights fingerprint and the model's settings (its ``info()`` without device and name:
    pooling, normalization, prompts, max length, dtype, backend), so that two keys are equal only when
    the two models make the same vectors."""
    info = model.info() if callable(getattr(model, "info", None)) else {}
    settings = {key: value for key, value in info.items() if key not in ("device", "name")}
    payload = json.dumps({"weights": fingerprint, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()
