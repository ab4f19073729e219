from pathlib import Path

import numpy as np
import pytest
import torch

REFERENCE = Path(__file__).parent / 'reference'


@pytest.fixture(autouse=True)
def _deterministic():
    """Numbers compared in tests come from 2 threads and fixed seeds."""
    torch.set_num_threads(2)
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope='session')
def reference():
    """Inputs and outputs of the official code for the reference checkpoint (see README there)."""
    with np.load(REFERENCE / 'edsr_liif_reference.npz') as npz:
        return {k: torch.from_numpy(v) for k, v in npz.items()}


@pytest.fixture(scope='session')
def reference_ckpt_path():
    return REFERENCE / 'edsr_liif_reference.pth'
