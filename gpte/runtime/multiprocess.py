"""Encode with several worker processes, for machines with more cores than one PyTorch process uses well.

Built on ``concurrent.futures.ProcessPoolExecutor`` (spawn start method by default: safe with PyTorch's threads):
each worker receives the model once, encodes chunks of texts with ``cpu_count // processes`` threads,
and the chunks are put back in input order. An exception in a worker is raised in the caller (the
remaining chunks are cancelled); a worker that dies outright raises ``RuntimeError``; the pool is
always shut down, so no process outlives the call.

The model reaches the workers as a pickle file in a temporary folder, not as the pool's ``initargs``: those are
written into each new worker's start-up pipe while the caller itself holds its reading end, so a worker that dies
before reading them (more than a pipe's 64 KiB: any real model) would block the caller forever.

A spawned worker first runs the caller's main script again. A script that calls ``encode_multi_process`` without
an ``if __name__ == "__main__":`` guard therefore calls it again inside every worker, while the worker is still
starting; there it stops the worker at once (``os._exit``: a normal exit can hang for minutes in the interpreter's
final garbage collection of the half-run script, and the caller would wait on it), printing the fix, and the caller
raises ``RuntimeError`` naming the fix instead of waiting forever.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np

from gpte.models.protocol import DenseModel

MULTIPROCESS_CHUNK = 2_048
START_METHODS = ("spawn", "fork")  # fork: no re-run of the main script, but unsafe once PyTorch has started threads
MISSING_GUARD = (
    "each worker process runs the calling script again (start method spawn): put the code that calls "
    'encode_multi_process under `if __name__ == "__main__":`, or pass start_method="fork" (Linux, and only before '
    "PyTorch or a tokenizer has run threads in this process)"
)

_worker_model: DenseModel | None = None


def encode_multi_process(
    embedder: DenseModel,
    texts: Sequence[str],
    processes: int | None = None,
    chunk_size: int = MULTIPROCESS_CHUNK,
    start_method: str = "spawn",
    **encode_options: Any,
) -> np.ndarray:
    """Vectors of ``texts`` in input order, encoded by ``processes`` workers (default: one per 2 cores).

    Args:
        embedder: any picklable model with ``encode(texts, **options)`` (gpte's Embedder).
        chunk_size: texts per task sent to a worker.
        start_method: how workers start, one of ``START_METHODS`` (see ``MISSING_GUARD``).
        encode_options: passed to ``encode`` (role, prompt, batch_size, normalize, truncate_dim, precision).

    Raises:
        ValueError: a bad ``processes``, ``chunk_size`` or ``start_method``.
        RuntimeError: a worker process died or could not start (the likely fix is named); a worker's own
            exception is re-raised as is.
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):  # multiprocessing's own test for this
        _stop_starting_worker()
    if start_method not in START_METHODS:
        raise ValueError(f"start_method must be one of {', '.join(START_METHODS)}, got {start_method!r}")
    cores = os.cpu_count() or 1
    processes = processes or max(1, cores // 2)
    for name, value in (("processes", processes), ("chunk_size", chunk_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    texts = list(texts)
    if not texts:
        return np.asarray(embedder.encode([], **encode_options))
    threads = max(1, cores // processes)
    with tempfile.TemporaryDirectory(prefix="gpte-workers-") as scratch:
        model_file = Path(scratch) / "model.pickle"
        with model_file.open("wb") as handle:
            pickle.dump(embedder, handle, protocol=pickle.HIGHEST_PROTOCOL)
        with ProcessPoolExecutor(
            processes,
            mp_context=multiprocessing.get_context(start_method),
            initializer=_start_worker,
            initargs=(str(model_file), threads),
        ) as pool:
            return _gather(
                pool, [texts[start : start + chunk_size] for start in range(0, len(texts), chunk_size)], encode_options
            )


def _gather(pool: ProcessPoolExecutor, chunks: list[list[str]], options: dict[str, Any]) -> np.ndarray:
    """The vectors of ``chunks`` encoded by ``pool``'s workers, concatenated in order; the rest is cancelled on error."""
    futures = [pool.submit(_encode_chunk, chunk, options) for chunk in chunks]
    try:
        return np.concatenate([future.result() for future in futures])
    except BrokenProcessPool as error:
        raise RuntimeError(
            f"an encoding worker process died or could not start ({error}); the pool was shut down. "
            f"If the calling script has no main guard: {MISSING_GUARD}"
        ) from error
    finally:
        for future in futures:
            future.cancel()


def _stop_starting_worker() -> None:
    """End this worker process, which is re-running an unguarded main script, at once (see the module docstring)."""
    print(
        f"gpte: error: encode_multi_process was called while a worker process started: {MISSING_GUARD}",
        file=sys.stderr,
        flush=True,
    )
    os._exit(1)


def _start_worker(model_file: str, threads: int) -> None:
    """Load the model this worker encodes with from ``model_file`` (pickled by the caller)."""
    import torch

    global _worker_model
    torch.set_num_threads(threads)
    with open(model_file, "rb") as handle:
        _worker_model = pickle.load(handle)


def _encode_chunk(texts: list[str], options: dict[str, Any]) -> np.ndarray:
    return np.asarray(_worker_model.encode(texts, show_progress=False, **options))
