"""``liif test``: an official test config as the official script runs it, or a scale sweep of
the model against bicubic (``evaluate_scales``), with tables, CSV and JSON results."""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from .. import __version__
from ..checkpoint import load_model
from ..configs import load_config
from ..data import make_data, with_data_root
from ..device import resolve_device
from ..evaluate import EvalResult, evaluate, evaluate_scales, parse_eval_type
from ..pretrained import DEFAULT_MODEL, file_sha256, resolve_weights
from ..render import BICUBIC, EVAL_BSIZE, MODEL_DATA_NORM
from ..report import Scale, format_table, write_csv, write_json
from .common import add_data_root_argument, add_device_argument, add_threads_argument, current_name

HELP = 'evaluate weights (PSNR, SSIM): an official test config or a scale sweep'


def _parse_scales(text: str) -> list[Scale]:
    """``'2,3,2.5,2x3'`` -> ``[2, 3, 2.5, (2.0, 3.0)]``."""
    scales: list[Scale] = []
    for item in text.split(','):
        try:
            parts = [float(p) for p in item.strip().lower().split('x')]
        except ValueError:
            parts = []
        if not 1 <= len(parts) <= 2 or not all(math.isfinite(p) and p > 0 for p in parts):
            raise ValueError(f'--scales: bad scale {item.strip()!r}: use positive numbers or '
                             'ROWxCOL, comma-separated, e.g. 2,3.5,2x3')
        value = parts[0] if len(parts) == 1 else (parts[0], parts[1])
        scales.append(int(value) if isinstance(value, float) and value.is_integer() else value)
    return scales


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('config', nargs='?', help='an official test config (YAML file or '
                        'packaged name); with --scales it only supplies the HR images')
    parser.add_argument('--weights', help='a checkpoint (.pth) or the name of shipped weights '
                        '(default: the shipped model)')
    add_data_root_argument(parser)
    parser.add_argument('--scales', help='run a sweep instead: e.g. 2,3,4,6,12,18,24,30 '
                        '(non-integer and per-axis ROWxCOL scales allowed)')
    parser.add_argument('--hr', help='folder of HR images for the sweep (instead of CONFIG)')
    parser.add_argument('--protocol', choices=('div2k', 'benchmark'),
                        help="sweep protocol (default: the config's eval_type, else div2k)")
    parser.add_argument('--first-k', type=int, help='sweep: only the first K images')
    parser.add_argument('--crop', type=int, help='sweep: centred crop of at most CROP x CROP')
    parser.add_argument('--no-bicubic', action='store_true', help='skip the bicubic baseline')
    parser.add_argument('--eval-bsize', type=int, help='queries per chunk (default: the '
                        f"config's eval_bsize; in sweeps {EVAL_BSIZE} on a CPU, "
                        'sized to the free memory on a GPU)')
    parser.add_argument('--label', default='model', help='row label for the model in tables')
    parser.add_argument('--csv', help='write the sweep summary (scale, psnr, psnr_bicubic, ssim, '
                        'ssim_bicubic, n_images)')
    parser.add_argument('--per-image-csv', help='write per-image PSNR and SSIM of the sweep')
    parser.add_argument('--json', help='write the sweep per image, with the command line and '
                        "the weights' sha256 (a result file the book can check)")
    add_device_argument(parser, 'cpu, cuda, ... (default: CUDA if available)')
    add_threads_argument(parser)


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    for option in ('csv', 'per_image_csv', 'json'):
        # Checked now, not after an evaluation that may take hours.
        path = getattr(args, option)
        if path is not None and not Path(path).resolve().parent.is_dir():
            raise ValueError(f"--{option.replace('_', '-')} {path}: no such folder "
                             f'{Path(path).parent}; create it first')
    scales = None if args.scales is None else _parse_scales(args.scales)
    config = None
    if args.config is not None:
        config = load_config(args.config)
    if scales is None and (config is None or 'test_dataset' not in config):
        raise ValueError('give a test config with a test_dataset section, or --scales')
    if scales is not None and args.hr is None and config is None:
        raise ValueError('a sweep needs HR images: give a test config or --hr FOLDER')
    # The weights last: every mistake above is reported before a large checkpoint is read.
    weights = current_name('test', args.weights) or DEFAULT_MODEL
    weights_file = resolve_weights(weights, args.data_root)
    model = load_model(weights_file, map_location=device)
    if scales is None:
        return _run_config(model, config, args)
    hr = args.hr if args.hr is not None else _config_hr_images(config, args.data_root)
    eval_type = (config or {}).get('eval_type')
    protocol = args.protocol or (parse_eval_type(eval_type)[0] if eval_type else None) or 'div2k'
    start = time.time()
    rows = evaluate_scales(model, hr, scales, protocol,
                           bicubic=not args.no_bicubic, eval_bsize=args.eval_bsize or 'auto',
                           data_norm=(config or {}).get('data_norm', MODEL_DATA_NORM),
                           first_k=args.first_k, crop=args.crop, progress=args.progress)
    about = (f'protocol {protocol}, {len(rows[0].names)} images'
             + (f', crop {args.crop}' if args.crop else '') + f', weights {weights}')
    print(f'PSNR (dB), {about}')
    print(format_table(rows, args.label))
    print(f'\nSSIM, {about}')
    print(format_table(rows, args.label, metric='ssim'))
    if args.csv:
        write_csv(rows, args.csv)
    if args.per_image_csv:
        write_csv(rows, args.per_image_csv, per_image=True)
    if args.json:
        write_json(rows, args.json, command=' '.join(['liif', 'test', *sys.argv[2:]]),
                   weights=str(weights), weights_sha256=file_sha256(weights_file),
                   protocol=protocol, crop=args.crop, first_k=args.first_k,
                   seconds=round(time.time() - start, 1), threads=torch.get_num_threads(),
                   liif_core=__version__, torch=torch.__version__)
    return 0


def _run_config(model: nn.Module, config: dict, args: argparse.Namespace) -> int:
    """An official test config, unchanged: print 'result: PSNR' (and 'ssim: SSIM' where the
    config's eval_type makes images), then the same for bicubic."""
    section = config['test_dataset']
    loader = DataLoader(make_data(section, data_root=args.data_root),
                        batch_size=section.get('batch_size', 1))
    eval_bsize = args.eval_bsize or config.get('eval_bsize')
    def show(result: EvalResult, psnr_label: str, ssim_label: str) -> None:
        print(f'{psnr_label}: {result.psnr:.4f}')
        if result.ssim is not None:
            print(f'{ssim_label}: {result.ssim:.4f}')

    show(evaluate(model, loader, config.get('eval_type'), eval_bsize, config.get('data_norm'),
                  progress=args.progress), 'result', 'ssim')
    if not args.no_bicubic:
        show(evaluate(BICUBIC, loader, config.get('eval_type'), progress=args.progress),
             'bicubic', 'bicubic ssim')
    return 0


def _config_hr_images(config: dict, data_root: str | None) -> str:
    """The HR folder of a test config's dataset (``root_path``, or ``root_path_2`` of a pair)."""
    spec = with_data_root(config['test_dataset']['dataset'], data_root)
    args = spec.get('args') or {}
    if args.get('split_file') is not None:
        raise ValueError('sweeps over split-file datasets (CelebA-HQ) are not supported; '
                         'use the config unchanged, without --scales')
    folder = args.get('root_path_2', args.get('root_path'))
    if folder is None:
        raise ValueError(f"the test config's dataset {spec.get('name')!r} names no image folder")
    return folder
