"""PSNR with the official evaluation protocols."""
from __future__ import annotations

import math

import torch

# ITU-R BT.601 luma weights on a 0-255 scale, divided by 256 as in the official code. Applied to
# the difference, so the +16 offset of Y cancels.
Y_WEIGHTS = (65.738, 129.057, 25.064)


def calc_psnr(sr: torch.Tensor, hr: torch.Tensor, dataset: str | None = None,
              scale: float = 1, rgb_range: float = 1) -> torch.Tensor:
    """PSNR in dB over all remaining elements of the batch.

    Args:
        sr, hr: (B, C, H, W) (or (C, H, W)) with values in [0, rgb_range]. The SR image is not
            quantised to 8 bits, as in the official evaluation.
        dataset: None (all pixels, all channels), 'div2k' (RGB, shave scale + 6 pixels per
            side) or 'benchmark' (Y channel, shave scale pixels per side).
        scale: the upscaling factor that sets the shave; a non-integer scale shaves
            ceil(scale), which equals the official shave at integer scales.
        rgb_range: value range of the images.

    Returns:
        a 0-dim tensor (as the official ``calc_psnr``).
    """
    diff = (sr - hr) / rgb_range
    if dataset is None:
        valid = diff
    else:
        if dataset == 'benchmark':
            shave = math.ceil(scale)
            if diff.shape[-3] > 1:
                luma = diff.new_tensor(Y_WEIGHTS).view(3, 1, 1) / 256
                diff = diff.mul(luma).sum(dim=-3)  # (B, H, W)
        elif dataset == 'div2k':
            shave = math.ceil(scale) + 6
        else:
            raise ValueError(f"dataset must be None, 'div2k' or 'benchmark', got {dataset!r}")
        if shave < 1:
            raise ValueError(f'the shave must be at least 1 pixel, got scale={scale}')
        if min(diff.shape[-2:]) <= 2 * shave:
            raise ValueError(f'image {tuple(diff.shape[-2:])} is too small to shave {shave} '
                             'pixels from each side')
        valid = diff[..., shave:-shave, shave:-shave]
    return -10 * torch.log10(valid.pow(2).mean())
