"""What the chapters build once and reuse: their set-up (``setup``); fitting a feature map and
a decoder to one photo, rendering it, and measuring its seams; how sharp a rendering is
(``edge_strength``, the live views of chapters 5 and 7); the training chapters' choice of
profile; and the region that chapters 9 and 10 enlarge.

The first three are written inline in chapter 2 ("Latent codes"), which checks that they give
the same numbers as the versions here; chapter 3 ("Local ensemble") then imports them. They are
for experiments on one image, not for training (``liif_core.train``). ``training_profile`` is
how chapters 8 and 8b pick between the CPU budget and the paper's recipe, and
``iterations_per_epoch`` how the training chapters turn a log's epochs into steps.
"""
from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .coords import make_coord
from .data import make_data
from .figures import STYLE
from .render import PAPER_DATA_NORM, denormalise, norm_tensors

# The region of the first stand-in validation photo that chapters 9 and 10 and
# scripts/ablation_crops.py show enlarged: 240 x 240 pixels, photo[:, DETAIL_ROWS, DETAIL_COLS].
DETAIL_ROWS, DETAIL_COLS = slice(500, 740), slice(900, 1140)

# profile -> the packaged training config that chapters 8 and 8b run
PROFILE_CONFIGS = {'cpu': 'cpu/train_edsr-baseline-liif-chapter',
                   'paper': 'train-div2k/train_edsr-baseline-liif'}


def setup(threads: int = 2, seed: int = 0) -> None:
    """Every chapter's first call: ``threads`` CPU threads, every generator seeded with
    ``seed``, and the book's figure style (``liif_core.figures.STYLE``).

    Two threads because the book is built on two cores; fixed seeds so that each run of a
    chapter prints the numbers its text states.
    """
    import matplotlib.pyplot as plt

    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    plt.rcParams.update(STYLE)


def fit_codes(model: nn.Module, coord: torch.Tensor, rgb: torch.Tensor,
              code_shape: Sequence[int], steps: int = 300, batch: int = 4096,
              lr: float = 1e-2) -> tuple[torch.Tensor, float]:
    """Fit a feature map and the decoder ``model.imnet`` to one photo's pixels.

    Args:
        model: a LIIF; its decoder is trained in place, its encoder is not used.
        coord: the photo's pixel centres as ``to_pixel_samples`` gives them, (H*W, 2).
        rgb: the photo's colours as ``to_pixel_samples`` gives them, (H*W, 3) in [0, 1].
        code_shape: (C, h, w) of the feature map, started at 0.1 * N(0, 1).
        steps: Adam steps.
        batch: random pixels per step.
        lr: learning rate.

    Returns:
        the feature map (1, C, h, w) and the last step's L1 loss.
    """
    z = nn.Parameter(0.1 * torch.randn(1, *code_shape))
    opt = torch.optim.Adam([z, *model.imnet.parameters()], lr=lr)
    _, _, gt_sub, gt_div = norm_tensors(PAPER_DATA_NORM, rgb.device)
    target = ((rgb - gt_sub) / gt_div)[0]  # (H*W, 3), as the decoder outputs it
    for _ in range(steps):
        pick = torch.randint(0, coord.shape[0], (batch,))
        # fast=False: the step-by-step path, quicker for training at this size
        pred = model.decode(z, coord[pick][None], fast=False)[0]
        loss = (pred - target[pick]).abs().mean()  # L1
        opt.zero_grad()
        loss.backward()
        opt.step()
    return z.detach(), loss.item()


@torch.no_grad()
def render_codes(model: nn.Module, z: torch.Tensor, shape: Sequence[int],
                 ranges: Sequence[Sequence[float]] | None = None) -> torch.Tensor:
    """The image decoded from the feature map ``z`` at the pixel centres of ``shape`` (within
    ``ranges``, as ``make_coord``): ``(*shape, 3)`` in [0, 1]."""
    x_q = make_coord(shape, ranges=ranges)[None]  # (1, Q, 2)
    return denormalise(model.decode(z, x_q), PAPER_DATA_NORM)[0].view(*shape, 3)


def seam_jumps(out: torch.Tensor, per_cell: int = 8) -> tuple[float, float]:
    """Mean absolute difference of adjacent pixels across code-cell edges, and inside cells.

    Args:
        out: (H, W, 3) rendered with ``per_cell`` output pixels per code cell.

    Returns:
        (across, inside), each averaged over the two axes.
    """
    across, inside = [], []
    for d in (out[1:] - out[:-1], (out[:, 1:] - out[:, :-1]).transpose(0, 1)):
        d = d.abs().mean(-1)  # (n - 1, m): neighbours along one axis
        edge = torch.arange(d.shape[0]) % per_cell == per_cell - 1
        across.append(d[edge].mean())
        inside.append(d[~edge].mean())
    return float(sum(across) / 2), float(sum(inside) / 2)


def edge_strength(frame: torch.Tensor) -> float:
    """How sharp a rendering is: the mean absolute difference of adjacent pixels, summed over
    the two axes.

    Args:
        frame: (H, W, 3).
    """
    return float((frame[1:] - frame[:-1]).abs().mean()
                 + (frame[:, 1:] - frame[:, :-1]).abs().mean())


def iterations_per_epoch(config: dict, data_root: str | os.PathLike) -> int:
    """Batches in one pass over a training config's data, the last one short, counted as the
    loader counts them: examples (photographs x ``repeat``) over the batch size, rounded up."""
    section = config['train_dataset']
    # cache 'none' lists the files without decoding any
    examples = len(make_data(section, data_root=data_root, cache='none'))
    return math.ceil(examples / section['batch_size'])


def training_profile(data_root: str | os.PathLike, choice: str | None = None
                     ) -> tuple[str, str]:
    """The training chapters' profile, ``'cpu'`` or ``'paper'``, and why it was chosen.

    ``choice`` defaults to the ``LIIF_PROFILE`` environment variable. ``'auto'`` (also when it
    is unset) picks ``'paper'`` when PyTorch sees a CUDA device and DIV2K's training images are
    under ``data_root``, ``'cpu'`` otherwise; an explicit ``'cpu'`` or ``'paper'`` always wins.
    """
    choice = os.environ.get('LIIF_PROFILE', 'auto') if choice is None else choice
    if choice in PROFILE_CONFIGS:
        return choice, 'set by LIIF_PROFILE'
    if choice != 'auto':
        raise ValueError(f"LIIF_PROFILE is 'auto', 'cpu' or 'paper', not {choice!r}")
    div2k = Path(data_root) / 'div2k'
    has_cuda = torch.cuda.is_available()
    has_div2k = (div2k / 'DIV2K_train_HR').is_dir()
    why = (f'auto: CUDA {"found" if has_cuda else "not found"}, DIV2K '
           f'{"found" if has_div2k else "not found"} in {div2k}')
    return ('paper' if has_cuda and has_div2k else 'cpu'), why
