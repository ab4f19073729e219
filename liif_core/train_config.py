"""The training config as a dataclass: an official training YAML in, every bad key reported at
once, instead of a KeyError halfway through the first epoch.

(Named ``train_config`` rather than ``config`` so that it is not mistaken for ``configs``, the
package of YAML files.)

Book: chapter 8, "Training".
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A training config misses keys it needs or has keys no one reads."""


@dataclass
class TrainConfig:
    """The keys of an official training config (``train_liif.py``), plus three of ours.

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
    init: str | None = None  # 'bilinear': start as bilinear interpolation (liif_core.init)

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
        return cls(**config)
