"""``liif list``: what the package holds and what ``liif data fetch`` can add.

Configs (the packaged YAML names ``liif train`` and ``liif test`` take), the shipped weights,
the official checkpoints and the datasets, each with whether it is present under the data root.
"""
from __future__ import annotations

import os

from .configs import list_configs
from .data.fetch import load_manifest, manifest_names
from .data.specs import DEFAULT_DATA_ROOT
from .pretrained import DEFAULT_MODEL, OFFICIAL, PRETRAINED


def _present(manifest: dict, root: str) -> bool:
    """Whether ``liif data fetch`` has put the manifest's files under ``root``."""
    target = os.path.join(root, manifest['target'])
    if manifest['kind'] == 'checkpoint':
        return all(os.path.isfile(os.path.join(target, f['filename'])) for f in manifest['files'])
    if manifest['kind'] == 'archives':
        return all(os.path.isdir(os.path.join(target, f['provides'])) for f in manifest['files'])
    return os.path.isdir(target) and any(os.scandir(target))


def catalog(root: str = DEFAULT_DATA_ROOT) -> dict[str, list[str]]:
    """Section title -> its lines, as ``liif list`` prints them."""
    def line(name: str, manifest: str, width: int) -> str:
        m = load_manifest(manifest)
        return f"{name:{width}s} {'present' if _present(m, root) else 'absent '}  {m['title']}"

    width = max(map(len, [*PRETRAINED, *OFFICIAL])) + 2
    return {
        'configs (liif train / liif test CONFIG)': list_configs(),
        'shipped weights (--weights NAME)': [
            f"{name:{width}s}{p.summary}" + (' (default)' if name == DEFAULT_MODEL else '')
            for name, p in PRETRAINED.items()],
        f'official checkpoints (liif data fetch NAME; --weights NAME), under {root}':
            [line(name, manifest, width - 1) for name, manifest in OFFICIAL.items()],
        f'datasets (liif data fetch NAME), under {root}':
            [line(name, name, 20) for name in manifest_names() if name not in OFFICIAL.values()],
    }
