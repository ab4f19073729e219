"""The ``liif`` command line: ``liif <command> ...`` (also ``python -m liif_core``).

Each command lives in the module that owns its concept and exposes ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their command runs, so ``liif --help``
stays fast. Expected errors (bad input, bad checkpoint) print one line and exit non-zero; so do
Ctrl-C, SIGTERM and SIGHUP, after the files being written are cleaned up.

Every command takes ``--no-progress`` and ``--debug``, added here; a command reads
``args.progress``, also set here: bars only when stderr is a terminal and not turned off.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
from typing import Iterator

from . import __version__

# command -> (module, one-line help)
COMMANDS = {
    'upscale': ('liif_core.upscale', 'upscale an image, several, or a folder, to any size or '
                                     'scale'),
    'bench': ('liif_core.bench', 'time the fast decoding path against the official algorithm'),
    'data': ('liif_core.data.fetch', 'download datasets (DIV2K, benchmarks, stand-in photos) '
                                     'and the official checkpoints'),
    'train': ('liif_core.train', 'train a model from a config (the paper\'s recipe)'),
    'test': ('liif_core.evaluate', 'evaluate weights (PSNR, SSIM): an official test config or a '
                                   'scale sweep'),
    'list': ('liif_core.catalog', 'configs, shipped weights, official checkpoints and datasets'),
}


class Stopped(BaseException):
    """A termination signal, raised where the process is so that files being written are
    cleaned up on the way out (a BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, frame: object) -> None:
    raise Stopped(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM (a plain ``kill``, a scheduler's end of job) and SIGHUP (a closed terminal) raise
    ``Stopped`` while a command runs, instead of ending the process without unwinding, which
    would leave temporary files behind. The previous handlers come back afterwards; outside the
    main thread (where handlers cannot be set) nothing changes. SIGKILL cannot be caught."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = [s for s in (signal.SIGTERM, getattr(signal, 'SIGHUP', None)) if s is not None]
    previous = {s: signal.signal(s, _raise_stopped) for s in caught}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of every command, added to its parser and to those of its sub-commands
    (``liif data fetch``), so that they go before or after the sub-command. SUPPRESS: a
    sub-command's parser does not reset what the command's own parser already read."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_parser in action.choices.values():
                add_common_arguments(sub_parser)
    parser.add_argument('--no-progress', action='store_true', default=argparse.SUPPRESS,
                        help='never show progress bars (they show only on a terminal)')
    parser.add_argument('--debug', action='store_true', default=argparse.SUPPRESS,
                        help='on an error, print the full traceback')


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog='liif', description=__doc__.splitlines()[0])
    parser.add_argument('--version', action='version', version=f'%(prog)s {__version__}')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints help, or the error for an unknown command, and exits
    # Only the chosen command's module is imported and builds its parser.
    command = argv[0]
    module = importlib.import_module(COMMANDS[command][0])
    cmd_parser = argparse.ArgumentParser(prog=f'liif {command}', description=COMMANDS[command][1])
    module.add_arguments(cmd_parser)
    add_common_arguments(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    args.progress = not getattr(args, 'no_progress', False) and sys.stderr.isatty()
    try:
        # Checked for every command here, before it reads a checkpoint or writes a file.
        if getattr(args, 'device', None) is not None:
            from .device import resolve_device  # torch: only once a command runs
            resolve_device(args.device)
        if getattr(args, 'threads', None) is not None and args.threads < 1:
            raise ValueError(f'--threads must be at least 1, got {args.threads}')
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


if __name__ == '__main__':
    sys.exit(main())
