"""``liif upscale IN OUT`` or ``liif upscale IN... FOLDER``: ``upscale_file`` on files and
folders, with the shipped weights or any checkpoint."""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from ..device import resolve_device
from ..liif import LIIF
from ..pretrained import DEFAULT_MODEL, resolve_model
from ..render import DTYPES, precision
from ..upscale import check_model, plan_file, write_file
from .common import add_device_argument, current_name, say

HELP = 'upscale an image, several, or a folder, to any size or scale'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('paths', nargs='+', metavar='IN... OUT',
                        help='an input image and the output image (.png is streamed: any size, '
                             '16-bit kept; .jpg/.webp are built in memory); or input images '
                             'and/or folders of them and an output folder (created if missing; '
                             'each output keeps its input\'s name)')
    target = parser.add_mutually_exclusive_group()
    target.add_argument('--scale', metavar='S', help='factor for both sides (below 1 shrinks)')
    target.add_argument('--size', metavar='HxW', help='exact output size, height first, '
                                                      'e.g. 1080x1920')
    parser.add_argument('--weights', metavar='PATH',
                        help='a LIIF checkpoint (.pth) or the name of weights (`liif list`; '
                             f'default: {DEFAULT_MODEL}, trained on stand-in photos)')
    add_device_argument(parser, "where to decode, e.g. 'cpu', 'cuda' (default: cuda if available)")
    parser.add_argument('--dtype', choices=tuple(DTYPES), default='float32',
                        help='precision of the model (default float32; bfloat16 only on CPUs '
                             'with bfloat16 instructions (AVX-512 BF16, AMX, Arm BF16) and on '
                             'CUDA; float16 only where the device runs it)')
    parser.add_argument('--quality', type=int, default=95, help='JPEG/WebP quality (default 95)')
    parser.add_argument('--tile', type=int, default=None, metavar='ROWS',
                        help='output rows decoded at once (default: about 2^18 pixels on a '
                             'CPU, all rows on CUDA when they fit)')
    parser.add_argument('--encoder-tile', type=int, default=None, metavar='ROWS',
                        help='input rows encoded at once (default: about 2^17 pixels)')
    parser.add_argument('--no-limits', action='store_true',
                        help='lift the limits on input pixels (2^27), output pixels (2^30) and '
                             'output sides (2^20)')
    parser.add_argument('--overwrite', action='store_true',
                        help='allow an output to replace its own input')
    parser.add_argument('--ext', metavar='EXT',
                        help="with an output folder: write every image as EXT, e.g. 'png' "
                             "(default: each input's own format)")


def _parse_scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f'--scale must be a number, got {text!r}') from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f'--scale must be a finite number above 0, got {text!r}')
    return value


def _parse_size(text: str) -> tuple[int, int]:
    parts = text.lower().split('x')
    # isascii: isdigit also accepts digits such as '²' that int() refuses.
    if len(parts) != 2 or not all(p.strip().isascii() and p.strip().isdigit() for p in parts) \
            or min(int(p) for p in parts) < 1:
        raise ValueError(f'--size must be HxW with positive integers (height first), got {text!r}')
    return int(parts[0]), int(parts[1])


def _batch(paths: list[str], ext: str | None,
           overwrite: bool) -> list[tuple[Path, Path]] | None:
    """(input, output) pairs when ``paths`` asks for a folder of outputs (several inputs, a
    folder among them, or an output that is a folder); None for one file to one file."""
    *inputs, out = (Path(p) for p in paths)
    if len(inputs) == 1 and not inputs[0].is_dir() and not out.is_dir() \
            and not paths[-1].endswith(os.sep):
        return None
    files = []
    for path in inputs:
        # A folder's files in sorted order; hidden ones (temporary files, .DS_Store) left out.
        files += sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith('.')) \
            if path.is_dir() else [path]
    if not files:
        raise ValueError(f"{', '.join(map(str, inputs))}: no images to upscale")
    suffix = None if ext is None else '.' + ext.lstrip('.')
    pairs = [(f, out / (f.name if suffix is None else f.stem + suffix)) for f in files]
    same = next((i for i, o in pairs if o.exists() and o.samefile(i)), None)
    if same is not None and not overwrite:
        raise ValueError(f'{same} would be overwritten by its own result; choose another output '
                         'folder or --ext, or pass --overwrite')
    names = [o.name for _, o in pairs]
    clash = next((n for n in names if names.count(n) > 1), None)
    if clash is not None:
        raise ValueError(f'two inputs would both be written to {out / clash}; give them '
                         'different names')
    return pairs


def _say(message: str) -> None:
    say('upscale', message)


def _run_batch(pairs: list[tuple[Path, Path]], model: LIIF, device: torch.device,
               size: tuple[int, int] | None, scale: float | None,
               args: argparse.Namespace) -> int:
    """Upscale each pair, skipping (with one line each) the inputs that cannot be read or
    written; exit status 1 if any was skipped, after writing the others."""
    pairs[0][1].parent.mkdir(parents=True, exist_ok=True)
    skipped = 0
    with tqdm(pairs, unit='image', desc='upscale', disable=not args.progress) as bar:
        for in_path, out_path in bar:
            try:
                job = plan_file(in_path, out_path, size, scale, args.quality, not args.no_limits)
                write_file(job, model, device, args.tile, args.encoder_tile, progress=False,
                           dtype=args.dtype, say=_say)
                if job.note():
                    _say(f'{in_path}: {job.note()}')
            except (ValueError, OSError) as e:
                skipped += 1
                reason = str(e).removeprefix(f'{in_path}: ')  # the path is said once
                bar.write(f'liif upscale: skipped {in_path}: {reason}', file=sys.stderr)
    written = len(pairs) - skipped
    print(f'{written} of {len(pairs)} images upscaled into {pairs[0][1].parent}'
          + (f', {skipped} skipped' if skipped else ''))
    return 1 if skipped else 0


def run(args: argparse.Namespace) -> int:
    if len(args.paths) < 2:
        raise ValueError('give an input and an output: liif upscale IN OUT, or IN... FOLDER')
    if args.scale is None and args.size is None:
        raise ValueError('give the output size with --scale S or --size HxW')
    scale = None if args.scale is None else _parse_scale(args.scale)
    size = None if args.size is None else _parse_size(args.size)
    device = resolve_device(args.device)
    precision(args.dtype, device)  # an unsupported dtype fails before any file is read
    pairs = _batch(args.paths, args.ext, args.overwrite)
    job = None
    if pairs is None:
        if args.ext is not None:
            raise ValueError('--ext applies to an output folder; the output file names its '
                             'format by its extension')
        in_path, out_path = map(Path, args.paths)
        if out_path.exists() and out_path.samefile(in_path) and not args.overwrite:
            raise ValueError(f'{in_path} would be overwritten by its own result; choose another '
                             'output, or pass --overwrite')
        job = plan_file(in_path, out_path, size, scale, args.quality, not args.no_limits)
    weights = current_name('upscale', args.weights)
    model = check_model(resolve_model(weights, map_location=device))
    if job is None:
        return _run_batch(pairs, model, device, size, scale, args)
    write_file(job, model, device, args.tile, args.encoder_tile, progress=args.progress,
               dtype=args.dtype, say=_say)
    print(f'{job.out_path}: {job.size[0]}x{job.size[1]}')
    if job.note():
        _say(f'{in_path}: {job.note()}')
    return 0
