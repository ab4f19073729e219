"""Dataset names -> classes, for the official ``{'name': ..., 'args': ...}`` dataset specs.

A config's data section holds two specs, the image dataset and the wrapper around it:

    train_dataset:
      dataset: {name: image-folder, args: {root_path: ./load/div2k/DIV2K_train_HR, repeat: 20}}
      wrapper: {name: sr-implicit-downsampled, args: {inp_size: 48, scale_max: 4}}
      batch_size: 16

``make_data(section)`` builds both, as the official ``make_data_loader`` does, and returns the
wrapped dataset (the loader is the caller's: batch size, workers and sampler depend on how it
trains). The official configs read their data below ``./load/``; ``data_root`` moves that prefix
to wherever ``liif data fetch`` put the files (``data/`` by default).
"""
from __future__ import annotations

import copy
import os
from typing import Any, Callable

from torch.utils.data import Dataset

from .folders import ImageFolder, PairedImageFolders
from .wrappers import SRImplicitDownsampled, SRImplicitPaired, SRImplicitUniformVaried

DATASETS: dict[str, Callable[..., Dataset]] = {
    'image-folder': ImageFolder,
    'paired-image-folders': PairedImageFolders,
    'sr-implicit-downsampled': SRImplicitDownsampled,
    'sr-implicit-paired': SRImplicitPaired,
    'sr-implicit-uniform-varied': SRImplicitUniformVaried,
}

# The dataset arguments that hold file-system paths, and the prefix the official configs use.
PATH_ARGS = ('root_path', 'root_path_1', 'root_path_2', 'split_file')
OFFICIAL_ROOT = './load'
# Where `liif data fetch` puts datasets unless told otherwise, and so the natural data_root.
DEFAULT_DATA_ROOT = 'data'


class DatasetSpecError(ValueError):
    """A dataset spec names an unknown dataset or passes arguments it does not take."""


def make_dataset(spec: dict[str, Any], **overrides: Any) -> Dataset:
    """Build a dataset from an official spec.

    Args:
        spec: ``{'name': 'image-folder', 'args': {...}}``; ``args`` may be missing.
        overrides: arguments added to (or replacing) ``spec['args']``, e.g. ``dataset=inner``
            for a wrapper, or ``first_k=2``.

    Example:
        >>> folder = make_dataset({'name': 'image-folder',
        ...                        'args': {'root_path': 'data/standin/valid'}})
        >>> item = make_dataset({'name': 'sr-implicit-downsampled', 'args': {'scale_min': 4}},
        ...                     dataset=folder)[0]
    """
    if not isinstance(spec, dict) or 'name' not in spec:
        raise DatasetSpecError(f"a dataset spec is a dict {{'name': ..., 'args': ...}}, "
                               f"got {spec!r}")
    name = spec['name']
    if name not in DATASETS:
        raise DatasetSpecError(f"unknown dataset name {name!r}; known names: {', '.join(DATASETS)}")
    args = dict(spec.get('args') or {}, **overrides)
    try:
        return DATASETS[name](**args)
    except TypeError as e:
        raise DatasetSpecError(f'dataset {name!r} cannot be built from args {sorted(args)}: '
                               f'{e}') from e


def with_data_root(spec: Any, data_root: str | os.PathLike | None) -> Any:
    """A copy of a spec (or a whole config) with ``./load/...`` paths moved under ``data_root``.

    Only the path arguments (root_path, root_path_1, root_path_2, split_file) that start with
    ``./load/`` or ``load/`` change; None returns an unchanged copy.

    Example:
        >>> with_data_root({'root_path': './load/div2k/DIV2K_valid_HR'}, 'data')
        {'root_path': 'data/div2k/DIV2K_valid_HR'}
    """
    spec = copy.deepcopy(spec)
    if data_root is None:
        return spec

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in PATH_ARGS and isinstance(value, str):
                    node[key] = _rebase(value, os.fspath(data_root))
                else:
                    visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(spec)
    return spec


def _rebase(path: str, data_root: str) -> str:
    for prefix in (OFFICIAL_ROOT + '/', OFFICIAL_ROOT[2:] + '/'):
        if path.startswith(prefix):
            return os.path.join(data_root, path[len(prefix):])
    return path


def make_data(section: dict[str, Any], data_root: str | os.PathLike | None = None,
              **dataset_overrides: Any) -> Dataset:
    """Build a config's data section: the dataset, then the wrapper around it.

    Args:
        section: ``{'dataset': spec, 'wrapper': spec, ...}`` (other keys such as batch_size
            are ignored); without a wrapper the bare dataset is returned.
        data_root: where the official ``./load/`` folder lives (see ``with_data_root``).
        dataset_overrides: extra arguments for the inner dataset, e.g. ``first_k=2`` or
            ``skip_corrupt=True``.

    Returns:
        the wrapped dataset, yielding {'inp', 'coord', 'cell', 'gt'} items.
    """
    if 'dataset' not in section:
        raise DatasetSpecError(f"a data section needs a 'dataset' spec, got keys {sorted(section)}")
    dataset = make_dataset(with_data_root(section['dataset'], data_root), **dataset_overrides)
    if section.get('wrapper') is None:
        return dataset
    return make_dataset(section['wrapper'], dataset=dataset)
