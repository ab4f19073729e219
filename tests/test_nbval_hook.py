"""`pytest --nbval book/`, the readers' check of the chapters (the collection hook is in the root
conftest.py): a chapter becomes one test per code cell, all run in one kernel; without
``--nbval`` the chapters are not collected. ``make test`` checks the chapters in the book build
instead, so one chapter here keeps this command working."""
import re
import subprocess
import sys
from pathlib import Path

import jupytext

ROOT = Path(__file__).parents[1]
CHAPTER = ROOT / 'book' / '02_latent_codes.md'  # among the quickest chapters to run


def pytest_on_chapter(*options: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                           *options, str(CHAPTER)], cwd=ROOT, capture_output=True, text=True)


def test_nbval_runs_every_code_cell_of_a_chapter():
    cells = sum(cell.cell_type == 'code' for cell in jupytext.read(CHAPTER).cells)
    run = pytest_on_chapter('--nbval')
    assert run.returncode == 0, run.stdout[-3000:]
    assert re.search(rf'\b{cells} passed\b', run.stdout), run.stdout[-500:]


def test_chapters_are_not_collected_without_nbval():
    run = pytest_on_chapter('--collect-only')
    assert 'no tests collected' in run.stdout, run.stdout[-500:]
