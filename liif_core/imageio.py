"""Images in and out: PIL images, numpy arrays and tensors as [0, 1] float planes and back,
16 bits, alpha and ICC profiles kept, and the limits on what one job may read and write.

``upscale`` decodes a ``Source`` and turns the result back into the caller's kind of image;
``read_source`` reads an image file, 16-bit colour PNGs included (PIL reads those at 8 bits,
so ``png.read_png16`` decodes them). PNG outputs are written by ``png.PngStream``, other
formats by ``save_image``.
"""
from __future__ import annotations

import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps

from .png import read_png16

ImageLike = Union[Image.Image, np.ndarray, torch.Tensor]

# Largest side each output format can store: PNG sides are 31-bit, JPEG 16-bit, WebP 14-bit,
# and an ICO entry stores each side in one byte (0 meaning 256).
MAX_SIDE = {'PNG': 2**31 - 1, 'JPEG': 65535, 'WEBP': 16383, 'ICO': 256}
# PIL modes holding 16-bit grayscale (16-bit PNGs open as one of them).
GRAY16_MODES = ('I;16', 'I;16B', 'I;16L', 'I')


@dataclass
class Source:
    """An input image as the decoder needs it, and what the output must look like."""
    values: torch.Tensor  # (C, h, w) float32 in [0, 1]; C = 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
    bits: int  # 8 or 16: precision of the result
    icc_profile: bytes | None = None
    mode: str | None = None  # PIL mode of the result, for PIL inputs

    @property
    def gray(self) -> bool:
        return self.values.shape[0] <= 2

    @property
    def has_alpha(self) -> bool:
        return self.values.shape[0] in (2, 4)


def from_array(array: np.ndarray) -> Source:
    """(h, w) or (h, w, C) uint8/uint16 with C in 1..4 -> ``Source``."""
    if array.dtype not in (np.uint8, np.uint16):
        raise ValueError(f'arrays must be uint8 or uint16, got {array.dtype}')
    if array.ndim == 2:
        array = array[:, :, None]  # (h, w, 1)
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4) or 0 in array.shape:
        raise ValueError(f'arrays must be (H, W) or (H, W, C) with C in 1..4, got {array.shape}')
    bits = 8 * array.itemsize
    values = torch.from_numpy(array.astype(np.float32) / (2**bits - 1)).permute(2, 0, 1)
    return Source(values.contiguous(), bits)  # (C, h, w)


def from_pil(image: Image.Image) -> Source:
    """A PIL image, upright by its EXIF orientation, in a mode the decoder can take."""
    icc_profile = image.info.get('icc_profile')
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in GRAY16_MODES:
        # Mode 'I' is 32-bit; from a 16-bit PNG its values are 0..65535.
        array = np.clip(np.asarray(image, dtype=np.int64), 0, 65535).astype(np.uint16)
        return Source(from_array(array).values, 16, icc_profile, mode)
    if mode in ('P', 'PA'):
        # Palette images come back as RGB, or RGBA when a palette entry is transparent.
        transparent = mode == 'PA' or 'transparency' in image.info
        mode = 'RGBA' if transparent else 'RGB'
    elif mode not in ('L', 'LA', 'RGB', 'RGBA'):
        # Bilevel and premultiplied modes keep their channels; CMYK, YCbCr, LAB, HSV, F, ...
        # become RGB.
        mode = {'1': 'L', 'La': 'LA', 'RGBa': 'RGBA'}.get(mode, 'RGB')
    array = np.asarray(image.convert(mode))
    return Source(from_array(array).values, 8, _fitting_profile(icc_profile, mode), mode)


# ICC data colour spaces (bytes 16-20 of a profile's header) of the modes PIL converts from.
ICC_SPACES = (b'RGB ', b'GRAY', b'CMYK', b'CMY ', b'Lab ', b'XYZ ', b'YCbr', b'Luv ', b'HSV ',
              b'HLS ', b'Yxy ')


def _fitting_profile(icc_profile: bytes | None, mode: str) -> bytes | None:
    """The profile, unless its header names another colour space than the result's: a CMYK
    profile on the RGB result of a CMYK input would misdescribe it. Bytes that name none are
    kept as they came."""
    space = (icc_profile or b'')[16:20]
    if space in ICC_SPACES and space != (b'GRAY' if mode in ('L', 'LA') else b'RGB '):
        return None
    return icc_profile


def from_tensor(tensor: torch.Tensor) -> Source:
    if not tensor.is_floating_point() or tensor.dim() != 3 or tensor.shape[0] not in (1, 2, 3, 4):
        raise ValueError('tensors must be float (C, H, W) in [0, 1] with C in 1..4, got '
                         f'{tensor.dtype} {tuple(tensor.shape)}')
    if 0 in tensor.shape:
        raise ValueError(f'the image tensor is empty: {tuple(tensor.shape)}')
    if not torch.isfinite(tensor).all():
        raise ValueError('the image tensor holds NaN or infinite values')
    # Values within one 8-bit level of [0, 1] are rounding; beyond, the scale is wrong
    # (0..255 would otherwise come out white).
    low, high = tensor.min().item(), tensor.max().item()
    if low < -1 / 255 or high > 1 + 1 / 255:
        raise ValueError(f'image tensors hold values in [0, 1], got [{low:g}, {high:g}]'
                         + ('; divide by 255' if high > 2 else ''))
    # Tensors are returned as floats; bits only sets the precision of a file written from them.
    return Source(tensor.detach().float().clamp(0, 1), 16)


def to_source(image: ImageLike) -> Source:
    if isinstance(image, Image.Image):
        return from_pil(image)
    if isinstance(image, np.ndarray):
        return from_array(image)
    if isinstance(image, torch.Tensor):
        return from_tensor(image)
    raise TypeError(f'expected a PIL image, a numpy array or a tensor, got {type(image).__name__}')


def open_image(path: str | os.PathLike, limits: bool = False) -> Image.Image:
    """Open and fully read an image file (its first frame; ``info['frames']`` counts them all);
    any problem becomes a one-line ``ValueError``. ``limits``: refuse an image over
    ``MAX_INPUT_PIXELS`` from its header, before anything is decoded."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f'{path}: a folder, not an image file (to upscale every image in it, '
                         'give an output folder)')
    if path.exists() and not path.is_file():
        raise ValueError(f'{path}: not a regular file (a device, pipe or socket); give an '
                         'image file')
    if not path.is_file():
        raise ValueError(f'{path}: no such file')
    try:
        with warnings.catch_warnings():
            # PIL's own warning at 89 megapixels: the limit here is ours (limits).
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            if limits:
                check_input(image.height, image.width)
            image.load()  # reads every byte, so a truncated file fails here, before decoding
            # Counted while the file is open (animated formats seek to count); only the first
            # frame is loaded, and the caller says so.
            frames = getattr(image, 'n_frames', 1)
            if frames > 1:
                image.seek(0)  # counting moved to the last frame
                image.load()
            image.info['frames'] = frames
            return image
    except InputTooLarge as e:
        raise ValueError(f'{path}: {e}') from None
    except Exception as e:  # PIL raises OSError, SyntaxError, struct.error, zlib.error, ...
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f'{path}: not a readable image ({detail})') from None


def read_source(path: str | os.PathLike, limits: bool = False) -> tuple[Source, int]:
    """An image file as a ``Source`` (upright by its EXIF orientation), and the number of frames
    it holds (only the first is read). 16-bit colour PNGs, which PIL reads at 8 bits, are
    decoded here at 16; any problem becomes a one-line ``ValueError``. ``limits``: refuse an
    image over ``MAX_INPUT_PIXELS`` from its header, before anything is decoded."""
    image = open_image(path, limits)
    frames = image.info['frames']
    # PIL reads 16-bit RGB, RGBA and gray + alpha PNGs as 8-bit RGB or RGBA.
    if image.format == 'PNG' and image.mode in ('RGB', 'RGBA'):
        try:
            array = read_png16(Path(path).read_bytes())
        except (ValueError, zlib.error) as e:
            raise ValueError(f'{path}: not a readable image ({e})') from None
        if array is not None:
            mode = {2: 'LA', 3: 'RGB', 4: 'RGBA'}[array.shape[2]]
            icc_profile = _fitting_profile(image.info.get('icc_profile'), mode)
            return Source(from_array(_upright(array, image)).values, 16, icc_profile, mode), frames
    return from_pil(image), frames


def _upright(array: np.ndarray, image: Image.Image) -> np.ndarray:
    """``array`` (h, w, C), the pixels of ``image``, turned as ``ImageOps.exif_transpose`` turns
    ``image``: PIL has no 16-bit colour mode to turn them in, so it turns an image of their
    indices (mode 'I') and the pixels are gathered in that order."""
    if image.getexif().get(ExifTags.Base.Orientation, 1) == 1:
        return array
    h, w, C = array.shape
    index = Image.fromarray(np.arange(h * w, dtype=np.int32).reshape(h, w))  # mode 'I'
    index.info = dict(image.info)  # where exif_transpose reads the orientation
    order = np.asarray(ImageOps.exif_transpose(index))  # (h', w')
    return array.reshape(h * w, C)[order]  # (h', w', C)


def quantise(band: torch.Tensor, bits: int) -> np.ndarray:
    """[0, 1] floats -> unsigned integers of ``bits`` bits, rounding to nearest."""
    top = 2**bits - 1
    dtype = np.uint8 if bits == 8 else np.uint16
    return np.rint(band.cpu().numpy() * top).astype(dtype)


def memory_limit() -> int | None:
    """Half the machine's physical memory, the most an in-memory result may take."""
    try:
        return os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') // 2
    except (ValueError, OSError, AttributeError):
        return None


# Default limits on one job, which keep real work working (a 100-megapixel photo in; 512 ->
# 4096, DIV2K x30 out) and stop a typo from starting a run of days: inputs up to 2^27 pixels,
# outputs up to 2^30 (32768 x 32768, hours on a CPU) with sides up to 2^20, so that one
# output row, the smallest band, stays within a few hundred MiB. ``limits=False`` in the
# library and ``--no-limits`` on the command line lift them.
MAX_INPUT_PIXELS = 2**27
MAX_OUTPUT_PIXELS = 2**30
MAX_OUTPUT_SIDE = 2**20
LIFT = 'pass --no-limits (limits=False in Python) to lift it'


class InputTooLarge(ValueError):
    """An input over the pixel limit, known from its size alone."""


def check_input(h: int, w: int) -> None:
    if h * w > MAX_INPUT_PIXELS:
        raise InputTooLarge(f'the input is {h}x{w}, {h * w / 1e6:.0f} megapixels, over the '
                            f'limit of {MAX_INPUT_PIXELS / 1e6:.0f}; {LIFT}')


def check_limits(h: int, w: int, H: int, W: int) -> None:
    """Refuse an (h, w) -> (H, W) job over the default limits, saying how to lift them."""
    check_input(h, w)
    if H * W > MAX_OUTPUT_PIXELS:
        raise ValueError(f'a {H}x{W} output is {H * W / 1e6:.0f} megapixels, over the limit of '
                         f'{MAX_OUTPUT_PIXELS / 1e6:.0f}; {LIFT}')
    if max(H, W) > MAX_OUTPUT_SIDE:
        raise ValueError(f'a {H}x{W} output has a side over the limit of {MAX_OUTPUT_SIDE} '
                         f'pixels; {LIFT}')


def check_fits(H: int, W: int, channels: int, bytes_per_value: int) -> None:
    need, limit = H * W * channels * bytes_per_value, memory_limit()
    if limit is not None and need > limit:
        raise ValueError(f'a {H}x{W} result needs {need / 2**30:.1f} GiB, more than half of this '
                         "machine's memory; write it to a .png file with upscale_file, which "
                         'streams rows to disk')


def to_pil(array: np.ndarray, source: Source) -> Image.Image:
    """(H, W, C) integers -> a PIL image in the source's mode, ICC profile attached."""
    if source.bits == 16:
        plane = array[:, :, 0]
        # int32 planes become mode 'I', uint16 planes 'I;16'.
        image = Image.fromarray(plane.astype(np.int32) if source.mode == 'I' else plane)
    else:
        image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    if source.icc_profile:
        image.info['icc_profile'] = source.icc_profile
    return image


def save_image(file: BinaryIO, array: np.ndarray, fmt: str, quality: int,
               icc_profile: bytes | None = None) -> None:
    """(H, W, C) uint8 -> an image file in PIL's format ``fmt`` (PNGs are streamed by
    ``png.PngStream`` instead), the whole image at its own size."""
    image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    extra: dict = {'icc_profile': icc_profile} if icc_profile else {}
    if fmt == 'ICO':
        # By default PIL stores its standard icon sizes up to the image's, 64x64 for 96x96.
        extra['sizes'] = [image.size]
    image.save(file, format=fmt, quality=quality, **extra)


def output_format(path: Path) -> str:
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f'{path}: unknown output format {path.suffix!r}; use .png or .jpg')
    return fmt
