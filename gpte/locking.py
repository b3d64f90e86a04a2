"""One writer per output: an exclusive lock that a second process asking for the same output does not wait for,
but fails at once naming the process that holds it.

The lock is ``filelock.FileLock`` (the lock Hugging Face's libraries use for their caches: an OS lock on a file,
released by the kernel when its process dies, so a killed run never leaves a stale lock). It is taken on a hidden
``.NAME.lock`` file beside the output, and the holder writes its pid and command line into ``.NAME.lock.owner`` so the
refusal can say who is writing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from gpte.errors import GpteError


class OutputLockedError(GpteError, RuntimeError):
    """Another process is writing the same output; the message names it and the lock file."""


def lock_file(output: str | Path) -> Path:
    """The lock file of ``output``: ``.NAME.lock`` in the output's folder."""
    output = Path(output)
    return output.with_name(f".{output.name}.lock")


@contextmanager
def exclusive_output(output: str | Path, what: str = "output") -> Iterator[None]:
    """Hold the write lock of ``output`` (``what``: how the refusal calls it, e.g. "index") for the block.

    The output's folder is created when missing (the lock file lives there). Within one process the lock is
    reentrant (a writer that calls another writer of the same output does not lock itself out).

    Raises:
        OutputLockedError: another process holds the lock; names its pid and command line when it recorded them.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    path = lock_file(output)
    lock = FileLock(path, timeout=0, thread_local=False, is_singleton=True)
    try:
        lock.acquire()
    except Timeout:
        raise OutputLockedError(
            f"{what} {output} is being written by another process ({_owner(path)}); wait for it to finish or stop it "
            f"(lock file {path})"
        ) from None
    owner = path.with_name(path.name + ".owner")
    first = lock.lock_counter == 1
    if first:
        owner.write_text(f"pid {os.getpid()}: {' '.join(sys.argv)}", encoding="utf-8")
    try:
        yield
    finally:
        if first:
            owner.unlink(missing_ok=True)
        lock.release()


def _owner(path: Path) -> str:
    """What the holder of the lock at ``path`` recorded about itself, or "pid unknown"."""
    try:
        return path.with_name(path.name + ".owner").read_text(encoding="utf-8").strip() or "pid unknown"
    except OSError:
        return "pid unknown"
