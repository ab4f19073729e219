"""The verified, resumable downloader that ``liif data fetch`` and the shipped weights use.

Downloads go to ``<file>.part`` and are renamed only once complete and verified, so a killed
download never looks finished; a second call resumes the ``.part`` with an HTTP Range request,
and appends only when the server's Content-Range says the bytes start where the ``.part``
ends (a server that answers a Range with the file from byte 0 would otherwise leave half a
file followed by the whole one).
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from typing import Any

from tqdm import tqdm

CHUNK = 1 << 20


class FetchError(OSError):
    """A download or unpacking step failed; the message says what to do."""


def file_digest(path: str, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(CHUNK), b''):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: str, size: int | None = None, md5: str | None = None,
             sha256: str | None = None, timeout: float = 60.0, progress: bool = True,
             mismatch_advice: str = 'the file was deleted, run again to download it afresh'
             ) -> str:
    """Download ``url`` to ``dest``, resuming a previous ``dest.part`` and verifying the result.

    Args:
        url: http(s) or file URL.
        dest: final path; it appears only after the whole file arrived and verified.
        size, md5, sha256: expected values, each checked when given.
        timeout: seconds without progress before the connection is given up.
        progress: show a tqdm bar.
        mismatch_advice: what the checksum-mismatch error tells the user to do.

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
        if response is not None and have and not _continues(response, have):
            have = 0  # not the bytes after ours: start again from byte 0
            if response.status != 200:  # a 200 is the whole file already
                response.close()
                response = _open(url, have, timeout)
        if response is not None:
            with response:
                _receive(response, url, part, have, size, progress)
    _verify(part, url, size, md5, sha256, mismatch_advice)
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


def _continues(response: Any, have: int) -> bool:
    """Whether a response to ``Range: bytes=have-`` holds exactly the bytes from ``have`` on:
    a 206 whose Content-Range starts there."""
    match = re.fullmatch(r'bytes (\d+)-(\d+)/(\d+|\*)',
                         (response.headers.get('Content-Range') or '').strip())
    return response.status == 206 and match is not None and int(match[1]) == have


def _receive(response: Any, url: str, part: str, have: int, size: int | None,
             progress: bool) -> None:
    """Write the response body to ``part``, appending when the server honoured our Range."""
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


def _verify(path: str, url: str, size: int | None, md5: str | None, sha256: str | None,
            advice: str) -> None:
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
        raise FetchError(f'{url}: checksum mismatch ({"; ".join(problems)}); {advice}')
