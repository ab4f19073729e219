"""Run one piece of the long training run, resuming the last piece, on pinned settings.

    python scripts/long_run.py --minutes 150 [--run book/results/standin-long]

The run folder is tracked in git while the run goes on: ``epoch-last.pth`` (the full training
state, overwritten by each piece), ``log.jsonl``, ``pieces.jsonl`` and ``config.yaml``. A piece
trains until the last epoch that fits in ``--minutes`` (``liif train --time-limit``), so that it
ends with its state saved and can be committed; the next piece resumes it bit for bit on the
same kind of CPU. When the last epoch is done, the weights ship
(``liif_core.pretrained.ship(RUN/epoch-last.pth, NAME)``) and the training state
leaves the repository; the log, the pieces and the config stay.

Float results depend on the thread count and on the CPU kernels torch picks, so every piece
runs on one thread, bfloat16 autocast and the ATen kernel level of the run's first piece
(``ATEN_CPU_CAPABILITY``, recorded in ``pieces.jsonl``). A piece on another CPU model still
trains correctly but does not repeat the numbers an uninterrupted run would give there; the
script says so before it starts.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import torch

from liif_core.device import cpu_name
from liif_core.train_state import read_records

CONFIG = 'cpu/train_edsr-baseline-liif-standin-long'
RUN = 'book/results/standin-long'


def pinned_env(run: Path) -> dict[str, str]:
    """The environment every piece runs with: the first piece's kernel level, one thread."""
    pieces_file = run / 'pieces.jsonl'
    pieces = read_records(pieces_file) if pieces_file.is_file() else []
    first = pieces[0] if pieces else {}
    capability = first.get('kernel_env', {}).get('ATEN_CPU_CAPABILITY',
                                                 torch.backends.cpu.get_cpu_capability())
    if first and first.get('cpu') != cpu_name():
        print(f"note: the run started on {first.get('cpu')!r}, this is {cpu_name()!r}: "
              'training continues correctly, but not bit for bit as on the first CPU')
    return {**os.environ, 'ATEN_CPU_CAPABILITY': capability.lower(), 'OMP_NUM_THREADS': '1'}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--minutes', type=float, required=True,
                        help='wall-clock budget of this piece')
    parser.add_argument('--run', default=RUN, help='the run folder (default: %(default)s)')
    parser.add_argument('--data-root', default='data')
    args = parser.parse_args()
    run = Path(args.run)
    command = [sys.executable, '-m', 'liif_core', 'train', CONFIG, '--save-dir', str(run),
               '--data-root', args.data_root, '--device', 'cpu', '--amp', 'bf16',
               '--threads', '1', '--num-workers', '0', '--time-limit', str(args.minutes)]
    if (run / 'epoch-last.pth').is_file():
        command.append('--resume')
    print(' '.join(command), flush=True)
    return subprocess.call(command, env=pinned_env(run))


if __name__ == '__main__':
    sys.exit(main())
