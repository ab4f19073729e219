"""Upscale an image to any size or scale with a LIIF model, in bounded memory.

``upscale`` takes a PIL image, a numpy array or a float tensor and returns the same kind;
``upscale_file`` reads an image file and writes the result, streaming PNG rows to disk, so that
memory stays bounded for any output size; ``liif upscale`` runs it on files and folders. All
of them decode band by band (``liif_core.bands``).

Book: chapter 7, "Playground", upscales photos with this module.
"""
from __future__ import annotations

import copy
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .atomic import atomic_write
from .bands import output_bands, with_estimate
from .device import resolve_device
from .imageio import (MAX_SIDE, ImageLike, Source, check_fits, check_input, check_limits,
                      output_format, quantise, read_source, save_image, to_pil, to_source)
from .liif import LIIF
from .png import PngStream
from .pretrained import load_pretrained
from .render import output_size

# -- the model ----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _default_model() -> LIIF:
    """The shipped weights, read and checked once per process (upscale never changes them)."""
    return load_pretrained()


def check_model(model: nn.Module | None) -> LIIF:
    if model is None:
        model = _default_model()
    if not isinstance(model, LIIF) or model.imnet is None:
        raise ValueError(f'upscale needs a LIIF model with a decoder, got {type(model).__name__}')
    if not hasattr(model.encoder, 'receptive_radius'):
        raise ValueError('the encoder does not state its receptive_radius: it cannot be tiled')
    weights = next(model.parameters()).dtype
    if weights != torch.float32:
        raise ValueError(f'the model holds {str(weights).replace("torch.", "")} weights; upscale '
                         "takes a float32 model (for half precision pass dtype='float16' or "
                         "'bfloat16', which computes in it where the device can)")
    return model


# -- shrinking ---------------------------------------------------------------------------------

def _bands(model: LIIF, source: Source, H: int, W: int, tile_rows: int | None,
           encoder_tile_rows: int | None, progress: bool | None, device: torch.device,
           dtype: str | torch.dtype | None) -> Iterator[tuple[int, torch.Tensor]]:
    """``output_bands``, and for an output smaller than the input along an axis, an
    antialiased resize down: LIIF samples its function at each output pixel's centre, so
    shrinking with it aliases like nearest neighbour. The model upsamples only the axes that
    grow (to the input's size along the others: no model run at all when neither grows), and
    a bicubic filter widened to the reduction (antialiased, as PIL's resize) brings the shrinking
    axes down."""
    h, w = source.values.shape[1:]
    if H >= h and W >= w:
        yield from output_bands(model, source, H, W, tile_rows, encoder_tile_rows, progress,
                                device, dtype)
        return
    Hm, Wm = max(H, h), max(W, w)
    if (Hm, Wm) == (h, w):
        big = source.values.to(device)  # (C, h, w)
    else:
        check_fits(Hm, Wm, source.values.shape[0], 4)
        big = torch.empty(source.values.shape[0], Hm, Wm, device=device)
        for r0, band in output_bands(model, source, Hm, Wm, tile_rows, encoder_tile_rows,
                                     progress, device, dtype):
            big[:, r0:r0 + band.shape[0]] = band.permute(2, 0, 1)
    small = F.interpolate(big[None].float(), size=(H, W), mode='bicubic', align_corners=False,
                          antialias=True)[0]  # (C, H, W)
    yield 0, small.clamp(0, 1).permute(1, 2, 0)  # (H, W, C)


# -- the public entry points -------------------------------------------------------------------

def _on_device(model: LIIF, device: torch.device | str | None) -> tuple[LIIF, torch.device]:
    """The model on ``device`` (default: where it is) and that device. A model elsewhere is
    copied there, so that the caller's model stays where the caller put it."""
    current = next(model.parameters()).device
    if device is None:
        return model, current
    device = resolve_device(device)
    if device.type != 'cpu':
        device = torch.empty(0, device=device).device  # 'cuda' -> 'cuda:0', as parameters report
    return (model if device == current else copy.deepcopy(model).to(device)), device


def upscale(image: ImageLike, size: Sequence[int] | None = None,
            scale: float | Sequence[float] | None = None, model: nn.Module | None = None, *,
            device: torch.device | str | None = None, tile_rows: int | None = None,
            encoder_tile_rows: int | None = None, progress: bool | None = None,
            dtype: str | torch.dtype | None = None, limits: bool = True) -> ImageLike:
    """Upscale (or shrink) an image to an exact size or by a per-axis scale.

    Args:
        image: a PIL image (any mode; EXIF orientation is applied), a numpy (H, W) or
            (H, W, C) uint8/uint16 array, or a float tensor (C, H, W) in [0, 1], C in 1..4
            (1: gray, 2: gray + alpha, 3: RGB, 4: RGBA).
        size: output (H, W); or
        scale: a factor, or a (row, col) pair of factors; output side round(side * factor)
            (Python rounding, at least 1). Exactly one of size and scale. LIIF upsamples: an
            axis that shrinks is brought down by an antialiased bicubic resize instead (the
            model runs only on the axes that grow; not at all when none does).
        model: a LIIF, e.g. ``load_model(path)``; default: the shipped weights
            (``liif_core.pretrained.load_pretrained()``, trained on stand-in photos).
        device: where to decode (default: the model's device). A model elsewhere is copied
            there for the call; the caller's model is never moved.
        tile_rows: output rows decoded per band (default ``bands.band_rows``: about 2^18
            pixels per band on a CPU; on CUDA one band when it fits in memory).
        encoder_tile_rows: latent rows per encoder tile (default: about 2^17 pixels).
        progress: show a tqdm bar on long runs; default when stderr is a terminal.
        dtype: 'float32' (default), 'bfloat16' or 'float16' (where the device runs it): the
            precision of the encoder and the decoder's matrix products (autocast); coordinates
            and the local ensemble's weights stay float32.
        limits: refuse inputs over ``imageio.MAX_INPUT_PIXELS`` and outputs over
            ``MAX_OUTPUT_PIXELS`` or ``MAX_OUTPUT_SIDE``; False lifts the limits.

    Returns:
        the same kind as ``image``. PIL images in RGB, L, RGBA and LA keep their mode; palette
        images become RGB (RGBA if transparent), 16-bit grayscale ('I;16', 'I') stays 16-bit, the
        ICC profile is kept in ``info``. Arrays keep dtype and layout. Tensors: float32 (C, H, W) on
        the input's device, before any quantisation. Gray is decoded as RGB and converted back with
        the ITU-R 601-2 luma weights; alpha is resized bicubically (PIL) and re-attached. Integer
        outputs round to nearest (the official demo truncates, which darkens by half a level on
        average).

    Example (book chapter 7 runs this on photos):
        >>> big = upscale(Image.open('photo.jpg'), scale=3.5)          # doctest: +SKIP
        >>> model = load_model('edsr-baseline-liif.pth')                 # doctest: +SKIP
        >>> big = upscale(Image.open('photo.jpg'), scale=3.5, model=model)  # doctest: +SKIP
    """
    model = check_model(model)
    if limits and isinstance(image, Image.Image):
        check_input(image.height, image.width)  # before a lazily opened file is decoded
    source = to_source(image)
    h, w = source.values.shape[1:]
    H, W = output_size(h, w, size, scale)
    if limits:
        check_limits(h, w, H, W)
    C = source.values.shape[0]
    model, device = _on_device(model, device)
    bands = _bands(model, source, H, W, tile_rows, encoder_tile_rows, progress, device, dtype)
    if isinstance(image, torch.Tensor):
        check_fits(H, W, C, 4)
        out = torch.empty(C, H, W, device=image.device)
        for r0, band in bands:
            out[:, r0:r0 + band.shape[0]] = band.permute(2, 0, 1).to(image.device)
        return out
    check_fits(H, W, C, source.bits // 8)
    array = np.empty((H, W, C), dtype=np.uint8 if source.bits == 8 else np.uint16)
    for r0, band in bands:
        array[r0:r0 + band.shape[0]] = quantise(band, source.bits)
    if isinstance(image, np.ndarray):
        return array[:, :, 0] if image.ndim == 2 else array
    return to_pil(array, source)


@dataclass
class FileJob:
    """An input read and checked against an output path, ready to decode."""
    source: Source
    out_path: Path
    fmt: str  # PIL format name of the output
    size: tuple[int, int]  # (H, W)
    quality: int
    frames: int  # of the input; only the first is upscaled

    def note(self) -> str | None:
        """What the output leaves out that the input had, or how it was made when not by
        LIIF alone, for the user to hear of."""
        notes = []
        if self.frames > 1:
            notes.append(f'only the first of its {self.frames} frames is upscaled')
        h, w = self.source.values.shape[1:]
        if self.size[0] < h or self.size[1] < w:
            notes.append('smaller than the input: LIIF upsamples, so it is shrunk by an '
                         'antialiased bicubic resize')
        return '; '.join(notes) or None


def plan_file(in_path: str | os.PathLike, out_path: str | os.PathLike,
              size: Sequence[int] | None, scale: float | Sequence[float] | None,
              quality: int, limits: bool = True) -> FileJob:
    """Every check that needs no model, so bad input fails before any weights are read. The
    input is read first: in a folder, a file that is no image is reported as such, not by the
    output format its name implies."""
    source, frames = read_source(in_path, limits)
    out_path = Path(out_path)
    fmt = output_format(out_path)
    if not out_path.parent.is_dir():
        raise ValueError(f'{out_path.parent}: no such directory for the output')
    # The mode bits, not os.access: as root every file is writable, yet read-only means keep.
    if out_path.is_file() and not out_path.stat().st_mode & 0o222:
        raise ValueError(f'{out_path}: the existing output is read-only; make it writable or '
                         'choose another output')
    if not 1 <= quality <= 100:
        raise ValueError(f'quality must be in 1..100, got {quality}')
    H, W = output_size(*source.values.shape[1:], size, scale)
    limit = MAX_SIDE.get(fmt)
    if limit is not None and max(H, W) > limit:
        raise ValueError(f'{H}x{W} is too large for {fmt}, which holds at most {limit} pixels '
                         'per side')
    if limits:
        check_limits(*source.values.shape[1:], H, W)
    if fmt == 'JPEG' and source.has_alpha:
        raise ValueError(f'{out_path}: JPEG cannot store the alpha channel; write a .png')
    return FileJob(source, out_path, fmt, (H, W), quality, frames)


def write_file(job: FileJob, model: LIIF, device: torch.device, tile_rows: int | None,
               encoder_tile_rows: int | None, progress: bool | None,
               dtype: str | torch.dtype | None = None,
               say: Callable[[str], None] | None = None) -> None:
    """Decode into a temporary file beside the output, renamed into place only when complete;
    ``say`` (the command line's notes) hears of a large output and of its estimated time."""
    try:
        _decode_into(job, model, device, tile_rows, encoder_tile_rows, progress, dtype, say)
    except OSError as e:
        # The error names the hidden temporary file; the user knows only the output path.
        raise OSError(f'{job.out_path}: cannot write the output ({e.strerror or e})') from None


def _decode_into(job: FileJob, model: LIIF, device: torch.device, tile_rows: int | None,
                 encoder_tile_rows: int | None, progress: bool | None,
                 dtype: str | torch.dtype | None,
                 say: Callable[[str], None] | None = None) -> None:
    (H, W), source, C = job.size, job.source, job.source.values.shape[0]
    with atomic_write(job.out_path) as file:
        bands = _bands(model, source, H, W, tile_rows, encoder_tile_rows, progress, device,
                       dtype)
        if say is not None:
            bands = with_estimate(bands, H, W, str(job.out_path), say)
        if job.fmt == 'PNG':
            png = PngStream(file, H, W, C, source.bits, source.icc_profile)
            for _, band in bands:
                png.write(quantise(band, source.bits))
            png.close()
        else:
            check_fits(H, W, C, 1)
            array = np.empty((H, W, C), dtype=np.uint8)
            for r0, band in bands:
                array[r0:r0 + band.shape[0]] = quantise(band, 8)
            save_image(file, array, job.fmt, job.quality, source.icc_profile)


def upscale_file(in_path: str | os.PathLike, out_path: str | os.PathLike,
                 size: Sequence[int] | None = None, scale: float | Sequence[float] | None = None,
                 model: nn.Module | None = None, *, device: torch.device | str | None = None,
                 quality: int = 95, tile_rows: int | None = None,
                 encoder_tile_rows: int | None = None, progress: bool | None = None,
                 dtype: str | torch.dtype | None = None, limits: bool = True) -> tuple[int, int]:
    """Upscale an image file into another, never leaving a partial output file.

    PNG outputs are streamed band by band (memory stays bounded for any size) and keep 16-bit
    inputs (grayscale, and colour PNGs) at 16 bits; other formats (JPEG, WebP, ICO, ...) are
    built in memory, at 8 bits, ICO only up to 256 pixels a side. The ICC profile is carried
    over. The result goes to a temporary file beside ``out_path`` that is renamed at the end,
    so a failure leaves nothing behind.

    Args:
        in_path, out_path: image files; the output format follows the extension.
        size, scale, model, device, tile_rows, encoder_tile_rows, progress, dtype, limits: as
            ``upscale``.
        quality: JPEG/WebP quality, 1..100.

    Returns:
        the output (H, W).

    Example:
        >>> model = load_model('edsr-baseline-liif.pth')                       # doctest: +SKIP
        >>> upscale_file('photo.jpg', 'big.png', size=(2160, 3840), model=model)  # doctest: +SKIP
    """
    model = check_model(model)
    job = plan_file(in_path, out_path, size, scale, quality, limits)
    model, device = _on_device(model, device)
    write_file(job, model, device, tile_rows, encoder_tile_rows, progress, dtype)
    return job.size
