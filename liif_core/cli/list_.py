"""``liif list``: the packaged configs, the shipped weights, the official checkpoints and the
datasets, each with whether it is present under the data root (``liif_core.catalog``)."""
from __future__ import annotations

import argparse

from ..catalog import catalog
from ..data.specs import DEFAULT_DATA_ROOT

HELP = 'configs, shipped weights, official checkpoints and datasets'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--data-root', default=DEFAULT_DATA_ROOT,
                        help='where to look for fetched datasets and checkpoints '
                             '(default: %(default)s)')


def run(args: argparse.Namespace) -> int:
    for title, lines in catalog(args.data_root).items():
        print(f'{title}:')
        print('\n'.join(f'  {line}' for line in lines))
    return 0
