"""The package's metadata: conda and pip users get the same dependencies; the CLI is wired."""
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
    wanted = set(project['dependencies'])
    for extra in project['optional-dependencies'].values():
        wanted |= set(extra)
    env = yaml.safe_load((ROOT / 'environment.yml').read_text())
    pip_section = next(d['pip'] for d in env['dependencies'] if isinstance(d, dict))
    listed = {line for line in pip_section if not line.startswith('-e')}
    assert listed == wanted


def test_torch_is_a_range_not_a_pin():
    project = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
    torch_req = next(d for d in project['dependencies'] if d.startswith('torch'))
    assert '>=' in torch_req and '==' not in torch_req


def test_cli_help_and_module_entry_point():
    out = subprocess.run([sys.executable, '-m', 'liif_core', '--help'], capture_output=True,
                         text=True, check=True).stdout
    assert 'upscale' in out
    bad = subprocess.run([sys.executable, '-m', 'liif_core', 'frobnicate'], capture_output=True,
                         text=True)
    assert bad.returncode != 0 and 'invalid choice' in bad.stderr
