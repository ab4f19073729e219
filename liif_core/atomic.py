"""Files that appear whole or not at all: checkpoints and upscaled images are written to a
temporary file beside their destination and renamed into place only when complete, so a crash
or a Ctrl-C never leaves a truncated file where a good one was (or should be).

A writer killed outright (SIGKILL, power loss) cannot delete its temporary file. Each name
therefore carries its writer's process id, host and process-id namespace, and ``clean_stale``
(run before every atomic write, and by training on resume) deletes those whose writer is gone.
The namespace matters: two containers of one host may share a folder and a host name while
numbering their processes apart, so a process id means something only in its own namespace.
"""
from __future__ import annotations

import os
import re
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

# The writer's tag in a temporary name, '.<name>.<random>.<pid>@<host>.tmp'.
STALE_NAME = re.compile(r'\.(\d+)@([A-Za-z0-9-]+)\.tmp$')


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _host() -> str:
    """This machine's name and process-id namespace as they go into file names: letters,
    digits and '-' only, so that the name can be parsed back (a fully qualified name has dots).
    Process ids are comparable only between names that agree on both."""
    host = re.sub(r'[^A-Za-z0-9-]', '-', socket.gethostname()) or 'host'
    try:
        namespace = f'-ns{os.stat("/proc/self/ns/pid").st_ino}'
    except OSError:  # no /proc (not Linux): one namespace per host
        namespace = ''
    return host + namespace


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (a zombie, not yet reaped, counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OverflowError:  # no such process id can exist
        return False
    return True


def clean_stale(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files ``atomic_write`` left in ``folder`` when its writer was killed.

    Only hidden ``.tmp`` files whose name carries this machine's name and process-id namespace
    and the id of a process that no longer exists are deleted: a file whose writer may still be
    running, or that was written on another machine or in another container sharing the
    folder, is kept. Best effort: a folder that cannot
    be listed, or a file that cannot be deleted, is left as it is.

    Returns:
        the files deleted.
    """
    host, removed = _host(), []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = STALE_NAME.search(entry.name)
        if not (entry.name.startswith('.') and match and match[2] == host):
            continue
        if _alive(int(match[1])):
            continue
        try:
            os.unlink(entry.path)
        except OSError:  # gone already (another cleaner), or not ours to delete
            continue
        removed.append(Path(entry.path))
    return removed


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` when the block completes without error.

    The temporary file is ``.<name>.<random>.<pid>@<host>.tmp`` in the same folder (a rename
    is atomic only within a file system) and is deleted if the block raises. Stale temporary
    files of killed writers in that folder are deleted first (``clean_stale``).
    """
    path = Path(path)
    clean_stale(path.parent)
    # The name cut to 100 characters: with the writer's tag it must stay within the 255 bytes
    # a file name may take.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name[:100]}.',
                               suffix=f'.{os.getpid()}@{_host()}.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            yield f
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
