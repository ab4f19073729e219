"""What every command shares: the options ``--no-progress``, ``--debug``, ``--device`` and
``--threads``, notes on stderr, weights by their old names, and the signals that stop a command
cleanly."""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from ..data.specs import DEFAULT_DATA_ROOT
from ..pretrained import renamed


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


def add_device_argument(parser: argparse.ArgumentParser, help: str,
                        default: str | None = None) -> None:
    """``--device``, checked by ``liif_core.cli.main`` before the command runs."""
    parser.add_argument('--device', default=default, help=help)


def add_data_root_argument(parser: argparse.ArgumentParser) -> None:
    """``--data-root`` of the commands that read configs (``liif train``, ``liif test``)."""
    parser.add_argument('--data-root', default=DEFAULT_DATA_ROOT,
                        help="where the config's ./load/... data paths point (default: "
                             "%(default)s, where `liif data fetch` puts them; `load` for the "
                             'official layout)')


def add_threads_argument(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--threads``, checked and applied (``torch.set_num_threads``) by ``liif_core.cli.main``
    before the command runs; None leaves torch's default."""
    parser.add_argument('--threads', type=int, help=help or 'CPU threads for PyTorch (on a busy '
                        'machine 1 can be many times faster than the default)')


def say(command: str, message: str) -> None:
    """A note on stderr, printed above a progress bar if one is showing."""
    tqdm.write(f'liif {command}: note: {message}', file=sys.stderr)


def current_name(command: str, name: str | None) -> str | None:
    """``name`` (weights, or what ``liif data fetch`` takes), or, when it is an old name of
    weights, their current one, after a note on stderr naming it."""
    new = None if name is None or Path(name).exists() else renamed(name)
    if new is None:
        return name
    say(command, f'{name!r} is now named {new!r}')
    return new
