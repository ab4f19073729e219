"""``resize_fn``: the official PIL bicubic resize, with its 8-bit quantisation.

Every low-resolution input in the official pipeline is made by this function, so matching it is
what makes our numbers comparable with the paper's.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image


def resize_fn(img: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Resize a float image with PIL bicubic (antialiased, a = -0.5), through uint8.

    Args:
        img: (3, H, W) or (1, H, W) float in [0, 1].
        size: (h, w), or an int that the shorter edge is matched to (the longer edge becomes
            ``int(size * long / short)``); an int equal to the current shorter edge returns the
            image unchanged, as torchvision's ``Resize`` does.

    Returns:
        float32 (C, h, w) holding k / 255 values, on the input's device.

    The float -> uint8 step truncates (``(img * 255).byte()``, as torchvision's
    ``to_pil_image``), which is lossless for k / 255 inputs; PIL rounds its own output.
    """
    if img.dim() != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f'resize_fn expects a (3, H, W) or (1, H, W) image, got {tuple(img.shape)}')
    channels, H, W = img.shape
    pixels = (img.detach() * 255).byte().cpu()  # truncating, as the official pipeline
    pil = Image.fromarray(pixels[0].numpy() if channels == 1 else pixels.permute(1, 2, 0).numpy())
    if isinstance(size, int):
        short, long = min(H, W), max(H, W)
        if short == size:
            return (pixels.float() / 255).to(img.device)
        new_short, new_long = size, int(size * long / short)
        new_h, new_w = (new_short, new_long) if H <= W else (new_long, new_short)
    else:
        new_h, new_w = size
    out = np.asarray(pil.resize((new_w, new_h), Image.BICUBIC))
    out = torch.from_numpy(out.copy())
    out = out.unsqueeze(0) if channels == 1 else out.permute(2, 0, 1)  # (C, h, w)
    return (out.float() / 255).to(img.device)
