"""Data: image folders, the LIIF training/test wrappers, spec builders and dataset downloads.

    >>> from liif_core.data import make_data
    >>> valid = make_data(config['val_dataset'], data_root='data')   # ./load/... -> data/...
    >>> item = valid[0]    # {'inp': (3, h, w), 'coord': (Q, 2), 'cell': (Q, 2), 'gt': (Q, 3)}
"""
from .folders import CorruptImageError, ImageFolder, PairedImageFolders, read_rgb
from .specs import DATASETS, DatasetSpecError, make_data, make_dataset, with_data_root
from .wrappers import SRImplicitDownsampled, SRImplicitPaired, SRImplicitUniformVaried

__all__ = [
    'CorruptImageError', 'DATASETS', 'DatasetSpecError', 'ImageFolder', 'PairedImageFolders',
    'SRImplicitDownsampled', 'SRImplicitPaired', 'SRImplicitUniformVaried', 'make_data',
    'make_dataset', 'read_rgb', 'with_data_root',
]
