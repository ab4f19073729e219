"""The ablation chapter's runs: six configs that differ in one switch, and cached results that
still come from the current code.

The chapter reads twelve training logs and sweeps (book/results/ablation/, made by
scripts/ablation.sh in about 2.5 hours). Here the configs are compared key by key, every
cached file is checked for what it claims to be, one entry of every variant's seed-0 sweep is
computed again from the shipped float16 weights it was scored with, and one run's first epoch
is trained again and compared with its cached log.
"""
import json
import shlex
from pathlib import Path

import pytest
import torch

from liif_core import load_model
from liif_core.configs import load_config
from liif_core.pretrained import file_sha256
from liif_core.report import read_json

from kernel_paths import (cached_entry, cached_first_epoch, first_epoch, recomputed_entry,
                          tolerance)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / 'book' / 'results' / 'ablation'
STANDIN = ROOT / 'data' / 'standin'
SCALES = [2, 3, 4, 6, 12, 18, 24, 30]
# variant -> the one model setting it changes: (key path under model.args, value)
SWITCHES = {'liif-c': (('cell_decode',), False),
            'liif-u': (('feat_unfold',), False),
            'liif-e': (('local_ensemble',), False),
            'liif-d': (('imnet_spec', 'args', 'hidden_list'), [256, 256])}
VARIANTS = ['liif', *SWITCHES, 'metasr']
RUNS = [f'{variant}-seed{seed}' for variant in VARIANTS for seed in (0, 1)]
# variant -> (photo, scale) of the seed-0 sweep entry computed again: one photo per variant,
# spread over the training scales and beyond
RECOMPUTED = {'liif': ('Kite.png', 4), 'liif-c': ('Path.png', 2), 'liif-u': ('Grey.png', 6),
              'liif-e': ('ColdRipple.png', 3), 'liif-d': ('BytheWater.png', 12),
              'metasr': ('FallenLeaf.png', 30)}


def config(variant):
    return load_config(f'cpu/ablation/ablation_{variant}')


@pytest.mark.parametrize('variant', SWITCHES)
def test_variant_differs_from_liif_in_one_switch(variant):
    want = config('liif')
    path, value = SWITCHES[variant]
    args = want['model']['args']
    for key in path[:-1]:
        args = args[key]
    args[path[-1]] = value
    assert config(variant) == want


def test_metasr_differs_only_in_the_decoder():
    want = config('liif')
    want['model'] = {'name': 'metasr',
                     'args': {'encoder_spec': want['model']['args']['encoder_spec']}}
    assert config('metasr') == want


@pytest.mark.parametrize('run', RUNS)
def test_cached_run_is_complete(run):
    variant, seed = run.rsplit('-seed', 1)
    log = [json.loads(line) for line in (RESULTS / f'{run}.log.jsonl').read_text().splitlines()]
    assert [r['epoch'] for r in log] == list(range(1, config(variant)['epoch_max'] + 1))
    rows, meta = read_json(RESULTS / f'{run}.json')
    assert [r.scale for r in rows] == SCALES
    assert len(rows[0].names) == 11  # every stand-in validation photo
    command = shlex.split(meta['command'])
    # seed 0 is scored from its shipped float16 weights, seed 1 from its training checkpoint
    weights = (f'book/results/ablation/weights/{run}.pth' if seed == '0'
               else f'save/ablation/{run}/epoch-last.pth')
    assert command[command.index('--weights') + 1] == meta['weights'] == weights
    if seed == '0':
        assert meta['weights_sha256'] == file_sha256(ROOT / weights)
    assert command[command.index('--crop') + 1] == '240'
    assert meta['protocol'] == 'div2k'
    assert all(r.psnr is not None and 10 < r.psnr < 60 for r in rows)


@pytest.mark.skipif(not (STANDIN / 'valid').is_dir(), reason='needs `liif data fetch standin`')
@pytest.mark.parametrize('variant', VARIANTS)
def test_sweep_entry_repeats_from_the_shipped_weights(variant):
    """Inference from the same weights moves by micro-dBs across kernel paths
    (tests/kernel_drift.json, the benchmark sweeps); a retrained or re-rounded model would move
    by tenths."""
    sweep = RESULTS / f'{variant}-seed0.json'
    _, meta = read_json(sweep)
    model = load_model(ROOT / meta['weights'])
    assert next(model.parameters()).dtype == torch.float32  # float16 on disk, float32 in use
    fresh = recomputed_entry(sweep, *RECOMPUTED[variant])
    cached = cached_entry(sweep, *RECOMPUTED[variant])
    assert fresh['psnr'] == pytest.approx(cached['psnr'], abs=1e-3)
    assert fresh['psnr_bicubic'] == pytest.approx(cached['psnr_bicubic'], abs=1e-4)


@pytest.mark.skipif(not (STANDIN / 'train').is_dir(), reason='needs `liif data fetch standin`')
def test_first_epoch_repeats_the_cached_log(tmp_path):
    """LIIF(-e), seed 0, is trained again for its first epoch. Its numbers move with the CPU's
    kernel path (68 steps amplify rounding), so the tolerances are those measured across paths
    (tests/kernel_drift.json); on one path the first epoch repeats to far less."""
    again, cached = first_epoch(tmp_path / 'run'), cached_first_epoch()
    assert again['train_loss'] == pytest.approx(
        cached['train_loss'], rel=1e-4, abs=tolerance('first_epoch', 'train_loss', 0))
    assert again['val_psnr'] == pytest.approx(
        cached['val_psnr'], abs=tolerance('first_epoch', 'val_psnr', 1e-3))
    assert again['val_psnr_bicubic'] == pytest.approx(
        cached['val_psnr_bicubic'], abs=tolerance('first_epoch', 'val_psnr_bicubic', 1e-4))
