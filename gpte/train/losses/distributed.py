"""Negatives shared across processes: gather every process's embeddings, keeping gradients.

Under DDP each process computes its loss on its own rows against the candidates of *all* processes
(``torch.distributed.nn.functional.all_gather`` carries gradients back to the process that made each
embedding). DDP then averages the gradients, which gives the gradient of the mean loss over the global
batch: the same training signal as one process holding the whole batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside distributed training."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(tensor: Tensor) -> Tensor:
    """All processes' ``tensor`` (rows concatenated in rank order), differentiable; unchanged when alone.

    Every process must pass the same number of rows (the batch sampler drops ragged last batches in
    distributed runs).
    """
    _, size = world()
    if size == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor.contiguous()), dim=0)
