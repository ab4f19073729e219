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
them. Where no checksum is published, the first download must prove itself (a checkpoint
loads as one, an archive opens) before its sha256 is recorded in ``<root>/fetch-lock.json``
with a warning; later downloads must match it. Every file name a manifest gives stays inside
the data root, and an archive is marked incomplete (``.<folder>.incomplete`` beside the folder
it provides) until it is wholly unpacked, so that an interrupted unpack is redone, not used.
"""
from __future__ import annotations

import json
import os
import tarfile
import warnings
import zipfile
from importlib import resources
from typing import Any

from ..atomic import atomic_write
from .download import FetchError, download, file_digest
from .folders import incomplete_marker
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


# The entries of each manifest kind that list files: (key, fields every item must have).
MANIFEST_LISTS = {'archives': (('files', ('filename', 'url', 'provides')),),
                  'checkpoint': (('files', ('filename', 'url')),),
                  'debian': (('packages', ('package', 'url', 'sha256')),
                             ('images', ('name', 'package', 'member', 'split', 'sha256'))),
                  'pip': (('images', ('name', 'module', 'resource', 'sha256')),)}


def check_manifest(manifest: Any, name: str) -> None:
    """Refuse, in one line, a manifest that is not of a known kind with its lists of entries,
    or that names a file outside the data root (``../``, an absolute path)."""
    if not isinstance(manifest, dict) or manifest.get('kind') not in MANIFEST_LISTS:
        kind = manifest.get('kind') if isinstance(manifest, dict) else None
        raise ValueError(f'manifest {name!r} has unknown kind {kind!r}; known: '
                         f"{', '.join(MANIFEST_LISTS)}")
    if not isinstance(manifest.get('target'), str):
        raise ValueError(f"manifest {name!r} needs a 'target' folder under the data root")
    names = [manifest['target']]
    for key, fields in MANIFEST_LISTS[manifest['kind']]:
        entries = manifest.get(key)
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValueError(f'manifest {name!r}: {key!r} must be a list of entries')
        for entry in entries:
            missing = [f for f in fields if not isinstance(entry.get(f), str)]
            if missing:
                raise ValueError(f'manifest {name!r}: an entry of {key!r} lacks '
                                 f"{', '.join(missing)}: {entry}")
            names += [entry.get(f) for f in ('filename', 'provides', 'name') if f in fields]
    for path in names:
        parts = path.replace('\\', '/').split('/')
        if os.path.isabs(path) or '..' in parts:
            raise ValueError(f'manifest {name!r}: the file name {path!r} leaves the data root; '
                             'refused')


def read_lock(root: str) -> dict[str, str]:
    path = os.path.join(root, LOCK_FILE)
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            lock = json.load(f)
    except ValueError as e:
        lock = e
    if not isinstance(lock, dict) or not all(isinstance(v, str) for v in lock.values()):
        raise FetchError(f'{path}: not a lock file (a JSON object of file name: sha256); '
                         'delete it, and every file it pinned is pinned afresh by the next '
                         'fetch')
    return lock


def write_lock(root: str, lock: dict[str, str]) -> None:
    # A random temporary name, created exclusively: never a planted file or link.
    with atomic_write(os.path.join(root, LOCK_FILE)) as f:
        f.write(json.dumps(lock, indent=1, sort_keys=True).encode())


def check_kind(path: str, url: str, kind: str) -> None:
    """Refuse a first download that is not what it should be (a server's HTML error page
    served with 200 is not a checkpoint), deleting it, so that it is never pinned."""
    if kind == 'checkpoint':
        from ..checkpoint import load_model  # torch: only for checkpoints
        try:
            load_model(path)
            return
        except ValueError as e:
            problem = str(e)
    else:
        if zipfile.is_zipfile(path) or tarfile.is_tarfile(path):
            return
        problem = 'not a zip or tar archive'
    with open(path, 'rb') as f:
        head = f.read(64).lstrip().lower()
    if head.startswith((b'<!doctype html', b'<html', b'<')):
        problem = 'it is an HTML page, likely an error or sign-in page'
    os.remove(path)
    raise FetchError(f'{url}: the download is not a {kind} ({problem}); it was deleted and '
                     'nothing was pinned: check the URL, or run again later')


def fetch_file(entry: dict[str, Any], root: str, progress: bool = True,
               folder: str = 'downloads', kind: str = 'archive') -> str:
    """Download one manifest entry to ``<root>/<folder>/``, pinning an unknown sha256.

    Args:
        entry: {'url', 'filename', 'size', 'md5', 'sha256'} (checksums may be null).
        root: the data root; its lock file records the sha256 of files that have none.
        folder: where under the root the file stays.
        kind: 'archive' or 'checkpoint': what a first download with no checksum to match
            must be before it is pinned.
    """
    dest = os.path.join(root, folder, entry['filename'])
    lock_path = os.path.join(root, LOCK_FILE)
    lock = read_lock(root)
    sha256 = entry.get('sha256') or lock.get(entry['filename'])
    pinned_here = not entry.get('sha256') and entry['filename'] in lock
    advice = (f"if the file changed upstream on purpose, remove {entry['filename']!r} from "
              f'{lock_path} to pin the new one' if pinned_here else
              'the file was deleted, run again to download it afresh')
    if not os.path.exists(dest):
        download(entry['url'], dest, entry.get('size'), entry.get('md5'), sha256,
                 progress=progress, mismatch_advice=advice)
    if sha256 is None:
        check_kind(dest, entry['url'], kind)
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

    An archive whose ``provides`` folder already exists, wholly unpacked, is skipped; unpacked
    archives are deleted to save space (their sha256 stays in the lock file).
    """
    target = os.path.join(root, manifest['target'])
    for entry in manifest['files']:
        provided = os.path.join(target, entry['provides'])
        marker = incomplete_marker(provided)
        if os.path.isdir(provided) and not os.path.exists(marker):
            continue
        archive = fetch_file(entry, root, progress)
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        open(marker, 'w').close()  # until the last member is out
        extract(archive, target)
        os.remove(marker)
        os.remove(archive)
    return target


def fetch_checkpoint(manifest: dict[str, Any], root: str, progress: bool = True) -> str:
    """Download a 'checkpoint' manifest's file to ``<root>/<target>/``; return that folder."""
    for entry in manifest['files']:
        fetch_file(entry, root, progress, folder=manifest['target'], kind='checkpoint')
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
    check_manifest(manifest, name)
    os.makedirs(root, exist_ok=True)
    kinds = {'archives': fetch_archives, 'debian': fetch_debian_photos, 'pip': fetch_pip_photos,
             'checkpoint': fetch_checkpoint}
    return kinds[manifest['kind']](manifest, root, progress=progress)
