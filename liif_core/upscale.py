"""Upscale an image to any size or scale with a LIIF model, in bounded memory.

``upscale`` takes a PIL image, a numpy array or a float tensor and returns the same kind;
``upscale_file`` reads an image file and writes the result, streaming PNG rows to disk, so that
memory stays bounded for any output size. Both decode the image the same way:

* the encoder runs on tiles of input rows, each with a halo of ``encoder.receptive_radius`` rows,
  so every kept row saw exactly the context it sees in one untiled pass (the encoder pads with
  zeros only at the image's true borders);
* the decoder runs on bands of output rows; each band needs only the latent rows its queries
  (and their local-ensemble neighbours and 3x3 unfolding) can reach, and only those are encoded,
  projected and kept. Coordinates are re-expressed in the frame of that crop of the feature map.

Tiled and untiled decoding agree to within 1e-5 (float32 rounding of the crop coordinates: about
1e-6 on smooth images, up to 6e-6 on noise with strongly varying decoder weights).

Book: chapter 7, "Playground", upscales photos with this module.
"""
from __future__ import annotations

import argparse
import copy
import functools
import math
import numbers
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from .atomic import atomic_write
from .coords import make_coord
from .device import resolve_device
from .imageio import (MAX_SIDE, ImageLike, PngStream, Source, check_fits, check_limits, from_pil,
                      open_image, output_format, quantise, to_pil, to_source)
from .liif import LIIF, single_threaded
from .pretrained import DEFAULT_MODEL, load_pretrained, resolve_model
from .render import DTYPES, output_size, precision

# Output pixels decoded per band by default: a band's coordinates, cells and predictions then
# take a few MiB, and its latent rows are many more than the 4 margin rows recomputed per band.
BAND_PIXELS = 2**18
# Latent pixels encoded per encoder tile by default (halo excluded): EDSR-baseline keeps a few
# 64-channel activations alive, about 32 MiB each at this size (more for inputs so wide that
# the tile's minimum height, twice the halo, exceeds it).
ENCODER_TILE_PIXELS = 2**17
# Grayscale is decoded as RGB and converted back with the ITU-R 601-2 luma weights (PIL's 'L').
LUMA = (0.299, 0.587, 0.114)


# -- decoding ----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _default_model() -> LIIF:
    """The shipped weights, read and checked once per process (upscale never changes them)."""
    return load_pretrained()


def _check_model(model: nn.Module | None) -> LIIF:
    if model is None:
        model = _default_model()
    if not isinstance(model, LIIF) or model.imnet is None:
        raise ValueError(f'upscale needs a LIIF model with a decoder, got {type(model).__name__}')
    if not hasattr(model.encoder, 'receptive_radius'):
        raise ValueError('the encoder does not state its receptive_radius: it cannot be tiled')
    return model


class _FeatureRows:
    """Rows of the feature map, encoded in tiles of input rows when first asked for.

    A tile of rows [t0, t1) is encoded from input rows [t0 - r, t1 + r) (clipped to the image),
    r = ``encoder.receptive_radius``: zero padding at a tile's cut edge corrupts one more row
    per 3x3 convolution, so after r of them the rows kept are still exact. Requests must move
    down the image (``a`` and ``b`` never decrease); rows above the last request are dropped.
    """

    def __init__(self, encoder: nn.Module, inp: torch.Tensor, tile_rows: int):
        self.encoder = encoder
        self.inp = inp  # (1, 3, h, w), normalised
        self.tile_rows = tile_rows
        self.radius = encoder.receptive_radius
        self.start = 0  # image row of self.feat's first row
        self.feat: torch.Tensor | None = None  # (1, C, n, w)

    def rows(self, a: int, b: int) -> torch.Tensor:
        """Feature rows [a, b): (1, C, b - a, w)."""
        end = self.start + (0 if self.feat is None else self.feat.shape[2])
        if b > end:
            h = self.inp.shape[2]
            t0 = max(end, a)
            t1 = min(h, max(b, t0 + self.tile_rows))
            s0, s1 = max(0, t0 - self.radius), min(h, t1 + self.radius)
            tile = self.encoder(self.inp[:, :, s0:s1])[:, :, t0 - s0:t1 - s0]  # (1, C, t1-t0, w)
            kept = [self.feat[:, :, a - self.start:]] if self.feat is not None and a < end else []
            self.feat = torch.cat(kept + [tile], dim=2)  # rows [a, t1)
        else:
            self.feat = self.feat[:, :, a - self.start:]  # rows [a, end)
        self.start = a
        return self.feat[:, :, :b - a]


def _band_latent_rows(r0: int, r1: int, h: int, H: int) -> tuple[int, int]:
    """Feature rows [a, b) that decoding output rows [r0, r1) reads.

    Output row r sits at p = (2r + 1) h / (2H) in latent pixels (code i covers [i, i + 1)).
    Its ensemble members look half a code up and down, so they use codes floor(p) - 1 ..
    floor(p) + 1, and the 3x3 unfolding (``project_codes``) reads one more row each side.
    """
    p0 = (2 * r0 + 1) * h / (2 * H)
    p1 = (2 * r1 - 1) * h / (2 * H)
    return max(0, math.floor(p0) - 2), min(h, math.floor(p1) + 3)


@torch.no_grad()
def _decode_bands(model: LIIF, rgb: torch.Tensor, H: int, W: int, tile_rows: int,
                  encoder_tile_rows: int, dtype: str | torch.dtype | None = None
                  ) -> Iterator[tuple[int, torch.Tensor]]:
    """Decode an (H, W) image from ``rgb`` (3, h, w) in [0, 1], band by band, the model
    running in ``dtype`` (``render.precision``).

    Yields:
        (r0, rows): the first output row of the band and its (n, W, 3) RGB in [0, 1].
    """
    h, w = rgb.shape[1:]
    inp = ((rgb - 0.5) / 0.5).unsqueeze(0)  # (1, 3, h, w)
    features = _FeatureRows(model.encoder, inp, encoder_tile_rows)
    cols = make_coord((W,), device=rgb.device)[:, 0]  # (W,)
    for r0 in range(0, H, tile_rows):
        r1 = min(H, r0 + tile_rows)
        a, b = _band_latent_rows(r0, r1, h, H)
        # Rows in the frame of the crop, where its latent rows span [-1, 1]: position p in
        # latent pixels maps to (p - a) * 2 / (b - a) - 1, formed in double, rounded once.
        p = (2 * np.arange(r0, r1, dtype=np.float64) + 1) * h / (2 * H)
        rows = torch.from_numpy((p - a) * 2 / (b - a) - 1).float().to(rgb.device)  # (n,)
        coord = torch.stack(torch.meshgrid(rows, cols, indexing='ij'), dim=-1)  # (n, W, 2)
        coord = coord.view(1, -1, 2)  # (1, n*W, 2)
        # One output pixel is 2/H of the full frame, 2h / (H (b - a)) of the crop's.
        cell = torch.tensor([2 * h / (H * (b - a)), 2 / W], device=rgb.device)
        cell = cell.expand_as(coord)  # (1, n*W, 2)
        # Entered per band, not around the loop: the caller's code between bands stays float32.
        with precision(dtype, rgb.device):
            # The convolutions on one thread: a busy core would stall every one of them.
            with single_threaded():
                feat = features.rows(a, b)  # (1, C, b - a, w)
                proj = model.project_codes(feat)  # (b - a) * w rows
            pred = model.decode(feat, coord, cell, proj=proj)  # (1, n*W, 3)
        yield r0, (pred.float() * 0.5 + 0.5).clamp_(0, 1).view(r1 - r0, W, 3)


def _alpha_band(alpha: Image.Image, r0: int, r1: int, H: int, W: int) -> np.ndarray:
    """Rows [r0, r1) of the alpha plane (mode 'F', values in [0, 1]) resized bicubically to
    (H, W): PIL's ``box`` selects the source region while the filter still reads past it, so
    the band equals the same rows of one full resize."""
    h = alpha.height
    band = alpha.resize((W, r1 - r0), Image.BICUBIC, box=(0, r0 * h / H, alpha.width, r1 * h / H))
    return np.clip(np.asarray(band), 0, 1)  # (n, W)


def _bands(model: LIIF, source: Source, H: int, W: int, tile_rows: int | None,
           encoder_tile_rows: int | None, progress: bool | None, device: torch.device,
           dtype: str | torch.dtype | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """The output of ``source`` at (H, W), band by band: (r0, (n, W, C) float in [0, 1])."""
    values = source.values.to(device)  # (C, h, w)
    h, w = values.shape[1:]
    rgb = values[:1].expand(3, h, w) if source.gray else values[:3]  # (3, h, w)
    alpha = None
    if source.has_alpha:
        alpha = Image.fromarray(values[-1].cpu().numpy())  # mode 'F'
    if tile_rows is None:
        # A band of rows [r0, r1) reads about (r1 - r0) h / H latent rows, encoded and kept at
        # once: when shrinking, that (at most BAND_PIXELS latent pixels) is the tighter bound.
        # It never binds when neither side shrinks, where it is at least BAND_PIXELS // W.
        tile_rows = max(1, min(BAND_PIXELS // W, (BAND_PIXELS // w) * H // h))
    if encoder_tile_rows is None:
        # At least twice the halo, so that re-encoded halo rows cost at most the tile's own work.
        encoder_tile_rows = max(2 * model.encoder.receptive_radius, ENCODER_TILE_PIXELS // w)
    if tile_rows < 1 or encoder_tile_rows < 1:
        raise ValueError('tile sizes must be at least one row')
    precision(dtype, device)  # an unsupported dtype fails before any decoding
    luma = torch.tensor(LUMA, device=device)
    if progress is None:
        progress = sys.stderr.isatty()
    # delay: short runs finish before the bar would appear.
    with tqdm(total=H, unit='row', desc='upscale', disable=not progress, delay=2) as bar:
        for r0, band in _decode_bands(model, rgb, H, W, tile_rows, encoder_tile_rows, dtype):
            r1 = r0 + band.shape[0]
            if source.gray:
                band = (band @ luma).unsqueeze(-1)  # (n, W, 1)
            if alpha is not None:
                a = torch.from_numpy(_alpha_band(alpha, r0, r1, H, W)).to(device)
                band = torch.cat([band, a.unsqueeze(-1)], dim=-1)  # (n, W, C)
            bar.update(r1 - r0)
            yield r0, band


# -- the public entry points -------------------------------------------------------------------

def _plain(scale: float | Sequence[float] | None) -> float | Sequence[float] | None:
    """numpy and torch scalars (0-d arrays and tensors too), alone or in a pair, as Python
    floats, which ``output_size`` takes; anything else unchanged, for it to judge."""
    def one(s: object) -> object:
        return float(s) if isinstance(s, numbers.Real) or getattr(s, 'ndim', None) == 0 else s

    if scale is None or isinstance(scale, str):
        return scale
    if isinstance(scale, numbers.Real) or getattr(scale, 'ndim', None) == 0:
        return one(scale)
    try:
        return tuple(one(s) for s in scale)
    except TypeError:
        return scale


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
            (Python rounding, at least 1). Exactly one of size and scale.
        model: a LIIF, e.g. ``load_model(path)``; default: the shipped weights
            (``liif_core.pretrained.load_pretrained()``, trained on stand-in photos).
        device: where to decode (default: the model's device). A model elsewhere is copied
            there for the call; the caller's model is never moved.
        tile_rows: output rows decoded per band (default: about 2^18 pixels per band).
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
    model = _check_model(model)
    source = to_source(image)
    h, w = source.values.shape[1:]
    H, W = output_size(h, w, size, _plain(scale))
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
class _FileJob:
    """An input read and checked against an output path, ready to decode."""
    source: Source
    out_path: Path
    fmt: str  # PIL format name of the output
    size: tuple[int, int]  # (H, W)
    quality: int
    frames: int  # of the input; only the first is upscaled

    def note(self) -> str | None:
        """What the output leaves out that the input had, for the user to hear of."""
        if self.frames > 1:
            return f'only the first of its {self.frames} frames is upscaled'
        return None


def _plan(in_path: str | os.PathLike, out_path: str | os.PathLike,
          size: Sequence[int] | None, scale: float | Sequence[float] | None,
          quality: int, limits: bool = True) -> _FileJob:
    """Every check that needs no model, so bad input fails before any weights are read. The
    input is read first: in a folder, a file that is no image is reported as such, not by the
    output format its name implies."""
    image = open_image(in_path)
    source = from_pil(image)
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
    H, W = output_size(*source.values.shape[1:], size, _plain(scale))
    limit = MAX_SIDE.get(fmt)
    if limit is not None and max(H, W) > limit:
        raise ValueError(f'{H}x{W} is too large for {fmt}, which holds at most {limit} pixels '
                         'per side')
    if limits:
        check_limits(*source.values.shape[1:], H, W)
    if fmt == 'JPEG' and source.has_alpha:
        raise ValueError(f'{out_path}: JPEG cannot store the alpha channel; write a .png')
    return _FileJob(source, out_path, fmt, (H, W), quality, image.info['frames'])


def _write(job: _FileJob, model: LIIF, device: torch.device, tile_rows: int | None,
           encoder_tile_rows: int | None, progress: bool | None,
           dtype: str | torch.dtype | None = None) -> None:
    """Decode into a temporary file beside the output, renamed into place only when complete."""
    try:
        _write_file(job, model, device, tile_rows, encoder_tile_rows, progress, dtype)
    except OSError as e:
        # The error names the hidden temporary file; the user knows only the output path.
        raise OSError(f'{job.out_path}: cannot write the output ({e.strerror or e})') from None


def _write_file(job: _FileJob, model: LIIF, device: torch.device, tile_rows: int | None,
                encoder_tile_rows: int | None, progress: bool | None,
                dtype: str | torch.dtype | None) -> None:
    (H, W), source, C = job.size, job.source, job.source.values.shape[0]
    with atomic_write(job.out_path) as file:
        bands = _bands(model, source, H, W, tile_rows, encoder_tile_rows, progress, device,
                       dtype)
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
            image = Image.fromarray(array[:, :, 0] if C == 1 else array)
            extra = {'icc_profile': source.icc_profile} if source.icc_profile else {}
            image.save(file, format=job.fmt, quality=job.quality, **extra)


def upscale_file(in_path: str | os.PathLike, out_path: str | os.PathLike,
                 size: Sequence[int] | None = None, scale: float | Sequence[float] | None = None,
                 model: nn.Module | None = None, *, device: torch.device | str | None = None,
                 quality: int = 95, tile_rows: int | None = None,
                 encoder_tile_rows: int | None = None, progress: bool | None = None,
                 dtype: str | torch.dtype | None = None, limits: bool = True) -> tuple[int, int]:
    """Upscale an image file into another, never leaving a partial output file.

    PNG outputs are streamed band by band (memory stays bounded for any size) and keep 16-bit
    grayscale inputs at 16 bits; other formats (JPEG, WebP, ...) are built in memory, at 8
    bits. The ICC profile is carried over. The result goes to a temporary file beside
    ``out_path`` that is renamed at the end, so a failure leaves nothing behind.

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
    model = _check_model(model)
    job = _plan(in_path, out_path, size, scale, quality, limits)
    model, device = _on_device(model, device)
    _write(job, model, device, tile_rows, encoder_tile_rows, progress, dtype)
    return job.size


# -- command line: liif upscale ----------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('paths', nargs='+', metavar='IN... OUT',
                        help='an input image and the output image (.png is streamed: any size, '
                             '16-bit kept; .jpg/.webp are built in memory); or input images '
                             'and/or folders of them and an output folder (created if missing; '
                             'each output keeps its input\'s name)')
    target = parser.add_mutually_exclusive_group()
    target.add_argument('--scale', metavar='S', help='factor for both sides (below 1 shrinks)')
    target.add_argument('--size', metavar='HxW', help='exact output size, height first, '
                                                      'e.g. 1080x1920')
    parser.add_argument('--weights', metavar='PATH',
                        help='a LIIF checkpoint (.pth) or the name of shipped weights (default: '
                             f'{DEFAULT_MODEL}, trained on stand-in photos)')
    parser.add_argument('--device', default=None,
                        help="where to decode, e.g. 'cpu', 'cuda' (default: cuda if available)")
    parser.add_argument('--dtype', choices=tuple(DTYPES), default='float32',
                        help='precision of the model (default float32; float16 only where the '
                             'device runs it)')
    parser.add_argument('--quality', type=int, default=95, help='JPEG/WebP quality (default 95)')
    parser.add_argument('--tile', type=int, default=None, metavar='ROWS',
                        help='output rows decoded at once (default: about 2^18 pixels)')
    parser.add_argument('--encoder-tile', type=int, default=None, metavar='ROWS',
                        help='input rows encoded at once (default: about 2^17 pixels)')
    parser.add_argument('--no-limits', action='store_true',
                        help='lift the limits on input pixels (2^27), output pixels (2^30) and '
                             'output sides (2^20)')
    parser.add_argument('--overwrite', action='store_true',
                        help='allow an output to replace its own input')
    parser.add_argument('--ext', metavar='EXT',
                        help="with an output folder: write every image as EXT, e.g. 'png' "
                             "(default: each input's own format)")


def _parse_scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f'--scale must be a number, got {text!r}') from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f'--scale must be a finite number above 0, got {text!r}')
    return value


def _parse_size(text: str) -> tuple[int, int]:
    parts = text.lower().split('x')
    # isascii: isdigit also accepts digits such as '²' that int() refuses.
    if len(parts) != 2 or not all(p.strip().isascii() and p.strip().isdigit() for p in parts) \
            or min(int(p) for p in parts) < 1:
        raise ValueError(f'--size must be HxW with positive integers (height first), got {text!r}')
    return int(parts[0]), int(parts[1])


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _batch(paths: list[str], ext: str | None,
           overwrite: bool) -> list[tuple[Path, Path]] | None:
    """(input, output) pairs when ``paths`` asks for a folder of outputs (several inputs, a
    folder among them, or an output that is a folder); None for one file to one file."""
    *inputs, out = (Path(p) for p in paths)
    if len(inputs) == 1 and not inputs[0].is_dir() and not out.is_dir() \
            and not paths[-1].endswith(os.sep):
        return None
    files = []
    for path in inputs:
        # A folder's files in sorted order; hidden ones (temporary files, .DS_Store) left out.
        files += sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith('.')) \
            if path.is_dir() else [path]
    if not files:
        raise ValueError(f"{', '.join(map(str, inputs))}: no images to upscale")
    suffix = None if ext is None else '.' + ext.lstrip('.')
    pairs = [(f, out / (f.name if suffix is None else f.stem + suffix)) for f in files]
    same = next((i for i, o in pairs if o.exists() and o.samefile(i)), None)
    if same is not None and not overwrite:
        raise ValueError(f'{same} would be overwritten by its own result; choose another output '
                         'folder or --ext, or pass --overwrite')
    names = [o.name for _, o in pairs]
    clash = next((n for n in names if names.count(n) > 1), None)
    if clash is not None:
        raise ValueError(f'two inputs would both be written to {out / clash}; give them '
                         'different names')
    return pairs


def _run_batch(pairs: list[tuple[Path, Path]], model: LIIF, device: torch.device,
               size: tuple[int, int] | None, scale: float | None,
               args: argparse.Namespace) -> int:
    """Upscale each pair, skipping (with one line each) the inputs that cannot be read or
    written; exit status 1 if any was skipped, after writing the others."""
    pairs[0][1].parent.mkdir(parents=True, exist_ok=True)
    skipped = 0
    with tqdm(pairs, unit='image', desc='upscale', disable=not args.progress) as bar:
        for in_path, out_path in bar:
            try:
                job = _plan(in_path, out_path, size, scale, args.quality, not args.no_limits)
                _write(job, model, device, args.tile, args.encoder_tile, progress=False,
                       dtype=args.dtype)
                if job.note():
                    bar.write(f'liif upscale: note: {in_path}: {job.note()}', file=sys.stderr)
            except (ValueError, OSError) as e:
                skipped += 1
                reason = str(e).removeprefix(f'{in_path}: ')  # the path is said once
                bar.write(f'liif upscale: skipped {in_path}: {reason}', file=sys.stderr)
    written = len(pairs) - skipped
    print(f'{written} of {len(pairs)} images upscaled into {pairs[0][1].parent}'
          + (f', {skipped} skipped' if skipped else ''))
    return 1 if skipped else 0


def run(args: argparse.Namespace) -> int:
    if len(args.paths) < 2:
        raise ValueError('give an input and an output: liif upscale IN OUT, or IN... FOLDER')
    if args.scale is None and args.size is None:
        raise ValueError('give the output size with --scale S or --size HxW')
    scale = None if args.scale is None else _parse_scale(args.scale)
    size = None if args.size is None else _parse_size(args.size)
    device = resolve_device(args.device)
    precision(args.dtype, device)  # an unsupported dtype fails before any file is read
    pairs = _batch(args.paths, args.ext, args.overwrite)
    job = None
    if pairs is None:
        if args.ext is not None:
            raise ValueError('--ext applies to an output folder; the output file names its '
                             'format by its extension')
        in_path, out_path = map(Path, args.paths)
        if out_path.exists() and out_path.samefile(in_path) and not args.overwrite:
            raise ValueError(f'{in_path} would be overwritten by its own result; choose another '
                             'output, or pass --overwrite')
        job = _plan(in_path, out_path, size, scale, args.quality, not args.no_limits)
    model = _check_model(resolve_model(args.weights, map_location=device))
    # A plain `kill` would end the process without unwinding, leaving the temporary file;
    # as an exception it goes through _write's cleanup. (SIGKILL cannot be caught.)
    signal.signal(signal.SIGTERM, _raise_exit)
    if job is None:
        return _run_batch(pairs, model, device, size, scale, args)
    _write(job, model, device, args.tile, args.encoder_tile, progress=args.progress,
           dtype=args.dtype)
    print(f'{job.out_path}: {job.size[0]}x{job.size[1]}')
    if job.note():
        print(f'liif upscale: note: {in_path}: {job.note()}', file=sys.stderr)
    return 0
