"""``liif bench`` runs every case and path and writes them to JSON; ``upscale`` and the raw fast
query give the official algorithm's numbers. No timings are asserted: only that they exist."""
import importlib
import json
import subprocess
import sys

import pytest
import torch

from liif_core import LIIF, upscale
from liif_core.bench import (CONDITIONS, QUICK_CASES, case_input, _official, bench_case,
                             bf16_cost, competing_load, encoder_macs, fast_macs_per_query,
                             machine_info)

# The module: the package's name ``render`` is the function.
RENDER = importlib.import_module('liif_core.render')
BENCH = importlib.import_module('liif_core.bench')
SMALL_EDSR = {'name': 'edsr-baseline', 'args': {'n_resblocks': 2, 'n_feats': 16,
                                                 'no_upsampling': True}}


def test_bench_quick_writes_every_case(tmp_path):
    out = tmp_path / 'bench.json'
    result = subprocess.run([sys.executable, '-m', 'liif_core', 'bench', '--quick', '--json',
                             str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert any(line.startswith('machine: ') for line in result.stdout.splitlines())
    report = json.loads(out.read_text())
    assert set(report['ceiling_gflops']) == set(CONDITIONS)
    assert all(g > 0 for g in report['ceiling_gflops'].values())
    for condition, ceiling in report['ceiling_gflops'].items():
        samples = [g for c in report['cases'] if c['condition'] == condition
                   for g in c['ceiling_samples_gflops']]
        assert min(samples) <= ceiling <= max(samples)
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


def test_encoder_macs_count_every_convolution():
    model = LIIF(SMALL_EDSR, {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [64]}})
    # head 3 -> 16, two blocks of two 16 -> 16, the body's last 16 -> 16: all 3x3, same size.
    per_pixel = 9 * (3 * 16 + 5 * 16 * 16)
    assert encoder_macs(model, 7, 5) == 7 * 5 * per_pixel


def test_the_case_counts_the_encoder_in_its_share_of_the_ceiling(monkeypatch):
    torch.manual_seed(0)
    model = LIIF(SMALL_EDSR, {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [64]}})
    model.eval()
    rates = iter([90.0, 130.0, 100.0])  # the median of a case's samples is its ceiling
    monkeypatch.setattr(BENCH, 'matmul_rate', lambda *args: next(rates))
    with torch.no_grad():
        case = bench_case(model, 6, 4, 3, 1, 'float32', 'quiet')
    assert case['ceiling_samples_gflops'] == [90.0, 130.0, 100.0]
    assert case['ceiling_gflops'] == 100.0
    assert case['macs'] == {'decoder': pytest.approx(24 * 24 * fast_macs_per_query(
        model, 6, 6, 24 * 24)), 'encoder': encoder_macs(model, 6, 6)}
    for path in ('upscale', 'fast-query'):
        ratio = case['gflops_with_encoder'][path] / case['gflops'][path]
        assert ratio == pytest.approx(1 + case['macs']['encoder'] / case['macs']['decoder'])
        assert case['pct_of_ceiling_with_encoder'][path] == pytest.approx(
            case['gflops_with_encoder'][path])  # a ceiling of 100 GFLOP/s


def test_machine_info_names_the_machine():
    info = machine_info(3)
    assert info['threads'] == 3 and info['torch'] == torch.__version__
    assert info['bf16_units'] in (True, False) and info['cpu'] and info['cpu_capability']


def test_bf16_cost_compares_both_precisions_on_photos(tmp_path):
    """Emulated on a CPU without bfloat16 instructions, native on one with them: the same
    arithmetic, so the PSNR cost is small either way and the record says which it was."""
    from PIL import Image
    torch.manual_seed(0)
    model = LIIF(SMALL_EDSR, {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [64]}})
    model.eval()
    rows = torch.linspace(0, 1, 64).view(-1, 1)
    img = torch.stack([rows * rows.t(), rows.expand(64, 64), rows.t().expand(64, 64)], dim=-1)
    Image.fromarray((img * 255).round().byte().numpy()).save(tmp_path / 'a.png')
    with torch.no_grad():
        cost = bf16_cost(model, [tmp_path / 'a.png'], scales=(2, 4), crop=48)
    assert cost['emulated'] is (not RENDER.cpu_has_bf16())
    assert cost['photos'] == ['a.png'] and set(cost['scales']) == {'x2', 'x4'}
    for s in cost['scales'].values():
        assert s['psnr_cost_db'] == pytest.approx(s['psnr_float32'] - s['psnr_bfloat16'])
        assert 0 < s['max_abs_diff'] <= 0.05 and abs(s['psnr_cost_db']) < 3
        assert s['speedup'] == pytest.approx(s['seconds_float32'] / s['seconds_bfloat16'])


def test_the_readme_copies_the_cached_bench():
    """The README's performance tables are ``format_table`` and ``format_bf16`` of
    book/results/bench-cpu.json and bench-cpu-1-thread.json, and it names the commands and
    the machine they record."""
    from pathlib import Path
    from liif_core.bench import format_bf16, format_table
    results = Path(__file__).resolve().parent.parent / 'book' / 'results'
    bench, one_thread = (json.loads((results / f'{name}.json').read_text())
                         for name in ('bench-cpu', 'bench-cpu-1-thread'))
    readme = (results.parent.parent / 'README.md').read_text()
    section = readme.split('\n## Performance\n')[1].split('\n## ')[0]
    tables = [line for line in section.splitlines() if line.startswith('|')]
    assert tables == (format_table(bench['cases']).splitlines()
                      + format_table(one_thread['cases']).splitlines()
                      + format_bf16(bench['bf16']).splitlines())
    text = ' '.join(section.split())
    assert bench['machine_info']['cpu'] in text
    assert one_thread['machine_info']['cpu'] == bench['machine_info']['cpu']
    for report in (bench, one_thread):
        assert report['command'].replace(' --no-progress', '') in text
