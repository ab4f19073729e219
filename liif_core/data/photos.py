"""Stand-in photo sets: real photographs from Debian and pip packages, prepared DIV2K-style.

DIV2K needs a 3.5 GB download from one host; these sets need only a package mirror (or nothing).
Every source file is pinned by sha256 in its manifest and prepared the same way:

1. decoded to 8-bit RGB (``read_rgb``: EXIF orientation applied, grayscale expanded);
2. downscaled with Lanczos so the long side is at most ``max_side`` (2040 px, DIV2K's width);
3. cropped from the top left to a multiple of ``multiple`` (12), so that every scale in
   2, 3, 4, 6, 12 divides it, as DIV2K's sizes do;
4. written as PNG, with LR images for ``lr_scales`` made by ``resize_fn`` (PIL bicubic, the
   official on-the-fly downsampler) next to them, named ``<stem>x<s>.png`` like DIV2K's.

Numbers measured on these images are stand-in results: never call them DIV2K or Set5 numbers.
"""
from __future__ import annotations

import glob
import hashlib
import importlib.util
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import warnings
from typing import Any, Iterable

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..atomic import atomic_write
from ..resize import resize_fn
from .download import FetchError, download, file_digest
from .folders import read_rgb, to_tensor

PIP_NAMES = {'skimage': 'scikit-image'}  # import name -> distribution name, for error messages


def prepare_photo(rgb: np.ndarray, max_side: int, multiple: int) -> np.ndarray:
    """Lanczos-downscale (H, W, 3) uint8 to a long side <= max_side, crop to a multiple."""
    H, W = rgb.shape[:2]
    if max(H, W) > max_side:
        ratio = max_side / max(H, W)
        rgb = np.array(Image.fromarray(rgb).resize((round(W * ratio), round(H * ratio)),
                                                   Image.LANCZOS))
        H, W = rgb.shape[:2]
    return rgb[:H - H % multiple, :W - W % multiple]


def save_png(rgb: np.ndarray, path: str) -> None:
    """Write (H, W, 3) uint8 as PNG atomically: a hidden temporary file, which image folders
    never list and the next write into the folder deletes if its writer was killed."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_write(path) as f:
        Image.fromarray(rgb).save(f, format='PNG')


def write_photo(data: bytes, name: str, hr_dir: str, lr_dir: str | None,
                convert: dict[str, Any]) -> None:
    """Prepare one source photo: ``hr_dir/name`` and, with ``lr_dir``, its LR images.

    ``lr_dir`` is a pattern with ``{s}`` for the scale, e.g. ``.../valid_LR_bicubic/X{s}``.
    """
    rgb = prepare_photo(read_rgb(io.BytesIO(data)), convert['max_side'], convert['multiple'])
    save_png(rgb, os.path.join(hr_dir, name))
    if lr_dir is None:
        return
    hr = to_tensor(rgb)  # (3, H, W)
    stem = os.path.splitext(name)[0]
    for s in convert['lr_scales']:
        lr = resize_fn(hr, (hr.shape[1] // s, hr.shape[2] // s))  # (3, H/s, W/s), k/255
        lr_rgb = (lr * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()  # (H/s, W/s, 3)
        save_png(lr_rgb, os.path.join(lr_dir.format(s=s), f'{stem}x{s}.png'))


def outputs_exist(name: str, hr_dir: str, lr_dir: str | None, scales: Iterable[int]) -> bool:
    stem = os.path.splitext(name)[0]
    paths = [os.path.join(hr_dir, name)]
    if lr_dir is not None:
        paths += [os.path.join(lr_dir.format(s=s), f'{stem}x{s}.png') for s in scales]
    return all(os.path.exists(p) for p in paths)


def check_sha256(data: bytes, expected: str, source: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise FetchError(f'{source}: sha256 {actual} != pinned {expected}')


# ----------------------------------------------------------------------------------------------
# Debian wallpaper packages (the stand-in training and validation sets)

def apt_download(package: str, version: str, folder: str) -> str | None:
    """``apt-get download package=version`` into ``folder``; the .deb path, or None if apt
    is missing or fails (then the caller downloads the same pinned .deb from the mirror)."""
    if shutil.which('apt-get') is None:
        return None
    result = subprocess.run(['apt-get', 'download', f'{package}={version}'], cwd=folder,
                            capture_output=True, text=True)
    debs = glob.glob(os.path.join(folder, f'{package}_*.deb'))
    if result.returncode != 0 or not debs:
        warnings.warn(f'apt-get download {package}={version} failed '
                      f'({result.stderr.strip()[-200:]}); downloading from the mirror instead',
                      stacklevel=2)
        return None
    return debs[0]


def fetch_deb(package: dict[str, Any], downloads: str, progress: bool) -> str:
    """The pinned .deb of ``package`` (apt-get download, or its mirror URL), sha256-checked."""
    dest = os.path.join(downloads, os.path.basename(package['url']))
    if os.path.exists(dest) and file_digest(dest, 'sha256') == package['sha256']:
        return dest
    os.makedirs(downloads, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        deb = apt_download(package['package'], package['version'], tmp)
        if deb is not None:
            if file_digest(deb, 'sha256') != package['sha256']:
                raise FetchError(f"{package['package']} {package['version']} from apt: sha256 "
                                 f"does not match the pinned {package['sha256']}")
            os.replace(deb, dest)
            return dest
    return download(package['url'], dest, package['size'], sha256=package['sha256'],
                    progress=progress)


def deb_members(deb: str, wanted: set[str]) -> dict[str, bytes]:
    """Read files out of a .deb's data archive without installing it (as ``dpkg -x`` would).

    A .deb is an ``ar`` archive whose ``data.tar.*`` member holds the file tree.

    Returns:
        {path inside the package (no leading './'): file bytes} for the paths in ``wanted``.
    """
    with open(deb, 'rb') as f:
        if f.read(8) != b'!<arch>\n':
            raise FetchError(f'{deb}: not a Debian package')
        while len(header := f.read(60)) == 60:
            member, size = header[:16].decode().strip().rstrip('/'), int(header[48:58])
            if member.startswith('data.tar'):
                try:
                    with tarfile.open(fileobj=io.BytesIO(f.read(size))) as tar:
                        found = {}
                        for info in tar:
                            path = info.name[2:] if info.name.startswith('./') else info.name
                            if path in wanted and info.isfile():
                                found[path] = tar.extractfile(info).read()
                except tarfile.TarError as e:
                    raise FetchError(f'{deb}: cannot read {member} ({e})') from e
                missing = wanted - set(found)
                if missing:
                    raise FetchError(f'{deb}: missing {sorted(missing)}')
                return found
            f.seek(size + size % 2, os.SEEK_CUR)  # ar members are 2-byte aligned
    raise FetchError(f'{deb}: no data.tar member')


def fetch_debian_photos(manifest: dict[str, Any], root: str, progress: bool = True) -> str:
    """Build ``<root>/<target>/{train,valid,valid_LR_bicubic/X<s>}`` from Debian packages.

    Photos already prepared are skipped; each .deb is deleted once its photos are written.
    """
    target = os.path.join(root, manifest['target'])
    convert = manifest['convert']
    for package in manifest['packages']:
        images = [im for im in manifest['images'] if im['package'] == package['package']]
        todo = [im for im in images if not outputs_exist(im['name'], *_dirs(target, im['split']),
                                                         convert['lr_scales'])]
        if not todo:
            continue
        deb = fetch_deb(package, os.path.join(root, 'downloads'), progress)
        members = deb_members(deb, {im['member'] for im in todo})
        for im in tqdm(todo, desc=package['package'], disable=not progress, leave=False):
            data = members[im['member']]
            check_sha256(data, im['sha256'], f"{package['package']}:{im['member']}")
            write_photo(data, im['name'], *_dirs(target, im['split']), convert)
        os.remove(deb)  # every photo it holds is written; the package is not needed again
    link_parts(target, manifest.get('valid_parts', {}))
    return target


def link_parts(target: str, parts: dict[str, Any]) -> None:
    """Make each part of the validation photos (``valid_tune``: ``[names]``) a folder of hard
    links (copies where links are not possible) to those photos in ``valid/``, so that
    ``liif test --hr`` and the configs read a part as any folder."""
    for part, names in parts.items():
        if part.startswith('_'):  # a comment
            continue
        folder = os.path.join(target, part)
        os.makedirs(folder, exist_ok=True)
        for name in names:
            src, dst = os.path.join(target, 'valid', name), os.path.join(folder, name)
            if os.path.exists(dst):
                continue
            try:
                os.link(src, dst)
            except OSError:  # another file system, or links not allowed there
                shutil.copy2(src, dst)


def _dirs(target: str, split: str) -> tuple[str, str | None]:
    """(HR folder, LR folder pattern or None) of a split: LR images only for validation."""
    lr = os.path.join(target, f'{split}_LR_bicubic', 'X{s}') if split == 'valid' else None
    return os.path.join(target, split), lr


# ----------------------------------------------------------------------------------------------
# Photos shipped inside pip packages (the benchmark-style sample set)

def fetch_pip_photos(manifest: dict[str, Any], root: str, progress: bool = True) -> str:
    """Build ``<root>/<target>/{HR,LR_bicubic/X<s>}`` from images inside installed packages."""
    target = os.path.join(root, manifest['target'])
    hr_dir, lr_dir = os.path.join(target, 'HR'), os.path.join(target, 'LR_bicubic', 'X{s}')
    convert = manifest['convert']
    for im in tqdm(manifest['images'], desc=manifest['name'], disable=not progress, leave=False):
        if outputs_exist(im['name'], hr_dir, lr_dir, convert['lr_scales']):
            continue
        spec = importlib.util.find_spec(im['module'])  # locates the package without importing it
        if spec is None or not spec.submodule_search_locations:
            raise FetchError(f"the {manifest['name']} set needs the Python package "
                             f"{im['module']!r}: pip install "
                             f"{PIP_NAMES.get(im['module'], im['module'])}")
        path = os.path.join(list(spec.submodule_search_locations)[0], im['resource'])
        with open(path, 'rb') as f:
            data = f.read()
        check_sha256(data, im['sha256'], path)
        write_photo(data, im['name'], hr_dir, lr_dir, convert)
    return target
