"""Batch samplers: which rows form each batch.

``NoDuplicatesBatchSampler``: shuffled batches in which no text occurs twice (a duplicate would be an
in-batch "negative" equal to a positive). Rows are placed in one pass: each row goes to the first open
batch that holds none of its texts, and a batch is emitted when full -- O(rows x open batches), so it
stays fast at batch size 8192 where rescanning the remaining rows for every batch would not.

``MultiDatasetBatchSampler``: one data source per batch (its columns and loss fit together), sources
mixed round-robin (until the smallest is used up) or proportionally to their number of batches.

All samplers are deterministic given ``seed`` and the epoch (``set_epoch``), so a resumed run sees the
same batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from gpte.data.training import TrainingData

STRATEGIES = ("round_robin", "proportional")


class NoDuplicatesBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size`` row indices of ``data`` (offset by ``offset``) with no repeated text.

    Args:
        data: the rows.
        batch_size: rows per batch.
        drop_last: drop the final incomplete batches (rows that could not fill a batch).
        seed: shuffling seed; the epoch is added (``set_epoch``).
        offset: added to every index (the data's place in a concatenated dataset).
    """

    def __init__(
        self, data: TrainingData, batch_size: int, drop_last: bool = False, seed: int = 0, offset: int = 0
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if batch_size > len(data):
            raise ValueError(f"{data.name}: batch size {batch_size} is larger than the data ({len(data)} rows)")
        self.data = data
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.seed = seed
        self.offset = offset
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.data), generator=generator).tolist()
        open_batches: list[tuple[list[int], set[str]]] = []
        for index in order:
            texts = self.data.rows[index].texts
            target = next((b for b in open_batches if not any(t in b[1] for t in texts)), None)
            if target is None:
                target = ([], set())
                open_batches.append(target)
            target[0].append(index + self.offset)
            target[1].update(texts)
            if len(target[0]) == self.batch_size:
                open_batches.remove(target)
                yield target[0]
        if not self.drop_last:
            yield from (rows for rows, _ in open_batches)

    def __len__(self) -> int:
        full, rest = divmod(len(self.data), self.batch_size)
        return full if self.drop_last or not rest else full + 1


class MultiDatasetBatchSampler(Sampler[list[int]]):
    """Batches from several sources, one source per batch.

    Args:
        samplers: one batch sampler per source (indices already offset into the concatenated dataset).
        strategy: ``round_robin`` (take one batch of each in turn, stop when one runs out) or
            ``proportional`` (every batch of every source, in a random order weighted by their counts).
        seed: shuffling seed for ``proportional``; the epoch is added.
    """

    def __init__(
        self, samplers: Sequence[NoDuplicatesBatchSampler], strategy: str = "proportional", seed: int = 0
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown sampling strategy {strategy!r}; choose one of: {', '.join(STRATEGIES)}")
        self.samplers = list(samplers)
        self.strategy = strategy
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        for sampler in self.samplers:
            sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        iterators = [iter(sampler) for sampler in self.samplers]
        if self.strategy == "round_robin":
            for _ in range(min(len(s) for s in self.samplers)):
                batches = [next(iterator, None) for iterator in iterators]
                if any(batch is None for batch in batches):  # a source ran out early (duplicates dropped)
                    return
                yield from batches
            return
        sources = [i for i, sampler in enumerate(self.samplers) for _ in range(len(sampler))]
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        for position in torch.randperm(len(sources), generator=generator).tolist():
            batch = next(iterators[sources[position]], None)
            if batch is not None:
                yield batch

    def __len__(self) -> int:
        if self.strategy == "round_robin":
            return min(len(s) for s in self.samplers) * len(self.samplers)
        return sum(len(s) for s in self.samplers)
