"""Validation during training: the PSNR of the model on the validation set every
``epoch_val`` epochs, and bicubic's PSNR on the same crops.

The crops come from a fixed seed (``val_seed``, else ``seed``), drawn without touching the
training run's random state, so every epoch is scored on the same crops and bicubic is scored
once. Whole validation images batch together only when they share one size, checked from the
files' headers before the first step (``check_val_batches``).

Book: chapter 8, "Training".
"""
from __future__ import annotations

import contextlib
from typing import Any

from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .evaluate import evaluate
from .render import BICUBIC, Predictor
from .rng import isolated_rng
from .train_config import ConfigError, TrainConfig


def validate(model: Predictor, loader: DataLoader, config: dict[str, Any] | TrainConfig,
             seed: int, progress: bool) -> float:
    """Validation PSNR (the official ``eval_psnr`` with the config's eval_type, eval_bsize and
    data_norm) on crops drawn from ``seed``: the same crops every epoch, drawn without touching
    the training run's random state. The official code re-draws them each epoch, so its curve
    also carries crop-to-crop noise. ``model`` may be ``BICUBIC``. The crops are drawn in this
    process, so ``train`` gives its validation loader no workers: the crops then do not depend
    on how many workers the training loader has."""
    cfg = TrainConfig.from_dict(config)
    seed += 10_000  # apart from the training seeds
    with isolated_rng(seed):
        return evaluate(model, loader, cfg.eval_type, cfg.eval_bsize, cfg.data_norm,
                        progress=progress).psnr


class Validation:
    """Validation PSNR on the config's schedule, with bicubic's PSNR on the same crops."""

    def __init__(self, loader: DataLoader | None):
        self.loader = loader
        self.bicubic_psnr: float | None = None

    def run(self, model: nn.Module, cfg: TrainConfig, epoch: int, progress: bool
            ) -> dict[str, float]:
        """``{'val_psnr', 'val_psnr_bicubic'}`` after an epoch the config validates; else {}."""
        if self.loader is None or cfg.epoch_val is None or epoch % cfg.epoch_val:
            return {}
        seed = cfg.seed if cfg.val_seed is None else cfg.val_seed
        psnr = validate(model, self.loader, cfg, seed, progress)
        if self.bicubic_psnr is None:  # the same crops every epoch: once is enough
            self.bicubic_psnr = validate(BICUBIC, self.loader, cfg, seed, progress)
        model.train()
        return {'val_psnr': psnr, 'val_psnr_bicubic': self.bicubic_psnr}


def check_val_batches(data: Dataset, batch_size: int) -> None:
    """Whole validation images batch together only when they share one size: checked from
    the files' headers before the first step (the batch would fail after the first epoch's
    training). Crops (``inp_size``) and single-image batches always fit."""
    if batch_size == 1 or getattr(data, 'inp_size', 0) is not None:
        return
    images = getattr(data, 'dataset', None)
    images = getattr(images, 'dataset_2', images)  # a paired set: the HR side
    sizes = {}
    for path in getattr(images, 'paths', []):
        with contextlib.suppress(OSError):
            with Image.open(path) as image:
                sizes.setdefault(image.size, path)
    if len(sizes) > 1:
        (w1, h1), (w2, h2) = list(sizes)[:2]
        raise ConfigError(f'val_dataset: batch_size {batch_size} batches whole images, which '
                          f'differ in size ({h1}x{w1} and {h2}x{w2}, ...); set val_dataset '
                          'batch_size to 1, or crop them (inp_size)')
