"""``liif export [WEIGHTS] OUT_DIR``: a LIIF checkpoint as ONNX graphs (``liif_core.export``),
for the book's live viewer and any other ONNX runtime."""
from __future__ import annotations

import argparse

from ..export import export_onnx
from ..pretrained import DEFAULT_MODEL
from .common import current_name

HELP = 'write a LIIF checkpoint as ONNX graphs (encoder, decoder) for any ONNX runtime'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('out_dir', metavar='OUT_DIR',
                        help='folder for encoder.onnx, decoder.onnx, decoder_no_ensemble.onnx '
                             'and model.json (created if missing; those four files replaced)')
    parser.add_argument('--weights', metavar='PATH',
                        help='a LIIF checkpoint (.pth) or the name of weights (`liif list`; '
                             f'default: {DEFAULT_MODEL})')
    parser.add_argument('--name', help="the model's name in model.json (default: the "
                                       "weights' name or file stem)")


def run(args: argparse.Namespace) -> int:
    try:
        info = export_onnx(current_name('export', args.weights), args.out_dir, name=args.name)
    except ModuleNotFoundError as e:  # onnx missing: one line, as every expected error
        raise ValueError(str(e)) from None
    for path in info['paths'].values():
        print(path)
    return 0
