"""Token vectors of many texts, stored ragged: one float32 matrix of every text's token vectors end to end and the
offsets where each text starts (the layout of ``gpte encode --kind multivector``: ``tokens.npy`` + ``offsets.npy``).

    vectors = TokenVectors.from_list([np.ones((3, 128)), np.ones((5, 128))])
    vectors[1].shape        # (5, 128): text 1's tokens
    vectors.lengths         # [3, 5]
    padded, mask = vectors.padded()   # (2, 5, 128) zero-padded tensor and its (2, 5) mask

Rows ``offsets[i]:offsets[i+1]`` of ``data`` are text i's token vectors, in token order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gpte.atomic import atomic_path

TOKENS_FILE, OFFSETS_FILE = "tokens.npy", "offsets.npy"


@dataclass(frozen=True)
class TokenVectors:
    """Ragged token vectors.

    Attributes:
        data: (total tokens, dim) float32, every text's token vectors end to end.
        offsets: (texts + 1,) int64, non-decreasing, ``offsets[0] == 0`` and ``offsets[-1] == len(data)``.
    """

    data: np.ndarray
    offsets: np.ndarray

    def __post_init__(self) -> None:
        data, offsets = np.asarray(self.data), np.asarray(self.offsets)
        if data.ndim != 2:
            raise ValueError(f"token vectors must be a 2-D (tokens, dim) array, got shape {data.shape}")
        if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(data):
            raise ValueError(f"offsets must run from 0 to {len(data)} (the token count), got {offsets[:3]}...")
        if np.any(np.diff(offsets) < 0):
            raise ValueError("offsets must not decrease")
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "offsets", offsets.astype(np.int64, copy=False))

    @classmethod
    def from_list(cls, vectors: Sequence[np.ndarray | torch.Tensor], dim: int | None = None) -> TokenVectors:
        """From one (tokens, dim) array or tensor per text; ``dim`` gives the width of an empty list."""
        arrays = [np.asarray(v.detach().float().cpu() if isinstance(v, torch.Tensor) else v) for v in vectors]
        if not arrays:
            return cls(np.zeros((0, dim or 0), dtype=np.float32), np.zeros(1, dtype=np.int64))
        offsets = np.concatenate([[0], np.cumsum([len(a) for a in arrays])]).astype(np.int64)
        return cls(np.concatenate(arrays).astype(np.float32, copy=False), offsets)

    @classmethod
    def concat(cls, parts: Sequence[TokenVectors]) -> TokenVectors:
        """The texts of ``parts`` one after another."""
        if not parts:
            raise ValueError("concat needs at least one TokenVectors")
        starts = np.cumsum([0] + [len(p.data) for p in parts[:-1]])
        offsets = np.concatenate([[0]] + [p.offsets[1:] + s for p, s in zip(parts, starts)])
        return cls(np.concatenate([p.data for p in parts]), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int | slice) -> np.ndarray | TokenVectors:
        """Text ``index``'s (tokens, dim) vectors (a view); a slice gives those texts as ``TokenVectors``."""
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        if not -len(self) <= index < len(self):
            raise IndexError(f"text {index} out of range for {len(self)} texts")
        index %= len(self)
        return self.data[self.offsets[index] : self.offsets[index + 1]]

    @property
    def dim(self) -> int:
        return int(self.data.shape[1])

    @property
    def lengths(self) -> np.ndarray:
        """(texts,) token count of each text."""
        return np.diff(self.offsets)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes + self.offsets.nbytes)

    def to_list(self) -> list[np.ndarray]:
        return [self[i] for i in range(len(self))]

    def take(self, rows: Sequence[int] | np.ndarray) -> TokenVectors:
        """The texts at ``rows``, in that order (repeats allowed)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < -len(self) or rows.max() >= len(self)):
            raise IndexError(f"rows out of range for {len(self)} texts")
        rows %= max(len(self), 1)
        starts, lengths = self.offsets[rows], self.lengths[rows]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        token_rows = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        return TokenVectors(self.data[token_rows], offsets)

    def padded(self, rows: Sequence[int] | np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts ``rows`` (None: all) as a zero-padded (n, longest, dim) float32 tensor and its (n, longest) bool mask."""
        part = self if rows is None else self.take(rows)
        lengths = part.lengths
        width = max(int(lengths.max()) if len(lengths) else 0, 1)
        mask = torch.from_numpy(np.arange(width)[None, :] < lengths[:, None])
        padded = torch.zeros(len(part), width, part.dim, dtype=torch.float32)
        padded[mask] = torch.from_numpy(np.ascontiguousarray(part.data, dtype=np.float32))
        return padded, mask

    def save(self, folder: str | Path, overwrite: bool = False) -> Path:
        """Write ``tokens.npy`` and ``offsets.npy`` into ``folder`` (appearing only once complete)."""
        folder = Path(folder)
        with atomic_path(folder, overwrite) as temporary:
            temporary.mkdir()
            np.save(temporary / TOKENS_FILE, self.data)
            np.save(temporary / OFFSETS_FILE, self.offsets)
        return folder

    @classmethod
    def load(cls, folder: str | Path, mmap: bool = False) -> TokenVectors:
        """Read a folder written by ``save`` (``mmap``: map the tokens instead of reading them)."""
        folder = Path(folder)
        for name in (TOKENS_FILE, OFFSETS_FILE):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder} has no {name}; it is not a folder of token vectors")
        return cls(np.load(folder / TOKENS_FILE, mmap_mode="r" if mmap else None), np.load(folder / OFFSETS_FILE))
