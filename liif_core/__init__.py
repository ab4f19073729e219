"""liif_core: Local Implicit Image Function (Chen, Liu and Wang, CVPR 2021) in plain PyTorch.

Build or load a model, encode an image once, then query RGB at any continuous coordinates:

    >>> import torch, liif_core
    >>> model = liif_core.create_model('edsr_baseline_liif')      # liif_core.list_models()
    >>> coord = liif_core.make_coord((40, 60)).unsqueeze(0)      # (1, 2400, 2)
    >>> cell = liif_core.make_cell(coord, (40, 60))
    >>> rgb = model(torch.zeros(1, 3, 16, 24), coord, cell)       # (1, 2400, 3)
    >>> image = liif_core.render(model, torch.rand(3, 16, 24), scale=2.5)  # (3, 40, 60)
"""
from .checkpoint import CheckpointError, check_state_dict, load_model, save_model
from .coords import make_cell, make_coord, to_pixel_samples
from .encoders import EDSR, RDN
from .liif import LIIF, batched_predict
from .metasr import MetaSR
from .metrics import calc_psnr
from .mlp import MLP
from .models import create_model, list_models
from .registry import MODELS, make_model
from .render import BICUBIC, render
from .resize import resize_fn
from .spec import ModelSpecError
from .upscale import upscale, upscale_file

__version__ = '0.1.0'  # the package's one version number; pyproject.toml reads it from here

__all__ = [
    'BICUBIC', 'CheckpointError', 'EDSR', 'LIIF', 'MLP', 'MODELS', 'MetaSR', 'ModelSpecError',
    'RDN', 'batched_predict', 'calc_psnr', 'check_state_dict', 'create_model', 'list_models',
    'load_model', 'make_cell', 'make_coord', 'make_model', 'render', 'resize_fn', 'save_model',
    'to_pixel_samples', 'upscale', 'upscale_file',
]
