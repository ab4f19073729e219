"""Files that appear whole or not at all: checkpoints and upscaled images are written to a
temporary file beside their destination and renamed into place only when complete, so a crash
or a Ctrl-C never leaves a truncated file where a good one was (or should be)."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` when the block completes without error.

    The temporary file is ``.<name>.<random>.tmp`` in the same folder (a rename is atomic only
    within a file system) and is deleted if the block raises.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            yield f
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
