"""Measure a GPU machine for the book, in one command and at most eight minutes.

    python3 scripts/gpu_check.py --out DIR         # on the GPU machine: DIR/<device>.json
    python3 scripts/gpu_check.py --out DIR --rehearse   # on a CPU: the same steps, small
    make gpu-check                                  # --out book/results/gpu

Needs only the python that is already there (a CUDA build of torch, numpy, Pillow, PyYAML,
tqdm): no venv, no make, no network, nothing installed; this repository is put on the path by
the script itself. Training photos are made on the spot (under 20 MB: centre crops of the
stand-in photos when data/standin is there, else synthetic ones).

Each step runs in its own process, under its own time limit and under one deadline for the
whole run (``--budget``, 480 s): a step that fails or hangs costs only its own result. Steps,
most useful first:

1. ``decode``: ``liif bench``'s x4 and x30 cases (upscale, the official algorithm, the raw
   fast query) in float32 (TF32 off) and in each half precision the device runs natively;
2. ``train_steps``: training steps per second of the paper's batch (16 crops of 48x48, 2304
   queries each, EDSR-baseline-LIIF, Adam): float32 with TF32 off and on, and each autocast
   dtype, interleaved;
3. ``recipe``: the paper's recipe (train_edsr-baseline-liif, data replaced by these photos) for
   a few hundred steps, ``liif train`` with TF32 as it sets it, without validation, on every
   GPU (``torchrun`` only with more than one): steps per second from the last epoch's training
   time (checkpoints are saved after it is taken), and the full recipe's hours at that rate;
4. ``upscale``: ``liif upscale`` of a 1020x678 image to 2040x1356 (x2), the shipped weights,
   start-up included (120x80 in the rehearsal);
5. ``resume``: the recipe stopped after epoch 1 and resumed: its log against an uninterrupted
   run's;
6. ``tests``: the suite's CUDA tests, where pytest is installed.

The JSON is rewritten after every step, so a run cut short keeps what it measured. ``steps``
holds each measured step's results; ``runs`` holds every step's outcome (``ok``, ``failed``,
``timeout`` or ``not_run``), its seconds and limit, the flags it actually ran with (TF32 as set,
precisions, DataLoader workers, processes) and, when it did not succeed, the last line and the
tail of its error output. ``--fail STEP`` makes a step raise on purpose (to check that
record). Without CUDA and without ``--rehearse`` the script says so in one line and exits 0.
"""
from __future__ import annotations

import argparse
import datetime
import faulthandler
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # liif_core from this checkout, without installing it

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

from liif_core.device import cpu_name  # noqa: E402

STANDIN = ROOT / 'data' / 'standin'
PAPER_CONFIG = 'train_edsr-baseline-liif'
FULL_RECIPE_STEPS = 1000 * 1000  # 1000 epochs of 800 images x repeat 20 / batch 16
# The official code's reported training time of this recipe, for the book's comparison: about
# 31 hours on one RTX 8000.
OFFICIAL_HOURS_RTX8000 = 31
CROP = 384  # side of each photo: 31 photos of 384x384 stay under 20 MB as PNG
TRAIN_PHOTOS, VALID_PHOTOS = 27, 4  # the stand-in set's 27 training photos, 4 for validation
# The whole run must fit in one 10-minute command with time to spare.
BUDGET_S = 480
# A step is not started with less than this left: it would only be cut short.
MIN_STEP_S = 15
# Characters of a failed step's error output kept in the JSON.
TAIL_CHARS = 3000
STEPS = ('decode', 'train_steps', 'recipe', 'upscale', 'resume', 'tests')
# Each step's own time limit in seconds, on the GPU and in the CPU rehearsal (the deadline of
# the whole run may cut it shorter). On an H100 each step needs well under half of it.
LIMITS = {'decode': (120, 120), 'train_steps': (90, 60), 'recipe': (150, 90),
          'upscale': (60, 60), 'resume': (150, 150), 'tests': (90, 60)}
# What each step does on the GPU, and the same code on a budget a 2-core CPU finishes.
PLANS = {
    'cuda': {'decode': dict(repeat=5, scales=(4, 30), quick=False),
             'train_steps': dict(repeat=3, steps=20, batch_size=16),
             'recipe': dict(steps_per_epoch=100, epochs=3, batch_size=16),
             'upscale': dict(width=1020, height=678),
             'resume': dict(steps_per_epoch=50, batch_size=16)},
    'cpu': {'decode': dict(repeat=1, scales=(4,), quick=True),
            'train_steps': dict(repeat=1, steps=1, batch_size=1),
            'recipe': dict(steps_per_epoch=2, epochs=2, batch_size=2),
            'upscale': dict(width=120, height=80),
            'resume': dict(steps_per_epoch=2, batch_size=2)},
}


class FailedOnPurpose(RuntimeError):
    """Raised by the step named by ``--fail``."""


# -- the machine --------------------------------------------------------------------------------


def device_slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')


def cpus() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()


def gpu_count(device: torch.device) -> int:
    return torch.cuda.device_count() if device.type == 'cuda' else 1


def loader_workers(device: torch.device) -> int:
    """DataLoader workers per training process: the machine's CPUs shared among the processes,
    one left for each process itself, at most 8 (the paper's configs)."""
    return max(1, min(8, cpus() // gpu_count(device) - 1))


def matmul_flags() -> dict[str, Any]:
    """The float32 settings in force now: TF32 for matrix products and for convolutions."""
    return {'tf32_matmul': torch.backends.cuda.matmul.allow_tf32,
            'tf32_cudnn': torch.backends.cudnn.allow_tf32,
            'float32_matmul_precision': torch.get_float32_matmul_precision()}


def set_tf32(on: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = on


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


def recipe_config(photos: Path, steps_per_epoch: int, batch_size: int, validate: bool
                  ) -> dict[str, Any]:
    """The paper's config with these photos; an epoch of ``steps_per_epoch`` steps."""
    from liif_core.configs import load_config
    config = load_config(PAPER_CONFIG)
    train_args = config['train_dataset']['dataset']['args']
    train_args['root_path'] = str(photos / 'train')
    # Fewer photos than the set's when an epoch is shorter than one pass (the rehearsal).
    train_args['first_k'] = min(TRAIN_PHOTOS, steps_per_epoch * batch_size)
    train_args['repeat'] = max(1, steps_per_epoch * batch_size // TRAIN_PHOTOS)
    config['train_dataset']['batch_size'] = batch_size
    val_args = config['val_dataset']['dataset']['args']
    val_args.update(root_path=str(photos / 'valid'), first_k=VALID_PHOTOS, repeat=4)
    config['val_dataset']['batch_size'] = batch_size
    config['epoch_save'] = None
    if not validate:
        config['epoch_val'] = None
    return config


# -- steps (each runs in its own process) -------------------------------------------------------


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


def half_dtypes(device: torch.device) -> dict[str, torch.dtype]:
    """The autocast dtypes this device runs natively, by the names ``liif train --amp`` uses."""
    from liif_core.render import precision
    out = {}
    for name, dtype in (('bf16', torch.bfloat16), ('fp16', torch.float16)):
        try:
            precision(dtype, device)
        except ValueError:
            continue
        out[name] = dtype
    return out


def step_decode(work: Path, device: torch.device, repeat: int, scales: tuple[int, ...],
                quick: bool) -> dict[str, Any]:
    """``liif bench``'s cases at these scales, in float32 (TF32 off) and each half precision."""
    from liif_core import bench
    from liif_core.models import create_model
    set_tf32(False)
    torch.manual_seed(bench.SEED)
    model = create_model('edsr_baseline_liif').to(device).eval()
    dtypes = ['float32'] + [str(d).removeprefix('torch.') for d in half_dtypes(device).values()]
    cases = bench.QUICK_CASES if quick else bench.CASES
    results = {}
    with torch.no_grad():
        for dtype in dtypes:
            for size, scale in cases:
                if scale in scales:
                    results[f'x{scale}_{dtype}'] = bench.bench_case(
                        model, size, scale, repeat, torch.get_num_threads(), dtype, 'quiet')
    return {'results': results,
            'flags': dict(matmul_flags(), dtypes=dtypes, threads=torch.get_num_threads())}


def step_train_steps(work: Path, device: torch.device, repeat: int, steps: int,
                     batch_size: int) -> dict[str, Any]:
    """Steps per second of ``liif_core.train.train_step`` on the paper's batch: each precision
    timed in turn, ``repeat`` rounds, the median kept."""
    from liif_core.models import create_model
    from liif_core.train import train_step
    from liif_core.train_state import make_optimizer
    g = torch.Generator().manual_seed(0)
    batch = [t.to(device) for t in (torch.rand(batch_size, 3, 48, 48, generator=g) * 2 - 1,
                                    torch.rand(batch_size, 2304, 2, generator=g) * 2 - 1,
                                    torch.full((batch_size, 2304, 2), 2 / 120),
                                    torch.rand(batch_size, 2304, 3, generator=g) * 2 - 1)]
    # name -> (autocast dtype, TF32): TF32 matters only to float32 on CUDA.
    variants: dict[str, tuple[torch.dtype | None, bool]] = {'float32': (None, False)}
    if device.type == 'cuda':
        variants['tf32'] = (None, True)
    variants.update((name, (dtype, False)) for name, dtype in half_dtypes(device).items())
    runs = {}
    for name, (dtype, _) in variants.items():
        model = create_model('edsr_baseline_liif').to(device).train()
        optimizer = make_optimizer(model.parameters(), {'name': 'adam', 'args': {'lr': 1e-4}})
        scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
        runs[name] = lambda model=model, optimizer=optimizer, scaler=scaler, dtype=dtype: [
            train_step(model, optimizer, scaler, *batch, amp_dtype=dtype) for _ in range(steps)]
    times: dict[str, list[float]] = {name: [] for name in runs}
    flags = {}
    for _ in range(repeat):
        for name, fn in runs.items():  # interleaved: background load hits every variant alike
            set_tf32(variants[name][1])
            flags[name] = matmul_flags()
            times[name].append(_timed(fn, device, 1))
    rates = {name: steps / statistics.median(t) for name, t in times.items()}
    return {'results': {'batch': batch_size, 'steps_per_s': rates,
                        'speedup_vs_float32': {k: v / rates['float32'] for k, v in rates.items()}},
            'flags': {'per_variant': flags, 'threads': torch.get_num_threads()}}


def _child_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''))


def liif_train(config: dict[str, Any], save_dir: Path, device: torch.device, epochs: int,
               resume: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``liif train``, under torchrun only with several GPUs; the run's log and its flags."""
    config_path = save_dir.with_suffix('.yaml')
    config_path.write_text(yaml.safe_dump(config))
    nproc, workers = gpu_count(device), loader_workers(device)
    launcher = [sys.executable]
    if nproc > 1:  # torchrun's rendezvous needs loopback networking: only where it is needed
        launcher += ['-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}']
    command = launcher + ['-m', 'liif_core', 'train', str(config_path), '--save-dir',
                          str(save_dir), '--epochs', str(epochs), '--device', device.type,
                          '--num-workers', str(workers), '--no-progress']
    if device.type == 'cpu':
        command += ['--threads', '1']
    done = subprocess.run(command + (['--resume'] if resume else []), cwd=ROOT,
                          capture_output=True, text=True, env=_child_env())
    if done.returncode:
        sys.stderr.write(done.stderr[-TAIL_CHARS:])
        raise RuntimeError(f'liif train exited with status {done.returncode}')
    log = [json.loads(line) for line in (save_dir / 'log.jsonl').read_text().splitlines()]
    # liif train's TF32 default (on, for CUDA); no --amp: float32.
    flags = {'processes': nproc, 'torchrun': nproc > 1, 'num_workers': workers,
             'tf32': device.type == 'cuda', 'amp': None}
    return log, flags


def step_recipe(work: Path, device: torch.device, steps_per_epoch: int, epochs: int,
                batch_size: int) -> dict[str, Any]:
    config = recipe_config(work / 'photos', steps_per_epoch, batch_size, validate=False)
    log, flags = liif_train(config, work / 'recipe', device, epochs)
    train_args = config['train_dataset']['dataset']['args']
    steps = math.ceil(train_args['first_k'] * train_args['repeat'] / batch_size)
    # The first epoch also starts the workers and warms the kernels: the last one gives the
    # rate. Its time is training only: no validation, and the checkpoint is saved after it.
    rate = steps / log[-1]['time']
    return {'results': {'processes': flags['processes'], 'batch': batch_size,
                        'steps_per_epoch': steps, 'log': log, 'steps_per_s': rate,
                        'rate_counts': 'training steps only (no validation, no checkpoint save)',
                        'full_recipe_hours': (FULL_RECIPE_STEPS / rate / 3600
                                              if batch_size == 16 else None),
                        'official_hours_rtx8000': OFFICIAL_HOURS_RTX8000},
            'flags': flags}


def step_resume(work: Path, device: torch.device, steps_per_epoch: int, batch_size: int
                ) -> dict[str, Any]:
    config = recipe_config(work / 'photos', steps_per_epoch, batch_size, validate=True)
    straight, flags = liif_train(config, work / 'straight', device, 2)
    liif_train(config, work / 'stopped', device, 1)
    resumed, _ = liif_train(config, work / 'stopped', device, 2, resume=True)
    keys = ('train_loss', 'val_psnr', 'val_psnr_bicubic')
    diff = max(abs(a[k] - b[k]) for a, b in zip(straight, resumed) for k in keys)
    return {'results': {'processes': flags['processes'], 'max_abs_log_difference': diff,
                        'identical': diff == 0},
            'flags': flags}


def step_upscale(work: Path, device: torch.device, width: int, height: int) -> dict[str, Any]:
    """``liif upscale --scale 2`` of a width x height image, in a fresh process."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
        work / 'in.png')
    start = time.time()
    done = subprocess.run([sys.executable, '-m', 'liif_core', 'upscale', str(work / 'in.png'),
                           str(work / 'out.png'), '--scale', '2', '--device', device.type,
                           '--no-progress'], cwd=ROOT, capture_output=True, text=True,
                          env=_child_env())
    if done.returncode:
        sys.stderr.write(done.stderr[-TAIL_CHARS:])
        raise RuntimeError(f'liif upscale exited with status {done.returncode}')
    with Image.open(work / 'out.png') as out:
        size = out.size
    # A fresh process's settings: what liif upscale ran with (it sets none of them).
    return {'results': {'input': f'{width}x{height}', 'output': f'{size[0]}x{size[1]}',
                        'wall_s_with_start_up': time.time() - start},
            'flags': dict(matmul_flags(), dtype='float32')}


def cuda_tests() -> list[str]:
    """The suite's tests that run only with a CUDA device (skipped elsewhere), as node ids."""
    marker = re.compile(r'@pytest\.mark\.skipif\(not torch\.cuda\.is_available\(\)[^\n]*\n'
                        r'(?:@[^\n]*\n)*def (\w+)')
    return [f'tests/{path.name}::{name}' for path in sorted((ROOT / 'tests').glob('test_*.py'))
            for name in marker.findall(path.read_text())]


def step_tests(work: Path, device: torch.device) -> dict[str, Any]:
    try:
        import pytest  # noqa: F401
    except ImportError:
        return {'results': {'skipped': 'pytest is not installed in this python'}, 'flags': {}}
    tests = cuda_tests()
    done = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                           *tests], cwd=ROOT, capture_output=True, text=True, env=_child_env())
    if done.returncode:
        sys.stderr.write(done.stdout[-TAIL_CHARS:])
        raise RuntimeError(f'pytest exited with status {done.returncode}')
    return {'results': {'tests': tests, 'summary': done.stdout.strip().splitlines()[-1:]},
            'flags': {}}


STEP_FUNCTIONS = {'decode': step_decode, 'train_steps': step_train_steps,
                  'recipe': step_recipe, 'upscale': step_upscale, 'resume': step_resume,
                  'tests': step_tests}


def run_step(name: str, work: Path, device: torch.device, stop_at: float, fail: bool) -> None:
    """The child's side: one step, its return value written to ``work/<name>.result.json``.
    Shortly before ``stop_at`` (``time.time()``), when the parent stops it, the stacks of its
    threads go to stderr: the record of a step stopped at its limit then says where it was."""
    faulthandler.dump_traceback_later(max(1.0, stop_at - time.time() - 3))
    if device.type == 'cpu':
        torch.set_num_threads(1)  # as the training processes: threads contend on a busy CPU
    if fail:
        raise FailedOnPurpose(f'step {name} failed on purpose (--fail {name})')
    out = STEP_FUNCTIONS[name](work, device, **PLANS[device.type].get(name, {}))
    (work / f'{name}.result.json').write_text(json.dumps(out))


# -- the run -------------------------------------------------------------------------------------


def _tail(text: str) -> str:
    return text[-TAIL_CHARS:]


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else ''


def spawn_step(name: str, work: Path, device: torch.device, limit: float, fail: bool
               ) -> dict[str, Any]:
    """Run step ``name`` in a child process (its own session, so that a step over its limit is
    stopped with every process it started); its run record and, if it succeeded, results."""
    result = work / f'{name}.result.json'
    command = [sys.executable, str(Path(__file__).resolve()), '--step', name, '--work',
               str(work), '--device', device.type, '--stop-at', str(time.time() + limit)]
    command += ['--fail', name] if fail else []
    start = time.monotonic()
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_child_env(), start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=limit)
        status = 'ok' if proc.returncode == 0 else 'failed'
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        status = 'timeout'
    record: dict[str, Any] = {'status': status, 'seconds': round(time.monotonic() - start, 1),
                              'limit_s': round(limit)}
    if status == 'ok':
        out = json.loads(result.read_text())
        record['flags'] = out['flags']
        return dict(record, results=out['results'])
    record['returncode'] = proc.returncode
    record['error'] = (f'stopped at its limit of {limit:.0f} s' if status == 'timeout'
                       else _last_line(stderr) or f'exit status {proc.returncode}')
    record['stderr_tail'] = _tail(stderr)
    if stdout.strip():
        record['stdout_tail'] = _tail(stdout)
    return record


class Report:
    """The JSON of this run, rewritten after every step."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path, self.data = path, dict(header, steps={}, runs={})
        path.parent.mkdir(parents=True, exist_ok=True)
        self.write()

    def write(self) -> None:
        tmp = self.path.with_suffix('.tmp')
        tmp.write_text(json.dumps(self.data, indent=1) + '\n')
        tmp.replace(self.path)

    def add(self, name: str, record: dict[str, Any]) -> None:
        """A step's record: its results under ``steps`` (only when it succeeded, so a reader
        of ``steps`` always finds complete results), its outcome under ``runs``."""
        results = record.pop('results', None)
        if results is not None:
            self.data['steps'][name] = dict(results, seconds=record['seconds'])
        self.data['runs'][name] = record
        self.write()
        print(f'{name}: {record["status"]} in {record["seconds"]} s'
              + (f' ({record["error"]})' if 'error' in record else ''), flush=True)


def header(device: torch.device, rehearsal: bool, budget: float) -> dict[str, Any]:
    cuda = device.type == 'cuda'
    return {'device': torch.cuda.get_device_name(0) if cuda else cpu_name(),
            'device_count': torch.cuda.device_count() if cuda else 0,
            'rehearsal': rehearsal, 'date': datetime.date.today().isoformat(),
            'command': ' '.join(['python3', 'scripts/gpu_check.py'] + sys.argv[1:]),
            'torch': torch.__version__, 'cuda': torch.version.cuda,
            'python': platform.python_version(), 'cpu': cpu_name(), 'cpus': cpus(),
            'budget_s': budget}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', metavar='DIR', help='folder for the JSON (<device>.json)')
    parser.add_argument('--rehearse', action='store_true',
                        help='without CUDA: run every step, small, on the CPU')
    parser.add_argument('--budget', type=float, default=BUDGET_S, metavar='S',
                        help=f'deadline of the whole run in seconds (default {BUDGET_S})')
    parser.add_argument('--steps', default=','.join(STEPS),
                        help=f'steps to run, in this order (default: {",".join(STEPS)})')
    parser.add_argument('--fail', metavar='STEP', choices=STEPS,
                        help='make this step fail on purpose, to check its error record')
    # The child's side: one step.
    parser.add_argument('--step', choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument('--work', help=argparse.SUPPRESS)
    parser.add_argument('--device', help=argparse.SUPPRESS)
    parser.add_argument('--stop-at', type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:
        run_step(args.step, Path(args.work), torch.device(args.device), args.stop_at,
                 args.fail == args.step)
        return 0
    if not args.out:
        parser.error('--out DIR is required')
    steps = [s.strip() for s in args.steps.split(',') if s.strip()]
    if not steps or any(s not in STEPS for s in steps):
        parser.error(f'--steps must list steps among {", ".join(STEPS)}, got {args.steps!r}')
    deadline = time.monotonic() + args.budget
    if torch.cuda.is_available():
        device = torch.device('cuda')
        out = Path(args.out) / f'{device_slug(torch.cuda.get_device_name(0))}.json'
    elif args.rehearse:
        device = torch.device('cpu')
        out = Path(args.out) / f'rehearsal-{device_slug(cpu_name())}.json'
    else:
        print('gpu-check: no CUDA device here, nothing measured (--rehearse runs the steps '
              'small on the CPU)')
        return 0
    report = Report(out, header(device, device.type == 'cpu', args.budget))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        report.data['photos'] = make_photos(work / 'photos')
        report.write()
        for name in steps:
            left = deadline - time.monotonic()
            limit = min(LIMITS[name][device.type == 'cpu'], left)
            if limit < MIN_STEP_S:
                report.add(name, {'status': 'not_run', 'seconds': 0,
                                  'error': f'{left:.0f} s of the {args.budget:.0f} s budget '
                                           'were left'})
                continue
            report.add(name, spawn_step(name, work, device, limit, args.fail == name))
    report.data['total_seconds'] = round(args.budget - (deadline - time.monotonic()), 1)
    report.write()
    print(f'gpu-check: {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
