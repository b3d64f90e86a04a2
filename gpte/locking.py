"""One writer per output: an exclusive lock that a second process asking for the same output does not wait for,
but fails at once naming the process that holds it.

The lock is ``filelock.FileLock`` (the lock Hugging Face's libraries use for their caches: an OS lock on a file,
released by the kernel when its process dies, so a killed run never leaves a stale lock). Its file lives in
``~/.cache/gpte/locks`` (``$GPTE_LOCKS`` overrides it), named by the hash of the output's absolute path, so output
folders get no lock files; the holder writes its pid and command line beside it so a refusal can say who is writing.
Processes and threads of one user on one machine are excluded; other users, and writers on two machines sharing a
network folder, are not.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from gpte.errors import GpteError

Writer = Callable[..., object]


class OutputLockedError(GpteError, RuntimeError):
    """Another process is writing the same output; the message names it and the lock file."""


def lock_file(output: str | Path) -> Path:
    """The lock file of ``output``: ``<locks folder>/<sha256 of its absolute path>.lock``."""
    key = hashlib.sha256(str(Path(output).resolve()).encode("utf-8", "surrogateescape")).hexdigest()
    return _locks_folder() / f"{key[:32]}.lock"


def _locks_folder() -> Path:
    """``$GPTE_LOCKS``, else ``~/.cache/gpte/locks``: a folder of this user's (mode 700), not a shared temporary
    folder where another user could plant links or take the name first."""
    folder = Path(os.environ.get("GPTE_LOCKS") or Path.home() / ".cache" / "gpte" / "locks")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


@contextmanager
def exclusive_output(output: str | Path, what: str = "output") -> Iterator[None]:
    """Hold the write lock of ``output`` (``what``: how the refusal calls it, e.g. "index") for the block.

    Within one thread the lock is reentrant (a writer that calls another writer of the same output does not lock
    itself out); another thread of the same process is refused like another process.

    Raises:
        OutputLockedError: another process (or thread) holds the lock; names its pid and command line when it
            recorded them.
    """
    output = Path(output)
    path = lock_file(output)
    lock = FileLock(path, timeout=0, is_singleton=True)  # thread-local: another thread is another writer
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
        _write_owner(owner)
    try:
        yield
    finally:
        if first:
            owner.unlink(missing_ok=True)
        lock.release()


def one_writer(parameter: str, what: str = "output") -> Callable[[Writer], Writer]:
    """Decorator: the function runs holding the write lock (``exclusive_output``) of its argument ``parameter``, the
    path it writes (``what``: how a refusal calls it); a None argument takes no lock."""

    def decorate(function: Writer) -> Writer:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def locked(*args: object, **kwargs: object) -> object:
            output = signature.bind(*args, **kwargs).arguments.get(parameter)
            if output is None:
                return function(*args, **kwargs)
            with exclusive_output(Path(output), what):
                return function(*args, **kwargs)

        return locked

    return decorate


def _write_owner(path: Path) -> None:
    """Record this process's pid and command line in ``path``, never through a link planted there."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(f"pid {os.getpid()}: {' '.join(sys.argv)}")


def _owner(path: Path) -> str:
    """What the holder of the lock at ``path`` recorded about itself, or "pid unknown"."""
    try:
        return path.with_name(path.name + ".owner").read_text(encoding="utf-8").strip() or "pid unknown"
    except OSError:
        return "pid unknown"
