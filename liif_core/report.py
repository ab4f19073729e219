"""Sweep results: the record of one scale, markdown tables, CSV and JSON files.

``evaluate_scales`` returns ``ScaleRow``s; the functions here print and store them. A JSON file
written by ``write_json`` carries the command and the weights' sha256 beside the numbers, so the
book can check its cached results against the code and weights that made them.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from typing import Any, Sequence, Union

from .atomic import atomic_write

# A scale is one factor for both axes or a (row, col) pair.
Scale = Union[float, tuple[float, float]]


def scale_label(scale: Scale) -> str:
    """``2`` -> ``'2'``, ``2.5`` -> ``'2.5'``, ``(2, 3)`` -> ``'2x3'``."""
    return 'x'.join(f'{s:g}' for s in ((scale,) if not isinstance(scale, tuple) else scale))


@dataclass
class ScaleRow:
    """One scale of a sweep: mean PSNR of the model and of bicubic (None when not run), and
    the per-image values in the order of ``names``."""
    scale: Scale
    psnr: float | None
    psnr_bicubic: float | None
    per_image: list[float]
    per_image_bicubic: list[float]
    names: list[str]


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


def format_table(rows: Sequence[ScaleRow], model_label: str = 'model') -> str:
    """A markdown table: one row for bicubic and one for the model, one column per scale."""
    table = {}
    if any(r.psnr_bicubic is not None for r in rows):
        table['bicubic'] = [_fmt(r.psnr_bicubic) for r in rows]
    if any(r.psnr is not None for r in rows):
        table[model_label] = [_fmt(r.psnr) for r in rows]
    return scale_table(table, [r.scale for r in rows])


def write_csv(rows: Sequence[ScaleRow], path: str | os.PathLike, per_image: bool = False) -> None:
    """Write ``scale,psnr,psnr_bicubic,n_images`` per scale, or with ``per_image``
    ``scale,image,psnr,psnr_bicubic`` per scale and image."""
    with open(path, 'w', newline='') as f:
        out = csv.writer(f)
        if not per_image:
            out.writerow(['scale', 'psnr', 'psnr_bicubic', 'n_images'])
            for r in rows:
                out.writerow([scale_label(r.scale), _fmt(r.psnr, 4), _fmt(r.psnr_bicubic, 4),
                              len(r.names)])
            return
        out.writerow(['scale', 'image', 'psnr', 'psnr_bicubic'])
        for r in rows:
            for i, name in enumerate(r.names):
                out.writerow([scale_label(r.scale), name,
                              _fmt(r.per_image[i] if r.per_image else None, 4),
                              _fmt(r.per_image_bicubic[i] if r.per_image_bicubic else None, 4)])


def write_json(rows: Sequence[ScaleRow], path: str | os.PathLike, **meta: Any) -> None:
    """Write a sweep, per image, with ``meta`` (the command that made it, the weights' sha256,
    ...), so that a result file can be checked against the code and weights that made it."""
    record = {**meta, 'images': list(rows[0].names) if rows else [],
              'rows': [{'scale': r.scale if not isinstance(r.scale, tuple) else list(r.scale),
                        'psnr': r.psnr, 'psnr_bicubic': r.psnr_bicubic,
                        'per_image': r.per_image, 'per_image_bicubic': r.per_image_bicubic}
                       for r in rows]}
    with atomic_write(path) as f:
        f.write((json.dumps(record, indent=1) + '\n').encode())


def read_json(path: str | os.PathLike) -> tuple[list[ScaleRow], dict[str, Any]]:
    """The rows and the metadata of a file written by ``write_json``."""
    with open(path, encoding='utf-8') as f:
        record = json.load(f)
    names = record.pop('images')
    rows = [ScaleRow(tuple(r['scale']) if isinstance(r['scale'], list) else r['scale'],
                     r['psnr'], r['psnr_bicubic'], r['per_image'], r['per_image_bicubic'], names)
            for r in record.pop('rows')]
    return rows, record
