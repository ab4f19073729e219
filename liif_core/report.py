"""Sweep results: the record of one scale, markdown tables, CSV and JSON files.

``evaluate_scales`` returns ``ScaleRow``s; the functions here print and store them. A JSON file
written by ``write_json`` carries the command and the weights' sha256 beside the numbers, so the
book can check its cached results against the code and weights that made them.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from typing import Any, Sequence, Union

from .atomic import atomic_write

# A scale is one factor for both axes or a (row, col) pair.
Scale = Union[float, tuple[float, float]]


def scale_label(scale: Scale) -> str:
    """``2`` -> ``'2'``, ``2.5`` -> ``'2.5'``, ``(2, 3)`` -> ``'2x3'``."""
    return 'x'.join(f'{s:g}' for s in ((scale,) if not isinstance(scale, tuple) else scale))


@dataclass
class ScaleRow:
    """One scale of a sweep: mean PSNR and SSIM of the model and of bicubic (None when not run,
    and SSIM None in files written before it was measured), and the per-image values in the
    order of ``names``."""
    scale: Scale
    psnr: float | None
    psnr_bicubic: float | None
    per_image: list[float]
    per_image_bicubic: list[float]
    names: list[str]
    ssim: float | None = None
    ssim_bicubic: float | None = None
    # None for an image smaller than the SSIM window (and then the mean is None too).
    per_image_ssim: list[float | None] = field(default_factory=list)
    per_image_ssim_bicubic: list[float | None] = field(default_factory=list)

# The fields of a ScaleRow that hold numbers, in the order of CSV columns and JSON keys.
_MEANS = ('psnr', 'psnr_bicubic', 'ssim', 'ssim_bicubic')
_PER_IMAGE = ('per_image', 'per_image_bicubic', 'per_image_ssim', 'per_image_ssim_bicubic')
# Decimals shown in tables: PSNR in dB, SSIM in [0, 1].
_DIGITS = {'psnr': 2, 'ssim': 4}


def _fmt(value: float | None, digits: int = 2) -> str:
    return '' if value is None else f'{value:.{digits}f}'


def scale_table(table: dict[str, Sequence[str]], scales: Sequence[Scale],
                corner: str = 'method') -> str:
    """A markdown table with one column per scale: ``table`` maps a row label to its cells
    (already formatted); ``corner`` heads the label column."""
    head = f'| {corner} | ' + ' | '.join(f'x{scale_label(s)}' for s in scales) + ' |'
    lines = [head, '|---|' + '---|' * len(scales)]
    lines += [f'| {label} | ' + ' | '.join(cells) + ' |' for label, cells in table.items()]
    return '\n'.join(lines)


def format_table(rows: Sequence[ScaleRow], model_label: str = 'model',
                 metric: str = 'psnr') -> str:
    """A markdown table of ``metric`` ('psnr' or 'ssim'): one row for bicubic and one for the
    model, one column per scale."""
    if metric not in _DIGITS:
        raise ValueError(f"metric must be 'psnr' or 'ssim', got {metric!r}")
    table = {}
    for label, key in (('bicubic', f'{metric}_bicubic'), (model_label, metric)):
        if any(getattr(r, key) is not None for r in rows):
            table[label] = [_fmt(getattr(r, key), _DIGITS[metric]) for r in rows]
    return scale_table(table, [r.scale for r in rows])


def write_csv(rows: Sequence[ScaleRow], path: str | os.PathLike, per_image: bool = False) -> None:
    """Write ``scale,psnr,psnr_bicubic,ssim,ssim_bicubic,n_images`` per scale, or with
    ``per_image`` ``scale,image,psnr,psnr_bicubic,ssim,ssim_bicubic`` per scale and image
    (empty cells where a value was not measured)."""
    lines = io.StringIO(newline='')
    out = csv.writer(lines)
    if not per_image:
        out.writerow(['scale', *_MEANS, 'n_images'])
        for r in rows:
            out.writerow([scale_label(r.scale), *(_fmt(getattr(r, k), 4) for k in _MEANS),
                          len(r.names)])
    else:
        out.writerow(['scale', 'image', *_MEANS])
        for r in rows:
            for i, name in enumerate(r.names):
                values = (getattr(r, k) for k in _PER_IMAGE)
                out.writerow([scale_label(r.scale), name,
                              *(_fmt(v[i] if v else None, 4) for v in values)])
    with atomic_write(path) as f:
        f.write(lines.getvalue().encode())


def write_json(rows: Sequence[ScaleRow], path: str | os.PathLike, **meta: Any) -> None:
    """Write a sweep, per image, with ``meta`` (the command that made it, the weights' sha256,
    ...), so that a result file can be checked against the code and weights that made it."""
    record = {**meta, 'images': list(rows[0].names) if rows else [],
              'rows': [{'scale': r.scale if not isinstance(r.scale, tuple) else list(r.scale),
                        **{k: getattr(r, k) for k in _MEANS + _PER_IMAGE}} for r in rows]}
    with atomic_write(path) as f:
        f.write((json.dumps(record, indent=1) + '\n').encode())


def read_json(path: str | os.PathLike) -> tuple[list[ScaleRow], dict[str, Any]]:
    """The rows and the metadata of a file written by ``write_json``; SSIM is None (and its
    per-image lists empty) in files written before it was measured."""
    with open(path, encoding='utf-8') as f:
        record = json.load(f)
    names = record.pop('images')
    rows = [ScaleRow(tuple(r['scale']) if isinstance(r['scale'], list) else r['scale'],
                     r['psnr'], r['psnr_bicubic'], r['per_image'], r['per_image_bicubic'], names,
                     r.get('ssim'), r.get('ssim_bicubic'), r.get('per_image_ssim') or [],
                     r.get('per_image_ssim_bicubic') or [])
            for r in record.pop('rows')]
    return rows, record
