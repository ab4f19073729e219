"""``scripts/gpu_check.py``: its JSON records every step's outcome, a failed step's error tail,
and stays readable by the book's chapters whatever failed. (Its CPU rehearsal, every step small
with the network and loopback off, is run by hand: minutes, not a unit test.)"""
import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
HEADER = {'device', 'device_count', 'rehearsal', 'date', 'command', 'torch', 'cuda', 'python',
          'cpu', 'cpus', 'budget_s', 'photos', 'steps', 'runs', 'total_seconds'}
RUN_STATUSES = {'ok', 'failed', 'timeout', 'not_run'}


@pytest.fixture(scope='module')
def gpu_check():
    spec = importlib.util.spec_from_file_location('gpu_check', ROOT / 'scripts' / 'gpu_check.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def failed_run(gpu_check, tmp_path_factory):
    """A rehearsal of the cheapest step, made to fail on purpose."""
    if torch.cuda.is_available():
        pytest.skip('on a GPU machine the script measures the GPU, not a rehearsal')
    out = tmp_path_factory.mktemp('gpu')
    assert gpu_check.main(['--out', str(out), '--rehearse', '--steps', 'tests',
                           '--fail', 'tests', '--budget', '300']) == 0
    [path] = out.glob('*.json')
    return json.loads(path.read_text())


def test_a_failed_step_records_its_error_tail(failed_run):
    assert set(failed_run) == HEADER
    assert failed_run['rehearsal'] is True and failed_run['device_count'] == 0
    assert failed_run['steps'] == {}  # steps holds complete results only
    run = failed_run['runs']['tests']
    assert run['status'] == 'failed' and run['returncode'] == 1
    assert run['error'] == 'FailedOnPurpose: step tests failed on purpose (--fail tests)'
    assert 'Traceback' in run['stderr_tail'] and run['stderr_tail'].endswith('(--fail tests)\n')
    assert 0 < run['seconds'] <= run['limit_s'] <= 300


def test_steps_past_the_budget_are_not_run(gpu_check, tmp_path):
    assert gpu_check.main(['--out', str(tmp_path), '--rehearse', '--budget', '5']) == 0
    report = json.loads(next(tmp_path.glob('*.json')).read_text())
    assert list(report['runs']) == list(gpu_check.STEPS)
    assert {r['status'] for r in report['runs'].values()} == {'not_run'}
    assert report['steps'] == {} and report['total_seconds'] < 30


def test_a_step_over_its_limit_is_stopped_and_says_so(gpu_check, tmp_path):
    record = gpu_check.spawn_step('decode', tmp_path, torch.device('cpu'), limit=1.0, fail=False)
    assert record['status'] == 'timeout' and record['error'] == 'stopped at its limit of 1 s'
    assert record['seconds'] < 30 and 'results' not in record


def test_workers_follow_the_machine(gpu_check, monkeypatch):
    monkeypatch.setattr(gpu_check, 'cpus', lambda: 16)
    assert gpu_check.loader_workers(torch.device('cpu')) == 8
    monkeypatch.setattr(gpu_check, 'cpus', lambda: 2)
    assert gpu_check.loader_workers(torch.device('cpu')) == 1


def _gpu_cells(chapter: str) -> list[str]:
    """The chapter's code cells that read results/gpu."""
    text = (ROOT / 'book' / chapter).read_text()
    cells = re.findall(r'```\{code-cell\}[^\n]*\n(.*?)```', text, flags=re.S)
    return [c for c in cells if "'gpu'" in c or 'results/gpu' in c]


@pytest.mark.parametrize('chapter', ['08c_long_run.md', '09_benchmark.md'])
def test_the_book_reads_a_run_with_failed_steps(failed_run, chapter, tmp_path, monkeypatch,
                                                capsys):
    """The chapters' cells that show GPU results run on a JSON whose steps failed."""
    from IPython.display import Markdown
    results = tmp_path / 'results'
    (results / 'gpu').mkdir(parents=True)
    (results / 'gpu' / 'rehearsal.json').write_text(json.dumps(failed_run))
    monkeypatch.chdir(tmp_path)
    cells = _gpu_cells(chapter)
    assert cells
    namespace = {'Path': Path, 'RESULTS': results, 'Markdown': Markdown, 'json': json}
    for cell in cells:
        exec(compile(cell, chapter, 'exec'), namespace)  # noqa: S102 - the book's own code
    out = capsys.readouterr().out
    assert failed_run['device'] in out
    if chapter.startswith('08c'):  # every step that did not succeed says why
        assert f"tests: failed: {failed_run['runs']['tests']['error']}" in out
