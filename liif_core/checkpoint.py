"""Checkpoints in the official layout: ``{'model': {'name', 'args', 'sd'}, ...}``.

Files are read with ``torch.load(..., weights_only=True)``: plain containers and tensors only, so
a checkpoint cannot run code. Every problem is reported with the file and the keys involved.

The input and output normalisation a model was trained with (the training config's
``data_norm``) is stored as the top-level key ``data_norm`` (``{'inp': {'sub', 'div'}, 'gt':
{...}}``), which the official loader, reading only ``['model']``, ignores. ``load_model`` sets it
as ``model.data_norm``: the file's, or for a file without one (the released checkpoints, trained
with every official config's (x - 0.5) / 0.5) ``render.PAPER_DATA_NORM``.
"""
from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .atomic import atomic_write
from .device import resolve_device
from .registry import make_model
from .render import PAPER_DATA_NORM, norm_problems
from .spec import ModelSpecError


class CheckpointError(ValueError):
    """A file or dict that is not a loadable LIIF checkpoint; the message says why."""


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f'{type(e).__name__}: {text.splitlines()[0]}' if text else type(e).__name__


def read_checkpoint(path: str | os.PathLike, map_location: Any = 'cpu') -> dict:
    """``torch.load(path, weights_only=True)``, every failure one line naming the file."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f'{path}: a folder, not a checkpoint file')
    if path.exists() and not path.is_file():
        raise CheckpointError(f'{path}: not a regular file (a device, pipe or socket); give a '
                              'checkpoint file')
    if not path.is_file():
        raise CheckpointError(f'{path}: no such checkpoint file')
    try:
        with warnings.catch_warnings():
            # A bare pickle makes torch warn before it fails; the failure alone is reported.
            warnings.filterwarnings('ignore', message='Detected pickle protocol')
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch.save writes zip archives; inside one, an unpickling refusal means the file
        # holds objects that weights_only forbids: something that could run code. In any
        # format (the legacy one, a bare pickle), a refused GLOBAL means the same.
        refused = 'weights only' in str(e).lower() and (zipfile.is_zipfile(path)
                                                         or 'unsupported GLOBAL' in str(e))
        if refused:
            raise CheckpointError(
                f'{path}: refused to load: the file holds objects other than tensors and plain '
                'containers, which could run code when unpickled; a LIIF checkpoint holds only '
                'those') from None
        raise CheckpointError(f'{path}: not a PyTorch checkpoint (not a file written by '
                              'torch.save)') from None
    except Exception as e:  # torch.load signals corrupt input with many exception types
        raise CheckpointError(f'{path}: not a PyTorch checkpoint, or a truncated one '
                              f'({_first_line(e)})') from None


def check_state_dict(model: nn.Module, sd: Mapping[str, Any], source: str = 'checkpoint') -> None:
    """Raise ``CheckpointError`` naming every missing, unexpected or wrongly shaped key."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    not_tensors = [f'{k} ({type(sd[k]).__name__})' for k in expected
                   if k in sd and not torch.is_tensor(sd[k])]
    # Sparse or meta tensors would load as nothing (meta) or fail deep inside torch.
    unusual = [f'{k} ({sd[k].layout}, {sd[k].device})' for k in expected
               if k in sd and torch.is_tensor(sd[k])
               and (sd[k].layout != torch.strided or sd[k].is_meta)]
    misshaped = [f'{k}: checkpoint {tuple(sd[k].shape)}, model {tuple(v.shape)}'
                 for k, v in expected.items()
                 if k in sd and torch.is_tensor(sd[k]) and sd[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f'missing keys: {", ".join(missing)}')
    if unexpected:
        problems.append(f'unexpected keys: {", ".join(unexpected)}')
    if not_tensors:
        problems.append(f'not tensors: {", ".join(not_tensors)}')
    if unusual:
        problems.append(f'not dense tensors with data: {", ".join(unusual)}')
    if misshaped:
        problems.append(f'wrong shapes: {"; ".join(misshaped)}')
    if problems:
        raise CheckpointError(f'{source}: the state dict does not fit the model '
                              f'{model.spec["name"]!r}: ' + ' | '.join(problems))


def load_model(path_or_dict: str | os.PathLike | Mapping[str, Any],
               map_location: Any = 'cpu') -> nn.Module:
    """Build a model from an official checkpoint and load its weights strictly.

    Args:
        path_or_dict: a ``.pth`` file or an already loaded checkpoint dict. Optimizer and
            epoch entries, as in the full training saves, are allowed and ignored.
        map_location: where the tensors go (the released files hold CUDA tensors); the model
            is moved there too when it names a device.

    Returns:
        the model in eval mode, with its spec as ``model.spec`` and the normalisation it was
        trained with as ``model.data_norm`` (the file's ``data_norm``; the paper's when it has
        none).

    Example:
        >>> model = load_model('edsr-baseline-liif.pth')          # doctest: +SKIP
        >>> model = load_model('rdn-liif.pth', map_location='cuda')  # doctest: +SKIP
    """
    if isinstance(map_location, (str, torch.device)):
        # A device that cannot run here is named as such, not blamed on the file.
        map_location = resolve_device(map_location)
    if isinstance(path_or_dict, Mapping):
        ckpt, source = path_or_dict, 'checkpoint dict'
    else:
        ckpt, source = read_checkpoint(path_or_dict, map_location), str(path_or_dict)
    entry = ckpt.get('model') if isinstance(ckpt, Mapping) else None
    if not isinstance(entry, Mapping) or not {'name', 'args', 'sd'} <= set(entry):
        raise CheckpointError(f"{source}: not a LIIF checkpoint: expected "
                              f"{{'model': {{'name', 'args', 'sd'}}}}, found "
                              f"{sorted(ckpt) if isinstance(ckpt, Mapping) else type(ckpt).__name__}")
    spec = {'name': entry['name'], 'args': entry['args']}
    try:
        # First on the meta device, which allocates nothing: args that do not fit the weights
        # (say n_feats 1e7 where the file holds 64) are refused before any memory is taken.
        with torch.device('meta'):
            check_state_dict(make_model(spec), entry['sd'], source)
        model = make_model(spec)
    except (ModelSpecError, TypeError) as e:  # TypeError: args of the wrong type (1e7 channels)
        raise CheckpointError(f'{source}: {e}') from None
    nonfinite = [k for k, v in entry['sd'].items()
                 if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    if nonfinite:
        raise CheckpointError(f'{source}: NaN or infinite weights in {", ".join(nonfinite[:3])}'
                              + (f' and {len(nonfinite) - 3} more' if len(nonfinite) > 3 else '')
                              + ': the training run diverged or the file is damaged')
    data_norm = ckpt.get('data_norm', PAPER_DATA_NORM)
    problems = norm_problems(data_norm) if isinstance(data_norm, dict) else ['not a mapping']
    if problems:
        raise CheckpointError(f'{source}: its data_norm is damaged: {problems[0]}')
    model.load_state_dict(entry['sd'], strict=True)
    model.data_norm = data_norm
    if isinstance(map_location, torch.device):
        model.to(map_location)
    return model.eval()


def save_model(model: nn.Module, path: str | os.PathLike, **extra: Any) -> None:
    """Write ``{'model': {'name', 'args', 'sd'}, **extra}`` atomically (temp file + rename).

    Args:
        model: a model built by ``make_model``/``load_model`` or a ``LIIF``/``MetaSR`` (they
            know their spec). A ``DistributedDataParallel`` wrapper is unwrapped.
        path: destination; a crash mid-write leaves any previous file intact.
        extra: further top-level entries, e.g. ``optimizer={...}, epoch=12`` as in the
            official training saves, and ``data_norm`` (default: the model's ``data_norm``,
            when it has one).
    """
    model = getattr(model, 'module', model)
    spec = getattr(model, 'spec', None)
    if spec is None:
        raise ValueError('the model has no spec to save: build it with make_model(spec)')
    ckpt = {'model': {'name': spec['name'], 'args': spec['args'], 'sd': model.state_dict()},
            **extra}
    if getattr(model, 'data_norm', None) is not None:
        ckpt.setdefault('data_norm', model.data_norm)
    with atomic_write(path) as f:
        torch.save(ckpt, f)
