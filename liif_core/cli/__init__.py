"""The ``liif`` command line: ``liif <command> ...`` (also ``python -m liif_core``).

One module per command (``liif_core.cli.upscale``, ``.test``, ...) holds its options
(``add_arguments``), its checks and its ``run(args) -> int``; the library modules it calls know
nothing of the command line. Here, once for every command: ``--device`` and ``--threads`` are
checked (and the threads applied) before a command reads a checkpoint or writes a file, and
expected errors (bad input, bad checkpoint) print one line and exit non-zero; so do Ctrl-C,
SIGTERM and SIGHUP, after the files being written are cleaned up.

Every command takes ``--no-progress`` and ``--debug`` (``common``); a command reads
``args.progress``, also set here: bars only when stderr is a terminal and not turned off.
"""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys

import torch

from .. import __version__
from ..device import resolve_device
from . import bench, data, export, list_, test, train, upscale
from .common import Stopped, add_common_arguments, stop_on_signals

COMMANDS = {'upscale': upscale, 'bench': bench, 'data': data, 'train': train, 'test': test,
            'list': list_, 'export': export}

__all__ = ['COMMANDS', 'Stopped', 'main', 'stop_on_signals']


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog='liif', description=__doc__.splitlines()[0])
    parser.add_argument('--version', action='version', version=f'%(prog)s {__version__}')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
    for name, module in COMMANDS.items():
        sub.add_parser(name, help=module.HELP, add_help=False)
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints help, or the error for an unknown command, and exits
    # Only the chosen command builds its parser.
    command = argv[0]
    module = COMMANDS[command]
    cmd_parser = argparse.ArgumentParser(prog=f'liif {command}', description=module.HELP)
    module.add_arguments(cmd_parser)
    add_common_arguments(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    args.progress = not getattr(args, 'no_progress', False) and sys.stderr.isatty()
    try:
        # Checked for every command here, before it reads a checkpoint or writes a file.
        if getattr(args, 'device', None) is not None:
            resolve_device(args.device)
        if getattr(args, 'threads', None) is not None:
            if args.threads < 1:
                raise ValueError(f'--threads must be at least 1, got {args.threads}')
            torch.set_num_threads(args.threads)
        with stop_on_signals():
            return module.run(args)
    except (ValueError, OSError) as e:
        if getattr(args, 'debug', False):
            raise
        print(f'liif {command}: error: {e}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f'liif {command}: interrupted', file=sys.stderr)
        return 130
    except Stopped as e:
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            print(f'liif {command}: stopped by {signal.Signals(e.signum).name}', file=sys.stderr)
        return 128 + e.signum
