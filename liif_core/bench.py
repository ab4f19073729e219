"""``liif bench``: what users run, end-to-end ``upscale``, against the official algorithm.

For each case (an input size and an integer scale) the same model makes the same full output
grid, interleaved in one process so that background load hits every path alike, and the median
of ``--repeat`` runs is kept:

* ``upscale``: ``liif_core.upscale`` on a [0, 1] tensor, everything included (encoder tiles,
  bands, workers);
* ``official``: the official algorithm (``fast=False``) as shipped, in chunks of 30000 queries,
  at the configured threads and, when that is more than one, at one thread (the better of the
  two is the comparison, as a user would pick);
* ``official-tuned``: the official algorithm at its best CPU chunk (about 2048 queries);
* ``fast-query``: the raw fast query, ``batched_predict`` in one chunk, features included.

Every case runs on a quiet machine and again while a competing CPU-bound process (a bounded
``while`` loop at the same priority, started and always stopped by the bench) holds a core.
The float32 (or ``--dtype``) matrix-multiply rate is the ceiling (``matmul_rate``), sampled in
every round of every case (the median of a case's samples, as of its times): a path's GFLOP/s
counts the multiply-adds the fast path must do (``fast_macs_per_query``), and its
``..._with_encoder`` figures the encoder's too (``encoder_macs``). ``bf16_cost`` weighs
bfloat16 against float32 for ``upscale`` on photos: speed-up and PSNR cost per scale.
Peak memory is the resident-set high-water mark decoding adds, in a fresh process per path.
``--json PATH`` writes every case.

Book: chapter 4 explains why the fast path is exact, the benchmark chapter discusses the table.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn
from tqdm import tqdm

from . import kernels
from .coords import make_cell, make_coord
from .device import cpu_has_bf16, cpu_name
from .evaluate import load_images, make_test_pair
from .liif import LIIF, batched_predict
from .metrics import calc_psnr
from .models import liif_spec
from .registry import make_model
from .render import data_norm_of, denormalise, normalise, precision
from .sampling import ensemble_offsets
from .upscale import upscale

# (input side, scale): x4, x12 and x30 with about 37k, 147k and 518k output pixels.
CASES = ((48, 4), (32, 12), (24, 30))
# A tiny case for a smoke test: seconds, not minutes. An even scale: at odd ones some output
# pixels sit exactly on a code centre, where the ensemble weights are 0/0 up to AREA_EPS and
# upscale's band coordinates (one rounding away from make_coord's) may blend differently.
QUICK_CASES = ((8, 4),)
# Queries per chunk of the official test script.
REFERENCE_CHUNK = 30000
# The official algorithm's best chunk on CPU: its per-chunk tensors (Q x 580 codes, Q x 256
# activations) then stay in cache.
TUNED_CHUNK = 2048
# The model when no weights are given: the paper's EDSR-baseline LIIF, randomly initialised.
# Speed and memory do not depend on the weights' values.
DEFAULT_SPEC = liif_spec('edsr-baseline')
SEED = 0
# The matrix product whose rate is the machine's ceiling: the fast path's own, one hidden layer
# on one MLP chunk of four-member queries. (On a 2-core AMD EPYC, 4096 rows ran 10-15 % slower
# than these 1024, which stay in cache.)
GEMM_SHAPE = (4 * kernels.FAST_CHUNK, 256, 256)
CONDITIONS = ('quiet', 'loaded')
# The competing load ends by itself after this long, should the bench die without stopping it.
LOAD_LIMIT_S = 3600
# bfloat16 against float32 (``bf16_cost``): these scales, on centred crops of this side of the
# photos (divisible by every scale: the crop is the whole high-resolution image at each).
BF16_SCALES = (2, 4, 12)
BF16_CROP = 240


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def matmul_rate(device: torch.device | str = 'cpu', dtype: str = 'float32',
                products: int = 80) -> float:
    """The machine's matrix-multiply rate now, in GFLOP/s at ``dtype``: the better of two timed
    bursts of ``products`` products of ``GEMM_SHAPE`` (about 0.1 s each on a 2-core CPU), one
    on torch's threads and one spread over worker threads as the fast path runs
    (``kernels.map_single_threaded``), each after a warm-up. The two differ under load: a
    competing process slows every product threaded across the cores, and one worker only."""
    device = torch.device(device)
    m, k, n = GEMM_SHAPE
    # b as the hidden layers hold it (weight.t()): 5 % faster than row-major on a 2-core EPYC.
    a, b = torch.randn(m, k, device=device), torch.randn(n, k, device=device).t()
    # Every product writes its own output, allocated and touched beforehand: a fresh 4 MiB
    # output per product can cost page faults that have nothing to do with the multiply units.
    outs = torch.zeros(products, m, n, device=device)
    bursts = (lambda: [torch.mm(a, b, out=outs[i]) for i in range(products)],
              lambda: kernels.map_single_threaded(lambda i: torch.mm(a, b, out=outs[i]),
                                                  range(products), device))
    best = float('inf')
    with torch.no_grad(), precision(dtype, device):
        for burst in bursts:
            torch.mm(a, b, out=outs[0])  # warm-up: thread pool, packing buffers
            _sync(device)
            start = time.perf_counter()
            burst()
            _sync(device)
            best = min(best, time.perf_counter() - start)
    return 2 * m * k * n * products / best / 1e9


def fast_macs_per_query(model: LIIF, h: int, w: int, queries: int) -> float:
    """Multiply-adds the fast path must do per query, for an (h, w) feature map.

    Each of the T ensemble members runs the hidden layers after the first (their in x out
    products), the first layer's rank-2 (rel) or rank-4 (rel and cell) term and its share of
    the blend (one multiply-add per hidden unit); the blended activations then go through the
    output layer once. The first layer's code part is a convolution done once per latent code,
    shared by all queries.
    """
    first, *hidden, last = model.imnet.linears
    code_dim = model.code_dim
    members = len(ensemble_offsets(h, w, model.local_ensemble))
    per_member = sum(l.in_features * l.out_features for l in hidden)
    per_member += (first.in_features - code_dim) * first.out_features + last.in_features
    conv = h * w * code_dim * first.out_features
    return members * per_member + last.in_features * last.out_features + conv / queries


def encoder_macs(model: LIIF, h: int, w: int) -> int:
    """Multiply-adds of the encoder on an (h, w) input: every convolution's output elements
    times its kernel's inputs, counted on a forward pass of zeros (whose shapes are those of
    any input of that size)."""
    total = 0

    def count(conv: nn.Conv2d, _: Any, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = conv.kernel_size
        total += out.numel() * conv.in_channels // conv.groups * kh * kw

    convs = [m for m in model.encoder.modules() if isinstance(m, nn.Conv2d)]
    hooks = [conv.register_forward_hook(count) for conv in convs]
    try:
        with torch.no_grad():
            model.encoder(torch.zeros(1, 3, h, w, device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    return total


def case_input(size: int, device: torch.device) -> torch.Tensor:
    """A seeded random image (3, size, size) in [0, 1]."""
    generator = torch.Generator().manual_seed(SEED)
    return torch.rand(3, size, size, generator=generator).to(device)


def _official(model: LIIF, lr: torch.Tensor, scale: int, bsize: int, fast: bool = False
              ) -> torch.Tensor:
    """The output grid decoded by ``batched_predict``, as the official test script does:
    (3, H, W) in [0, 1]."""
    H = W = lr.shape[1] * scale
    coord = make_coord((H, W), device=lr.device).unsqueeze(0)  # (1, H*W, 2)
    data_norm = data_norm_of(model)
    pred = batched_predict(model, normalise(lr.unsqueeze(0), data_norm), coord,
                           make_cell(coord, (H, W)), bsize, fast=fast)  # (1, H*W, 3)
    return denormalise(pred, data_norm)[0].t().reshape(3, H, W)


def paths(model: LIIF, lr: torch.Tensor, scale: int, threads: int
          ) -> dict[str, Callable[[], torch.Tensor]]:
    """Every timed path of a case, each making the (3, H, W) image in [0, 1]."""
    out = {
        'upscale': lambda: upscale(lr, scale=scale, model=model, progress=False),
        'official': lambda: _official(model, lr, scale, REFERENCE_CHUNK),
        'official-tuned': lambda: _official(model, lr, scale, TUNED_CHUNK),
        'fast-query': lambda: _official(model, lr, scale, 2**62, fast=True),
    }
    if threads > 1 and lr.device.type == 'cpu':
        official = out['official']

        def official_1_thread() -> torch.Tensor:
            with kernels.single_threaded():
                return official()
        out['official-1-thread'] = official_1_thread
    return out


@contextlib.contextmanager
def competing_load(limit_s: float = LOAD_LIMIT_S) -> Iterator[subprocess.Popen]:
    """A CPU-bound process at this one's priority for the duration of the block, stopped at its
    end whatever happens (and ending by itself after ``limit_s``, should this process die)."""
    code = f'import time\nend = time.monotonic() + {limit_s}\nwhile time.monotonic() < end: pass'
    proc = subprocess.Popen([sys.executable, '-c', code])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _status_kib(field: str) -> int:
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(field + ':'):
            return int(line.split()[1])
    raise OSError(f'/proc/self/status has no {field}')


def _memory_probe(spec: dict[str, Any], state: dict[str, torch.Tensor], size: int, scale: int,
                  path: str, threads: int, device: str, dtype: str) -> int | None:
    """In a fresh process: bytes that one path adds to the resident set at its peak.

    Writing 5 to /proc/self/clear_refs resets the high-water mark to the current resident set,
    so the peak counts only what decoding allocates. None where /proc does not allow it.
    """
    torch.set_num_threads(threads)
    model = make_model(spec)
    model.load_state_dict(state)
    model.to(device).eval()
    run = paths(model, case_input(size, torch.device(device)), scale, threads)[path]
    try:
        Path('/proc/self/clear_refs').write_text('5')
        before = _status_kib('VmRSS')
    except OSError:
        return None
    with precision(dtype, device):
        run()
    return (_status_kib('VmHWM') - before) * 1024


def peak_extra_memory(model: nn.Module, size: int, scale: int, path: str, threads: int,
                      device: str = 'cpu', dtype: str = 'float32') -> int | None:
    """``_memory_probe`` run in a new (spawned) process, so that high-water marks never mix."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    context = multiprocessing.get_context('spawn')
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(_memory_probe, model.spec, state, size, scale, path, threads,
                           str(device), dtype).result()


def bench_case(model: LIIF, size: int, scale: int, repeat: int, threads: int, dtype: str,
               condition: str, progress: tqdm | None = None) -> dict[str, Any]:
    """Time every path interleaved (median of ``repeat``) and compare their outputs.

    The ceiling is sampled in every round too (``matmul_rate``), so that it sees the load the
    paths see; the case's ceiling is the median of its samples, the statistic of its times.
    """
    device = next(model.parameters()).device
    lr = case_input(size, device)
    runs = paths(model, lr, scale, threads)
    times: dict[str, list[float]] = {path: [] for path in runs}
    outputs: dict[str, torch.Tensor] = {}
    samples = []
    with precision(dtype, device):
        for _ in range(repeat):
            samples.append(matmul_rate(device, dtype))
            for path, run in runs.items():
                _sync(device)
                start = time.perf_counter()
                outputs[path] = run()
                _sync(device)
                times[path].append(time.perf_counter() - start)
                if progress is not None:
                    progress.update()
    pixels = (size * scale) ** 2
    ceiling = statistics.median(samples)
    seconds = {path: statistics.median(t) for path, t in times.items()}
    official = min(seconds[p] for p in seconds if p.startswith('official-1') or p == 'official')
    decoder = pixels * fast_macs_per_query(model, size, size, pixels)
    encoder = encoder_macs(model, size, size)
    fast = [path for path in seconds if path in ('upscale', 'fast-query')]
    gflops = {path: 2 * decoder / seconds[path] / 1e9 for path in fast}
    # Both fast paths also encode the input: its multiply-adds are work done too.
    with_encoder = {path: 2 * (decoder + encoder) / seconds[path] / 1e9 for path in fast}
    return {
        'condition': condition, 'size': size, 'scale': scale, 'pixels': pixels,
        'ceiling_gflops': ceiling, 'ceiling_samples_gflops': samples, 'seconds': seconds,
        'px_per_s': {path: pixels / t for path, t in seconds.items()},
        'speedup_vs_official': {path: official / t for path, t in seconds.items()},
        'max_abs_diff_vs_official': {path: (out - outputs['official']).abs().max().item()
                                     for path, out in outputs.items()},
        'gflops': gflops,
        'pct_of_ceiling': {path: 100 * g / ceiling for path, g in gflops.items()},
        'macs': {'decoder': decoder, 'encoder': encoder},
        'gflops_with_encoder': with_encoder,
        'pct_of_ceiling_with_encoder': {p: 100 * g / ceiling for p, g in with_encoder.items()},
    }


def machine_info(threads: int) -> dict[str, Any]:
    """The machine a run measured, for its JSON: the CPU model, the instruction set torch's
    CPU kernels use, whether the CPU has bfloat16 instructions, whether the fast path's hidden
    layers run oneDNN's fused kernel, logical CPUs, torch threads, torch and Python versions."""
    return {'cpu': cpu_name(), 'cpu_capability': torch.backends.cpu.get_cpu_capability(),
            'bf16_units': cpu_has_bf16(), 'fused_linear': kernels.FUSED_LINEAR,
            'logical_cpus': os.cpu_count(), 'threads': threads, 'torch': torch.__version__,
            'python': platform.python_version()}


def bf16_cost(model: LIIF, photos: Sequence[str | os.PathLike], scales: Sequence[int] = BF16_SCALES,
              crop: int = BF16_CROP, repeat: int = 1) -> dict[str, Any]:
    """What ``upscale(dtype='bfloat16')`` gains and costs against float32 on photos.

    Each photo's centred ``crop x crop`` window is the high-resolution image; at each scale it
    is downsampled as in the evaluation (``make_test_pair``) and upscaled back in both
    precisions, interleaved (median of ``repeat``). The PSNR is the evaluation's ('div2k'
    protocol, RGB, the border shaved); the cost is float32's PSNR minus bfloat16's.

    Where the CPU lacks bfloat16 instructions, ``upscale`` refuses bfloat16; the same
    arithmetic then runs under the caller's autocast, emulated, to show what it would cost:
    ``'emulated': True``.

    Returns:
        {'emulated', 'photos', 'crop', 'repeat', 'scales': {'x<s>': {'psnr_float32',
        'psnr_bfloat16', 'psnr_cost_db', 'max_psnr_cost_db' (over photos), 'max_abs_diff'
        (in [0, 1]), 'seconds_float32', 'seconds_bfloat16' (summed over photos), 'speedup'}}}
    """
    device = next(model.parameters()).device
    emulated = device.type == 'cpu' and not cpu_has_bf16()
    images = load_images(photos, crop=crop)

    def upscale_in(dtype: str, lr: torch.Tensor, size: torch.Size) -> torch.Tensor:
        if dtype == 'bfloat16' and emulated:
            with torch.autocast('cpu', dtype=torch.bfloat16):
                return upscale(lr, size=size, model=model, progress=False)
        return upscale(lr, size=size, model=model, progress=False, dtype=dtype)

    dtypes = ('float32', 'bfloat16')
    out: dict[str, Any] = {'emulated': emulated, 'photos': [name for name, _ in images],
                           'crop': crop, 'repeat': repeat, 'scales': {}}
    for scale in scales:
        seconds = {dtype: 0.0 for dtype in dtypes}
        psnr: dict[str, list[float]] = {dtype: [] for dtype in dtypes}
        diff = 0.0
        for _, hr in images:
            lr, hr = make_test_pair(hr.to(device), scale)
            times: dict[str, list[float]] = {dtype: [] for dtype in dtypes}
            sr = {}
            for _ in range(repeat):
                for dtype in dtypes:
                    _sync(device)
                    start = time.perf_counter()
                    sr[dtype] = upscale_in(dtype, lr, hr.shape[1:])
                    _sync(device)
                    times[dtype].append(time.perf_counter() - start)
            for dtype in dtypes:
                seconds[dtype] += statistics.median(times[dtype])
                psnr[dtype].append(calc_psnr(sr[dtype], hr, 'div2k', scale).item())
            diff = max(diff, (sr['bfloat16'] - sr['float32']).abs().max().item())
        costs = [a - b for a, b in zip(psnr['float32'], psnr['bfloat16'])]
        out['scales'][f'x{scale}'] = {
            'psnr_float32': statistics.mean(psnr['float32']),
            'psnr_bfloat16': statistics.mean(psnr['bfloat16']),
            'psnr_cost_db': statistics.mean(costs), 'max_psnr_cost_db': max(costs),
            'max_abs_diff': diff, 'seconds_float32': seconds['float32'],
            'seconds_bfloat16': seconds['bfloat16'],
            'speedup': seconds['float32'] / seconds['bfloat16']}
    return out


def format_table(cases: list[dict[str, Any]]) -> str:
    """The cases as a markdown table."""
    def mib(value: int | None) -> str:
        return 'n/a' if value is None else f'{value / 2**20:.0f}'

    lines = ['| condition | case | pixels | upscale px/s | official px/s | official-tuned px/s '
             '| fast-query px/s | upscale / official | ceiling GFLOP/s | upscale % of ceiling '
             '| with encoder | max abs diff | upscale peak MiB | official peak MiB |',
             '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    for c in cases:
        rate, peak = c['px_per_s'], c.get('peak_extra_bytes', {})
        best_official = max(v for k, v in rate.items() if k.startswith('official-1')
                            or k == 'official')
        lines.append(
            f"| {c['condition']} | {c['size']}x{c['size']} x{c['scale']} | {c['pixels']} "
            f"| {rate['upscale']:.0f} | {best_official:.0f} | {rate['official-tuned']:.0f} "
            f"| {rate['fast-query']:.0f} | {c['speedup_vs_official']['upscale']:.2f} "
            f"| {c['ceiling_gflops']:.0f} | {c['pct_of_ceiling']['upscale']:.0f} "
            f"| {c['pct_of_ceiling_with_encoder']['upscale']:.0f} "
            f"| {c['max_abs_diff_vs_official']['upscale']:.1e} "
            f"| {mib(peak.get('upscale'))} | {mib(peak.get('official'))} |")
    return '\n'.join(lines)


def format_bf16(bf16: dict[str, Any]) -> str:
    """``bf16_cost``'s record as a markdown table, one row per scale."""
    lines = ['| scale | PSNR float32 (dB) | PSNR bfloat16 (dB) | cost (dB) | worst photo (dB) '
             '| max abs diff | speed-up |', '|---|---:|---:|---:|---:|---:|---:|']
    for label, row in bf16['scales'].items():
        lines.append(f"| {label} | {row['psnr_float32']:.2f} | {row['psnr_bfloat16']:.2f} "
                     f"| {row['psnr_cost_db']:.2f} | {row['max_psnr_cost_db']:.2f} "
                     f"| {row['max_abs_diff']:.3f} | {row['speedup']:.2f}x |")
    return '\n'.join(lines)
