"""Micro-batching of concurrent embedding requests: requests that arrive while the model is busy (or within
``max_wait`` seconds) are embedded together in one ``encode`` call, run in a worker thread so the event
loop keeps accepting requests."""

from __future__ import annotations

import asyncio

import numpy as np

from gpte.models.protocol import DenseModel


class EmbeddingBatcher:
    """Collects (texts, options) requests and embeds those with equal options in one call."""

    def __init__(
        self, embedder: DenseModel, max_batch_texts: int = 256, max_wait: float = 0.002, batch_size: int = 32
    ) -> None:
        self.embedder = embedder
        self.max_batch_texts = max_batch_texts
        self.max_wait = max_wait
        self.batch_size = batch_size
        self.batches = 0
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None

    def start(self) -> None:
        """Start the worker task on the running event loop."""
        self._queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    async def embed(self, texts: list[str], truncate_dim: int | None = None, role: str | None = None) -> np.ndarray:
        """The vectors of ``texts`` (as ``embedder.encode(texts, truncate_dim=..., role=...)``), embedded with
        the other pending requests that ask for the same options."""
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((texts, (truncate_dim, role), future))
        return await future

    async def _run(self) -> None:
        while True:
            items = await self._collect()
            for options in dict.fromkeys(item[1] for item in items):
                await self._embed_group([item for item in items if item[1] == options], *options)

    async def _collect(self) -> list[tuple[list[str], tuple[int | None, str | None], asyncio.Future]]:
        """The next request, and those arriving within ``max_wait`` up to ``max_batch_texts`` texts."""
        items = [await self._queue.get()]
        count = len(items[0][0])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while count < self.max_batch_texts:
            try:
                item = (
                    self._queue.get_nowait()
                    if not self._queue.empty()
                    else await asyncio.wait_for(self._queue.get(), deadline - loop.time())
                )
            except asyncio.TimeoutError:
                break
            items.append(item)
            count += len(item[0])
        return items

    async def _embed_group(self, items: list, truncate_dim: int | None, role: str | None) -> None:
        texts = [text for item in items for text in item[0]]
        try:
            vectors = await asyncio.to_thread(
                self.embedder.encode,
                texts,
                batch_size=self.batch_size,
                truncate_dim=truncate_dim,
                role=role,
                show_progress=False,
            )
        except Exception as error:
            for _, _, future in items:
                if not future.done():
                    future.set_exception(error)
            return
        self.batches += 1
        start = 0
        for request_texts, _, future in items:
            if not future.done():
                future.set_result(vectors[start : start + len(request_texts)])
            start += len(request_texts)
