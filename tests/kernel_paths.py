"""Cached numbers against the CPU's kernel paths.

Float results of training and inference depend on which SIMD kernels torch, MKL and oneDNN pick
for the CPU they run on (AVX2, AVX-512, or none): the summation order changes, and training
amplifies the difference step after step. A number cached on one machine is therefore compared
with a tolerance derived from the spread measured across the kernel paths, recorded in
``tests/kernel_drift.json`` beside this file.

``python tests/kernel_paths.py`` measures that spread again: every cached number that the tests
recompute is recomputed once per kernel path, each in its own process (the three libraries read
their settings once, at start-up), and the differences to the cache are written to the JSON.
The paths run side by side, about 5 minutes each on one core.

Emulated paths on one CPU do not cover every CPU: another vendor's MKL and oneDNN kernels can
differ by more. The JSON's ``other_machines`` keeps numbers recorded on other CPUs (kept across
measurements; remove an entry whose cache or code has changed since), and they count in the
spread too.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DRIFT_FILE = Path(__file__).with_name('kernel_drift.json')
ABLATION = ROOT / 'book' / 'results' / 'ablation'
RESULTS = ROOT / 'book' / 'results'

# The settings that cap each library's instruction set; an empty dict is what the CPU picks.
KERNEL_PATHS = {
    'default': {},
    'avx2': {'ATEN_CPU_CAPABILITY': 'avx2', 'MKL_ENABLE_INSTRUCTIONS': 'AVX2',
             'ONEDNN_MAX_CPU_ISA': 'AVX2'},
    'avx512': {'ATEN_CPU_CAPABILITY': 'avx512', 'MKL_ENABLE_INSTRUCTIONS': 'AVX512',
               'ONEDNN_MAX_CPU_ISA': 'AVX512_CORE'},
    'no-simd': {'ATEN_CPU_CAPABILITY': 'default', 'MKL_ENABLE_INSTRUCTIONS': 'SSE4_2',
                'ONEDNN_MAX_CPU_ISA': 'SSE41'},
}
# file -> (image, scale) of the cached sweeps that tests/test_book_results.py recomputes
SWEEP_CHECKS = {'benchmark-standin.json': ('Kite.png', 12),
                'benchmark-samples.json': ('chelsea.png', 4)}
FIRST_EPOCH_KEYS = ('train_loss', 'val_psnr', 'val_psnr_bicubic')


def first_epoch(save_dir: Path) -> dict[str, float]:
    """LIIF(-e), seed 0, trained again for its first epoch (68 iterations, the cheapest ablation
    variant) on one thread, as scripts/ablation.sh runs it; its log line."""
    import torch

    from liif_core.configs import load_config
    from liif_core.train import train

    torch.set_num_threads(1)
    cfg = load_config('cpu/ablation/ablation_liif-e')
    cfg['epoch_max'] = 1
    train(cfg, save_dir, data_root=ROOT / 'data', progress=False, log=lambda line: None)
    line = json.loads((save_dir / 'log.jsonl').read_text().splitlines()[0])
    return {k: line[k] for k in FIRST_EPOCH_KEYS}


def cached_first_epoch() -> dict[str, float]:
    line = json.loads((ABLATION / 'liif-e-seed0.log.jsonl').read_text().splitlines()[0])
    return {k: line[k] for k in FIRST_EPOCH_KEYS}


def cached_entry(sweep: Path, image: str, scale) -> dict[str, float]:
    """One photo's cached numbers at one scale of the sweep file ``sweep``."""
    from liif_core.report import read_json
    rows, _ = read_json(sweep)
    row = next(r for r in rows if r.scale == scale)
    i = row.names.index(image)
    return {'psnr': row.per_image[i], 'psnr_bicubic': row.per_image_bicubic[i]}


def recomputed_entry(sweep: Path, image: str, scale) -> dict[str, float]:
    """The same entry computed again on two threads, by the command and weights recorded in
    the sweep file (a shipped name, or a file under the project root)."""
    import shlex

    import torch

    from liif_core.evaluate import evaluate_scales
    from liif_core.pretrained import resolve_model
    from liif_core.report import read_json

    _, meta = read_json(sweep)
    words = shlex.split(meta['command'])
    weights = ROOT / meta['weights']
    torch.set_num_threads(2)
    fresh, = evaluate_scales(
        resolve_model(weights if weights.is_file() else meta['weights']),
        [ROOT / words[words.index('--hr') + 1] / image], [scale], meta['protocol'],
        crop=meta['crop'], progress=False)
    return {'psnr': fresh.psnr, 'psnr_bicubic': fresh.psnr_bicubic}


def cached_sweep_entry(file: str) -> dict[str, float]:
    return cached_entry(RESULTS / file, *SWEEP_CHECKS[file])


def sweep_entry(file: str) -> dict[str, float]:
    """One entry of a cached sweep, computed again by the command that made it."""
    return recomputed_entry(RESULTS / file, *SWEEP_CHECKS[file])


def tolerance(check: str, key: str, floor: float) -> float:
    """Three times the largest difference to the cache measured across kernel paths, and never
    less than ``floor`` (the spread of one path: thread counts, summation order)."""
    drift = json.loads(DRIFT_FILE.read_text())['max_abs_drift'][check][key]
    return max(3 * drift, floor)


def _measure_here() -> dict:
    """Every recomputed number, in this process, with the kernel path it ran on."""
    import torch
    with tempfile.TemporaryDirectory() as tmp:
        numbers = {'first_epoch': first_epoch(Path(tmp) / 'run')}
    for file in SWEEP_CHECKS:
        numbers[file] = sweep_entry(file)
    return {'aten': torch.backends.cpu.get_cpu_capability(), 'numbers': numbers}


def _max_drift(cached: dict, observed: list[dict]) -> dict[str, dict[str, float]]:
    """The largest difference to the cache of each number, over every observation that has it."""
    return {check: {key: max(abs(numbers[check][key] - want)
                             for numbers in observed if check in numbers)
                    for key, want in values.items()}
            for check, values in cached.items()}


def measure() -> dict:
    previous = json.loads(DRIFT_FILE.read_text()) if DRIFT_FILE.is_file() else {}
    procs = {name: subprocess.Popen([sys.executable, __file__, '--here'], cwd=ROOT,
                                    env={**os.environ, **env}, stdout=subprocess.PIPE, text=True)
             for name, env in KERNEL_PATHS.items()}
    runs = {}
    for name, proc in procs.items():
        out, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f'kernel path {name} failed (exit {proc.returncode})')
        runs[name] = json.loads(out.splitlines()[-1])
    others = previous.get('other_machines', [])
    cached = {'first_epoch': cached_first_epoch(),
              **{file: cached_sweep_entry(file) for file in SWEEP_CHECKS}}
    observed = [run['numbers'] for run in runs.values()] + [o['numbers'] for o in others]
    from liif_core.device import machine_description
    return {'command': 'python tests/kernel_paths.py', 'machine': machine_description(1),
            'cached': cached, 'runs': runs, 'other_machines': others,
            'max_abs_drift': _max_drift(cached, observed)}


if __name__ == '__main__':
    sys.path.insert(0, str(ROOT))
    if sys.argv[1:] == ['--here']:
        print(json.dumps(_measure_here()))
    else:
        result = measure()
        DRIFT_FILE.write_text(json.dumps(result, indent=1) + '\n')
        print(json.dumps(result['max_abs_drift'], indent=1))
