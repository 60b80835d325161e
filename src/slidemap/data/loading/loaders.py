"""Torch loaders over in-memory patches: shuffled training batches, and evaluation batches that DDP never repeats."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler, TensorDataset

from slidemap.data.tiling.patches import Patches


def world_size() -> int:
    """Processes of the current torch.distributed group (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def eval_sampler(dataset: Dataset) -> Sampler[int]:
    """Sequential order in one process; under DDP every rank takes every n-th sample, none repeated.

    Lightning's default DistributedSampler pads the last round with repeated samples, so pooled TP/FP/FN
    would count some pixels twice; a DistributedSampler subclass passed in is left as it is.
    """
    if world_size() == 1:
        return SequentialSampler(dataset)
    from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler

    return UnrepeatedDistributedSampler(dataset, shuffle=False)


def patch_dataset(p: Patches | Dataset) -> Dataset:
    """(x, y as float, valid) tensors over in-memory patches, without copying the inputs; a dataset that reads its
    items itself (:class:`~slidemap.data.patchsets.stream.StreamedPatches`) as it is."""
    if not isinstance(p, Patches):
        return p
    return TensorDataset(torch.from_numpy(p.x), torch.from_numpy(p.y.astype(np.float32)), torch.from_numpy(p.valid))


def train_loader(patches: Patches | Dataset, batch_size: int, seed: int, min_samples: int = 0,
                 num_workers: int = 0) -> DataLoader:
    """Shuffled training batches; a set smaller than ``min_samples`` is cycled (reshuffled each pass)."""
    dataset = patch_dataset(patches)
    gen = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(dataset, num_samples=max(len(dataset), min_samples), generator=gen)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers)


def eval_loader(patches: Patches | Dataset, batch_size: int, num_workers: int = 0, shard: bool = True) -> DataLoader:
    """Every patch once, in order. ``shard``: split without repeats under DDP, so pooled counts are exact;
    unsharded for work one process does alone (maps, previews on rank 0)."""
    dataset = patch_dataset(patches)
    sampler = eval_sampler(dataset) if shard else None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers)
