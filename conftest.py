"""Lets ``pytest --nbval book/`` run the book's chapters, which are jupytext MyST-markdown files.

nbval only collects ``.ipynb`` files. Here every ``book/*.md`` that carries a jupytext header is
read with jupytext and handed to nbval's notebook collector, so each code cell becomes a test
item, executed in order in one kernel started in ``book/``. No outputs are committed, so
nothing is compared: a cell fails only by raising, which is why each chapter states its claims
in (hidden) assert cells. Without ``--nbval``/``--nbval-lax`` this hook does nothing, so
``pytest tests/`` is unaffected.
"""
from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest

BOOK = Path(__file__).parent / 'book'


def _is_chapter(file_path: Path) -> bool:
    """A jupytext notebook under book/ (plain pages such as CONVENTIONS.md are skipped)."""
    if file_path.suffix != '.md' or BOOK not in file_path.resolve().parents:
        return False
    head = file_path.read_text(encoding='utf-8')[:400]
    return head.startswith('---') and 'jupytext:' in head


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    opt = parent.config.option
    if not (getattr(opt, 'nbval', False) or getattr(opt, 'nbval_lax', False)):
        return None
    if not _is_chapter(file_path):
        return None
    import jupytext
    import nbval.plugin

    class MystNotebook(nbval.plugin.IPyNbFile):
        """nbval's collector, reading the notebook through jupytext instead of nbformat."""

        def collect(self):
            self.compare_outputs = False  # no stored outputs to compare against
            nb = jupytext.read(self.path)
            # nbval reads the file with nbformat.read inside collect(); give it the converted
            # notebook instead, only for the duration of this collection.
            with mock.patch.object(nbval.plugin.nbformat, 'read', return_value=nb):
                cells = list(super().collect())
            yield from cells

    return MystNotebook.from_parent(parent, path=file_path)
