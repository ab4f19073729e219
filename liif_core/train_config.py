"""The training config as a dataclass: an official training YAML in, every bad key reported at
once, instead of a KeyError halfway through the first epoch.

(Named ``train_config`` rather than ``config`` so that it is not mistaken for ``configs``, the
package of YAML files.)

Book: chapter 8, "Training".
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A training config misses keys it needs or has keys no one reads."""


@dataclass
class TrainConfig:
    """The keys of an official training config (``train_liif.py``), plus four of ours.

    Datasets and the model are official ``{'name': ..., 'args': ...}`` specs and stay dicts:
    they are handed as they are to ``make_data`` and ``make_model``.
    """
    train_dataset: dict[str, Any]  # {dataset: spec, wrapper: spec, batch_size}
    model: dict[str, Any]  # the model spec
    optimizer: dict[str, Any]  # {name: adam, args: {lr}}
    epoch_max: int
    val_dataset: dict[str, Any] | None = None  # {dataset, wrapper, batch_size}; None: no validation
    data_norm: dict[str, Any] | None = None  # {inp: {sub, div}, gt: {sub, div}}; None: none, as official
    eval_type: str | None = None  # validation protocol: None, 'div2k-N' or 'benchmark-N'
    eval_bsize: int | None = None  # queries per validation chunk; None: one pass
    multi_step_lr: dict[str, Any] | None = None  # {milestones, gamma}
    epoch_val: int | None = None  # validate every epoch_val epochs
    epoch_save: int | None = None  # keep epoch-<N>.pth every epoch_save epochs
    resume: str | None = None  # a checkpoint to start from
    # Ours: the official code always uses 8 workers, seeds nothing and starts from random weights.
    num_workers: int = 8
    seed: int = 0
    # The validation crops' seed; None: ``seed``. Runs that differ only in ``seed`` set one
    # val_seed so that they are scored on the same crops.
    val_seed: int | None = None
    # 'bilinear': start as bilinear interpolation; or a checkpoint to start from (liif_core.init)
    init: str | None = None

    @classmethod
    def from_dict(cls, config: dict[str, Any] | TrainConfig) -> TrainConfig:
        """The config of a YAML file (as ``load_config`` returns it), checked in one go."""
        if isinstance(config, TrainConfig):
            return config
        fields = {f.name: f for f in dataclasses.fields(cls)}
        required = [name for name, f in fields.items()
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        problems = [f'missing key {name!r}' for name in required if name not in config]
        problems += [f'unknown key {key!r}' for key in config if key not in fields]
        if problems:
            raise ConfigError('training config: ' + '; '.join(problems)
                              + f" (known keys: {', '.join(fields)})")
        cfg = cls(**config)
        problems = cfg._problems()
        if problems:
            raise ConfigError('training config: ' + '; '.join(problems))
        return cfg

    def _problems(self) -> list[str]:
        """Every value of the wrong type or out of range, each in words (the shapes of the
        nested specs the official code reads; datasets and models check their own args)."""
        problems = []
        for name in ('epoch_max', 'epoch_val', 'epoch_save', 'eval_bsize', 'seed', 'val_seed',
                     'num_workers'):
            value = getattr(self, name)
            least = 0 if name in ('seed', 'val_seed', 'num_workers') else 1
            if value is None and name not in ('epoch_max', 'seed', 'num_workers'):
                continue
            if not _is_int(value) or value < least:
                problems.append(f'{name} must be an integer >= {least}, got {value!r}')
        for name in ('train_dataset', 'model', 'optimizer', 'val_dataset', 'data_norm',
                     'multi_step_lr'):
            value = getattr(self, name)
            if value is not None and not isinstance(value, dict):
                problems.append(f'{name} must be a mapping, got {value!r}')
        if problems:
            return problems
        if 'batch_size' not in self.train_dataset:
            problems.append('train_dataset needs a batch_size')
        for name in ('train_dataset', 'val_dataset'):
            batch = (getattr(self, name) or {}).get('batch_size', 1)
            if not _is_int(batch) or batch < 1:
                problems.append(f'{name}.batch_size must be an integer >= 1, got {batch!r}')
        if self.eval_type is not None and not _is_eval_type(self.eval_type):
            problems.append(f"eval_type must be 'div2k-N', 'benchmark-N' or absent, got "
                            f'{self.eval_type!r}')
        if self.data_norm is not None:
            from .render import norm_problems  # torch: only once a config is checked
            problems += norm_problems(self.data_norm)
        problems += self._optimizer_problems()
        return problems

    def _optimizer_problems(self) -> list[str]:
        """The optimizer and the schedule, each built once over a stand-in parameter: every
        argument PyTorch refuses (unknown, or out of its range) is found here, not at epoch 1."""
        args = self.optimizer.get('args', {})
        if 'name' not in self.optimizer:
            return ["optimizer needs a name (e.g. {name: adam, args: {lr: 1.e-4}})"]
        if self.optimizer['name'] not in OPTIMIZERS:
            return [f"optimizer.name must be one of {', '.join(OPTIMIZERS)}, got "
                    f"{self.optimizer['name']!r}"]
        if not isinstance(args, dict):
            return [f'optimizer.args must be a mapping, got {args!r}']
        lr = args.get('lr', 1e-3)
        if not _is_number(lr) or not 0 <= lr <= MAX_LR:
            return [f'optimizer.args.lr must be a number in [0, {MAX_LR:g}], got {lr!r}']
        import torch
        param = torch.zeros(1, requires_grad=True)
        try:
            optimizer = getattr(torch.optim, OPTIMIZERS[self.optimizer['name']])([param], **args)
        except (TypeError, ValueError) as e:
            return [f'optimizer.args: {_first_line(e)}']
        if self.multi_step_lr is None:
            return []
        milestones = self.multi_step_lr.get('milestones')
        gamma = self.multi_step_lr.get('gamma', 0.1)
        if not isinstance(milestones, list) or not all(_is_int(m) for m in milestones):
            return [f'multi_step_lr.milestones must be a list of epochs, got {milestones!r}']
        if not _is_number(gamma) or not 0 < gamma < math.inf:
            return [f'multi_step_lr.gamma must be a number > 0, got {gamma!r}']
        try:
            torch.optim.lr_scheduler.MultiStepLR(optimizer, **self.multi_step_lr)
        except (TypeError, ValueError) as e:
            return [f'multi_step_lr: {_first_line(e)}']
        return []


# The optimizers a config may name, by their torch.optim class (official configs use adam).
OPTIMIZERS = {'adam': 'Adam', 'sgd': 'SGD'}
# The largest learning rate accepted: far above any that trains (the paper's is 1e-4), low
# enough that a typo (1e300) is caught before the first step turns the weights into NaN.
MAX_LR = 10.0


def _is_eval_type(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r'(div2k|benchmark)-[1-9]\d*', value) is not None


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
