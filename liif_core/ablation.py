"""The ablation study of chapters 10 and 10b: its six variants, their configs, and the runs that
``scripts/ablation.sh`` made (a training log and a scored sweep per variant and seed).

A variant is LIIF with one switch changed (``cpu/ablation/ablation_<variant>.yaml``), or MetaSR;
each was trained with every seed in ``SEEDS`` and scored by ``liif test`` at the paper's eight
scales, into ``<variant>-seed<seed>.log.jsonl`` and ``<variant>-seed<seed>.json``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import paper
from .configs import load_config
from .report import ScaleRow, read_json

# variant -> its name in the paper's tables
VARIANTS = {'liif': 'LIIF', 'liif-c': 'LIIF(-c)', 'liif-u': 'LIIF(-u)',
            'liif-e': 'LIIF(-e)', 'liif-d': 'LIIF(-d)', 'metasr': 'MetaSR'}
SEEDS = (0, 1)


def variant_configs() -> dict[str, dict[str, Any]]:
    """Each variant's packaged training config."""
    return {v: load_config(f'cpu/ablation/ablation_{v}') for v in VARIANTS}


def load_runs(folder: str | os.PathLike) -> tuple[dict[str, list[list[dict]]],
                                                   dict[str, list[tuple[list[ScaleRow], dict]]]]:
    """The runs in ``folder``: per variant, one training log (its epoch records) and one scored
    sweep (``read_json``'s rows and metadata) per seed, in ``SEEDS`` order."""
    folder = Path(folder)
    logs = {v: [[json.loads(line) for line in
                 (folder / f'{v}-seed{s}.log.jsonl').read_text().splitlines()]
                for s in SEEDS] for v in VARIANTS}
    sweeps = {v: [read_json(folder / f'{v}-seed{s}.json') for s in SEEDS] for v in VARIANTS}
    return logs, sweeps


def paper_rows() -> dict[str, tuple[float, ...]]:
    """Each variant's PSNR on DIV2K-val as the paper prints it (Table 3; MetaSR from Table 1),
    at ``paper.TABLE3_SCALES``."""
    return {'liif': paper.TABLE3['LIIF'], 'metasr': paper.TABLE1['EDSR-baseline-MetaSR'],
            **{v: paper.TABLE3[VARIANTS[v]] for v in ('liif-c', 'liif-u', 'liif-e', 'liif-d')}}
