"""Micro-batching of concurrent requests: requests that arrive while the model is busy (or within ``max_wait``
seconds) run together in one model call, in a worker thread so the event loop keeps accepting requests.

``MicroBatcher`` holds the queue, the collection of a batch and the split of its results; ``EmbeddingBatcher``
(texts -> vectors with ``encode``, and their tokens when asked), ``RoleBatcher`` (texts -> sparse vectors or token
vectors) and ``RerankBatcher`` ((query, text) pairs -> scores with ``predict``) say only what the model call is. A batch whose call fails is run again request by
request, so an error reaches only the requests that cause it; the worker outlives any error.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gpte.models.protocol import DenseModel, MultiVectorModel, PairScorer, SparseModel

if TYPE_CHECKING:  # annotations only: a server without sparse models needs no scipy
    import scipy.sparse

    from gpte.models.multivector import TokenVectors


@dataclass
class _Request:
    """One caller's inputs, the options its model call needs, and the future its outputs go to."""

    items: Sequence[Any]
    options: Hashable
    future: asyncio.Future


class MicroBatcher(ABC):
    """Collects requests and runs those with equal options in one ``_model_call``.

    Args:
        max_batch_items: inputs gathered into one batch at most (a single larger request still runs whole).
        max_wait: seconds a batch waits for more requests after its first.
        batch_size: the model's batch size within one call.

    Attributes:
        batches: model calls that succeeded (fewer than the requests when requests were batched).
    """

    def __init__(self, max_batch_items: int = 256, max_wait: float = 0.002, batch_size: int = 32) -> None:
        self.max_batch_items = max_batch_items
        self.max_wait = max_wait
        self.batch_size = batch_size
        self.batches = 0
        self._queue: asyncio.Queue[_Request] | None = None
        self._worker: asyncio.Task | None = None

    def start(self) -> None:
        """Start the worker task on the running event loop."""
        self._queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    async def submit(self, items: Sequence[Any], options: Hashable) -> Any:
        """The outputs of ``items`` (``_model_call(items, options)``), computed with the other pending requests
        that have equal ``options``; raises what the model raised for these items."""
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(items, options, future))
        return await future

    @abstractmethod
    def _model_call(self, items: list[Any], options: Hashable) -> Any:
        """Outputs of ``items`` in order, sliceable along the first axis; run in a worker thread."""

    async def _run(self) -> None:
        while True:
            requests = await self._collect()
            for options in dict.fromkeys(request.options for request in requests):
                group = [request for request in requests if request.options == options]
                try:
                    await self._run_group(group)
                except Exception as error:  # outputs that do not split: these requests fail, the worker lives on
                    for request in group:
                        if not request.future.done():
                            request.future.set_exception(error)

    async def _collect(self) -> list[_Request]:
        """The next request, and those arriving within ``max_wait`` up to ``max_batch_items`` inputs."""
        requests = [await self._queue.get()]
        count = len(requests[0].items)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while count < self.max_batch_items:
            try:
                request = (
                    self._queue.get_nowait()
                    if not self._queue.empty()
                    else await asyncio.wait_for(self._queue.get(), deadline - loop.time())
                )
            except asyncio.TimeoutError:
                break
            requests.append(request)
            count += len(request.items)
        return requests

    async def _run_group(self, requests: list[_Request]) -> None:
        """One model call for ``requests`` (equal options), each given its slice of the outputs; when the call
        fails, each request runs alone, so only those that fail alone get an error."""
        items = [item for request in requests for item in request.items]
        try:
            outputs = await asyncio.to_thread(self._model_call, items, requests[0].options)
        except Exception as error:
            if len(requests) > 1:
                for request in requests:
                    await self._run_group([request])
            elif not requests[0].future.done():
                requests[0].future.set_exception(error)
            return
        self.batches += 1
        start = 0
        for request in requests:
            if not request.future.done():  # a caller that went away cancels its future
                request.future.set_result(outputs[start : start + len(request.items)])
            start += len(request.items)


@dataclass
class CountedVectors:
    """Vectors of texts with each text's tokens as ``count_tokens`` counts them (no prompt, no special tokens) and
    the most text tokens the model reads (``text_token_budget``; None: no limit); sliced by rows like the vectors."""

    vectors: np.ndarray
    tokens: np.ndarray
    budget: int | None

    def __getitem__(self, rows: slice) -> CountedVectors:
        return CountedVectors(self.vectors[rows], self.tokens[rows], self.budget)

    @property
    def embedded_tokens(self) -> list[int]:
        """The tokens of each text that were embedded: its tokens, at most the budget."""
        if self.budget is None:
            return self.tokens.tolist()
        return np.minimum(self.tokens, self.budget).tolist()

    @property
    def truncated(self) -> list[int]:
        """Indices of the texts longer than the budget, which the model cut."""
        return [] if self.budget is None else np.flatnonzero(self.tokens > self.budget).tolist()


class EmbeddingBatcher(MicroBatcher):
    """Embeds concurrent requests with equal options (truncate_dim, role, whether tokens are counted) in one
    ``encode`` call; tokens, when asked for, are counted in the same worker-thread call, off the event loop."""

    def __init__(
        self, embedder: DenseModel, max_batch_texts: int = 256, max_wait: float = 0.002, batch_size: int = 32
    ) -> None:
        super().__init__(max_batch_texts, max_wait, batch_size)
        self.embedder = embedder

    async def embed(self, texts: list[str], truncate_dim: int | None = None, role: str | None = None) -> np.ndarray:
        """The vectors of ``texts`` (as ``embedder.encode(texts, truncate_dim=..., role=...)``), embedded with
        the other pending requests that ask for the same options."""
        return await self.submit(texts, (truncate_dim, role, False))

    async def embed_counted(
        self, texts: list[str], truncate_dim: int | None = None, role: str | None = None
    ) -> CountedVectors:
        """``embed``'s vectors with the tokens of each text and the model's budget for ``role`` (what usage and
        truncation are reported from), counted in the worker thread with the batch."""
        return await self.submit(texts, (truncate_dim, role, True))

    def _model_call(self, texts: list[str], options: Hashable) -> np.ndarray | CountedVectors:
        truncate_dim, role, counted = options
        vectors = self.embedder.encode(
            texts, batch_size=self.batch_size, truncate_dim=truncate_dim, role=role, show_progress=False
        )
        if not counted:
            return vectors
        tokens = np.asarray(self.embedder.count_tokens(texts), dtype=np.int64)
        return CountedVectors(vectors, tokens, self.embedder.text_token_budget(role))


class RerankBatcher(MicroBatcher):
    """Scores the pairs of concurrent requests with equal ``activation`` in one ``predict`` call."""

    def __init__(
        self, scorer: PairScorer, max_batch_pairs: int = 256, max_wait: float = 0.002, batch_size: int = 32
    ) -> None:
        super().__init__(max_batch_pairs, max_wait, batch_size)
        self.scorer = scorer

    async def score(self, query: str, texts: Sequence[str], activation: bool = True) -> np.ndarray:
        """Scores (len(texts),) of ``(query, text)`` for each text (as ``scorer.predict(pairs, activation=...)``),
        scored with the other pending requests that ask for the same activation."""
        return await self.submit([(query, text) for text in texts], activation)

    def _model_call(self, pairs: list[tuple[str, str]], activation: Hashable) -> np.ndarray:
        return self.scorer.predict(pairs, batch_size=self.batch_size, activation=activation, show_progress=False)


class RoleBatcher(MicroBatcher):
    """Encodes concurrent requests with equal ``role`` through a sparse or multi-vector model in one ``encode``
    call."""

    def __init__(
        self,
        model: SparseModel | MultiVectorModel,
        max_batch_texts: int = 256,
        max_wait: float = 0.002,
        batch_size: int = 32,
    ) -> None:
        super().__init__(max_batch_texts, max_wait, batch_size)
        self.model = model

    async def embed(self, texts: list[str], role: str | None = None) -> scipy.sparse.csr_matrix | TokenVectors:
        """The vectors of ``texts`` (as ``model.encode(texts, role=...)``): sparse (len(texts), vocab_size) rows or
        ``TokenVectors``."""
        return await self.submit(texts, role)

    def _model_call(self, texts: list[str], role: Hashable) -> scipy.sparse.csr_matrix | TokenVectors:
        return self.model.encode(texts, batch_size=self.batch_size, role=role, show_progress=False)
