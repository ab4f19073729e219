"""Image folders: a sorted folder of pictures as a dataset of (3, H, W) tensors in [0, 1].

``image-folder`` and ``paired-image-folders`` follow the official datasets: files in
``sorted(os.listdir(root))`` order (or a JSON split), ``first_k`` truncation,
``repeat`` and three cache modes. Every image, whatever its file format, comes out as float32 RGB
holding k / 255 values, which is what ``resize_fn`` needs to stay lossless.

Differences from the official code, all on inputs the official datasets never contain:
- EXIF orientation is applied, so a rotated camera JPEG comes out upright.
- 16-bit images (grayscale ``I;16``, or PNGs that Pillow opens as 32-bit ``I``) are reduced to
  8 bits by keeping the high byte (``v >> 8``), the same rule Pillow applies to 16-bit RGB PNGs;
  the official ``convert('RGB')`` clips such values at 255 and returns a nearly white image.
- Alpha (RGBA, LA, palette with transparency) is dropped, as ``convert('RGB')`` does; it is not
  composited onto a background.
- Hidden files (names starting with '.'), temporary files (``.tmp``, ``.part``) and sub-folders
  are not listed; a folder whose archive is still being unpacked is refused.
- Every file is decoded as an image, ``.npy`` files included (only the ``bin`` cache's own
  arrays are read with ``np.load``).
- The ``bin`` cache stores ``.npy`` arrays of the decoded RGB image (read back with
  ``allow_pickle=False``) instead of pickles of ``imageio.imread``; it therefore forces RGB like
  the other modes, where the official ``bin`` path kept grayscale images single-channel.
- A file that cannot be decoded raises ``CorruptImageError`` naming its path. With
  ``skip_corrupt=True`` it is replaced by the next readable file in list order instead, with one
  ``warnings.warn`` per bad file, and its path is recorded in ``dataset.skipped`` (in DataLoader
  worker processes each worker keeps its own list; the warnings reach the main log).
"""
from __future__ import annotations

import functools
import json
import os
import warnings
from typing import BinaryIO, Callable, TypeVar

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset
from tqdm import tqdm

from ..atomic import atomic_write
from .shared_cache import has_room, shared_images

T = TypeVar('T')

CACHE_MODES = ('none', 'in_memory', 'bin')


class CorruptImageError(OSError):
    """An image file that exists but cannot be decoded."""


def read_rgb(path: str | BinaryIO) -> np.ndarray:
    """Decode an image file to 8-bit RGB.

    Args:
        path: a file (or an open binary file object) in any format Pillow reads: grayscale,
            RGBA, palette, 16-bit and EXIF-rotated images included.

    Returns:
        uint8 array (H, W, 3).

    Raises:
        CorruptImageError: the file cannot be decoded (truncated, not an image, ...); the message
            names the path.
    """
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)  # upright, as a photo viewer shows it
            if img.mode in ('I', 'I;16', 'I;16L', 'I;16B', 'I;16N'):
                # 16-bit samples: keep the high byte, as Pillow does for 16-bit RGB PNGs.
                gray = (np.clip(np.asarray(img, dtype=np.int64), 0, 65535) >> 8).astype(np.uint8)
                return np.repeat(gray[..., None], 3, axis=2)
            return np.array(img.convert('RGB'))  # a writable copy; also forces the full decode
    except (UnidentifiedImageError, SyntaxError, ValueError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise CorruptImageError(f'{path}: cannot decode image ({type(e).__name__}: {e})') from e


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) holding k / 255, as torchvision's ToTensor."""
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div(255)


def first_readable(idx: int, n: int, load: Callable[[int], T], skip_corrupt: bool,
                   skipped: list[str]) -> T:
    """``load(idx)``, or with ``skip_corrupt`` the first index after it (cyclically) that loads.

    Corrupt paths found on the way are warned about once and appended to ``skipped``.
    """
    for step in range(n):
        try:
            return load((idx + step) % n)
        except CorruptImageError as e:
            if not skip_corrupt:
                raise
            if str(e) not in skipped:
                skipped.append(str(e))
                warnings.warn(f'skipping corrupt image: {e}', stacklevel=2)
    raise CorruptImageError(f'no readable image among the {n} files ({skipped[0]} ...)')


def _read_or_none(path: str, skip_corrupt: bool) -> np.ndarray | None:
    """``read_rgb(path)``; with ``skip_corrupt``, None for an undecodable file (reported when
    first accessed)."""
    try:
        return read_rgb(path)
    except CorruptImageError:
        if not skip_corrupt:
            raise
        return None


def incomplete_marker(folder: str) -> str:
    """The file that marks ``folder`` as being unpacked (``.<name>.incomplete`` beside it):
    present from the first member written to the last, so an interrupted unpack shows."""
    folder = os.path.normpath(folder)
    return os.path.join(os.path.dirname(folder), f'.{os.path.basename(folder)}.incomplete')


def _check_complete(root_path: str) -> None:
    """Refuse a folder inside an archive whose unpacking was interrupted."""
    folder = os.path.abspath(root_path)
    while True:
        if os.path.exists(incomplete_marker(folder)):
            raise ValueError(f'image folder {root_path!r} is incomplete: unpacking {folder} '
                             'was interrupted; run `liif data fetch` again to finish it')
        parent = os.path.dirname(folder)
        if parent == folder:
            return
        folder = parent


def image_names(root_path: str) -> list[str]:
    """The names of a folder's images, sorted: not hidden, not sub-folders, and not a writer's
    temporary files (``.part``, ``.tmp``: a download or write cut short); a folder whose
    archive is still being unpacked is refused."""
    _check_complete(root_path)
    return sorted(name for name in os.listdir(root_path)
                  if not name.startswith('.') and not name.endswith(('.tmp', '.part'))
                  and os.path.isfile(os.path.join(root_path, name)))


class ImageFolder(Dataset):
    """The official ``image-folder`` dataset.

    Args:
        root_path: the folder.
        split_file: optional JSON file mapping split names to file-name lists (CelebA-HQ).
        split_key: the split to read from ``split_file``.
        first_k: keep only the first k files.
        repeat: the dataset lists its files this many times (length ``n * repeat``).
        cache: 'none' (decode on every access), 'in_memory' (decode all once, here, and hold
            them as 8-bit RGB; the processes of a torchrun job on one machine share one copy
            in /dev/shm when it has room) or 'bin' (decode once to ``.npy`` files in the
            sibling folder ``_bin_<basename>``, then read those).
        skip_corrupt: replace undecodable files by the next readable one, with a warning.

    Items are float32 (3, H, W) in [0, 1].
    """

    def __init__(self, root_path: str, split_file: str | None = None, split_key: str | None = None,
                 first_k: int | None = None, repeat: int = 1, cache: str = 'none',
                 skip_corrupt: bool = False) -> None:
        if cache not in CACHE_MODES:
            raise ValueError(f'image-folder cache must be one of {CACHE_MODES}, got {cache!r}')
        if not os.path.isdir(root_path):
            raise FileNotFoundError(f'image folder {root_path!r} does not exist '
                                    f'(fetch it with `liif data fetch`, see data/README.md)')
        self.root_path = root_path
        self.repeat = repeat
        self.cache = cache
        self.skip_corrupt = skip_corrupt
        self.skipped: list[str] = []

        if split_file is None:
            names = image_names(root_path)
        else:
            _check_complete(root_path)
            with open(split_file) as f:
                names = json.load(f)[split_key]
        if first_k is not None:
            names = names[:first_k]
        if not names:
            raise ValueError(f'image folder {root_path!r} holds no images')
        self.paths = [os.path.join(root_path, name) for name in names]

        # Held as decoded 8-bit RGB, a quarter of float32's size (DIV2K's 800 training images:
        # 6.6 GB instead of 27), and converted per item.
        self.images: list[np.ndarray | None] = []
        if cache == 'in_memory':
            local_ranks = int(os.environ.get('LOCAL_WORLD_SIZE', 1))  # set by torchrun
            if local_ranks > 1 and has_room(self.paths):
                self.images = shared_images(
                    self.paths, functools.partial(_read_or_none, skip_corrupt=skip_corrupt))
            else:
                self.images = [_read_or_none(path, skip_corrupt) for path in
                               tqdm(self.paths, desc=f'loading {os.path.basename(root_path)}',
                                    leave=False, disable=None)]
        self.bin_paths: set[str] = set()  # the bin cache's arrays
        if cache == 'bin':
            self.paths = [self._write_bin(path) for path in
                          tqdm(self.paths, desc=f'caching {os.path.basename(root_path)}',
                               leave=False, disable=None)]

    def _write_bin(self, path: str) -> str:
        """Decode ``path`` once into ``_bin_<basename>/<stem>.npy``; return the .npy path.

        An undecodable file keeps its original path, so that reading it reports the error.
        """
        root = os.path.normpath(self.root_path)
        bin_root = os.path.join(os.path.dirname(root), '_bin_' + os.path.basename(root))
        os.makedirs(bin_root, exist_ok=True)
        # As the official cache: named by the part of the file name before its first dot.
        bin_path = os.path.join(bin_root, os.path.basename(path).split('.')[0] + '.npy')
        if not os.path.exists(bin_path):
            try:
                rgb = read_rgb(path)
            except CorruptImageError:
                if not self.skip_corrupt:
                    raise
                return path
            with atomic_write(bin_path) as f:  # a killed run never leaves half an array
                np.save(f, rgb, allow_pickle=False)
        self.bin_paths.add(bin_path)
        return bin_path

    def _load(self, i: int) -> torch.Tensor:
        """The i-th file (0 <= i < number of files) as (3, H, W)."""
        if self.cache == 'in_memory':
            img = self.images[i]
            if img is None:
                raise CorruptImageError(f'{self.paths[i]}: cannot decode image')
            return to_tensor(img)
        path = self.paths[i]
        if path in self.bin_paths:
            return to_tensor(np.load(path, allow_pickle=False))
        return to_tensor(read_rgb(path))

    def __len__(self) -> int:
        return len(self.paths) * self.repeat

    def __getitem__(self, idx: int) -> torch.Tensor:
        n = len(self.paths)
        return first_readable(idx % n, n, self._load, self.skip_corrupt, self.skipped)


class PairedImageFolders(Dataset):
    """The official ``paired-image-folders``: item i is (folder 1's i-th, folder 2's i-th).

    Folder 1 is the LR, folder 2 the HR; files pair by sorted name order, so both folders must
    hold the same number of files. Keyword arguments go to both ``ImageFolder``s. With
    ``skip_corrupt`` a pair with an undecodable side is replaced by the next readable pair.
    """

    def __init__(self, root_path_1: str, root_path_2: str, **kwargs) -> None:
        self.dataset_1 = ImageFolder(root_path_1, **kwargs)
        self.dataset_2 = ImageFolder(root_path_2, **kwargs)
        n1, n2 = len(self.dataset_1.paths), len(self.dataset_2.paths)
        if n1 != n2:
            raise ValueError(f'paired folders differ in size: {root_path_1!r} has {n1} files, '
                             f'{root_path_2!r} has {n2}')
        self.skip_corrupt = kwargs.get('skip_corrupt', False)
        self.skipped: list[str] = []

    def _load(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dataset_1._load(i), self.dataset_2._load(i)

    def __len__(self) -> int:
        return len(self.dataset_1)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.dataset_1.paths)
        return first_readable(idx % n, n, self._load, self.skip_corrupt, self.skipped)
