"""The served indexes, following updates: after a ``gpte index`` build makes a new generation live, the server
searches it without a restart.

Each index is checked at most once per ``refresh_seconds`` (a read of its small CURRENT file, off the event loop);
when a build has made another generation live, that one is opened with the same models (``Index.latest``) and
swapped in (when it cannot be opened, the open one goes on answering and the failure is logged). Searches already
running keep the generation they started with: it stays on disk while they hold it
(``gpte.search.store`` leases), and is deleted by a later build once no search uses it. ``reload`` checks every index
at once (``POST /admin/reload``). Milvus indexes have no generations and are served as they are.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger(__name__)


class LiveIndexes:
    """Name -> the index to search now.

    Args:
        indexes: name -> ``gpte.search.index.Index`` (followed) or any other index (served as given).
        refresh_seconds: least time between two checks of one index for a newer generation; None: only on ``reload``.
    """

    def __init__(self, indexes: dict[str, Any], refresh_seconds: float | None = 1.0) -> None:
        self._indexes = dict(indexes)
        self._checked = dict.fromkeys(indexes, time.monotonic())
        self.refresh_seconds = refresh_seconds
        self._opening = {name: threading.Lock() for name in indexes}  # one open at a time per index
        self._failed: dict[str, str | None] = {}  # name -> the live generation that could not be opened

    def __contains__(self, name: object) -> bool:
        return name in self._indexes

    def __iter__(self) -> Iterator[str]:
        return iter(self._indexes)

    def __len__(self) -> int:
        return len(self._indexes)

    async def get(self, name: str) -> Any:
        """The index ``name``, first swapped for its live generation when the last check is ``refresh_seconds`` old.
        While another request opens a new generation, the open one answers (no request waits for an open)."""
        due = self.refresh_seconds is not None and time.monotonic() - self._checked[name] >= self.refresh_seconds
        if due:
            self._checked[name] = time.monotonic()  # the next requests of this interval do not check again
            await asyncio.to_thread(self._refresh, name, False)
        return self._indexes[name]

    async def reload(self) -> dict[str, str | None]:
        """Check every index now, retrying generations that failed to open; returns name -> the generation now served
        (None: an index without generations)."""
        for name in self._indexes:
            await asyncio.to_thread(self._refresh, name, True)
        return {name: _generation(index) for name, index in self._indexes.items()}

    def _refresh(self, name: str, retry: bool) -> None:
        """Swap in the live generation of ``name`` unless another thread is opening it. A generation that cannot be
        opened (a broken CURRENT, a deleted index, another model) is logged once and not tried again until CURRENT
        names another one (or ``retry``); the open one goes on answering."""
        index = self._indexes[name]
        if not hasattr(index, "latest") or not self._opening[name].acquire(blocking=False):
            return
        try:
            live = index.live_generation()
            if live == self._failed.get(name) and not retry:
                return
            try:
                self._indexes[name] = index.latest()
                self._failed.pop(name, None)
            except Exception as error:  # whatever broke on disk, the open generation still answers
                self._failed[name] = live
                logger.warning(
                    "index %r: cannot open its live generation (%s); still serving the open one", name, error
                )
        finally:
            self._checked[name] = time.monotonic()
            self._opening[name].release()


def _generation(index: Any) -> str | None:
    snapshot = getattr(index, "snapshot", None)
    return snapshot.folder.name if snapshot is not None else None
