"""The packaged YAML configs: the paper's (same keys and values as the official ones) and CPU ones.

    train-div2k/          train_{edsr-baseline,rdn}-{liif,metasr,x2}.yaml
    train-div2k/ablation/ train_edsr-baseline-liif-{c,u,e,d,x2,x3,x4}.yaml
    train-celebAHQ/       train_celebAHQ-{32-256,64-128}_{liif,upsample}.yaml
    test/                 test-div2k-{2..30}, test-{set5,set14,b100,urban100}-{2,3,4,6,8},
                          test-celebAHQ-{32-256,64-128}
    test-standin/         the same protocols on the stand-in photos (test-standin-*, test-samples-*)
    cpu/                  small configs that train on the stand-in photos in minutes
    cpu/ablation/         ablation_*: LIIF, -c, -u, -e, -d and MetaSR on one CPU budget

Data paths are the official ``./load/...``; pass ``data_root`` to ``liif_core.data.make_data``
(``--data-root`` on the command line) to read them from where ``liif data fetch`` put them.
"""
from __future__ import annotations

import difflib
import os
from importlib import resources
from typing import Any

import yaml

SUFFIX = '.yaml'


def list_configs() -> list[str]:
    """Every packaged config, as a name relative to this folder without '.yaml'."""
    root = resources.files(__name__)
    names: list[str] = []

    def walk(folder: Any, prefix: str) -> None:
        for entry in folder.iterdir():
            if entry.is_dir():
                walk(entry, f'{prefix}{entry.name}/')
            elif entry.name.endswith(SUFFIX):
                names.append(prefix + entry.name[:-len(SUFFIX)])

    walk(root, '')
    return sorted(names)


def find_config(name: str) -> str:
    """The packaged config a name refers to.

    Accepted forms: 'train-div2k/train_edsr-baseline-liif', the bare 'train_edsr-baseline-liif'
    (when unique), and the official repository path 'configs/test/test-div2k-2.yaml'.

    Returns:
        its name as listed by ``list_configs``.
    """
    key = name[len('configs/'):] if name.startswith('configs/') else name
    key = key[:-len(SUFFIX)] if key.endswith(SUFFIX) else key
    names = list_configs()
    if key in names:
        return key
    matches = [n for n in names if n.rsplit('/', 1)[-1] == key]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValueError(f'config name {name!r} is ambiguous: {", ".join(matches)}')
    close = difflib.get_close_matches(key, names + [n.rsplit('/', 1)[-1] for n in names], n=3)
    hint = f'; did you mean {", ".join(close)}?' if close else '; `list_configs()` lists them'
    raise FileNotFoundError(f'no config file {name!r} and no packaged config of that name{hint}')


def load_config(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """Read a config: an existing YAML file, or else a packaged config by name.

    Example:
        >>> config = load_config('train_edsr-baseline-liif')
        >>> config['model']['args']['imnet_spec']['args']['hidden_list']
        [256, 256, 256, 256]
    """
    path = os.fspath(name_or_path)
    if os.path.isfile(path):
        with open(path) as f:
            text = f.read()
    else:
        text = (resources.files(__name__) / (find_config(path) + SUFFIX)).read_text()
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f'{path}: {_yaml_problem(e)}; fix the file') from None
    if not isinstance(config, dict):
        raise ValueError(f'config {path!r} is not a YAML mapping')
    return config


def _yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where. Tags that would build Python objects
    (``!!python/...``) are refused by the safe loader, and said so."""
    mark = getattr(error, 'problem_mark', None)
    where = f' (line {mark.line + 1}, column {mark.column + 1})' if mark is not None else ''
    problem = getattr(error, 'problem', None) or str(error).splitlines()[0]
    if 'tag:yaml.org,2002:python/' in problem:
        tag = problem.split('tag:yaml.org,2002:', 1)[1].rstrip("'")
        return f'the tag !!{tag}{where} would run code; configs hold plain YAML only'
    return f'not valid YAML: {problem}{where}'

