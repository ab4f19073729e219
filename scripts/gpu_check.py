"""``make gpu-check``: measure a GPU machine for the book, in one command and a few minutes.

    PYTHONPATH=. python3 scripts/gpu_check.py          # what `make gpu-check` runs

Runs with the python that is already there (a CUDA build of torch, numpy, Pillow, PyYAML, tqdm;
pytest for the first step), without network and without installing anything, on training
photos it makes itself (under 20 MB: crops of the stand-in photos when data/standin is there,
else synthetic ones). Steps, each written to the JSON as soon as it ends, so that a run cut
short still reports what it measured:

1. ``tests``: the CUDA tests of the suite (``pytest -k cuda``);
2. ``decode``: ``liif bench``'s x4 and x30 cases (upscale, the official algorithm, the raw
   fast query), in float32 and under bfloat16 and float16 autocast;
3. ``train_steps``: training steps per second of the paper's batch (16 crops of 48x48, 2304
   queries each, EDSR-baseline-LIIF, Adam), in float32 (TF32 on) and each autocast dtype;
4. ``recipe``: the paper's recipe (train_edsr-baseline-liif, data replaced by these photos)
   for a few hundred steps under ``torchrun`` with every visible GPU, with the wall-clock of the
   full recipe (1000 epochs of 1000 steps) that its steps per second imply;
5. ``resume``: the same recipe stopped after epoch 1 and resumed: its log against the
   uninterrupted run's;
6. ``upscale``: ``liif upscale`` of a 1020x678 image to 2040x1356 (x2), the shipped weights,
   start-up included.

Writes ``book/results/gpu/<device>.json``. On a machine without CUDA it says so in one line,
runs short CPU versions of steps 3-6 (a rehearsal: 340x226 for the upscale) into
``_build/gpu-check/cpu.json``, and exits 0.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
STANDIN = ROOT / 'data' / 'standin'
PAPER_CONFIG = 'train_edsr-baseline-liif'
FULL_RECIPE_STEPS = 1000 * 1000  # 1000 epochs of 800 images x repeat 20 / batch 16
# The official code's reported training time of this recipe, for the book's comparison: about
# 31 hours on one RTX 8000.
OFFICIAL_HOURS_RTX8000 = 31
CROP = 384  # side of each photo: 31 photos of 384x384 stay under 20 MB as PNG
TRAIN_PHOTOS, VALID_PHOTOS = 27, 4  # the stand-in set's 27 training photos, 4 for validation


class Report:
    """The JSON of this run, rewritten after every step."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path, self.data = path, dict(header, steps={})
        path.parent.mkdir(parents=True, exist_ok=True)
        self.write()

    def write(self) -> None:
        tmp = self.path.with_suffix('.tmp')
        tmp.write_text(json.dumps(self.data, indent=1) + '\n')
        tmp.replace(self.path)

    def step(self, name: str, fn: Callable[[], dict[str, Any]]) -> None:
        start = time.time()
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 - one failed step must not lose the others
            result = {'error': f'{type(e).__name__}: {e}'.splitlines()[0][:500]}
        result['seconds'] = round(time.time() - start, 1)
        self.data['steps'][name] = result
        self.write()
        print(f'{name}: {json.dumps(result)}', flush=True)


def device_slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')


# -- data --------------------------------------------------------------------------------------


def make_photos(folder: Path) -> str:
    """Training (train/) and validation (valid/) photos of CROP x CROP; returns their origin."""
    (folder / 'train').mkdir(parents=True)
    (folder / 'valid').mkdir()
    sources = {split: sorted((STANDIN / split).glob('*.png')) for split in ('train', 'valid')}
    if all(sources.values()):
        for split, paths in sources.items():
            for path in paths[:TRAIN_PHOTOS if split == 'train' else VALID_PHOTOS]:
                with Image.open(path) as img:
                    w, h = img.size
                    left, top = (w - CROP) // 2, (h - CROP) // 2
                    img.convert('RGB').crop((left, top, left + CROP, top + CROP)).save(
                        folder / split / path.name)
        return 'centre crops of the stand-in photos'
    rng = np.random.default_rng(0)
    rows = np.linspace(0, 1, CROP)[:, None, None]
    cols = np.linspace(0, 1, CROP)[None, :, None]
    for split, n in (('train', TRAIN_PHOTOS), ('valid', VALID_PHOTOS)):
        for i in range(n):
            f = rng.uniform(2, 12, (2, 3))
            img = 0.5 + 0.3 * np.sin(f[0] * 6 * rows + f[1] * 4 * cols + rng.uniform(0, 6, 3))
            img = img + 0.1 * (rng.random((CROP, CROP, 1)) > 0.97)  # sparse bright dots
            Image.fromarray((img.clip(0, 1) * 255).astype(np.uint8)).save(
                folder / split / f'{i:04d}.png')
    return 'synthetic (no data/standin)'


def recipe_config(photos: Path, steps_per_epoch: int, batch_size: int) -> dict[str, Any]:
    """The paper's config with these photos; an epoch of ``steps_per_epoch`` steps."""
    from liif_core.configs import load_config
    config = load_config(PAPER_CONFIG)
    train_args = config['train_dataset']['dataset']['args']
    train_args['root_path'] = str(photos / 'train')
    train_args['repeat'] = max(1, steps_per_epoch * batch_size // TRAIN_PHOTOS)
    config['train_dataset']['batch_size'] = batch_size
    val_args = config['val_dataset']['dataset']['args']
    val_args.update(root_path=str(photos / 'valid'), first_k=VALID_PHOTOS, repeat=4)
    config['val_dataset']['batch_size'] = batch_size
    config['epoch_save'] = None
    return config


# -- steps -------------------------------------------------------------------------------------


def cuda_tests() -> list[str]:
    """The suite's tests that run only with a CUDA device (skipped elsewhere), as node ids."""
    marker = re.compile(r'@pytest\.mark\.skipif\(not torch\.cuda\.is_available\(\)[^\n]*\n'
                        r'(?:@[^\n]*\n)*def (\w+)')
    return [f'tests/{path.name}::{name}' for path in sorted((ROOT / 'tests').glob('test_*.py'))
            for name in marker.findall(path.read_text())]


def run_tests() -> dict[str, Any]:
    try:
        import pytest  # noqa: F401
    except ImportError:
        return {'skipped': 'pytest is not installed in this python'}
    tests = cuda_tests()
    done = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                           *tests], cwd=ROOT, capture_output=True, text=True, timeout=240)
    return {'tests': tests, 'returncode': done.returncode,
            'summary': done.stdout.strip().splitlines()[-1:]}


def _timed(fn: Callable[[], Any], device: torch.device, repeat: int) -> float:
    """Median seconds of ``fn`` (after one warm-up call), the device's queue drained."""
    def sync() -> None:
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
    fn()
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _amp_dtypes(device: torch.device) -> dict[str, torch.dtype | None]:
    dtypes: dict[str, torch.dtype | None] = {'float32': None, 'bf16': torch.bfloat16}
    if device.type == 'cuda':
        dtypes['fp16'] = torch.float16
    return dtypes


def decode(device: torch.device, repeat: int, scales: tuple[int, ...] = (4, 30)
           ) -> dict[str, Any]:
    """``liif bench``'s cases at these scales on this device, in every precision."""
    from liif_core import bench
    from liif_core.models import create_model
    torch.manual_seed(bench.SEED)
    model = create_model('edsr_baseline_liif').to(device).eval()
    ceiling = bench.matmul_peak(device)
    return {f'x{scale}_{dtype}': bench.bench_case(model, size, scale, repeat,
                                                  torch.get_num_threads(), dtype, 'quiet',
                                                  ceiling)
            for size, scale in bench.CASES if scale in scales
            for dtype in ('float32', 'bfloat16', 'float16')}


def train_steps(device: torch.device, repeat: int, steps: int,
                batch_size: int = 16) -> dict[str, Any]:
    """Steps per second of ``liif_core.train.train_step`` on the paper's batch: each dtype timed
    in turn, ``repeat`` rounds, the median kept."""
    from liif_core.models import create_model
    from liif_core.train import train_step
    from liif_core.train_state import make_optimizer
    g = torch.Generator().manual_seed(0)
    batch = [t.to(device) for t in (torch.rand(batch_size, 3, 48, 48, generator=g) * 2 - 1,
                                    torch.rand(batch_size, 2304, 2, generator=g) * 2 - 1,
                                    torch.full((batch_size, 2304, 2), 2 / 120),
                                    torch.rand(batch_size, 2304, 3, generator=g) * 2 - 1)]
    runs = {}
    for name, dtype in _amp_dtypes(device).items():
        model = create_model('edsr_baseline_liif').to(device).train()
        optimizer = make_optimizer(model.parameters(), {'name': 'adam', 'args': {'lr': 1e-4}})
        scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
        runs[name] = lambda model=model, optimizer=optimizer, scaler=scaler, dtype=dtype: [
            train_step(model, optimizer, scaler, *batch, amp_dtype=dtype) for _ in range(steps)]
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, fn in runs.items():  # interleaved: background load hits every dtype alike
            times[name].append(_timed(fn, device, 1))
    rates = {name: steps / statistics.median(t) for name, t in times.items()}
    return {'batch': batch_size, 'steps_per_s': rates,
            'speedup_vs_float32': {k: v / rates['float32'] for k, v in rates.items()}}


def torchrun_train(config: dict[str, Any], save_dir: Path, nproc: int, epochs: int,
                   device: torch.device, resume: bool = False) -> list[dict[str, Any]]:
    """``liif train`` under torchrun; the run's log."""
    config_path = save_dir.with_suffix('.yaml')
    config_path.write_text(yaml.safe_dump(config))
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
               f'--nproc_per_node={nproc}', '-m', 'liif_core', 'train', str(config_path),
               '--save-dir', str(save_dir), '--epochs', str(epochs), '--device', device.type,
               '--num-workers', '2']
    if device.type == 'cpu':
        command += ['--threads', '1']
    subprocess.run(command + (['--resume'] if resume else []), cwd=ROOT, check=True,
                   capture_output=True, timeout=600,
                   env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1'))
    return [json.loads(line) for line in (save_dir / 'log.jsonl').read_text().splitlines()]


def recipe(photos: Path, work: Path, device: torch.device, nproc: int, steps_per_epoch: int,
           epochs: int, batch_size: int) -> dict[str, Any]:
    config = recipe_config(photos, steps_per_epoch, batch_size)
    log = torchrun_train(config, work / 'recipe', nproc, epochs, device)
    repeat = config['train_dataset']['dataset']['args']['repeat']
    steps = math.ceil(TRAIN_PHOTOS * repeat / batch_size)
    # The first epoch also starts the workers and warms the kernels: the last one gives the
    # rate (its time includes validating 16 crops and saving a checkpoint, as every epoch's).
    rate = steps / log[-1]['time']
    return {'processes': nproc, 'batch': batch_size, 'steps_per_epoch': steps,
            'log': log, 'steps_per_s': rate,
            'full_recipe_hours': FULL_RECIPE_STEPS / rate / 3600 if batch_size == 16 else None,
            'official_hours_rtx8000': OFFICIAL_HOURS_RTX8000}


def resume_check(photos: Path, work: Path, device: torch.device, nproc: int,
                 steps_per_epoch: int, batch_size: int) -> dict[str, Any]:
    config = recipe_config(photos, steps_per_epoch, batch_size)
    straight = torchrun_train(config, work / 'straight', nproc, 2, device)
    torchrun_train(config, work / 'stopped', nproc, 1, device)
    resumed = torchrun_train(config, work / 'stopped', nproc, 2, device, resume=True)
    keys = ('train_loss', 'val_psnr', 'val_psnr_bicubic')
    diff = max(abs(a[k] - b[k]) for a, b in zip(straight, resumed) for k in keys)
    return {'processes': nproc, 'max_abs_log_difference': diff, 'identical': diff == 0}


def upscale(work: Path, device: torch.device, width: int, height: int) -> dict[str, Any]:
    """``liif upscale --scale 2`` of a width x height image, in a fresh process."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
        work / 'in.png')
    start = time.time()
    subprocess.run([sys.executable, '-m', 'liif_core', 'upscale', str(work / 'in.png'),
                    str(work / 'out.png'), '--scale', '2', '--device', device.type,
                    '--no-progress'], cwd=ROOT, check=True, capture_output=True, timeout=600,
                   env=dict(os.environ, PYTHONPATH=str(ROOT)))
    with Image.open(work / 'out.png') as out:
        size = out.size
    return {'input': f'{width}x{height}', 'output': f'{size[0]}x{size[1]}',
            'wall_s_with_start_up': time.time() - start}


# -- main --------------------------------------------------------------------------------------


def main() -> int:
    from liif_core.device import cpu_name
    cuda = torch.cuda.is_available()
    if cuda:
        device, name = torch.device('cuda'), torch.cuda.get_device_name(0)
        nproc = torch.cuda.device_count()
        out = ROOT / 'book' / 'results' / 'gpu' / f'{device_slug(name)}.json'
    else:
        print('gpu-check: no CUDA device here; running the CPU rehearsal of the training steps '
              'only', flush=True)
        device, name, nproc = torch.device('cpu'), cpu_name(), 2
        torch.set_num_threads(1)  # as the torchrun processes: threads contend on a busy CPU
        out = ROOT / '_build' / 'gpu-check' / 'cpu.json'
    header = {'device': name, 'device_count': nproc if cuda else 0,
              'date': datetime.date.today().isoformat(), 'torch': torch.__version__,
              'cuda': torch.version.cuda, 'cpu': cpu_name(), 'tf32': cuda}
    report = Report(out, header)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        report.data['photos'] = make_photos(work / 'photos')
        report.write()
        if cuda:
            report.step('tests', run_tests)
            report.step('decode', lambda: decode(device, repeat=5))
            report.step('train_steps', lambda: train_steps(device, repeat=3, steps=20))
            report.step('recipe', lambda: recipe(work / 'photos', work, device, nproc,
                                                 steps_per_epoch=100, epochs=3, batch_size=16))
            report.step('resume', lambda: resume_check(work / 'photos', work, device, nproc,
                                                       steps_per_epoch=50, batch_size=16))
            report.step('upscale', lambda: upscale(work, device, 1020, 678))
        else:  # the same code on a budget a CPU finishes in a few minutes
            report.step('train_steps', lambda: train_steps(device, repeat=2, steps=2,
                                                           batch_size=2))
            report.step('recipe', lambda: recipe(work / 'photos', work, device, nproc,
                                                 steps_per_epoch=4, epochs=1, batch_size=2))
            report.step('resume', lambda: resume_check(work / 'photos', work, device, nproc,
                                                       steps_per_epoch=2, batch_size=2))
            report.step('upscale', lambda: upscale(work, device, 340, 226))
    print(f'gpu-check: {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
