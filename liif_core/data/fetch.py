"""Downloads: ``liif data fetch NAME [--root DIR]`` and the verified, resumable downloader.

Every dataset is described by a manifest shipped with the package (``manifests/<name>.json``):
where its files come from, their checksums and how they unpack. Files land under the data root
(``data/`` by default) in the layout the official configs expect below ``./load/``, so
``make_data(section, data_root='data')`` finds them:

    data/div2k/DIV2K_train_HR/  data/div2k/DIV2K_valid_LR_bicubic/X2/  (div2k)
    data/benchmark/Set5/HR/     data/benchmark/Set5/LR_bicubic/X2/     (benchmark)
    data/standin/train/  data/standin/valid/  data/standin/valid_LR_bicubic/X2/  (standin)
    data/samples/HR/     data/samples/LR_bicubic/X2/                   (samples)

Downloads go to ``<file>.part`` and are renamed only once complete and verified, so a killed
download never looks finished; running the command again resumes the ``.part`` with an HTTP
Range request. A file is checked against its pinned size, MD5 and sha256 where the manifest has
them. Where no checksum is published, the sha256 of the first download is recorded in
``<root>/fetch-lock.json`` with a warning, and later downloads must match it.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import tarfile
import urllib.error
import urllib.request
import warnings
import zipfile
from importlib import resources
from typing import Any

from tqdm import tqdm

from .specs import DEFAULT_DATA_ROOT
LOCK_FILE = 'fetch-lock.json'
CHUNK = 1 << 20


class FetchError(OSError):
    """A download or unpacking step failed; the message says what to do."""


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


def file_digest(path: str, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(CHUNK), b''):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: str, size: int | None = None, md5: str | None = None,
             sha256: str | None = None, timeout: float = 60.0, progress: bool = True) -> str:
    """Download ``url`` to ``dest``, resuming a previous ``dest.part`` and verifying the result.

    Args:
        url: http(s) or file URL.
        dest: final path; it appears only after the whole file arrived and verified.
        size, md5, sha256: expected values, each checked when given.
        timeout: seconds without progress before the connection is given up.
        progress: show a tqdm bar.

    Returns:
        dest.

    Raises:
        FetchError: the host is unreachable, the server answers an error (e.g. 404), the
            transfer is interrupted (the ``.part`` is kept for a resume), or the file does not
            match a checksum (the ``.part`` is deleted, so the next run starts afresh).
    """
    part = dest + '.part'
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    have = os.path.getsize(part) if os.path.exists(part) else 0
    if size is None or have < size:
        response = _open(url, have, timeout)
        if response is not None:
            with response:
                _receive(response, url, part, have, size, progress)
    _verify(part, url, size, md5, sha256)
    os.replace(part, dest)
    return dest


def _open(url: str, have: int, timeout: float) -> Any:
    """The HTTP response for ``url`` from byte ``have`` on; None if nothing is left to get."""
    request = urllib.request.Request(url, headers={'User-Agent': 'liif_core'})
    if have:
        request.add_header('Range', f'bytes={have}-')
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing past our end: the .part may already be whole
            return None
        raise FetchError(f'{url}: HTTP {e.code} {e.reason}') from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, 'reason', e)
        raise FetchError(f'cannot reach {url}: {reason} (network down or host unreachable?)'
                         ) from e


def _receive(response: Any, url: str, part: str, have: int, size: int | None,
             progress: bool) -> None:
    """Write the response body to ``part``, appending when the server honoured our Range."""
    if have and response.status != 206:
        have = 0  # the server ignored the Range header: start again
    length = response.headers.get('Content-Length')
    total = have + int(length) if length is not None else size
    with open(part, 'ab' if have else 'wb') as f, \
            tqdm(total=total, initial=have, unit='B', unit_scale=True,
                 desc=os.path.basename(url), disable=not progress, leave=False) as bar:
        try:
            for block in iter(lambda: response.read(CHUNK), b''):
                f.write(block)
                bar.update(len(block))
        except (OSError, ValueError, http.client.HTTPException) as e:  # reset, timeout, ...
            raise FetchError(f'{url}: transfer interrupted after {f.tell()} bytes ({e}); run '
                             f'the same command again to resume') from e
        received = f.tell()
    if total is not None and received < total:  # the connection closed early
        raise FetchError(f'{url}: transfer interrupted after {received} of {total} bytes; run '
                         f'the same command again to resume')


def _verify(path: str, url: str, size: int | None, md5: str | None, sha256: str | None) -> None:
    actual = os.path.getsize(path)
    problems = []
    if size is not None and actual != size:
        problems.append(f'size {actual} != expected {size}')
    for algorithm, expected in (('md5', md5), ('sha256', sha256)):
        digest = file_digest(path, algorithm) if expected is not None else None
        if digest is not None and digest != expected.lower():
            problems.append(f'{algorithm} {digest} != expected {expected}')
    if problems:
        os.remove(path)
        raise FetchError(f'{url}: checksum mismatch ({"; ".join(problems)}); the file was '
                         f'deleted, run again to download it afresh')


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


def fetch_file(entry: dict[str, Any], root: str, progress: bool = True) -> str:
    """Download one manifest entry to ``<root>/downloads/``, pinning an unknown sha256.

    Args:
        entry: {'url', 'filename', 'size', 'md5', 'sha256'} (checksums may be null).
        root: the data root; its lock file records the sha256 of files that have none.
    """
    dest = os.path.join(root, 'downloads', entry['filename'])
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


def fetch(name: str, root: str = DEFAULT_DATA_ROOT, progress: bool = True) -> str:
    """Fetch a dataset by manifest name (see ``manifest_names``); return its folder."""
    from .photos import fetch_debian_photos, fetch_pip_photos  # conversion needs resize_fn

    manifest = load_manifest(name)
    os.makedirs(root, exist_ok=True)
    kinds = {'archives': fetch_archives, 'debian': fetch_debian_photos, 'pip': fetch_pip_photos}
    if manifest.get('kind') not in kinds:
        raise ValueError(f"manifest {name!r} has unknown kind {manifest.get('kind')!r}")
    return kinds[manifest['kind']](manifest, root, progress=progress)


# ----------------------------------------------------------------------------------------------
# `liif data`

def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest='action', metavar='ACTION', required=True)
    p = sub.add_parser('fetch', help='download (or copy) a dataset under the data root')
    p.add_argument('names', nargs='+', metavar='NAME',
                   help=f"one of: {', '.join(manifest_names())}")
    p.add_argument('--root', default=DEFAULT_DATA_ROOT,
                   help='data root; pass the same to `liif train/test --data-root` '
                        '(default: %(default)s)')
    p.add_argument('--no-progress', action='store_true', help='no progress bars')
    sub.add_parser('list', help='the datasets `fetch` knows')


def run(args: argparse.Namespace) -> int:
    if args.action == 'list':
        for name in manifest_names():
            print(f"{name:10s} {load_manifest(name)['title']}")
        return 0
    for name in args.names:
        folder = fetch(name, args.root, progress=not args.no_progress)
        print(f'{name}: ready in {folder}')
    return 0
