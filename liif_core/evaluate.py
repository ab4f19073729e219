"""Evaluation: the official PSNR protocol and scale sweeps with a bicubic row.

``evaluate`` is the official ``eval_psnr``: normalise the input, predict (in one pass or in
chunks of queries), de-normalise and clamp, reshape to images when a protocol needs borders,
PSNR per batch, mean weighted by batch size. ``evaluate_scales`` makes the low-resolution
inputs itself from high-resolution images, for any list of scales (non-integer and per-axis
too), and scores the model and bicubic upsampling through the same code on the same crops.

Book: chapter 9, "Benchmark".
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .data.folders import image_names, read_rgb, to_tensor
from .metrics import calc_psnr, calc_ssim
from .render import BICUBIC, MODEL_DATA_NORM, Predictor, predict, render
from .report import Scale, ScaleRow, scale_label
from .resize import resize_fn

# The paper's scale list: x2-x4 in the training distribution, x6-x30 outside it.
PAPER_SCALES = (2, 3, 4, 6, 12, 18, 24, 30)


def parse_eval_type(eval_type: str | None) -> tuple[str | None, int]:
    """``'div2k-4'`` -> ``('div2k', 4)``, ``'benchmark-3'`` -> ``('benchmark', 3)``,
    None -> ``(None, 1)``."""
    if eval_type is None:
        return None, 1
    protocol, _, scale = eval_type.partition('-')
    if protocol not in ('div2k', 'benchmark') or not scale.isdigit():
        raise ValueError(f"eval_type must be 'div2k-N', 'benchmark-N' or None, got {eval_type!r}")
    return protocol, int(scale)


@dataclass
class EvalResult:
    """``psnr``: the official mean (per batch, weighted by batch size); ``per_image``: PSNR
    of each image alone (equal to the batch values at batch size 1, as in every test config).
    ``ssim``, ``per_image_ssim``: SSIM on the same pixels (``calc_ssim``), mean over images;
    None and empty without a protocol, whose scattered sample points are no image; None for
    an image smaller than the SSIM window (and then the mean is None too)."""
    psnr: float
    per_image: list[float] = field(default_factory=list)
    ssim: float | None = None
    per_image_ssim: list[float | None] = field(default_factory=list)


def _model_device(model: Predictor) -> torch.device:
    if not isinstance(model, nn.Module):
        return torch.device('cpu')
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device('cpu')


def evaluate(model: Predictor, data: Dataset | DataLoader, eval_type: str | None = None,
             eval_bsize: int | None = None, data_norm: dict | str | None = MODEL_DATA_NORM,
             progress: bool = True) -> EvalResult:
    """The official ``eval_psnr`` over a dataset of {'inp', 'coord', 'cell', 'gt'}.

    Args:
        model: a LIIF / MetaSR model (put in eval mode here), or ``BICUBIC``.
        data: a dataset (read at batch size 1, as every test config) or a DataLoader.
        eval_type: None (RGB PSNR over the sampled points), ``'div2k-N'`` or
            ``'benchmark-N'`` (reshaped to images, borders shaved).
        eval_bsize: queries per chunk (30000 in the test configs), or None for one pass.
        data_norm: the config's ``data_norm``; None means none (the official default); default:
            the model's own (``render.data_norm_of``).
        progress: show a progress bar.

    Returns:
        ``EvalResult(psnr, per_image, ssim, per_image_ssim)``.

    Example:
        >>> res = evaluate(model, make_data(config['test_dataset']),  # doctest: +SKIP
        ...                eval_type='div2k-4', eval_bsize=30000)
    """
    protocol, scale = parse_eval_type(eval_type)
    if eval_bsize is not None and (not isinstance(eval_bsize, int) or isinstance(eval_bsize, bool)
                                   or eval_bsize < 1):
        raise ValueError(f'eval_bsize must be a whole number >= 1 (or absent), got '
                         f'{eval_bsize!r}')
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=1)
    device = _model_device(model)
    if isinstance(model, nn.Module):
        model.eval()
    total, count, per_image, per_image_ssim = 0.0, 0, [], []
    for batch in tqdm(loader, desc='eval', leave=False, disable=not progress):
        batch = {k: v.to(device) for k, v in batch.items()}
        pred = predict(model, batch['inp'], batch['coord'], batch['cell'], data_norm,
                       eval_bsize)  # (B, Q, 3)
        gt = batch['gt']
        if protocol is not None:
            # The official reshape: output size from sqrt(Q / (h w)), i.e. an isotropic scale.
            B, Q = pred.shape[:2]
            ih, iw = batch['inp'].shape[-2:]
            s = math.sqrt(Q / (ih * iw))
            shape = (B, round(ih * s), round(iw * s), 3)
            pred = pred.view(shape).permute(0, 3, 1, 2)  # (B, 3, H, W)
            gt = gt.view(shape).permute(0, 3, 1, 2)
        B = pred.shape[0]
        total += calc_psnr(pred, gt, protocol, scale).item() * B
        count += B
        per_image += [calc_psnr(p, g, protocol, scale).item() for p, g in zip(pred, gt)]
        if protocol is not None:
            per_image_ssim += [_ssim(p, g, protocol, scale) for p, g in zip(pred, gt)]
    if count == 0:
        raise ValueError('evaluate: the dataset is empty')
    return EvalResult(total / count, per_image, _mean(per_image_ssim), per_image_ssim)


# -- scale sweeps ------------------------------------------------------------------------------


def _scale_pair(scale: Scale) -> tuple[float, float]:
    return (float(scale[0]), float(scale[1])) if isinstance(scale, tuple) else (scale, scale)


def make_test_pair(hr: torch.Tensor, scale: Scale) -> tuple[torch.Tensor, torch.Tensor]:
    """The test-time downsampling of ``sr-implicit-downsampled``.

    ``h_lr = floor(H / s + 1e-9)`` (likewise w); the HR is cropped at the top left to
    ``round(h_lr s) x round(w_lr s)``; the LR is ``resize_fn`` of that crop to ``(h_lr, w_lr)``.

    Args:
        hr: (3, H, W) in [0, 1].
        scale: one factor, or (row, col) factors.

    Returns:
        lr (3, h_lr, w_lr) and the cropped hr (3, H', W').
    """
    s_row, s_col = _scale_pair(scale)
    H, W = hr.shape[-2:]
    h_lr, w_lr = math.floor(H / s_row + 1e-9), math.floor(W / s_col + 1e-9)
    if h_lr < 1 or w_lr < 1:
        raise ValueError(f'a {H}x{W} image is too small for scale {scale_label(scale)}')
    hr = hr[:, :round(h_lr * s_row), :round(w_lr * s_col)]  # (3, H', W')
    return resize_fn(hr, (h_lr, w_lr)), hr


def load_images(source: str | os.PathLike | Iterable[Any], first_k: int | None = None,
                crop: int | None = None) -> list[tuple[str, torch.Tensor]]:
    """High-resolution images as ``(name, (3, H, W) float in [0, 1])``.

    Args:
        source: a folder (files in sorted order, as the official image folders), or a list of
            paths and/or tensors.
        first_k: keep only the first k images.
        crop: keep a centred ``crop x crop`` window of each (smaller images are kept whole).
    """
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.is_dir():
            raise ValueError(f'{folder}: no such folder of images')
        source = [folder / name for name in image_names(os.fspath(folder))]
        if not source:
            sub = next((p for p in sorted(folder.iterdir()) if p.is_dir()), None)
            raise ValueError(f'{folder}: no images at its top level (subfolders are not '
                             'searched); give the folder that holds the image files'
                             + (f', e.g. {sub}' if sub else ''))
    if crop is not None and (not isinstance(crop, int) or isinstance(crop, bool) or crop < 1):
        raise ValueError(f'crop must be a whole number of pixels >= 1, got {crop!r}')
    images = []
    for i, item in enumerate(list(source)[:first_k]):
        if torch.is_tensor(item):
            name, img = f'image-{i}', item
        else:  # as the image folders read them: upright 8-bit RGB
            name, img = Path(item).name, to_tensor(read_rgb(os.fspath(item)))  # (3, H, W)
        if crop is not None:
            H, W = img.shape[-2:]
            top, left = max(0, (H - crop) // 2), max(0, (W - crop) // 2)
            img = img[:, top:top + crop, left:left + crop]
        images.append((name, img))
    return images


def evaluate_scales(model: nn.Module | None, hr_images: str | os.PathLike | Iterable[Any],
                    scales: Sequence[Scale] = PAPER_SCALES, protocol: str = 'div2k',
                    bicubic: bool = True, eval_bsize: int | str | None = 'auto',
                    data_norm: dict | str | None = MODEL_DATA_NORM, first_k: int | None = None,
                    crop: int | None = None, progress: bool = True) -> list[ScaleRow]:
    """PSNR and SSIM of the model (and of bicubic) at every scale, on LR inputs made from HR
    images.

    Each image is downsampled with the test semantics of ``make_test_pair``, upsampled back to
    the cropped HR size by the model (all pixel centres, cell 2/H, 2/W) and by ``resize_fn``
    (the paper's bicubic row), and scored with ``calc_psnr(dataset=protocol, scale=s)`` and
    ``calc_ssim`` on the same pixels; for a per-axis scale the shave uses the larger factor.
    The mean is over images. For x2-x4 the official DIV2K and benchmark tests read the datasets'
    own (MATLAB) bicubic LR files; here every LR is made with ``resize_fn``, as the official
    code does for x6 and up.

    Args:
        model: the model, or None for the bicubic row alone.
        hr_images: a folder or a list of paths / (3, H, W) tensors in [0, 1].
        scales: factors, each a number or a (row, col) pair.
        protocol: 'div2k' (RGB, shave s + 6) or 'benchmark' (Y, shave s).
        bicubic: also score bicubic upsampling on the same crops.
        eval_bsize: queries per chunk; 'auto': what suits the device (``render``'s bsize).
        data_norm: normalisation the model was trained with; default: the model's own.
        first_k, crop: see ``load_images``.
        progress: show a progress bar.

    Returns:
        one ``ScaleRow`` per scale.
    """
    if protocol not in ('div2k', 'benchmark'):
        raise ValueError(f"protocol must be 'div2k' or 'benchmark', got {protocol!r}")
    if model is None and not bicubic:
        raise ValueError('nothing to evaluate: no model and bicubic=False')
    images = load_images(hr_images, first_k, crop)
    if not images:
        raise ValueError('evaluate_scales: no images')
    if model is not None:
        model.eval()
    names = [name for name, _ in images]
    rows = []
    bar = tqdm(total=len(scales) * len(images), desc='scales', disable=not progress)
    for scale in scales:
        shave = max(_scale_pair(scale))  # the larger factor for a per-axis scale
        # predictor -> (PSNR per image, SSIM per image)
        scores = {p: ([], []) for p in ([model] if model is not None else [])
                  + ([BICUBIC] if bicubic else [])}
        for _, hr in images:
            lr, hr = make_test_pair(hr, scale)
            for predictor, (psnr, ssim) in scores.items():
                device = _model_device(predictor)
                sr = render(predictor, lr.unsqueeze(0).to(device), hr.shape[-2:],
                            bsize=eval_bsize, data_norm=data_norm)  # (1, 3, H, W)
                target = hr.unsqueeze(0).to(device)
                psnr.append(calc_psnr(sr, target, protocol, shave).item())
                ssim.append(_ssim(sr, target, protocol, shave))
            bar.update()
        (ours, ours_ssim), (bic, bic_ssim) = (scores.get(p, ([], [])) for p in (model, BICUBIC))
        rows.append(ScaleRow(scale, _mean(ours), _mean(bic), ours, bic, names,
                             _mean(ours_ssim), _mean(bic_ssim), ours_ssim, bic_ssim))
    bar.close()
    return rows


def _ssim(sr: torch.Tensor, hr: torch.Tensor, protocol: str, scale: float) -> float | None:
    """``calc_ssim``, or None where the scored region is smaller than its window."""
    try:
        return calc_ssim(sr, hr, protocol, scale).item()
    except ValueError:  # calc_psnr has passed the same region, so it can only be too small
        return None


def _mean(values: list[float | None]) -> float | None:
    """The mean, or None when there are no values or any is missing."""
    return sum(values) / len(values) if values and None not in values else None
