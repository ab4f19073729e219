"""PNG files read and written by this code where PIL falls short: 16-bit colour PNGs, which
PIL reads at 8 bits (``read_png16``), and PNGs of any size written band by band in bounded
memory (``PngStream``).

``imageio.read_source`` decodes 16-bit colour inputs with ``read_png16``; ``upscale_file``
writes its PNG outputs through ``PngStream``. Both follow the PNG specification (filters,
section 9; Adam7 interlacing, section 8) and nothing else of the package.
"""
from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

import numpy as np

# Channels of the PNG colour types with more than one: RGB, gray + alpha, RGBA.
PNG_CHANNELS = {2: 3, 4: 2, 6: 4}
# Adam7 interlacing: each pass's first row, first column, row step and column step.
ADAM7 = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2),
         (1, 0, 2, 1))


def read_png16(data: bytes) -> np.ndarray | None:
    """The pixels of a 16-bit RGB, RGBA or gray + alpha PNG file's bytes: (h, w, C) uint16.
    None for any other PNG, which PIL reads in full. Interlaced (Adam7) files are read too.
    The image data are inflated no further than the size the header declares, so a small file
    whose data would inflate to gigabytes (a decompression bomb) costs no more than its image.

    Raises ValueError (or ``zlib.error``) for data that do not add up to the image.
    """
    chunks: dict[bytes, list[bytes]] = {}
    pos = 8  # after the signature
    while pos + 8 <= len(data):
        length, kind = struct.unpack('>I4s', data[pos:pos + 8])
        chunks.setdefault(kind, []).append(data[pos + 8:pos + 8 + length])
        pos += 12 + length  # length, kind, data, CRC
    width, height, bits, color_type, _, _, interlace = struct.unpack('>IIBBBBB',
                                                                     chunks[b'IHDR'][0])
    if bits != 16 or color_type not in PNG_CHANNELS:
        return None
    channels = PNG_CHANNELS[color_type]
    bpp = 2 * channels  # bytes per pixel, the distance of PNG's filters to the left neighbour
    passes = []  # (first row, first column, row step, column step, rows, columns)
    for r0, c0, dr, dc in ADAM7 if interlace else ((0, 0, 1, 1),):
        h, w = -(-(height - r0) // dr), -(-(width - c0) // dc)  # rows and columns of the pass
        if h > 0 and w > 0:  # an empty pass has no bytes, not even filter types
            passes.append((r0, c0, dr, dc, h, w))
    size = sum(h * (1 + w * bpp) for *_, h, w in passes)
    raw = np.frombuffer(_inflate(b''.join(chunks.get(b'IDAT', [])), size), np.uint8)
    if raw.size < size:
        raise ValueError(f'image data end after {raw.size} of {size} bytes')
    pixels = np.zeros((height, width, bpp), np.uint8)
    start = 0
    for r0, c0, dr, dc, h, w in passes:
        stop = start + h * (1 + w * bpp)
        pixels[r0::dr, c0::dc] = _unfilter(raw[start:stop].reshape(h, 1 + w * bpp), bpp)
        start = stop
    return pixels.view('>u2').astype(np.uint16)  # (h, w, C), native byte order


def _inflate(data: bytes, size: int) -> bytes:
    """zlib ``data`` that must inflate to ``size`` bytes, inflated at most one byte further."""
    out = zlib.decompressobj().decompress(data, size + 1)
    if len(out) > size:
        raise ValueError(f'image data inflate to more than the {size} bytes its header '
                         'declares (a decompression bomb?)')
    return out


def _unfilter(lines: np.ndarray, bpp: int) -> np.ndarray:
    """Undo PNG's row filters: (h, 1 + w * bpp) filtered rows -> (h, w, bpp) bytes.

    Each row starts with its filter type: 0 none, 1 Sub, 2 Up, 3 Average, 4 Paeth (PNG
    specification, section 9). Each byte was stored minus a prediction from the same byte of
    the pixels to its left (a), above (b) and above-left (c), decoded first. Pixels on one
    anti-diagonal (row + column = k) depend only on earlier anti-diagonals, so each
    anti-diagonal is decoded in one vectorised step, h + w - 1 steps in all, whatever mix of
    filters the rows use (row by row, Average and Paeth would take a step per pixel).
    """
    h = lines.shape[0]
    kinds = lines[:, 0]
    if kinds.max() > 4:
        raise ValueError(f'unknown PNG filter type {kinds.max()}')
    raw = lines[:, 1:].reshape(h, -1, bpp).astype(np.int16)  # (h, w, bpp)
    w = raw.shape[1]
    # Decoded bytes below a zero row and right of a zero column, the neighbours PNG takes
    # outside the image: pixel (r, c) is out[r + 1, c + 1].
    out = np.zeros((h + 1, w + 1, bpp), np.int16)
    for k in range(h + w - 1):
        r = np.arange(max(0, k - w + 1), min(h, k + 1))  # rows on the anti-diagonal
        c = k - r
        a, b, d = out[r + 1, c], out[r, c + 1], out[r, c]  # (n, bpp): left, above, above-left
        # Paeth: of a, b, d the one nearest p = a + b - d; |p - a| = |b - d| and so on.
        pa, pb, pc = np.abs(b - d), np.abs(a - d), np.abs(a + b - 2 * d)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, d))
        kind = kinds[r, None]  # (n, 1)
        pred = np.select([kind == 1, kind == 2, kind == 3, kind == 4],
                         [a, b, (a + b) >> 1, paeth], 0)
        out[r + 1, c + 1] = (raw[r, c] + pred) & 0xFF  # modulo 256, as the filters wrapped
    return out[1:, 1:].astype(np.uint8)


class PngStream:
    """A PNG written band by band, so the whole image never has to be in memory.

    Rows use the 'Up' filter (each byte minus the byte above), which is one vectorised
    subtraction and compresses smooth images well; IDAT chunks hold whatever zlib emits.

    Args:
        file: a binary file open for writing.
        height, width: image size.
        channels: 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA.
        bits: 8 or 16 per channel.
        icc_profile: stored as an iCCP chunk when given.
    """

    COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}
    UP_FILTER = 2

    def __init__(self, file: BinaryIO, height: int, width: int, channels: int, bits: int,
                 icc_profile: bytes | None = None, level: int = 6):
        self.file, self.rows_left, self.bits = file, height, bits
        file.write(b'\x89PNG\r\n\x1a\n')
        self._chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, bits,
                                         self.COLOR_TYPES[channels], 0, 0, 0))
        if icc_profile:
            # Profile name, NUL, compression method 0 (zlib), compressed profile.
            self._chunk(b'iCCP', b'ICC Profile\x00\x00' + zlib.compress(icc_profile))
        self._zlib = zlib.compressobj(level)
        self._above = np.zeros(width * channels * bits // 8, dtype=np.uint8)  # row above, bytes

    def _chunk(self, kind: bytes, data: bytes) -> None:
        crc = zlib.crc32(kind + data)
        self.file.write(struct.pack('>I', len(data)) + kind + data + struct.pack('>I', crc))

    def write(self, rows: np.ndarray) -> None:
        """Append rows (n, W, C) of uint8 or uint16 (stored big-endian)."""
        big_endian = rows.astype('>u2' if self.bits == 16 else np.uint8)
        data = big_endian.reshape(rows.shape[0], -1).view(np.uint8)  # (n, W*C*bytes)
        above = np.concatenate([self._above[None], data[:-1]])  # (n, W*C*bytes)
        filtered = data - above  # uint8 arithmetic wraps modulo 256, as PNG specifies
        lines = np.concatenate([np.full((len(data), 1), self.UP_FILTER, np.uint8), filtered], 1)
        compressed = self._zlib.compress(lines.tobytes())
        if compressed:
            self._chunk(b'IDAT', compressed)
        self._above = data[-1].copy()
        self.rows_left -= len(data)

    def close(self) -> None:
        if self.rows_left != 0:
            raise ValueError(f'PNG incomplete: {self.rows_left} rows were never written')
        self._chunk(b'IDAT', self._zlib.flush())
        self._chunk(b'IEND', b'')
