"""The random state of a training run: seeding, saving and restoring every generator it reads.

The data pipeline draws scales, crops and flips from Python's ``random`` and query samples from
numpy's global RNG: in the training process itself, or in DataLoader workers, which are seeded
afresh from (seed, rank, epoch, worker) at each epoch's first item (``EpochSeeded``), so that
workers that live through the whole run still start every epoch as a resumed run does. The
sampler is seeded by (seed, epoch) itself. Saving every generator with each checkpoint is what
makes a resumed run continue exactly where the uninterrupted one would be.

Book: chapter 8, "Training".
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler, get_worker_info


def rng_state(loader_generator: torch.Generator) -> dict[str, Any]:
    """Every RNG the training loop reads, as plain containers and tensors (weights_only-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        'torch': torch.get_rng_state(),
        'numpy': [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        'python': [version, list(internal), gauss_next],
        'loader': loader_generator.get_state(),
    }
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], loader_generator: torch.Generator) -> None:
    """Restore what ``rng_state`` saved."""
    torch.set_rng_state(state['torch'])
    kind, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state['python']
    random.setstate((version, tuple(internal), gauss_next))
    loader_generator.set_state(state['loader'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class EpochIndices(Sampler):
    """A ``DistributedSampler`` whose indices come as (epoch, index), for ``EpochSeeded``."""

    def __init__(self, sampler: DistributedSampler) -> None:
        self.sampler, self.epoch = sampler, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, idx) for idx in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class EpochSeeded(Dataset):
    """A dataset read with ``EpochIndices``: in a DataLoader worker, the first item of each epoch
    first seeds every global RNG from (seed, rank, epoch, worker id). A worker kept alive across
    epochs then draws what a worker started for that epoch would, which a resumed run can
    repeat; each worker of each epoch draws its own sequence (the official code, on PyTorch <
    1.9, let workers repeat numpy's draws). In the training process itself (no workers) the
    items come from the process's own random state, untouched."""

    def __init__(self, dataset: Dataset, seed: int, rank: int) -> None:
        self.dataset, self.seed, self.rank = dataset, seed, rank
        self.epoch: int | None = None  # the epoch this worker last seeded for

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, idx = key
        worker = get_worker_info()
        if worker is not None and epoch != self.epoch:
            self.epoch = epoch
            entropy = [self.seed, self.rank, epoch, worker.id]
            seed_everything(int(np.random.SeedSequence(entropy).generate_state(1)[0]))
        return self.dataset[idx]


@contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Run a block from a fixed seed, then put every global RNG back as it was: validation
    sees the same crops every epoch and takes nothing from the training sequence."""
    saved = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    seed_everything(seed)
    try:
        yield
    finally:
        torch.set_rng_state(saved[0])
        np.random.set_state(saved[1])
        random.setstate(saved[2])
