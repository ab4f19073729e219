"""The package's metadata: one Python floor, pinned book environments that agree with
pyproject.toml, a wheel that holds every file the library needs, one version, the CLI wired."""
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import liif_core

ROOT = Path(__file__).parents[1]
PROJECT = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
# What the Makefile installs: the library with the book and test extras.
BOOK_EXTRAS = ('book', 'test')


def book_requirements() -> dict[str, Requirement]:
    reqs = PROJECT['dependencies'] + [req for extra in BOOK_EXTRAS
                                      for req in PROJECT['optional-dependencies'][extra]]
    return {canonicalize_name(r.name): r for r in map(Requirement, reqs)}


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / 'constraints.txt').read_text().splitlines():
        if line and not line.startswith('#'):
            name, version = line.split('==')
            pins[canonicalize_name(name)] = version
    return pins


def environment_pip_lines() -> list[str]:
    env = yaml.safe_load((ROOT / 'environment.yml').read_text())
    return next(d['pip'] for d in env['dependencies'] if isinstance(d, dict))


def test_constraints_pin_every_requirement_within_its_range():
    pins = constraints()
    for name, req in book_requirements().items():
        assert name in pins, f'{name} is not pinned in constraints.txt'
        assert req.specifier.contains(pins[name], prereleases=True), (name, pins[name])
    # The pin leaves the build to the index (+cpu, +cu126): the version is what matters.
    assert '+' not in pins['torch']


def test_environment_yml_pins_the_same_versions():
    lines = environment_pip_lines()
    assert '-c constraints.txt' in lines  # every other package at the same versions too
    pinned = dict(line.split('==') for line in lines if '==' in line)
    pinned = {canonicalize_name(name): version for name, version in pinned.items()}
    assert pinned.keys() == book_requirements().keys()
    pins = constraints()
    assert {name: pins[name] for name in pinned} == pinned


def test_torch_is_a_range_not_a_pin():
    torch_req = book_requirements()['torch']
    assert str(torch_req.specifier).startswith('>=') and '==' not in str(torch_req.specifier)


def test_one_python_floor():
    floor = re.fullmatch(r'>=(\d+\.\d+)', PROJECT['requires-python']).group(1)
    env = yaml.safe_load((ROOT / 'environment.yml').read_text())
    assert f'python={floor}' in env['dependencies']
    makefile = (ROOT / 'Makefile').read_text()
    assert re.search(r'^PYTHON_FLOOR := (\S+)$', makefile, re.M).group(1) == floor
    readme_floors = set(re.findall(r'Python (\d+\.\d+)', (ROOT / 'README.md').read_text()))
    assert readme_floors == {floor}


def test_wheel_holds_every_package_file(tmp_path):
    # Built from a copy, so that the build leaves nothing in the source tree.
    src = tmp_path / 'src'
    src.mkdir()
    for name in ('pyproject.toml', 'README.md', 'LICENSE'):
        shutil.copy(ROOT / name, src)
    shutil.copytree(ROOT / 'liif_core', src / 'liif_core',
                    ignore=shutil.ignore_patterns('__pycache__'))
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps',
                    '--no-build-isolation', '--wheel-dir', str(tmp_path / 'dist'), str(src)],
                   check=True, capture_output=True)
    wheel, = (tmp_path / 'dist').glob('*.whl')
    with zipfile.ZipFile(wheel) as z:
        shipped = {n for n in z.namelist() if n.startswith('liif_core/')}
        dist_info = f'liif_core-{liif_core.__version__}.dist-info'
        metadata = Parser().parsestr(z.read(f'{dist_info}/METADATA').decode())
        z.extractall(tmp_path / 'unpacked')
    package_files = {p.relative_to(src).as_posix() for p in (src / 'liif_core').rglob('*')
                     if p.is_file()}
    assert shipped == package_files
    assert metadata['Version'] == liif_core.__version__
    assert metadata['Requires-Python'] == PROJECT['requires-python']
    # The unpacked wheel alone (not this source tree) loads the shipped weights, checked by sha256.
    probe = ('import liif_core, liif_core.pretrained as p; p.load_pretrained(); '
             'print(liif_core.__file__)')
    out = subprocess.run([sys.executable, '-c', probe], cwd=tmp_path, check=True,
                         capture_output=True, text=True,
                         env={**os.environ, 'PYTHONPATH': str(tmp_path / 'unpacked')})
    assert Path(out.stdout.strip()).is_relative_to(tmp_path / 'unpacked')


def test_version_flag():
    out = subprocess.run([sys.executable, '-m', 'liif_core', '--version'], capture_output=True,
                         text=True, check=True).stdout
    assert out == f'liif {liif_core.__version__}\n'


def test_cli_help_and_module_entry_point():
    out = subprocess.run([sys.executable, '-m', 'liif_core', '--help'], capture_output=True,
                         text=True, check=True).stdout
    assert 'upscale' in out and '--version' in out
    bad = subprocess.run([sys.executable, '-m', 'liif_core', 'frobnicate'], capture_output=True,
                         text=True)
    assert bad.returncode != 0 and 'invalid choice' in bad.stderr


def test_citation_cites_the_paper_as_the_readme_does():
    cff = yaml.safe_load((ROOT / 'CITATION.cff').read_text())
    paper = cff['preferred-citation']
    bibtex = (ROOT / 'README.md').read_text().split('```bibtex')[1].split('```')[0]
    fields = dict(re.findall(r'(\w+)\s*=\s*\{(.*)\},?\n', bibtex))
    assert paper['title'] == fields['title']
    assert f"{paper['start']}--{paper['end']}" == fields['pages']
    assert str(paper['year']) == fields['year']
    authors = [f"{a['family-names']}, {a['given-names']}" for a in paper['authors']]
    assert ' and '.join(authors) == fields['author']
    assert cff['license'] == PROJECT['license']
