"""The benchmark chapter's cached results still come from the current code and weights.

The chapter reads sweeps that take too long to run on every build (book/results/*.json, made
by scripts/book_results.sh). Each file records the sha256 of the weights and the command that
made it; here one entry of each file is recomputed from scratch and compared, with the tolerance
measured across the CPU's kernel paths (tests/kernel_drift.json).
"""
import shlex
from pathlib import Path

import pytest

from liif_core.report import read_json
from liif_core.pretrained import file_sha256, get_pretrained

from kernel_paths import SWEEP_CHECKS, cached_sweep_entry, sweep_entry, tolerance

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / 'book' / 'results'


def option(command, name):
    words = shlex.split(command)
    return words[words.index(name) + 1] if name in words else None


@pytest.mark.parametrize('file', sorted(SWEEP_CHECKS))
def test_cached_sweep_matches_the_code(file):
    rows, meta = read_json(RESULTS / file)
    assert meta['weights_sha256'] == file_sha256(get_pretrained(meta['weights']).path), \
        f'{file} was made with other weights: regenerate it (scripts/book_results.sh)'
    hr_folder = ROOT / option(meta['command'], '--hr')
    if not hr_folder.is_dir():
        pytest.skip(f'{hr_folder} is missing (liif data fetch standin samples)')
    fresh, cached = sweep_entry(file), cached_sweep_entry(file)
    # float32 sums in another order (thread counts) move PSNR by far less than 1e-3 dB.
    for key in ('psnr', 'psnr_bicubic'):
        assert fresh[key] == pytest.approx(cached[key], abs=tolerance(file, key, 1e-3)), key
    for row in rows:
        assert row.psnr == pytest.approx(sum(row.per_image) / len(row.per_image))
