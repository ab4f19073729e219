"""Banded decoding: a LIIF output of any size in bounded memory.

An output of 32768 x 32768 pixels would need its whole feature map, a coordinate and a cell for
each of its billion queries, and the result, all at once: tens of GiB. Decoded here band by
band, the memory a call takes depends on the band's size, not on the output's:

* the encoder runs on tiles of input rows, each with a halo of ``encoder.receptive_radius`` rows,
  so every kept row saw exactly the context it sees in one untiled pass (the encoder pads with
  zeros only at the image's true borders);
* the decoder runs on bands of output rows; each band needs only the latent rows its queries
  (and their local-ensemble neighbours and 3x3 unfolding) can reach, and only those are encoded,
  projected and kept. Coordinates are re-expressed in the frame of that crop of the feature map.

Tiled and untiled decoding agree to within 1e-5 (float32 rounding of the crop coordinates: about
1e-6 on smooth images, up to 6e-6 on noise with strongly varying decoder weights).

``upscale`` and ``upscale_file`` decode through ``output_bands``; ``liif upscale`` adds
``with_estimate`` for large outputs. Book: chapter 7, "Playground".
"""
from __future__ import annotations

import math
import sys
import time
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from .coords import make_cell, make_coord
from .imageio import Source
from .kernels import convolution_threads
from .liif import LIIF
from .render import (chunk_size, data_norm_of, decoder_fixed_bytes, denormalise, normalise,
                     precision, query_bytes)

# Output pixels decoded per band by default on a CPU: a band's coordinates, cells and
# predictions then take a few MiB, and its latent rows are many more than the 4 margin rows
# recomputed per band.
BAND_PIXELS = 2**18
# Latent pixels encoded per encoder tile by default (halo excluded): EDSR-baseline keeps a few
# 64-channel activations alive, about 32 MiB each at this size (more for inputs so wide that
# the tile's minimum height, twice the halo, exceeds it).
ENCODER_TILE_PIXELS = 2**17
# Grayscale is decoded as RGB and converted back with the ITU-R 601-2 luma weights (PIL's 'L').
LUMA = (0.299, 0.587, 0.114)
# Device bytes an output pixel of a band takes beside the decoder's own (``query_bytes``): its
# coordinate (2 float32), two float32 RGB copies while de-normalising, and the gray or alpha
# channel joined to it (4 float32).
BAND_PIXEL_BYTES = 8 + 24 + 16
# Latent rows a band of n output rows reads beyond its share n h / H (``_band_latent_rows``):
# the ensemble's and the unfolding's margins, two rows each side, and where its ends fall.
MARGIN_ROWS = 6
# Outputs from this many pixels up take minutes or more on a CPU (``with_estimate``).
LARGE_OUTPUT_PIXELS = 2**26


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


def latent_bytes(model: LIIF) -> int:
    """Device memory each latent pixel of a band takes, in bytes: an upper estimate at float32.

    A band keeps its feature rows (C floats, twice while a new tile is joined to them), their
    first-layer projection (D floats, ``project_codes``) and the code map of the fast path (6
    floats); a band wider than an encoder tile is encoded in one pass, counted as if the output
    of every convolution of the encoder were alive at once (EDSR-baseline keeps about 4 of its
    34, so this bounds it from well above).
    """
    C = model.encoder.out_dim
    D = model.imnet.linears[0].out_features
    encoder = sum(m.out_channels for m in model.encoder.modules() if isinstance(m, nn.Conv2d))
    return 4 * (2 * C + D + 6 + encoder)


def band_rows(model: LIIF, device: torch.device, h: int, w: int, H: int, W: int) -> int:
    """Output rows decoded per band by default, by ``render.chunk_size``.

    On a CPU: about ``BAND_PIXELS`` output pixels, fewer when shrinking, where a band of rows
    [r0, r1) reads about (r1 - r0) h / H latent rows, encoded and kept at once: at most
    ``BAND_PIXELS`` latent pixels is then the tighter bound. It never binds when neither side
    shrinks, where it is at least ``BAND_PIXELS // W`` rows. On CUDA: every row in one band when
    the band's queries (``query_bytes`` + ``BAND_PIXEL_BYTES`` per pixel) and latent rows
    (``latent_bytes`` per pixel) fit in memory, otherwise as many rows as fit.
    """
    cpu_rows = max(1, min(BAND_PIXELS // W, (BAND_PIXELS // w) * H // h))
    per_latent = w * latent_bytes(model)  # one latent row
    row_bytes = W * (query_bytes(model) + BAND_PIXEL_BYTES) + per_latent * h / H
    fixed = MARGIN_ROWS * per_latent + decoder_fixed_bytes(model, device)
    return chunk_size(device, H, row_bytes, cpu_rows, fixed_bytes=fixed)


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
    data_norm = data_norm_of(model)
    inp = normalise(rgb.unsqueeze(0), data_norm)  # (1, 3, h, w)
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
        # One output pixel is 2/H of the full frame, 2h / (H (b - a)) of the crop's: the crop
        # sees an output of H (b - a) / h rows.
        cell = make_cell(coord, (H * (b - a) / h, W))  # (1, n*W, 2)
        # Entered per band, not around the loop: the caller's code between bands stays float32.
        with precision(dtype, rgb.device):
            # The convolutions on the idle cores only: a busy core would stall every one.
            with convolution_threads():
                feat = features.rows(a, b)  # (1, C, b - a, w)
                proj = model.project_codes(feat)  # (b - a) * w rows
            pred = model.decode(feat, coord, cell, proj=proj)  # (1, n*W, 3)
        yield r0, denormalise(pred, data_norm).view(r1 - r0, W, 3)


def _alpha_band(alpha: Image.Image, r0: int, r1: int, H: int, W: int) -> np.ndarray:
    """Rows [r0, r1) of the alpha plane (mode 'F', values in [0, 1]) resized bicubically to
    (H, W): PIL's ``box`` selects the source region while the filter still reads past it, so
    the band equals the same rows of one full resize."""
    h = alpha.height
    band = alpha.resize((W, r1 - r0), Image.BICUBIC, box=(0, r0 * h / H, alpha.width, r1 * h / H))
    return np.clip(np.asarray(band), 0, 1)  # (n, W)


def output_bands(model: LIIF, source: Source, H: int, W: int, tile_rows: int | None,
                 encoder_tile_rows: int | None, progress: bool | None, device: torch.device,
                 dtype: str | torch.dtype | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """The output of ``source`` at (H, W), band by band.

    Args:
        model: a LIIF with a decoder, on ``device``.
        source: the input (``imageio.Source``): gray is decoded as RGB and converted back with
            ``LUMA``; alpha is resized bicubically (PIL) and re-attached.
        H, W: output size.
        tile_rows: output rows per band; None: ``band_rows``.
        encoder_tile_rows: latent rows per encoder tile; None: about ``ENCODER_TILE_PIXELS``
            latent pixels, and at least twice the halo.
        progress: show a tqdm bar; None: when stderr is a terminal.
        device: where to decode.
        dtype: the model's precision (``render.precision``).

    Yields:
        (r0, band): the band's first output row and its (n, W, C) float values in [0, 1].
    """
    values = source.values.to(device)  # (C, h, w)
    h, w = values.shape[1:]
    rgb = values[:1].expand(3, h, w) if source.gray else values[:3]  # (3, h, w)
    alpha = None
    if source.has_alpha:
        alpha = Image.fromarray(values[-1].cpu().numpy())  # mode 'F'
    if tile_rows is None:
        tile_rows = band_rows(model, device, h, w, H, W)
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


def with_estimate(bands: Iterator[tuple[int, torch.Tensor]], H: int, W: int, name: str,
                  say: Callable[[str], None]) -> Iterator[tuple[int, torch.Tensor]]:
    """``output_bands`` as they come; for an output of ``LARGE_OUTPUT_PIXELS`` or more, ``say``
    its size first and, after the first band, the time the rest will take at that band's rate
    (a progress bar shows it too, but only on a terminal)."""
    if H * W < LARGE_OUTPUT_PIXELS:
        yield from bands
        return
    say(f'{name}: a {H}x{W} output, {H * W / 1e6:,.0f} megapixels; Ctrl-C stops it '
        'and leaves no file')
    start = time.perf_counter()
    for i, (r0, band) in enumerate(bands):
        yield r0, band
        if i == 0 and band.shape[0] < H:
            rows = band.shape[0]
            left = (time.perf_counter() - start) * (H - rows) / rows
            say(f'{name}: about {_duration(left)} to go (at the rate of the first '
                f'{rows} of {H} rows)')


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f'{seconds:.0f} s'
    if seconds < 90 * 60:
        return f'{seconds / 60:.0f} min'
    return f'{seconds / 3600:.1f} h'
