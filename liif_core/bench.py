"""``liif bench``: the fast decoding path against the official algorithm, side by side.

For each case (an input size and an integer scale), the same model decodes the same full output
grid three ways, interleaved in one process so that background load hits them alike, and the
median of ``--repeat`` runs is kept:

* ``reference``: the official algorithm (``fast=False``) in chunks of 30000 queries, as the
  official test script runs it;
* ``peer``: the official algorithm at its best chunk size on CPU (about 2048 queries), the
  honest comparison;
* ``fast``: the default path (``project_codes`` once, then cache-sized chunks).

Peak memory is measured in a fresh process per path and case: the resident set just before
decoding is subtracted from the high-water mark reached while decoding, so model, input and
coordinates do not count and one case's peak cannot hide another's. The matrix-multiply rate
of the machine is measured on a float32 (4096 x 256) @ (256 x 256) product, and the fast path's
rate counts the multiply-adds it must do per query (``fast_macs_per_query``).

Book: chapter 4 explains why the fast path is exact, the benchmark chapter discusses the table.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from .checkpoint import load_model
from .coords import make_cell, make_coord
from .liif import LIIF, batched_predict
from .models import liif_spec
from .sampling import ensemble_offsets
from .registry import make_model

# (input side, scale): x2 to x30 of a 48 x 48 input (the paper's range) and a larger input.
CASES = ((48, 2), (48, 4), (48, 12), (48, 30), (128, 4))
# Tiny cases for a smoke test: seconds, not minutes.
QUICK_CASES = ((8, 3),)
# Queries per chunk of the official test script.
REFERENCE_CHUNK = 30000
# The official algorithm's best chunk on CPU: its per-chunk tensors (Q x 580 codes, Q x 256
# activations) then stay in cache.
PEER_CHUNK = 2048
# The model when no weights are given: the paper's EDSR-baseline LIIF, randomly initialised.
# Speed and memory do not depend on the weights' values.
DEFAULT_SPEC = liif_spec('edsr-baseline')
SEED = 0
# The matrix product whose rate is taken as the machine's float32 peak: the shape of one hidden
# layer applied to 4096 rows.
GEMM_SHAPE = (4096, 256, 256)

PATHS = {  # name -> (queries per batched_predict chunk, fast)
    'reference': (REFERENCE_CHUNK, False),
    'peer': (PEER_CHUNK, False),
    'fast': (REFERENCE_CHUNK, True),
}


@dataclass
class Row:
    """One case of the table: rates in queries per second, memory in bytes (None: unknown)."""
    size: int
    scale: int
    queries: int
    rate: dict[str, float]
    max_abs_diff: float
    peak_extra: dict[str, int | None]
    fast_gflops: float


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo where there is one), to label timings."""
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:  # no /proc: macOS, Windows
        pass
    return platform.processor() or platform.machine()


def machine_description(threads: int) -> str:
    """CPU model, threads and torch version."""
    return (f'{cpu_name()}, {os.cpu_count()} logical CPUs, {threads} torch threads, '
            f'torch {torch.__version__}, Python {platform.python_version()}')


def matmul_peak(repeat: int = 5, products: int = 20) -> float:
    """The machine's float32 matrix-multiply rate in GFLOP/s (best of ``repeat`` timings)."""
    m, k, n = GEMM_SHAPE
    a, b = torch.randn(m, k), torch.randn(k, n)
    out = torch.empty(m, n)
    torch.mm(a, b, out=out)  # warm-up: thread pool, packing buffers
    best = float('inf')
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(products):
            torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n * products / best / 1e9


def fast_macs_per_query(model: LIIF, h: int, w: int, queries: int) -> float:
    """Multiply-adds the fast path must do per query, for an (h, w) feature map.

    Each of the T ensemble members runs every layer after the first (their in x out products)
    plus the first layer's rank-2 (rel) or rank-4 (rel and cell) term; the first layer's code
    part is a convolution done once per latent code, shared by all queries.
    """
    first, *rest = model.imnet.linears
    code_dim = model.code_dim
    members = len(ensemble_offsets(h, w, model.local_ensemble))
    per_member = sum(l.in_features * l.out_features for l in rest)
    per_member += (first.in_features - code_dim) * first.out_features
    conv = h * w * code_dim * first.out_features
    return members * per_member + conv / queries


def _case_inputs(size: int, scale: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A seeded random input (1, 3, size, size) in [-1, 1] and its full output grid's queries."""
    generator = torch.Generator().manual_seed(SEED)
    inp = torch.rand(1, 3, size, size, generator=generator) * 2 - 1
    H = W = size * scale
    coord = make_coord((H, W)).unsqueeze(0)  # (1, H*W, 2)
    return inp, coord, make_cell(coord, (H, W))


def _decode(model: nn.Module, inp: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor,
            path: str) -> torch.Tensor:
    bsize, fast = PATHS[path]
    return batched_predict(model, inp, coord, cell, bsize, fast=fast)


def _status_kib(field: str) -> int:
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(field + ':'):
            return int(line.split()[1])
    raise OSError(f'/proc/self/status has no {field}')


def _memory_probe(spec: dict[str, Any], state: dict[str, torch.Tensor], size: int, scale: int,
                  path: str, threads: int) -> int | None:
    """In a fresh process: bytes that decoding one case adds to the resident set at its peak.

    Writing 5 to /proc/self/clear_refs resets the high-water mark to the current resident set,
    so the peak counts only what decoding allocates. None where /proc does not allow it.
    """
    torch.set_num_threads(threads)
    model = make_model(spec)
    model.load_state_dict(state)
    model.eval()
    inp, coord, cell = _case_inputs(size, scale)
    try:
        Path('/proc/self/clear_refs').write_text('5')
        before = _status_kib('VmRSS')
    except OSError:
        return None
    _decode(model, inp, coord, cell, path)
    return (_status_kib('VmHWM') - before) * 1024


def peak_extra_memory(model: nn.Module, size: int, scale: int, path: str,
                      threads: int) -> int | None:
    """``_memory_probe`` run in a new (spawned) process, so that high-water marks never mix."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    context = multiprocessing.get_context('spawn')
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(_memory_probe, model.spec, state, size, scale, path, threads).result()


def bench_case(model: LIIF, size: int, scale: int, repeat: int, threads: int,
               progress: tqdm | None = None) -> Row:
    """Time the three paths interleaved (median of ``repeat``), compare outputs, probe memory."""
    inp, coord, cell = _case_inputs(size, scale)
    times: dict[str, list[float]] = {path: [] for path in PATHS}
    outputs: dict[str, torch.Tensor] = {}
    for _ in range(repeat):
        for path in PATHS:
            start = time.perf_counter()
            outputs[path] = _decode(model, inp, coord, cell, path)
            times[path].append(time.perf_counter() - start)
            if progress is not None:
                progress.update()
    Q = coord.shape[1]
    rate = {path: Q / statistics.median(t) for path, t in times.items()}
    diff = (outputs['fast'] - outputs['reference']).abs().max().item()
    peak = {}
    for path in ('reference', 'fast'):
        peak[path] = peak_extra_memory(model, size, scale, path, threads)
        if progress is not None:
            progress.update()
    macs = fast_macs_per_query(model, size, size, Q)
    return Row(size, scale, Q, rate, diff, peak, rate['fast'] * 2 * macs / 1e9)


def format_table(rows: list[Row], peak_gflops: float) -> str:
    """The results as a markdown table (rates in queries/s, memory in MiB)."""
    def mib(value: int | None) -> str:
        return 'n/a' if value is None else f'{value / 2**20:.0f}'

    lines = ['| case | queries | reference q/s | peer q/s | fast q/s | fast/reference '
             '| fast/peer | max abs diff | reference peak MiB | fast peak MiB '
             '| fast GFLOP/s | fast % of matmul peak |',
             '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    for r in rows:
        lines.append(
            f"| {r.size}x{r.size} x{r.scale} | {r.queries} | {r.rate['reference']:.0f} "
            f"| {r.rate['peer']:.0f} | {r.rate['fast']:.0f} "
            f"| {r.rate['fast'] / r.rate['reference']:.2f} | {r.rate['fast'] / r.rate['peer']:.2f} "
            f"| {r.max_abs_diff:.2e} | {mib(r.peak_extra['reference'])} "
            f"| {mib(r.peak_extra['fast'])} | {r.fast_gflops:.1f} "
            f"| {100 * r.fast_gflops / peak_gflops:.0f} |")
    return '\n'.join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--weights', metavar='PATH',
                        help='a LIIF checkpoint (default: a randomly initialised EDSR-baseline '
                             f'LIIF, seed {SEED}; speed does not depend on the weights)')
    parser.add_argument('--threads', type=int, default=torch.get_num_threads(),
                        help='torch threads (default: %(default)s)')
    parser.add_argument('--repeat', type=int, default=3,
                        help='timed runs per path and case; the median is kept (default 3)')
    parser.add_argument('--quick', action='store_true',
                        help='tiny cases, one run each: checks that the benchmark works')


def run(args: argparse.Namespace) -> int:
    if args.threads < 1 or args.repeat < 1:
        raise ValueError('--threads and --repeat must be at least 1')
    torch.set_num_threads(args.threads)
    cases, repeat = (QUICK_CASES, 1) if args.quick else (CASES, args.repeat)
    if args.weights:
        model, weights = load_model(args.weights), args.weights
    else:
        torch.manual_seed(SEED)
        model, weights = make_model(DEFAULT_SPEC), f'random EDSR-baseline LIIF (seed {SEED})'
    if not isinstance(model, LIIF) or model.imnet is None:
        raise ValueError('liif bench needs a LIIF model with a decoder')
    model.eval()
    peak = matmul_peak(repeat=2 if args.quick else 5)
    rows = []
    with torch.no_grad(), tqdm(total=len(cases) * (repeat * len(PATHS) + 2), desc='bench',
                               leave=False, disable=None) as progress:
        for size, scale in cases:
            rows.append(bench_case(model, size, scale, repeat, args.threads, progress))
    m, k, n = GEMM_SHAPE
    print(f'machine: {machine_description(args.threads)}')
    print(f'weights: {weights}')
    print(f'float32 matmul peak ({m}x{k} @ {k}x{n}): {peak:.1f} GFLOP/s')
    print(f'reference: official algorithm, chunks of {REFERENCE_CHUNK}; peer: official algorithm, '
          f'chunks of {PEER_CHUNK}; median of {repeat} run(s); memory: peak resident set added by '
          'decoding, one process per path and case')
    print()
    print(format_table(rows, peak))
    return 0
