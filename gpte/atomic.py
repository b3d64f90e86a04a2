"""Write a file or folder under a temporary name and move it into place only when complete, so a crash
or an interrupt never leaves a half-written result under the final name."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def refuse_existing(path: Path, overwrite: bool) -> None:
    """Raise FileExistsError if ``path`` exists and ``overwrite`` is False."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (CLI: --overwrite) to replace it")


def check_destination(path: str | Path, overwrite: bool, folder: bool = False) -> Path:
    """Check, before any work, that an output can be written at ``path``: its folder exists and is writable, and
    ``path`` is not taken (unless ``overwrite``) nor of the other kind (``folder``: the output is a folder, else a
    file). Returns ``path`` as a Path.

    Raises:
        FileNotFoundError, NotADirectoryError: the folder meant to hold ``path`` is missing or is a file.
        PermissionError: that folder is not writable.
        IsADirectoryError, NotADirectoryError: ``path`` is a folder where a file is written, or the reverse.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    parent = path.parent
    if not parent.exists():
        raise FileNotFoundError(f"the folder of output {path} does not exist: create {parent} first")
    if not parent.is_dir():
        raise NotADirectoryError(f"the folder of output {path} is not a folder: {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write output {path}: the folder {parent} is not writable")
    if path.exists() and path.is_dir() != folder:
        kind, wanted = ("a folder", "a file") if path.is_dir() else ("a file", "a folder")
        error = IsADirectoryError if path.is_dir() else NotADirectoryError
        raise error(f"output {path} is {kind}; this output is {wanted}: give another name")
    refuse_existing(path, overwrite)
    return path


@contextmanager
def atomic_path(final: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success move it to ``final``, on error delete it.

    The caller writes a file or creates a folder at the yielded path. An existing ``final`` is refused
    unless ``overwrite``; when replaced, the old one is removed only after the new one is in place. Without
    ``overwrite``, a ``final`` that another writer put in place meanwhile is refused too, at the move (a file is
    hard-linked into place, which fails when the name exists; a folder is renamed, which fails onto a non-empty
    one), so two writers of one output never silently replace each other.
    """
    final = Path(final)
    refuse_existing(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(f".{final.name}.partial-{os.getpid()}")
    _remove(temporary)
    try:
        yield temporary
        if not temporary.exists():
            raise FileNotFoundError(f"nothing was written to {temporary}")
        _move_into_place(temporary, final, overwrite)
    finally:
        _remove(temporary)


def _move_into_place(temporary: Path, final: Path, overwrite: bool) -> None:
    if not overwrite:
        _move_if_absent(temporary, final)
    elif final.is_dir() and not final.is_symlink():
        backup = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, backup)
        os.replace(temporary, final)
        shutil.rmtree(backup)
    else:
        os.replace(temporary, final)


def _move_if_absent(temporary: Path, final: Path) -> None:
    """Move ``temporary`` to ``final`` unless ``final`` exists by then (FileExistsError naming it). Where the file
    system has no hard links, the move falls back to a check then a rename."""
    taken = FileExistsError(f"{final} was written by another process meanwhile; it is kept as that writer left it")
    try:
        if temporary.is_dir():
            os.rename(temporary, final)  # fails onto a file or a non-empty folder
        else:
            os.link(temporary, final)  # fails when the name exists
            temporary.unlink()
    except (FileExistsError, IsADirectoryError, NotADirectoryError) as error:
        raise taken from error
    except OSError as error:
        if error.errno == errno.ENOTEMPTY or final.exists():
            raise taken from error
        os.replace(temporary, final)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
