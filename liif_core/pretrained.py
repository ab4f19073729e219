"""The weights that ship with liif_core: the default model of ``upscale`` and ``liif upscale``.

No pretrained weights can be downloaded at run time, so the package carries its own: an
EDSR-baseline-LIIF (the paper's model, unchanged, in the official checkpoint layout) trained on
a CPU on the stand-in photos (``liif data fetch standin``), the default, and the shorter run it
continued, kept for comparison. They beat bicubic upsampling but are far from the paper's
DIV2K-trained model; the README's model card says how they were trained and what they score.
The official released checkpoints load with ``load_model`` as they are.

Weights are named ``architecture.tag``, as in timm: ``edsr_baseline_liif.standin_long`` (the
default), ``edsr_baseline_liif.standin``, and the official ``edsr_baseline_liif.div2k`` and
``rdn_liif.div2k`` once ``liif data fetch`` has them. Their old names (``OLD_NAMES``) still work.

Each entry is pinned by sha256, checked on every load, so a damaged or replaced file is refused
rather than silently used. To ship a new training run (after ``liif train``), add its entry
and call ``ship('save/ship/epoch-last.pth', NAME)``, which writes the weights without the
optimizer state next to this module, copies the run's ``log.jsonl`` beside them and returns the
sha256 to put in ``PRETRAINED``.

Book: chapter 8, "Training", and chapter 9, "Benchmark".
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from .checkpoint import CheckpointError, load_model, save_model
from .data.download import file_digest
from .data.fetch import checkpoint_path
from .data.specs import DEFAULT_DATA_ROOT

WEIGHTS_DIR = Path(__file__).parent / 'weights'


@dataclass(frozen=True)
class Pretrained:
    """A shipped checkpoint, named ``architecture.tag`` as ``create_model`` takes it, in the
    file ``weights/<file>.pth`` beside its training log ``<file>.log.jsonl``."""
    name: str
    file: str
    sha256: str
    config: str  # the packaged training config that produced it
    summary: str

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / f'{self.file}.pth'

    @property
    def log_path(self) -> Path:
        return WEIGHTS_DIR / f'{self.file}.log.jsonl'


PRETRAINED = {p.name: p for p in [
    Pretrained(
        name='edsr_baseline_liif.standin',
        file='edsr-baseline-liif-standin',
        sha256='af171d1cc0f9160ba653ab219ed063e5fa6b810227eb5797727ffea523ec24c2',
        config='cpu/train_edsr-baseline-liif-standin',
        summary='EDSR-baseline-LIIF trained on the 27 stand-in photos on a 2-core CPU '
                '(1,360 steps; the default until the long run continued it)'),
    Pretrained(
        name='edsr_baseline_liif.standin_long',
        file='edsr-baseline-liif-standin-long',
        sha256='69d2667387bc0b3a06fa57fd868ac5bbca3a0fe7763f95a1b30e4cd918da08fb',
        config='cpu/train_edsr-baseline-liif-standin-long',
        summary='edsr_baseline_liif.standin continued for 13,600 steps on one CPU thread'),
]}
DEFAULT_MODEL = 'edsr_baseline_liif.standin_long'
# The authors' released checkpoints, trained on DIV2K: name -> the ``liif data fetch`` manifest
# that downloads them.
OFFICIAL = {'edsr_baseline_liif.div2k': 'edsr-baseline-liif', 'rdn_liif.div2k': 'rdn-liif'}
# The names weights had before they were named ``architecture.tag``; they still work.
OLD_NAMES = {'edsr-baseline-liif-standin': 'edsr_baseline_liif.standin',
             'edsr-baseline-liif-standin-long': 'edsr_baseline_liif.standin_long',
             **{manifest: name for name, manifest in OFFICIAL.items()}}


def renamed(name: str | os.PathLike) -> str | None:
    """The current name of weights once called ``name`` (an official one also with ``.pth``);
    None when ``name`` is no old name."""
    return OLD_NAMES.get(os.fspath(name).removesuffix('.pth'))


def get_pretrained(name: str = DEFAULT_MODEL) -> Pretrained:
    """The registry entry for ``name`` (or its old name); a ValueError lists the names that
    exist."""
    try:
        return PRETRAINED[renamed(name) or name]
    except KeyError:
        raise ValueError(f'no shipped weights named {name!r}; available: '
                         f'{", ".join(sorted(PRETRAINED))}') from None


def file_sha256(path: str | os.PathLike) -> str:
    return file_digest(os.fspath(path), 'sha256')


def load_pretrained(name: str = DEFAULT_MODEL, map_location: Any = 'cpu') -> nn.Module:
    """The shipped model ``name`` in eval mode, after checking the file's sha256.

    Example:
        >>> model = load_pretrained()                 # the default model of `upscale`
        >>> model.spec['args']['encoder_spec']['name']
        'edsr-baseline'
    """
    entry = get_pretrained(name)
    check_pretrained(entry)
    return load_model(entry.path, map_location=map_location)


def check_pretrained(entry: Pretrained) -> None:
    """Refuse shipped weights that are missing or whose sha256 is not the pinned one."""
    if not entry.path.is_file():
        raise CheckpointError(f'{entry.path}: the shipped weights {entry.name!r} are missing '
                              'from this installation (reinstall liif_core)')
    digest = file_sha256(entry.path)
    if digest != entry.sha256:
        raise CheckpointError(f'{entry.path}: sha256 {digest} does not match the pinned '
                              f'{entry.sha256}: the file is damaged or was replaced')


def training_log(name: str = DEFAULT_MODEL) -> list[dict[str, Any]]:
    """The per-epoch records of the run that produced ``name`` (``log.jsonl`` of ``liif train``:
    epoch, train_loss, lr, val_psnr, val_psnr_bicubic, time)."""
    with open(get_pretrained(name).log_path, encoding='utf-8') as f:
        return [json.loads(line) for line in f if line.strip()]


def resolve_weights(weights: str | os.PathLike | None,
                    data_root: str | os.PathLike = DEFAULT_DATA_ROOT) -> Path:
    """The file ``--weights`` names: a checkpoint file; the name of shipped weights; the name
    of an official checkpoint (``edsr_baseline_liif.div2k``), as ``liif data fetch`` put it
    under ``data_root`` (its recorded sha256 checked); or (None) the default shipped model,
    whose pinned sha256 is checked. Old names (``OLD_NAMES``) work too."""
    if weights is not None and Path(weights).exists():
        return Path(weights)
    name = DEFAULT_MODEL if weights is None else os.fspath(weights)
    name = renamed(name) or name
    if name in PRETRAINED:
        entry = get_pretrained(name)
        check_pretrained(entry)
        return entry.path
    if name in OFFICIAL:
        return Path(checkpoint_path(OFFICIAL[name], os.fspath(data_root), fetch_as=name))
    raise CheckpointError(f'{weights}: no such checkpoint file, nor the name of shipped '
                          f'weights ({", ".join(sorted(PRETRAINED))}) or of an official '
                          f'checkpoint ({", ".join(OFFICIAL)})')


def resolve_model(weights: str | os.PathLike | None, map_location: Any = 'cpu',
                  data_root: str | os.PathLike = DEFAULT_DATA_ROOT) -> nn.Module:
    """The model ``--weights`` names (see ``resolve_weights``)."""
    return load_model(resolve_weights(weights, data_root), map_location=map_location)


def ship(checkpoint: str | os.PathLike, name: str = DEFAULT_MODEL) -> str:
    """Write a training checkpoint as shipped weights ``name`` (model, epoch and the
    normalisation it was trained with, ``data_norm``) with the run's log beside it; returns the
    new file's sha256 for ``PRETRAINED``."""
    import torch  # only here: reading the full training checkpoint

    checkpoint = Path(checkpoint)
    ckpt = torch.load(checkpoint, map_location='cpu', weights_only=True)
    model = load_model(ckpt)
    entry = get_pretrained(name)
    WEIGHTS_DIR.mkdir(exist_ok=True)
    save_model(model, entry.path, epoch=ckpt.get('epoch'))
    log = checkpoint.parent / 'log.jsonl'
    if log.is_file():
        shutil.copyfile(log, entry.log_path)
    return file_sha256(entry.path)
