"""Training and test wrappers: an image dataset -> {inp, coord, cell, gt} items for LIIF.

Each wrapper turns an HR image (or an LR/HR pair) into one training or test example, as the
official wrappers do:

    inp   (3, h, w)  the LR image in [0, 1]
    coord (Q, 2)     (row, col) pixel centres of the HR target in [-1, 1]
    cell  (Q, 2)     (2/H, 2/W): the size of one HR pixel, for every query
    gt    (Q, 3)     the HR colours at those centres, in [0, 1]

Random draws follow the official order exactly, so that a seeded run sees the same crops: Python's
``random`` for the scale, the crop corner and the three flips, then numpy's global RNG for the
``sample_q`` query subset. Book: chapter 8, "Training".
"""
from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch.utils.data import Dataset

from ..coords import make_cell, to_pixel_samples
from ..resize import resize_fn

Item = dict[str, torch.Tensor]


def random_flips() -> tuple[bool, bool, bool]:
    """Draw (hflip, vflip, dflip), each with probability 1/2, in the official order."""
    hflip = random.random() < 0.5
    vflip = random.random() < 0.5
    dflip = random.random() < 0.5
    return hflip, vflip, dflip


def flip(img: torch.Tensor, hflip: bool, vflip: bool, dflip: bool) -> torch.Tensor:
    """Apply the official augmentation to a (3, H, W) image.

    The official names are kept although "hflip" reverses the H axis (a vertical flip on screen)
    and "vflip" the W axis; "dflip" swaps H and W (a transpose).
    """
    if hflip:
        img = img.flip(-2)
    if vflip:
        img = img.flip(-1)
    if dflip:
        img = img.transpose(-2, -1)  # (3, W, H)
    return img


def make_item(inp: torch.Tensor, hr: torch.Tensor, sample_q: int | None) -> Item:
    """Pack an LR input and its HR target into a LIIF example.

    Args:
        inp: (3, h, w) LR image.
        hr: (3, H, W) HR target.
        sample_q: keep this many HR pixels, drawn without replacement with numpy's global RNG;
            all H * W when None.

    Returns:
        {'inp': (3, h, w), 'coord': (Q, 2), 'cell': (Q, 2), 'gt': (Q, 3)}.
    """
    coord, rgb = to_pixel_samples(hr.contiguous())  # (H*W, 2), (H*W, 3)
    if sample_q is not None:
        if sample_q > len(coord):
            raise ValueError(f'sample_q={sample_q} exceeds the {len(coord)} pixels of a '
                             f'{hr.shape[-2]}x{hr.shape[-1]} target')
        keep = np.random.choice(len(coord), sample_q, replace=False)
        coord, rgb = coord[keep], rgb[keep]  # (Q, 2), (Q, 3)
    return {'inp': inp, 'coord': coord, 'cell': make_cell(coord, hr.shape[-2:]), 'gt': rgb}


def check_sizes(wrapper: str, **sizes: int | None) -> None:
    """Refuse, in one message, sizes (``inp_size``, ``sample_q``, ...) that are not None or a
    positive integer: a config's 0 or "48" would otherwise fail deep inside the first batch."""
    bad = [f'{k} must be a positive integer, got {v!r}' for k, v in sizes.items()
           if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1)]
    if bad:
        raise ValueError(f'{wrapper}: ' + '; '.join(bad))


def _random_crop(img: torch.Tensor, side: int) -> torch.Tensor:
    """A (3, side, side) crop at a corner drawn with Python's ``random`` (official order)."""
    x0 = random.randint(0, img.shape[-2] - side)  # inclusive bounds
    y0 = random.randint(0, img.shape[-1] - side)
    return img[:, x0:x0 + side, y0:y0 + side]


def texture(img: torch.Tensor) -> float:
    """Mean absolute difference between neighbouring pixels of (C, H, W): 0 on a flat crop."""
    img = img.float()
    rows = (img[:, 1:] - img[:, :-1]).abs().mean()
    cols = (img[:, :, 1:] - img[:, :, :-1]).abs().mean()
    return float(rows + cols)


class SRImplicitDownsampled(Dataset):
    """``sr-implicit-downsampled``: LR made from an HR image at a random scale (the LIIF recipe).

    Args:
        dataset: yields (3, H, W) HR images.
        inp_size: side of the square LR crop (48 in training); None for a whole-image test item.
        scale_min, scale_max: the scale s ~ U(scale_min, scale_max); scale_max defaults to
            scale_min (a fixed scale).
        augment: random flips and transpose, applied to LR and HR alike.
        sample_q: number of HR pixels kept as queries (2304 = 48^2 in training); all when None.
        texture_tries: draw this many crop corners and keep the crop with the most texture
            (``texture``); 1, the default, draws one corner exactly as the official code.
            Photos hold large flat areas (sky, walls) where bicubic is already right, so a
            crop drawn uniformly often teaches little.
    """

    def __init__(self, dataset: Dataset, inp_size: int | None = None, scale_min: float = 1,
                 scale_max: float | None = None, augment: bool = False,
                 sample_q: int | None = None, texture_tries: int = 1) -> None:
        check_sizes('sr-implicit-downsampled', inp_size=inp_size, sample_q=sample_q,
                    texture_tries=texture_tries)
        scale_max = scale_min if scale_max is None else scale_max
        finite = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                     for v in (scale_min, scale_max))
        if not finite or not 0 < scale_min <= scale_max:
            raise ValueError(f'sr-implicit-downsampled: need finite numbers 0 < scale_min <= '
                             f'scale_max, got {scale_min!r}, {scale_max!r}')
        self.dataset = dataset
        self.inp_size = inp_size
        self.scale_min = scale_min
        self.scale_max = scale_max
        self.augment = augment
        self.sample_q = sample_q
        self.texture_tries = texture_tries

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> Item:
        img = self.dataset[idx]  # (3, H, W)
        H, W = img.shape[-2:]
        s = random.uniform(self.scale_min, self.scale_max)
        if self.inp_size is None:
            # The 1e-9 keeps H / s from flooring one short when s divides H exactly in reals.
            h_lr, w_lr = math.floor(H / s + 1e-9), math.floor(W / s + 1e-9)
            # Python's round: for integer s these are exactly h_lr * s and w_lr * s.
            hr = img[:, :round(h_lr * s), :round(w_lr * s)]  # top-left crop
            lr = resize_fn(hr, (h_lr, w_lr))  # (3, h_lr, w_lr)
        else:
            w_hr = round(self.inp_size * s)  # Python's round: an exact .5 goes to even
            if w_hr > min(H, W):
                raise ValueError(f'item {idx}: a {H}x{W} image is smaller than the {w_hr}px '
                                 f'HR crop that scale {s:.3f} needs')
            hr = max((_random_crop(img, w_hr) for _ in range(self.texture_tries)),
                     key=texture)  # (3, w_hr, w_hr); the first of equals, as max keeps
            # int size: a no-op when w_hr == inp_size (torchvision's Resize short-circuit).
            lr = resize_fn(hr, self.inp_size)  # (3, inp_size, inp_size)
        if self.augment:
            flips = random_flips()
            lr, hr = flip(lr, *flips), flip(hr, *flips)
        return make_item(lr, hr, self.sample_q)


class SRImplicitPaired(Dataset):
    """``sr-implicit-paired``: given LR/HR pairs at an integer scale (the x2-x4 test sets).

    Args:
        dataset: yields ((3, h, w) LR, (3, H, W) HR) pairs with H // h the scale.
        inp_size: side of an aligned random LR crop; None for the whole image, with the HR
            cropped at the top left to exactly scale times the LR.
        augment: random flips and transpose, applied to LR and HR alike.
        sample_q: number of HR pixels kept as queries; all when None.
    """

    def __init__(self, dataset: Dataset, inp_size: int | None = None, augment: bool = False,
                 sample_q: int | None = None) -> None:
        check_sizes('sr-implicit-paired', inp_size=inp_size, sample_q=sample_q)
        self.dataset = dataset
        self.inp_size = inp_size
        self.augment = augment
        self.sample_q = sample_q

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> Item:
        lr, hr = self.dataset[idx]  # (3, h, w), (3, H, W)
        s = hr.shape[-2] // lr.shape[-2]  # the official code assumes an integer scale
        if s < 1 or hr.shape[-1] < lr.shape[-1]:
            raise ValueError(f'sr-implicit-paired: item {idx}: the HR image '
                             f'({hr.shape[-2]}x{hr.shape[-1]}) is smaller than its LR image '
                             f'({lr.shape[-2]}x{lr.shape[-1]}); are the LR and HR folders '
                             'swapped?')
        if self.inp_size is None:
            h_lr, w_lr = lr.shape[-2:]
            hr = hr[:, :h_lr * s, :w_lr * s]  # (3, h*s, w*s)
        else:
            size = self.inp_size
            x0 = random.randint(0, lr.shape[-2] - size)
            y0 = random.randint(0, lr.shape[-1] - size)
            lr = lr[:, x0:x0 + size, y0:y0 + size]  # (3, size, size)
            hr = hr[:, x0 * s:(x0 + size) * s, y0 * s:(y0 + size) * s]  # (3, size*s, size*s)
        if self.augment:
            flips = random_flips()
            lr, hr = flip(lr, *flips), flip(hr, *flips)
        return make_item(lr, hr, self.sample_q)


class SRImplicitUniformVaried(Dataset):
    """``sr-implicit-uniform-varied``: CelebA-HQ training with a target size set by the index.

    Item idx of N resizes the HR to ``round(size_min + (size_max - size_min) * idx / (N - 1))``
    (short edge), so the target sizes spread evenly over the dataset; there is no crop.

    Args:
        dataset: yields (LR, HR) pairs.
        size_min, size_max: the target size range; size_max defaults to size_min.
        augment: a random W-axis flip of both images (one ``random.random()`` draw).
        gt_resize: resize the target again to this size (the "upsample" baselines, whose
            network outputs a fixed size).
        sample_q: number of HR pixels kept as queries (1024 in the CelebA-HQ configs).
    """

    def __init__(self, dataset: Dataset, size_min: int, size_max: int | None = None,
                 augment: bool = False, gt_resize: int | None = None,
                 sample_q: int | None = None) -> None:
        self.dataset = dataset
        self.size_min = size_min
        self.size_max = size_min if size_max is None else size_max
        self.augment = augment
        self.gt_resize = gt_resize
        self.sample_q = sample_q

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> Item:
        lr, hr = self.dataset[idx]
        # The official code divides by N - 1 and fails for a one-item dataset; that item gets p 0.
        p = idx / (len(self.dataset) - 1) if len(self.dataset) > 1 else 0.0
        hr = resize_fn(hr, round(self.size_min + (self.size_max - self.size_min) * p))
        if self.augment and random.random() < 0.5:
            lr, hr = lr.flip(-1), hr.flip(-1)
        if self.gt_resize is not None:
            hr = resize_fn(hr, self.gt_resize)
        return make_item(lr, hr, self.sample_q)
