"""Fingerprints of model weights, for provenance and for caches keyed by a model.

Hashing the weights reads every byte (about 0.2 s for all-MiniLM-L6-v2, seconds for an LLM), so
``weights_sha256`` hashes a model once per state of its weights and remembers the result beside the model (not on
it): the state is each tensor's storage address and torch's in-place version counter, so an optimizer step, a
``load_state_dict`` or a dtype change make the next call hash again, while repeated calls on an unchanged model
(``Index.open``, ``encode_to``, ``evaluate``) cost a dictionary walk.
"""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from typing import Any

import torch

_HASHES: weakref.WeakKeyDictionary[Any, tuple[tuple, str]] = weakref.WeakKeyDictionary()
_HASHES_LOCK = threading.Lock()


def weights_sha256(model: Any) -> str | None:
    """sha256 over a model's ``state_dict()`` tensors (names, shapes, dtypes, bytes): a torch module's
    parameters and buffers, or a static model's table; None for a model without one. Cached per state of the
    weights (see the module docstring)."""
    if not callable(getattr(model, "state_dict", None)):
        return None
    state = model.state_dict()
    stamp = tuple((name, tensor.data_ptr(), tensor._version, tensor.dtype) for name, tensor in state.items())
    with _HASHES_LOCK:
        cached = _HASHES.get(model)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    digest = hash_state(state)
    with _HASHES_LOCK:
        _HASHES[model] = (stamp, digest)
    return digest


def hash_state(state: dict[str, torch.Tensor]) -> str:
    """sha256 of named tensors in name order: name, shape, dtype, then the bytes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
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


def model_fingerprint(model: Any) -> str:
    """The key of a model's outputs: ``model_key`` of its (cached) weights hash and settings; a model without
    weights is keyed by its name."""
    weights = weights_sha256(model)
    return model_key(weights if weights is not None else f"name:{getattr(model, 'name', type(model).__name__)}", model)
