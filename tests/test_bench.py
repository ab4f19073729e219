"""``liif bench`` runs every case and path and writes them to JSON; ``upscale`` and the raw fast
query give the official algorithm's numbers. No timings are asserted: only that they exist."""
import json
import subprocess
import sys

import pytest
import torch

from liif_core import LIIF, upscale
from liif_core.bench import CONDITIONS, QUICK_CASES, case_input, _official, competing_load


def test_bench_quick_writes_every_case(tmp_path):
    out = tmp_path / 'bench.json'
    result = subprocess.run([sys.executable, '-m', 'liif_core', 'bench', '--quick', '--json',
                             str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert any(line.startswith('machine: ') for line in result.stdout.splitlines())
    report = json.loads(out.read_text())
    assert set(report['ceiling_gflops']) == set(CONDITIONS)
    assert all(g > 0 for g in report['ceiling_gflops'].values())
    got = {(c['condition'], c['size'], c['scale']) for c in report['cases']}
    assert got == {(cond, s, k) for cond in CONDITIONS for s, k in QUICK_CASES}
    paths = {'upscale', 'official', 'official-tuned', 'fast-query', 'official-1-thread'}
    for case in report['cases']:
        assert set(case['px_per_s']) == paths
        assert all(v > 0 for v in case['px_per_s'].values())
        assert all(v <= 1e-5 for v in case['max_abs_diff_vs_official'].values())
        assert set(case['pct_of_ceiling']) == {'upscale', 'fast-query'}
        assert set(case['peak_extra_bytes']) == {'upscale', 'official'}
    table = [line for line in result.stdout.splitlines() if line.startswith('|')]
    assert len(table) == 2 + len(report['cases'])


def test_the_competing_load_is_stopped_on_error():
    with pytest.raises(RuntimeError):
        with competing_load() as proc:
            assert proc.poll() is None
            raise RuntimeError('stop')
    assert proc.poll() is not None


@pytest.mark.parametrize('size, scale', [(12, 4), (7, 12)])
def test_upscale_and_the_fast_query_give_the_official_numbers(size, scale):
    torch.manual_seed(0)
    model = LIIF({'name': 'edsr-baseline', 'args': {'n_resblocks': 2, 'n_feats': 16,
                                                    'no_upsampling': True}},
                 {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [64, 64]}}).eval()
    lr = case_input(size, torch.device('cpu'))
    official = _official(model, lr, scale, 30000)
    fast = _official(model, lr, scale, 2**62, fast=True)
    # several bands and work units on the workers
    up = upscale(lr, scale=scale, model=model, tile_rows=10, progress=False)
    assert (fast - official).abs().max() <= 1e-5
    assert (up - official).abs().max() <= 1e-5
