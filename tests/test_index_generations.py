"""Index updates beside open readers: a reader keeps the generation it opened (leases), follows updates with
``Index.latest``, old generations are deleted only when no reader holds them, and one build at a time per index."""

from __future__ import annotations

import gc
import logging
import threading
import time

import pytest
from conftest import lock_held_elsewhere

from gpte.locking import OutputLockedError
from gpte.search import store
from gpte.search.index import Index, build_index
from gpte.search.store import collect_generations, current_name

TOPICS = ["wings stall at high angles", "hypersonic heat transfer", "boundary layer transition", "shock waves"]


def _write_version(folder, version: int) -> set[tuple[str, str]]:
    """Write the documents of update ``version`` into ``folder``; returns their (doc id, text) pairs."""
    pairs = set()
    for i, topic in enumerate(TOPICS):
        text = f"{topic} in report {version} number {i}."
        (folder / f"d{i}.txt").write_text(text, encoding="utf-8")
        pairs.add((f"d{i}.txt", text))
    return pairs


def _search_loop(index: Index, follow: bool, stop: threading.Event, seen: list, errors: list) -> None:
    """Search in every mode until ``stop``; ``follow``: take ``index.latest()`` before each search."""
    while not stop.is_set():
        try:
            if follow:
                index = index.latest()
            for mode in ("dense", "lexical", "hybrid"):
                seen.extend((hit.doc_id, hit.text) for hit in index.search("heat and wings", k=4, mode=mode))
        except Exception as error:  # every failure counts
            errors.append(repr(error))


def test_searches_during_five_updates_never_fail_and_see_old_or_new_generations(embedder, tmp_path):
    docs, root = tmp_path / "docs", tmp_path / "index"
    docs.mkdir()
    versions = [_write_version(docs, 0)]
    build_index(root, docs, embedder=embedder, show_progress=False)
    pinned = Index.open(root, embedder=embedder)  # never follows: its generation must stay readable
    idle = Index.open(root, embedder=embedder)  # opened before the updates, first searched after them
    stop, errors, seen_pinned, seen_following, opened = threading.Event(), [], [], [], []

    def open_loop() -> None:
        while not stop.is_set():
            try:
                opened.append(Index.open(root, embedder=embedder).snapshot.folder.name)
            except Exception as error:
                errors.append(repr(error))

    threads = [
        threading.Thread(target=_search_loop, args=(pinned, False, stop, seen_pinned, errors)),
        threading.Thread(target=_search_loop, args=(pinned, True, stop, seen_following, errors)),
        threading.Thread(target=open_loop),
    ]
    for thread in threads:
        thread.start()
    try:
        for version in range(1, 6):
            versions.append(_write_version(docs, version))
            build_index(root, docs, embedder=embedder, show_progress=False)
        deadline = time.monotonic() + 60
        while not set(seen_following) & versions[-1] and time.monotonic() < deadline:
            time.sleep(0.05)  # let the follower search the last generation
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    assert set(seen_pinned) <= versions[0]  # the pinned reader saw its own generation only
    every = set().union(*versions)
    assert set(seen_following) <= every and set(seen_following) & versions[-1]  # and the follower reached the last
    assert opened and set(opened) <= {f"gen-{n:06d}" for n in range(1, 7)}
    assert pinned.latest().snapshot.folder.name == current_name(root) == "gen-000006"
    for mode in ("lexical", "hybrid", "dense"):  # BM25 is read from disk on the first lexical search
        assert idle.search("wings", k=1, mode=mode)[0].text in {text for _, text in versions[0]}


def test_old_generations_are_deleted_once_no_reader_holds_them(embedder, tmp_path):
    docs, root = tmp_path / "docs", tmp_path / "index"
    docs.mkdir()
    _write_version(docs, 0)
    build_index(root, docs, embedder=embedder, show_progress=False)
    reader = Index.open(root, embedder=embedder)
    _write_version(docs, 1)
    build_index(root, docs, embedder=embedder, show_progress=False)
    assert sorted(p.name for p in root.glob("gen-*")) == ["gen-000001", "gen-000002"]  # gen 1 is still read
    assert collect_generations(root) == []
    del reader
    gc.collect()
    assert collect_generations(root) == ["gen-000001"]
    assert sorted(p.name for p in root.glob("gen-*")) == ["gen-000002"]
    assert not (root / ".gen-000001.lease").exists()
    reader = Index.open(root, embedder=embedder)
    _write_version(docs, 2)
    build_index(root, docs, embedder=embedder, show_progress=False)  # a build collects what no one reads
    reader.snapshot.lease.release()  # released explicitly: the next build deletes it
    build_index(root, docs, embedder=embedder, show_progress=False)  # nothing changed: still collects
    assert sorted(p.name for p in root.glob("gen-*")) == ["gen-000003"]


def test_a_second_build_of_one_index_fails_at_once_naming_the_first(embedder, tmp_path):
    docs, root = tmp_path / "docs", tmp_path / "index"
    docs.mkdir()
    _write_version(docs, 0)
    message = rf"index {root} is being written by another process \(pid "
    with lock_held_elsewhere(root), pytest.raises(OutputLockedError, match=message):
        build_index(root, docs, embedder=embedder, show_progress=False)
    assert not root.exists()
    build_index(root, docs, embedder=embedder, show_progress=False)  # the holder died: its lock went with it
    assert current_name(root) == "gen-000001"


def test_an_index_whose_lease_files_cannot_be_opened_still_opens_and_searches(embedder, tmp_path, monkeypatch, caplog):
    """A read-only index (a container image, another user's folder): no lease can be taken, the reader goes on."""
    docs, root = tmp_path / "docs", tmp_path / "index"
    docs.mkdir()
    pairs = _write_version(docs, 0)
    build_index(root, docs, embedder=embedder, show_progress=False)
    assert (root / ".gen-000001.lease").is_file()  # written with the generation: readers need not create it
    real_open = store.os.open

    def refusing_open(path, flags, *args):
        if str(path).endswith(".lease"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(store.os, "open", refusing_open)
    with caplog.at_level(logging.WARNING, logger="gpte.search.store"):
        index = Index.open(root, embedder=embedder)
    assert index.snapshot.lease is not None and "cannot lease" in caplog.text
    assert {(hit.doc_id, hit.text) for hit in index.search("heat", k=2, mode="hybrid")} <= pairs
    assert collect_generations(root) == []  # nothing to delete, and no lease file it cannot open is touched
