"""The ``liif`` command line: ``liif <command> ...`` (also ``python -m liif_core``).

Each command lives in the module that owns its concept and exposes ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their command runs, so ``liif --help``
stays fast. Expected errors (bad input, bad checkpoint) print one line and exit non-zero.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# command -> (module, one-line help)
COMMANDS = {
    'upscale': ('liif_core.upscale', 'upscale an image to any size or scale'),
    'bench': ('liif_core.bench', 'time the fast decoding path against the official algorithm'),
    'data': ('liif_core.data.fetch', 'download datasets: DIV2K, benchmarks, stand-in photos'),
    'train': ('liif_core.train', 'train a model from a config (the paper\'s recipe)'),
    'test': ('liif_core.evaluate', 'evaluate weights: an official test config or a scale sweep'),
}


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
    args = cmd_parser.parse_args(argv[1:])
    try:
        return module.run(args)
    except (ValueError, OSError) as e:
        print(f'liif {command}: error: {e}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f'liif {command}: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
