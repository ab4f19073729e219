"""``liif bench``: end-to-end ``upscale`` timed against the official algorithm, on a quiet
and on a loaded machine (``liif_core.bench`` holds the measurements)."""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from ..bench import (BF16_CROP, BF16_SCALES, CASES, CONDITIONS, DEFAULT_SPEC, GEMM_SHAPE,
                     QUICK_CASES, REFERENCE_CHUNK, SEED, TUNED_CHUNK, bench_case, bf16_cost,
                     case_input, competing_load, format_bf16, format_table, machine_info, paths,
                     peak_extra_memory)
from ..checkpoint import load_model
from ..data.specs import DEFAULT_DATA_ROOT
from ..device import machine_description
from ..pretrained import DEFAULT_MODEL, load_pretrained
from ..liif import LIIF
from ..registry import make_model
from ..render import DTYPES, precision
from .common import add_device_argument, add_threads_argument

HELP = 'time the fast decoding path against the official algorithm'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--weights', metavar='PATH',
                        help='a LIIF checkpoint (default: a randomly initialised EDSR-baseline '
                             f'LIIF, seed {SEED}; speed does not depend on the weights)')
    add_threads_argument(parser, f'torch threads (default: {torch.get_num_threads()})')
    parser.add_argument('--repeat', type=int, default=3,
                        help='timed runs per path and case; the median is kept (default 3)')
    add_device_argument(parser, 'where to decode (default: cpu)', default='cpu')
    parser.add_argument('--dtype', choices=tuple(DTYPES), default='float32',
                        help='precision of the model (default float32)')
    parser.add_argument('--conditions', default=','.join(CONDITIONS),
                        help='quiet, loaded or both (default: quiet,loaded)')
    parser.add_argument('--json', metavar='PATH', help='also write every case to this file')
    parser.add_argument('--quick', action='store_true',
                        help='a tiny case, one run each: checks that the benchmark works')
    parser.add_argument('--bf16-photos', metavar='DIR',
                        default=str(Path(DEFAULT_DATA_ROOT) / 'standin' / 'valid_report'),
                        help='photos for the bfloat16 comparison, decoded with the shipped '
                             f'weights {DEFAULT_MODEL} (default: %(default)s)')
    parser.add_argument('--bf16-crop', type=int, default=BF16_CROP, metavar='N',
                        help='side of the centred crop of each photo (default %(default)s)')
    parser.add_argument('--no-bf16', dest='bf16', action='store_false',
                        help='skip the bfloat16 comparison')


def run(args: argparse.Namespace) -> int:
    if args.repeat < 1:
        raise ValueError(f'--repeat must be at least 1, got {args.repeat}')
    conditions = [c.strip() for c in args.conditions.split(',') if c.strip()]
    if not conditions or any(c not in CONDITIONS for c in conditions):
        raise ValueError(f'--conditions must list quiet and/or loaded, got {args.conditions!r}')
    lcm = math.lcm(*BF16_SCALES)  # the crop is downsampled by every scale
    if args.bf16 and not args.quick and (args.bf16_crop < 1 or args.bf16_crop % lcm):
        raise ValueError(f'--bf16-crop must be a positive multiple of {lcm}, got {args.bf16_crop}')
    if args.bf16 and not args.quick and not Path(args.bf16_photos).is_dir():
        raise ValueError(f'--bf16-photos {args.bf16_photos}: no such folder (liif data fetch '
                         'standin), or pass --no-bf16')
    if args.json and not Path(args.json).resolve().parent.is_dir():
        raise ValueError(f'{Path(args.json).resolve().parent}: no such directory for --json')
    device = torch.device(args.device)
    precision(args.dtype, device)  # an unsupported dtype fails before any work
    threads = torch.get_num_threads()  # --threads, applied by liif_core.cli.main
    cases, repeat = (QUICK_CASES, 1) if args.quick else (CASES, args.repeat)
    if args.weights:
        model, weights = load_model(args.weights, map_location=device), args.weights
    else:
        torch.manual_seed(SEED)
        model, weights = make_model(DEFAULT_SPEC), f'random EDSR-baseline LIIF (seed {SEED})'
    if not isinstance(model, LIIF) or model.imnet is None:
        raise ValueError('liif bench needs a LIIF model with a decoder')
    model.to(device).eval()
    n_paths = len(paths(model, case_input(1, device), 1, threads))
    results, ceilings = [], {}
    with torch.no_grad(), tqdm(total=len(conditions) * len(cases) * repeat * n_paths,
                               desc='bench', leave=False, disable=not args.progress) as progress:
        for condition in conditions:
            with competing_load() if condition == 'loaded' else contextlib.nullcontext():
                for size, scale in cases:
                    results.append(bench_case(model, size, scale, repeat, threads,
                                              args.dtype, condition, progress))
            ceilings[condition] = statistics.median(
                g for case in results if case['condition'] == condition
                for g in case['ceiling_samples_gflops'])
    # Memory does not depend on the load: measured once per case, quiet.
    for size, scale in cases:
        peak = {path: peak_extra_memory(model, size, scale, path, threads, str(device),
                                        args.dtype) for path in ('upscale', 'official')}
        for case in results:
            if (case['size'], case['scale']) == (size, scale):
                case['peak_extra_bytes'] = peak
    m, k, n = GEMM_SHAPE
    report = {'command': 'liif bench ' + ' '.join(sys.argv[2:]),
              'machine': machine_description(threads), 'weights': weights,
              'device': str(device), 'dtype': args.dtype, 'threads': threads,
              'repeat': repeat, 'gemm_shape': GEMM_SHAPE, 'ceiling_gflops': ceilings,
              'cases': results, 'machine_info': machine_info(threads)}
    if args.json:  # the timings are kept should the bfloat16 comparison fail
        Path(args.json).write_text(json.dumps(report, indent=1) + '\n')
    if args.bf16 and not args.quick:
        report['bf16'] = bf16_cost(load_pretrained().to(device), args.bf16_photos,
                                   crop=args.bf16_crop)
    print(f'machine: {report["machine"]}')
    print(f'weights: {weights}; device {device}, {args.dtype}')
    print('matmul ceiling (' + f'{m}x{k} @ {k}x{n}, median of the samples between runs): '
          + ', '.join(f'{c} {g:.1f} GFLOP/s' for c, g in ceilings.items()))
    on = f'the better of {threads} and 1 threads' if threads > 1 else '1 thread'
    print(f'official: official algorithm, chunks of {REFERENCE_CHUNK}, {on}; official-tuned: '
          f'chunks of {TUNED_CHUNK}; loaded: one competing CPU-bound process; median of '
          f'{repeat} run(s); memory: peak resident set added, one process per path and case')
    print()
    print(format_table(results))
    if 'bf16' in report:
        bf16 = report['bf16']
        note = ' (emulated: this CPU has no bfloat16 instructions)' if bf16['emulated'] else ''
        print(f"\nbfloat16 against float32, upscale with {DEFAULT_MODEL} on "
              f"{len(bf16['photos'])} photos ({bf16['crop']}x{bf16['crop']} crops){note}:")
        print(format_bf16(bf16))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1) + '\n')
    return 0
