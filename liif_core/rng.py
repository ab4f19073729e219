"""The random state of a training run: seeding, saving and restoring every generator it reads.

The data pipeline draws scales, crops and flips from Python's ``random``, query samples from
numpy's global RNG, and the DataLoader's worker seeds from its generator (the sampler is
seeded by (seed, epoch) itself). Saving all of them with each checkpoint is what makes a
resumed run continue exactly where the uninterrupted one would be.

Book: chapter 8, "Training".
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch


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


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy and ``random`` from the worker's torch seed,
    which the loader derives from its generator afresh each epoch, so every worker of every
    epoch draws its own reproducible sequence (the official code, on PyTorch < 1.9, let
    workers repeat numpy's draws)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


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
