"""What the early chapters build and later chapters reuse: fitting a feature map and a decoder to
one photo, rendering it, and measuring its seams.

Each function is first written inline in chapter 2 ("Latent codes"), which checks that it gives
the same numbers as the version here; chapter 3 ("Local ensemble") then imports them. They are
for experiments on one image, not for training (``liif_core.train``).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .coords import make_coord


def fit_codes(model: nn.Module, coord: torch.Tensor, rgb: torch.Tensor,
              code_shape: Sequence[int], steps: int = 300, batch: int = 4096,
              lr: float = 1e-2) -> tuple[torch.Tensor, float]:
    """Fit a feature map and the decoder ``model.imnet`` to one photo's pixels.

    Args:
        model: a LIIF; its decoder is trained in place, its encoder is not used.
        coord, rgb: the photo as ``to_pixel_samples`` gives it, (H*W, 2) and (H*W, 3) in [0, 1].
        code_shape: (C, h, w) of the feature map, started at 0.1 * N(0, 1).
        steps, batch, lr: Adam steps, random pixels per step, learning rate.

    Returns:
        the feature map (1, C, h, w) and the last step's L1 loss.
    """
    z = nn.Parameter(0.1 * torch.randn(1, *code_shape))
    opt = torch.optim.Adam([z, *model.imnet.parameters()], lr=lr)
    for _ in range(steps):
        pick = torch.randint(0, coord.shape[0], (batch,))
        # fast=False: the step-by-step path, quicker for training at this size
        pred = model.decode(z, coord[pick][None], fast=False)[0]
        loss = (pred - (rgb[pick] - 0.5) / 0.5).abs().mean()  # L1
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
    out = model.decode(z, x_q)[0] * 0.5 + 0.5  # back from [-1, 1]
    return out.clamp(0, 1).view(*shape, 3)


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
