"""PSNR with the official evaluation protocols, and SSIM on the same pixels."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# ITU-R BT.601 luma weights on a 0-255 scale, divided by 256 as in the official code. Applied to
# the difference, so the +16 offset of Y cancels.
Y_WEIGHTS = (65.738, 129.057, 25.064)


def calc_psnr(sr: torch.Tensor, hr: torch.Tensor, dataset: str | None = None,
              scale: float = 1, rgb_range: float = 1) -> torch.Tensor:
    """PSNR in dB over all remaining elements of the batch.

    Args:
        sr: the super-resolved image, (B, C, H, W) or (C, H, W) with values in
            [0, rgb_range]; not quantised to 8 bits, as in the official evaluation.
        hr: the ground truth, the same shape and range.
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
        return -10 * torch.log10(diff.pow(2).mean())
    shave = protocol_shave(dataset, scale, diff.shape)
    if dataset == 'benchmark' and diff.shape[-3] > 1:
        luma = diff.new_tensor(Y_WEIGHTS).view(3, 1, 1) / 256
        diff = diff.mul(luma).sum(dim=-3)  # (B, H, W)
    valid = diff[..., shave:-shave, shave:-shave]
    return -10 * torch.log10(valid.pow(2).mean())


def protocol_shave(dataset: str, scale: float, shape: torch.Size) -> int:
    """Pixels cut from each side before scoring: ceil(scale) for 'benchmark', ceil(scale) + 6
    for 'div2k'; refuses an unknown protocol or an image too small to keep any pixel."""
    if dataset == 'benchmark':
        shave = math.ceil(scale)
    elif dataset == 'div2k':
        shave = math.ceil(scale) + 6
    else:
        raise ValueError(f"dataset must be None, 'div2k' or 'benchmark', got {dataset!r}")
    if shave < 1:
        raise ValueError(f'the shave must be at least 1 pixel, got scale={scale}')
    if min(shape[-2:]) <= 2 * shave:
        raise ValueError(f'image {tuple(shape[-2:])} is too small to shave {shave} '
                         'pixels from each side')
    return shave


def calc_ssim(sr: torch.Tensor, hr: torch.Tensor, dataset: str | None = None,
              scale: float = 1, rgb_range: float = 1, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004) on exactly the pixels and channels that ``calc_psnr`` scores.

    Gaussian window of standard deviation ``sigma`` truncated at 3.5 sigma, population
    (co)variances, K1 = 0.01, K2 = 0.03 and a data range of 1: the same number as scikit-image's
    ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=1)``, averaged over channels. Only windows that lie wholly inside the scored
    region count, as there. The 'benchmark' protocol scores luma,
    Y = 16/255 + (65.738 R + 129.057 G + 25.064 B) / 256; 'div2k' and None score RGB.
    Computed in float64; returns a 0-dim tensor.
    """
    sr, hr = (x.double() / rgb_range for x in (sr, hr))
    if sr.dim() == 3:
        sr, hr = sr.unsqueeze(0), hr.unsqueeze(0)
    if dataset is not None:
        shave = protocol_shave(dataset, scale, sr.shape)
        if dataset == 'benchmark' and sr.shape[1] > 1:
            luma = sr.new_tensor(Y_WEIGHTS).view(1, 3, 1, 1) / 256
            sr, hr = ((x * luma).sum(1, keepdim=True) + 16 / 255 for x in (sr, hr))
        sr, hr = (x[..., shave:-shave, shave:-shave] for x in (sr, hr))
    radius = int(3.5 * sigma + 0.5)
    if min(sr.shape[-2:]) < 2 * radius + 1:
        raise ValueError(f'image {tuple(sr.shape[-2:])} is smaller than the SSIM window '
                         f'({2 * radius + 1} pixels)')
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=sr.device)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    channels = sr.shape[1]

    def blur(img):  # separable Gaussian, 'valid' windows only
        img = F.conv2d(img, g.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
        return F.conv2d(img, g.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)

    mu_x, mu_y = blur(sr), blur(hr)
    var_x = blur(sr * sr) - mu_x ** 2
    var_y = blur(hr * hr) - mu_y ** 2
    cov = blur(sr * hr) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)
            / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2)))
    return ssim.mean()
