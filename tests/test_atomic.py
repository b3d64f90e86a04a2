"""Write-then-move (gpte.atomic): two writers of one output never silently replace each other, an error leaves
nothing under the final name, and overwrite replaces."""

from __future__ import annotations

import pytest

from gpte.atomic import atomic_path


def test_a_second_writer_of_one_file_is_refused_and_the_first_kept(tmp_path):
    final = tmp_path / "out.jsonl"
    refused = pytest.raises(FileExistsError, match="written by another process meanwhile")
    with refused, atomic_path(final) as temporary:
        temporary.write_text("mine")
        final.write_text("theirs")  # another process finished first
    assert final.read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no partial file left


def test_a_second_writer_of_one_folder_is_refused(tmp_path):
    final = tmp_path / "model"
    refused = pytest.raises(FileExistsError, match="written by another process meanwhile")
    with refused, atomic_path(final) as temporary:
        temporary.mkdir()
        (temporary / "weights").write_text("mine")
        final.mkdir()
        (final / "weights").write_text("theirs")
    assert (final / "weights").read_text() == "theirs" and len(list(tmp_path.iterdir())) == 1


def test_an_error_leaves_nothing_and_overwrite_replaces(tmp_path):
    final = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(final) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed")
    assert not list(tmp_path.iterdir())
    with atomic_path(final) as temporary:
        temporary.write_text("one")
    with atomic_path(final, overwrite=True) as temporary:
        temporary.write_text("two")
    assert final.read_text() == "two"
    with pytest.raises(FileExistsError, match="pass overwrite=True"), atomic_path(final):
        pass
