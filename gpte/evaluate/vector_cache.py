"""An on-disk cache of text vectors: a later run (more tasks, ``--overwrite``, a run that crashed) does not
encode a text that an earlier run already encoded with the same model, role and prompt.

Layout: ``CACHE/<model key>/<role-prompt key>/part-<uuid>.npz``; each part holds ``keys`` (the sha256 of
each text, an (n, 32) uint8 array) and ``vectors`` (float32). Parts are only added, each written under a temporary
name and renamed when complete, so an interrupted run loses at most the part it was writing and never
leaves a damaged one. The model key is ``gpte.models.fingerprint.model_key`` (weights and settings),
so a changed model never reads another model's vectors.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import numpy as np

from gpte.atomic import atomic_path


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class VectorCache:
    """Text vectors on disk for one model, by (role, prompt).

    Args:
        folder: the cache root (created when first written).
        model_key: from ``gpte.models.fingerprint.model_key``.
    """

    def __init__(self, folder: str | Path, model_key: str) -> None:
        self.folder = Path(folder) / model_key[:32]
        self._loaded: dict[Path, dict[bytes, np.ndarray]] = {}

    def get(self, role: str | None, prompt: str | None, texts: list[str]) -> dict[str, np.ndarray]:
        """The cached vectors of those ``texts`` that have one, by text."""
        stored = self._partition(role, prompt)
        found = {}
        for text in texts:
            vector = stored.get(text_key(text))
            if vector is not None:
                found[text] = vector
        return found

    def add(self, role: str | None, prompt: str | None, texts: list[str], vectors: np.ndarray) -> None:
        """Store ``vectors`` (n, d) for ``texts`` as a new part."""
        if not texts:
            return
        folder = self._partition_folder(role, prompt)
        keys = [text_key(text) for text in texts]
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32)
        with atomic_path(folder / f"part-{uuid.uuid4().hex}.npz") as temporary, open(temporary, "wb") as handle:
            np.savez(handle, keys=key_array, vectors=vectors)
        self._partition(role, prompt).update(zip(keys, vectors))

    def _partition(self, role: str | None, prompt: str | None) -> dict[bytes, np.ndarray]:
        folder = self._partition_folder(role, prompt)
        if folder not in self._loaded:
            stored: dict[bytes, np.ndarray] = {}
            for part in sorted(folder.glob("part-*.npz")) if folder.exists() else []:
                with np.load(part) as arrays:
                    stored.update(zip((row.tobytes() for row in arrays["keys"]), arrays["vectors"]))
            self._loaded[folder] = stored
        return self._loaded[folder]

    def _partition_folder(self, role: str | None, prompt: str | None) -> Path:
        name = hashlib.sha256(json.dumps([role, prompt]).encode()).hexdigest()[:32]
        return self.folder / name
