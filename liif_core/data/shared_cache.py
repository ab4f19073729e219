"""Decoded images in shared memory: the processes of a ``torchrun`` job on one machine hold one
copy of an ``in_memory`` image folder instead of one each.

The first process to take a set's lock decodes the images into one file in ``SHARED_DIR``
(RAM on Linux) while the others wait on the lock; then they all map the same pages. The files
are private (a 0700 folder of this user, files 0600), a set is used only if its index names
exactly the files asked for and fits its data, and ``flock`` locks say who writes a set
(``.lock``) and who uses it (``.users``), so that the last process to exit deletes it and a set
left by a job killed outright is deleted by the next job.

``folders.ImageFolder`` uses this with ``cache='in_memory'`` under torchrun; the decoding
itself is the caller's (``read``), so this module knows nothing of image formats.
"""
from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import math
import os
import stat
import warnings
from typing import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

# Where the processes of a torchrun job share their ``in_memory`` images (RAM on Linux).
SHARED_DIR = '/dev/shm'


def _decoded_bytes(paths: list[str]) -> int:
    """The size of the decoded 8-bit RGB images, from the files' headers."""
    total = 0
    for path in paths:
        try:
            with Image.open(path) as img:
                total += img.width * img.height * 3
        except (UnidentifiedImageError, OSError):
            pass  # undecodable: takes no room
    return total


def has_room(paths: list[str]) -> bool:
    """Whether ``SHARED_DIR`` has room for the decoded images, twice over."""
    try:
        fs = os.statvfs(SHARED_DIR)
    except OSError:  # no /dev/shm: each process keeps its own copy
        return False
    return fs.f_bavail * fs.f_frsize > 2 * _decoded_bytes(paths)


def _private_dir() -> str | None:
    """``SHARED_DIR/liif-<uid>``, a folder only this user can enter, where the sets live: no
    other user can read a private dataset there, nor plant a set for a job to train on. None,
    with a warning, when the name is taken by something else (then every process keeps its own
    copy)."""
    path = os.path.join(SHARED_DIR, f'liif-{os.getuid()}')
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        warnings.warn(f'{path} is not a folder private to this user (owner uid {info.st_uid}, '
                      f'mode {stat.filemode(info.st_mode)}); not sharing decoded images '
                      'between processes: each keeps its own copy', stacklevel=3)
        return None
    return path


def _lock(path: str) -> int:
    """An exclusive ``flock`` on the lock file ``path`` (created 0600 if missing), waiting for
    it; retried when a cleaner deleted the file between our open and our lock."""
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                return fd
        os.close(fd)


def _try_lock(path: str) -> int | None:
    """An exclusive ``flock`` on the existing file ``path`` if no one holds one; else None."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held
        os.close(fd)
        return None
    return fd


def _set_files(base: str) -> tuple[str, ...]:
    return (base + '.u8', base + '.u8.tmp', base + '.json', base + '.json.tmp', base + '.users',
            base + '.lock')


def _delete_if_unused(base: str) -> bool:
    """Delete a set unless a process is writing it (``.lock``) or using it (``.users``)."""
    writing = _try_lock(base + '.lock')
    if writing is None:
        return False
    using = _try_lock(base + '.users')
    if using is None and os.path.exists(base + '.users'):
        os.close(writing)
        return False
    _remove(*_set_files(base))
    for fd in (using, writing):
        if fd is not None:
            os.close(fd)
    return True


def _clean_unused(folder: str) -> None:
    """Delete the sets no process holds a lock on: those of a job killed outright (SIGKILL,
    out of memory), whose exit handlers never ran. A lock held by a live process in any
    container keeps its set."""
    for name in os.listdir(folder):
        if name.endswith('.lock'):
            _delete_if_unused(os.path.join(folder, name[:-len('.lock')]))


def _valid_index(index_path: str, data_path: str, files: list) -> list | None:
    """The index of a finished set for exactly ``files``, with every image inside the data
    file; None for anything else (a set left half-written, or not written by this code)."""
    try:
        with open(index_path) as f:
            record = json.load(f)
        size = os.stat(data_path, follow_symlinks=False).st_size
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get('files') != files \
            or record.get('size') != size or not isinstance(record.get('index'), list):
        return None
    for entry in record['index']:
        if entry is None:
            continue
        ok = (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], int)
              and isinstance(entry[1], list) and len(entry[1]) == 3 and entry[1][2] == 3
              and all(isinstance(n, int) and n > 0 for n in entry[1]))
        if not ok or not 0 <= entry[0] <= size - math.prod(entry[1]):
            return None
    return record['index']


def shared_images(paths: list[str], read: Callable[[str], np.ndarray | None]
                  ) -> list[np.ndarray | None]:
    """The decoded images in one file in shared memory, read by every process of a torchrun
    job on this machine: the first to take the set's lock decodes while the others wait on
    the lock, then they map the same pages, so N processes hold one copy. ``read(path)``
    decodes one image, None for an undecodable one (kept as None in the list).

    The files are private (a 0700 folder of this user, files 0600) and a set is used only if
    its index names exactly these files and fits its data. Every process holds a shared lock
    on its set while it runs; the last to exit deletes the set, and a set whose processes were
    all killed is deleted by the next job that starts."""
    folder = _private_dir()
    if folder is None:
        return [read(path) for path in paths]
    _clean_unused(folder)
    job = os.environ.get('TORCHELASTIC_RUN_ID', '') + os.environ.get('MASTER_PORT', '')
    files = [[os.path.abspath(p), os.path.getsize(p), os.path.getmtime(p)] for p in paths]
    key = hashlib.sha1(json.dumps([job, files]).encode()).hexdigest()[:16]
    base = os.path.join(folder, f'images-{key}')
    data_path, index_path = base + '.u8', base + '.json'
    writing = _lock(base + '.lock')  # one process at a time checks or writes the set
    try:
        users = os.open(base + '.users', os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o600)
        fcntl.flock(users, fcntl.LOCK_SH)  # held while this process runs: the set is in use
        atexit.register(_release, users, base)
        index = _valid_index(index_path, data_path, files)
        if index is None:  # the first process, or a set left unfinished: (re)write it
            index = _write_set(paths, read, data_path, index_path, files)
    finally:
        os.close(writing)
    # Copy-on-write: writable arrays (torch.from_numpy needs them) whose pages stay shared,
    # as nothing writes to them.
    data = np.memmap(data_path, dtype=np.uint8, mode='c') if any(index) else None
    return [None if entry is None else
            data[entry[0]:entry[0] + math.prod(entry[1])].reshape(entry[1]) for entry in index]


def _write_set(paths: list[str], read: Callable[[str], np.ndarray | None], data_path: str,
               index_path: str, files: list) -> list:
    index = []  # (offset, shape) per image; None for an undecodable one
    _remove(index_path)
    # Written beside and renamed: a process still mapping an older file keeps its pages.
    fd = os.open(data_path + '.tmp', os.O_CREAT | os.O_TRUNC | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, 'wb') as f:
        # disable=None: a bar on a terminal only, so logs and pipes stay clean.
        for path in tqdm(paths, desc='loading (shared)', leave=False, disable=None):
            rgb = read(path)
            index.append(None if rgb is None else [f.tell(), list(rgb.shape)])
            if rgb is not None:
                f.write(rgb.tobytes())
        size = f.tell()
    os.replace(data_path + '.tmp', data_path)
    fd = os.open(index_path + '.tmp', os.O_CREAT | os.O_TRUNC | os.O_WRONLY | os.O_NOFOLLOW,
                 0o600)
    with os.fdopen(fd, 'w') as f:
        json.dump({'files': files, 'size': size, 'index': index}, f)
    os.replace(index_path + '.tmp', index_path)
    return index


def _release(users: int, base: str) -> None:
    """At exit: the last process using a set deletes it."""
    os.close(users)
    _delete_if_unused(base)


def _remove(*paths: str) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)

