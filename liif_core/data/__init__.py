"""Data: image folders, the LIIF training/test wrappers, spec builders and dataset downloads.

    >>> from liif_core.data import make_data
    >>> valid = make_data(config['val_dataset'], data_root='data')   # ./load/... -> data/...
    >>> item = valid[0]    # {'inp': (3, h, w), 'coord': (Q, 2), 'cell': (Q, 2), 'gt': (Q, 3)}

Configs (``load_config``, ``list_configs``) live in ``liif_core.configs`` and are re-exported
here, next to the data sections they describe.
"""
from ..configs import list_configs, load_config
from .folders import CorruptImageError, ImageFolder, PairedImageFolders, read_rgb
from .specs import (DATASETS, DEFAULT_DATA_ROOT, DatasetSpecError, make_data, make_dataset,
                    with_data_root)
from .wrappers import SRImplicitDownsampled, SRImplicitPaired, SRImplicitUniformVaried

__all__ = [
    'CorruptImageError', 'DATASETS', 'DEFAULT_DATA_ROOT', 'DatasetSpecError', 'ImageFolder',
    'PairedImageFolders', 'SRImplicitDownsampled', 'SRImplicitPaired', 'SRImplicitUniformVaried',
    'list_configs', 'load_config', 'make_data', 'make_dataset', 'read_rgb', 'with_data_root',
]
