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
        self._lock = threading.Lock()  # one check at a time; a thread lock, as the app may run on several loops

    def __contains__(self, name: object) -> bool:
        return name in self._indexes

    def __iter__(self) -> Iterator[str]:
        return iter(self._indexes)

    def __len__(self) -> int:
        return len(self._indexes)

    async def get(self, name: str) -> Any:
        """The index ``name``, first swapped for its live generation when the last check is ``refresh_seconds`` old."""
        due = self.refresh_seconds is not None and time.monotonic() - self._checked[name] >= self.refresh_seconds
        return await self._refresh(name) if due else self._indexes[name]

    async def reload(self) -> dict[str, str | None]:
        """Check every index now; returns name -> the generation now served (None: an index without generations)."""
        return {name: _generation(await self._refresh(name)) for name in self._indexes}

    async def _refresh(self, name: str) -> Any:
        return await asyncio.to_thread(self._refresh_now, name)

    def _refresh_now(self, name: str) -> Any:
        """Swap in the live generation of ``name``; when it cannot be opened (a broken CURRENT, a deleted index), keep
        serving the open one, log why, and try again at the next check."""
        with self._lock:
            index = self._indexes[name]
            if hasattr(index, "latest"):
                try:
                    self._indexes[name] = index.latest()
                except Exception as error:  # whatever broke on disk, the open generation still answers
                    logger.warning(
                        "index %r: cannot open its live generation (%s); still serving the open one", name, error
                    )
            self._checked[name] = time.monotonic()
            return self._indexes[name]


def _generation(index: Any) -> str | None:
    snapshot = getattr(index, "snapshot", None)
    return snapshot.folder.name if snapshot is not None else None
