"""The benchmark chapter's cached results still come from the current code and weights.

The chapter reads sweeps that take too long to run on every build (book/results/*.json, made
by scripts/book_results.sh). Each file records the sha256 of the weights and the command that
made it; here one entry of each file is recomputed from scratch and compared.
"""
import shlex
from pathlib import Path

import pytest
import torch

from liif_core.evaluate import evaluate_scales, read_json
from liif_core.pretrained import file_sha256, get_pretrained, resolve_model

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / 'book' / 'results'
# file -> (image, scale) to recompute: a small image and a scale outside x2-x4, so that the
# check is quick and also covers the out-of-distribution path.
CHECKS = {'benchmark-standin.json': ('Kite.png', 12),
          'benchmark-samples.json': ('chelsea.png', 4)}


def option(command, name):
    words = shlex.split(command)
    return words[words.index(name) + 1] if name in words else None


@pytest.mark.parametrize('file', sorted(CHECKS))
def test_cached_sweep_matches_the_code(file):
    rows, meta = read_json(RESULTS / file)
    weights = meta['weights']
    assert meta['weights_sha256'] == file_sha256(get_pretrained(weights).path), \
        f'{file} was made with other weights: regenerate it (scripts/book_results.sh)'
    hr_folder = ROOT / option(meta['command'], '--hr')
    if not hr_folder.is_dir():
        pytest.skip(f'{hr_folder} is missing (liif data fetch standin samples)')
    name, scale = CHECKS[file]
    row = next(r for r in rows if r.scale == scale)
    i = row.names.index(name)
    torch.set_num_threads(2)
    fresh, = evaluate_scales(resolve_model(weights), [hr_folder / name], [scale],
                             meta['protocol'], crop=meta['crop'], progress=False)
    # float32 sums in another order (other thread counts) move PSNR by far less than 1e-3 dB.
    assert abs(fresh.psnr - row.per_image[i]) < 1e-3, (fresh.psnr, row.per_image[i])
    assert abs(fresh.psnr_bicubic - row.per_image_bicubic[i]) < 1e-3
    assert row.psnr == pytest.approx(sum(row.per_image) / len(row.per_image))
