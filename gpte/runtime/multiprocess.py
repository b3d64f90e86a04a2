"""Encode with several worker processes, for machines with more cores than one PyTorch process uses well.

Built on ``concurrent.futures.ProcessPoolExecutor`` (spawn start method: safe with PyTorch's threads):
each worker receives the model once, encodes chunks of texts with ``cpu_count // processes`` threads,
and the chunks are put back in input order. An exception in a worker is raised in the caller (the
remaining chunks are cancelled); a worker that dies outright raises ``RuntimeError``; the pool is
always shut down, so no process outlives the call.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from gpte.models.protocol import DenseModel

MULTIPROCESS_CHUNK = 2_048

_worker_model: DenseModel | None = None


def encode_multi_process(
    embedder: DenseModel,
    texts: Sequence[str],
    processes: int | None = None,
    chunk_size: int = MULTIPROCESS_CHUNK,
    **encode_options: Any,
) -> np.ndarray:
    """Vectors of ``texts`` in input order, encoded by ``processes`` workers (default: one per 2 cores).

    Args:
        embedder: any picklable model with ``encode(texts, **options)`` (gpte's Embedder).
        chunk_size: texts per task sent to a worker.
        encode_options: passed to ``encode`` (role, prompt, batch_size, normalize, truncate_dim, precision).

    Raises:
        ValueError: a bad ``processes`` or ``chunk_size``.
        RuntimeError: a worker process died (the exit is named); a worker's own exception is re-raised as is.
    """
    cores = os.cpu_count() or 1
    processes = processes or max(1, cores // 2)
    for name, value in (("processes", processes), ("chunk_size", chunk_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    texts = list(texts)
    if not texts:
        return np.asarray(embedder.encode([], **encode_options))
    threads = max(1, cores // processes)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        processes, mp_context=context, initializer=_start_worker, initargs=(embedder, threads)
    ) as pool:
        futures = [
            pool.submit(_encode_chunk, texts[start : start + chunk_size], encode_options)
            for start in range(0, len(texts), chunk_size)
        ]
        try:
            return np.concatenate([future.result() for future in futures])
        except BrokenProcessPool as error:
            raise RuntimeError(f"an encoding worker process died ({error}); the pool was shut down") from error
        finally:
            for future in futures:
                future.cancel()


def _start_worker(embedder: DenseModel, threads: int) -> None:
    import torch

    global _worker_model
    torch.set_num_threads(threads)
    _worker_model = embedder


def _encode_chunk(texts: list[str], options: dict[str, Any]) -> np.ndarray:
    return np.asarray(_worker_model.encode(texts, show_progress=False, **options))
