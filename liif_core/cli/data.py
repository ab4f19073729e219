"""``liif data fetch NAME...``: datasets and the official checkpoints by name
(``liif_core.data.fetch``); ``liif data list``: the names."""
from __future__ import annotations

import argparse

from ..data.fetch import fetch, load_manifest, manifest_names
from ..data.specs import DEFAULT_DATA_ROOT
from ..pretrained import OFFICIAL
from .common import current_name

# What the user types -> the manifest: the official checkpoints go by their weights' names.
MANIFESTS = {**{name: name for name in manifest_names() if name not in OFFICIAL.values()},
             **OFFICIAL}

HELP = ('download datasets (DIV2K, benchmarks, stand-in photos) and the official '
        'checkpoints')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest='action', metavar='ACTION', required=True)
    p = sub.add_parser('fetch', help='download (or copy) a dataset or an official checkpoint '
                                     'under the data root')
    p.add_argument('names', nargs='+', metavar='NAME',
                   help=f"one of: {', '.join(MANIFESTS)}")
    p.add_argument('--root', default=DEFAULT_DATA_ROOT,
                   help='data root; pass the same to `liif train/test --data-root` '
                        '(default: %(default)s)')
    sub.add_parser('list', help='the datasets and checkpoints `fetch` knows')


def run(args: argparse.Namespace) -> int:
    if args.action == 'list':
        for name, manifest in MANIFESTS.items():
            print(f"{name:26s} {load_manifest(manifest)['title']}")
        return 0
    for name in args.names:
        name = current_name('data', name)
        folder = fetch(MANIFESTS.get(name, name), args.root, progress=args.progress)
        print(f'{name}: ready in {folder}')
    return 0
