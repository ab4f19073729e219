"""Datasets and the official checkpoints by name: ``liif data fetch NAME [--root DIR]``.

Every dataset is described by a manifest shipped with the package (``manifests/<name>.json``):
where its files come from, their checksums and how they unpack. Files land under the data root
(``data/`` by default) in the layout the official configs expect below ``./load/``, so
``make_data(section, data_root='data')`` finds them:

    data/div2k/DIV2K_train_HR/  data/div2k/DIV2K_valid_LR_bicubic/X2/  (div2k)
    data/benchmark/Set5/HR/     data/benchmark/Set5/LR_bicubic/X2/     (benchmark)
    data/standin/train/  data/standin/valid/  data/standin/valid_LR_bicubic/X2/  (standin)
    data/samples/HR/     data/samples/LR_bicubic/X2/                   (samples)
    data/weights/edsr-baseline-liif.pth   data/weights/rdn-liif.pth   (the official checkpoints,
                             ``--weights edsr_baseline_liif.div2k``, ``--weights rdn_liif.div2k``)

Downloads go to ``<file>.part`` and are renamed only once complete and verified, so a killed
download never looks finished; running the command again resumes the ``.part`` with an HTTP
Range request. A file is checked against its pinned size, MD5 and sha256 where the manifest has
them. Where no checksum is published, the sha256 of the first download is recorded in
``<root>/fetch-lock.json`` with a warning, and later downloads must match it.
"""
from __future__ import annotations

import json
import os
import tarfile
import warnings
import zipfile
from importlib import resources
from typing import Any

from .download import FetchError, download, file_digest
from .photos import fetch_debian_photos, fetch_pip_photos
from .specs import DEFAULT_DATA_ROOT

LOCK_FILE = 'fetch-lock.json'


def manifest_names() -> list[str]:
    """The names ``liif data fetch`` knows (one per packaged manifest)."""
    folder = resources.files('liif_core.data') / 'manifests'
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith('.json'))


def load_manifest(name: str) -> dict[str, Any]:
    """The packaged manifest ``name`` (see ``manifest_names``), or a path to a JSON manifest."""
    if name.endswith('.json') and os.path.isfile(name):
        with open(name) as f:
            return json.load(f)
    if name not in manifest_names():
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(manifest_names())}")
    text = (resources.files('liif_core.data') / 'manifests' / f'{name}.json').read_text()
    return json.loads(text)


def read_lock(root: str) -> dict[str, str]:
    path = os.path.join(root, LOCK_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def write_lock(root: str, lock: dict[str, str]) -> None:
    path = os.path.join(root, LOCK_FILE)
    with open(path + '.tmp', 'w') as f:
        json.dump(lock, f, indent=1, sort_keys=True)
    os.replace(path + '.tmp', path)


def fetch_file(entry: dict[str, Any], root: str, progress: bool = True,
               folder: str = 'downloads') -> str:
    """Download one manifest entry to ``<root>/<folder>/``, pinning an unknown sha256.

    Args:
        entry: {'url', 'filename', 'size', 'md5', 'sha256'} (checksums may be null).
        root: the data root; its lock file records the sha256 of files that have none.
        folder: where under the root the file stays.
    """
    dest = os.path.join(root, folder, entry['filename'])
    lock = read_lock(root)
    sha256 = entry.get('sha256') or lock.get(entry['filename'])
    if not os.path.exists(dest):
        download(entry['url'], dest, entry.get('size'), entry.get('md5'), sha256,
                 progress=progress)
    if not entry.get('sha256') and entry['filename'] not in lock:
        lock[entry['filename']] = file_digest(dest, 'sha256')
        write_lock(root, lock)
        warnings.warn(f"{entry['filename']}: no published sha256; recorded "
                      f"{lock[entry['filename']]} in {os.path.join(root, LOCK_FILE)}",
                      stacklevel=2)
    return dest


def extract(archive: str, dest: str) -> None:
    """Unpack a .zip or .tar(.gz/.xz) into ``dest``, refusing members that leave it."""
    dest_real = os.path.realpath(dest)

    def check(name: str) -> None:
        target = os.path.realpath(os.path.join(dest, name))
        if os.path.commonpath([dest_real, target]) != dest_real:
            raise FetchError(f'{archive}: member {name!r} would be written outside {dest}')

    os.makedirs(dest, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                for name in z.namelist():
                    check(name)
                z.extractall(dest)
        else:
            with tarfile.open(archive) as t:
                for member in t.getmembers():
                    check(member.name)
                # The 'data' filter (Python >= 3.11.4) also refuses links and device files.
                kwargs = {'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}
                t.extractall(dest, **kwargs)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
        raise FetchError(f'{archive}: cannot unpack ({e}); delete it and fetch again') from e


def fetch_archives(manifest: dict[str, Any], root: str, progress: bool = True) -> str:
    """Download and unpack every archive of an 'archives' manifest; return the target folder.

    An archive whose ``provides`` folder already exists is skipped; unpacked archives are
    deleted to save space (their sha256 stays in the lock file).
    """
    target = os.path.join(root, manifest['target'])
    for entry in manifest['files']:
        if os.path.isdir(os.path.join(target, entry['provides'])):
            continue
        archive = fetch_file(entry, root, progress)
        extract(archive, target)
        os.remove(archive)
    return target


def fetch_checkpoint(manifest: dict[str, Any], root: str, progress: bool = True) -> str:
    """Download a 'checkpoint' manifest's file to ``<root>/<target>/``; return that folder."""
    for entry in manifest['files']:
        fetch_file(entry, root, progress, folder=manifest['target'])
    return os.path.join(root, manifest['target'])


def checkpoint_names() -> list[str]:
    """The official checkpoints ``liif data fetch`` knows (manifests of kind 'checkpoint')."""
    return [n for n in manifest_names() if load_manifest(n)['kind'] == 'checkpoint']


def checkpoint_path(name: str, root: str = DEFAULT_DATA_ROOT, fetch_as: str | None = None
                    ) -> str:
    """Where ``liif data fetch`` puts the official checkpoint of the manifest ``name``, after
    checking that it is there and still has the sha256 recorded when it was downloaded;
    ``fetch_as``: the name the hints tell the user to fetch it by (default ``name``)."""
    manifest = load_manifest(name)
    entry = manifest['files'][0]
    path = os.path.join(root, manifest['target'], entry['filename'])
    fetch_as = fetch_as or name
    if not os.path.isfile(path):
        raise FetchError(f'{path}: the official checkpoint {fetch_as!r} is not downloaded; run '
                         f'`liif data fetch {fetch_as}`' + ('' if root == DEFAULT_DATA_ROOT
                                                           else f' --root {root}'))
    expected = entry.get('sha256') or read_lock(root).get(entry['filename'])
    if expected is not None and file_digest(path, 'sha256') != expected:
        raise FetchError(f'{path}: sha256 differs from the one recorded at download '
                         f'({expected}); delete it and run '
                         f'`liif data fetch {fetch_as}` again')
    return path


def fetch(name: str, root: str = DEFAULT_DATA_ROOT, progress: bool = True) -> str:
    """Fetch a dataset or an official checkpoint by manifest name (see ``manifest_names``);
    return its folder."""
    manifest = load_manifest(name)
    os.makedirs(root, exist_ok=True)
    kinds = {'archives': fetch_archives, 'debian': fetch_debian_photos, 'pip': fetch_pip_photos,
             'checkpoint': fetch_checkpoint}
    if manifest.get('kind') not in kinds:
        raise ValueError(f"manifest {name!r} has unknown kind {manifest.get('kind')!r}")
    return kinds[manifest['kind']](manifest, root, progress=progress)
