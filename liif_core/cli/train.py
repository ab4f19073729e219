"""``liif train CONFIG``: the paper's recipe from a training config (``liif_core.train``), in one
process or, under ``torchrun``, in several."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..configs import load_config
from ..launch import AMP_DTYPES, distributed_env
from ..train import train
from .common import add_data_root_argument, add_device_argument, add_threads_argument

HELP = 'train a model from a config (the paper\'s recipe)'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('config', help='a training config: a YAML file or a packaged name')
    parser.add_argument('--name', help='run name (default: _<config stem>, as the official '
                                       'code); the run is saved in save/<name>')
    parser.add_argument('--save-dir', help='save folder (overrides save/<name>)')
    parser.add_argument('--resume', action='store_true',
                        help='continue from the save folder\'s epoch-last.pth')
    parser.add_argument('--new-optimizer', action='store_true',
                        help='with --resume: continue with this config\'s optimizer settings '
                             'where they differ from the run\'s (otherwise refused)')
    add_data_root_argument(parser)
    add_device_argument(parser, 'cpu, cuda, cuda:1, ... (default: CUDA if available)')
    parser.add_argument('--num-workers', type=int, help='DataLoader workers per process')
    parser.add_argument('--amp', nargs='?', const=True, default=False,
                        choices=tuple(AMP_DTYPES),
                        help='mixed precision: --amp fp16 (gradients scaled), --amp bf16, or '
                             '--amp alone for fp16 on CUDA and bf16 on CPU (default: float32)')
    parser.add_argument('--no-tf32', dest='tf32', action='store_false',
                        help='on CUDA, keep float32 matrix products in full float32 '
                             '(default: TF32)')
    parser.add_argument('--epochs', type=int, help='override epoch_max')
    parser.add_argument('--time-limit', type=float, metavar='MINUTES',
                        help='stop after the last epoch that fits in this many minutes '
                             '(continue later with --resume; the schedule still spans '
                             'epoch_max)')
    parser.add_argument('--seed', type=int, help="override the config's seed (default 0)")
    add_threads_argument(parser)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.epochs is not None:
        config['epoch_max'] = args.epochs
    if args.seed is not None:
        config['seed'] = args.seed
    name = args.name or '_' + Path(args.config).stem
    save_dir = Path(args.save_dir) if args.save_dir else Path('save') / name
    result = train(config, save_dir, resume=args.resume, data_root=args.data_root,
                   device=args.device, num_workers=args.num_workers, amp=args.amp,
                   tf32=args.tf32, progress=args.progress, new_optimizer=args.new_optimizer,
                   time_limit=None if args.time_limit is None else 60 * args.time_limit)
    if distributed_env()[0] == 0:
        print(f'done: epoch {result["epoch"]}, checkpoints in {save_dir}')
    return 0
