"""liif_core: Local Implicit Image Function (Chen, Liu and Wang, CVPR 2021) in plain PyTorch.

Build or load a model, encode an image once, then query RGB at any continuous coordinates:

    >>> import torch, liif_core
    >>> model = liif_core.make_model({'name': 'liif', 'args': {
    ...     'encoder_spec': {'name': 'edsr-baseline', 'args': {'no_upsampling': True}},
    ...     'imnet_spec': {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [256] * 4}}}})
    >>> coord = liif_core.make_coord((40, 60)).unsqueeze(0)      # (1, 2400, 2)
    >>> cell = liif_core.make_cell(coord, (40, 60))
    >>> rgb = model(torch.zeros(1, 3, 16, 24), coord, cell)       # (1, 2400, 3)
"""
from .checkpoint import CheckpointError, check_state_dict, load_model, save_model
from .coords import make_cell, make_coord, to_pixel_samples
from .encoders import EDSR, RDN
from .liif import LIIF, batched_predict
from .metasr import MetaSR
from .metrics import calc_psnr
from .mlp import MLP
from .registry import MODELS, ModelSpecError, make_model
from .resize import resize_fn
from .upscale import upscale, upscale_file

__version__ = '0.1.0'

__all__ = [
    'CheckpointError', 'EDSR', 'LIIF', 'MLP', 'MODELS', 'MetaSR', 'ModelSpecError', 'RDN',
    'batched_predict', 'calc_psnr', 'check_state_dict', 'load_model', 'make_cell', 'make_coord',
    'make_model', 'resize_fn', 'save_model', 'to_pixel_samples', 'upscale', 'upscale_file',
]
