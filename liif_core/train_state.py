"""What a training checkpoint holds and restores: the model, the optimizer, the learning-rate
schedule, the gradient scaler, every process's random state and the run's log.

A run starts fresh (the config's ``init``: PyTorch's random weights, ``bilinear``, or the weights
of a checkpoint) or resumes from ``epoch-last.pth``. A resumed run on the same machine repeats
an uninterrupted one bit for bit on CPU, and its ``log.jsonl`` is rewritten from the checkpoint,
so that a process killed between writing the checkpoint and appending the log loses no line and
gains none.

Each start or resume also appends a line to ``pieces.jsonl``: the commit, torch version, CPU,
thread count and kernel settings it ran with, because float results differ across CPUs and
thread counts, and a run trained in pieces should say what each piece ran on.

Book: chapter 8, "Training".
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import yaml
from torch import nn
from torch.optim.lr_scheduler import MultiStepLR

from .atomic import atomic_write
from .checkpoint import CheckpointError, load_model, save_model
from .device import cpu_name
from .init import apply_init
from .registry import make_model
from .rng import rng_state, seed_everything, set_rng_state
from .train_config import TrainConfig

OPTIMIZERS = {'adam': torch.optim.Adam, 'sgd': torch.optim.SGD}
# Environment variables that choose CPU kernels (and so change float results).
KERNEL_ENV = ('ATEN_CPU_CAPABILITY', 'MKL_ENABLE_INSTRUCTIONS', 'ONEDNN_MAX_CPU_ISA',
              'OMP_NUM_THREADS')


def make_optimizer(params: Any, spec: dict[str, Any]) -> torch.optim.Optimizer:
    """``{'name': 'adam', 'args': {'lr': 1e-4}}`` -> the optimizer (other settings PyTorch's)."""
    if spec['name'] not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {spec['name']!r}; known: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[spec['name']](params, **spec.get('args', {}))


@dataclass
class TrainState:
    """What a checkpoint restores: the model and everything that moves it."""
    model: nn.Module
    optimizer: torch.optim.Optimizer
    lr_scheduler: MultiStepLR | None
    scaler: torch.amp.GradScaler | None
    epoch_start: int
    best_val: float = -math.inf
    log: list[dict[str, Any]] = field(default_factory=list)  # one record per epoch so far


def claim_save_dir(save_dir: Path, config: dict[str, Any] | TrainConfig, resume: bool,
                   is_main: bool) -> Path | str | None:
    """The checkpoint to start from, if any; refuses to overwrite a run; writes config.yaml."""
    last_path = save_dir / 'epoch-last.pth'
    resume_from = last_path if resume else TrainConfig.from_dict(config).resume
    if resume and not last_path.is_file():
        raise ValueError(f'{save_dir}: nothing to resume (no epoch-last.pth)')
    if not resume_from and last_path.is_file():
        raise ValueError(f'{save_dir} already holds a run (epoch-last.pth): pass --resume to '
                         'continue it, or choose another --name / --save-dir')
    if is_main:
        save_dir.mkdir(parents=True, exist_ok=True)
        # The config as given, key for key (a TrainConfig is written with all its fields).
        raw = dataclasses.asdict(config) if isinstance(config, TrainConfig) else config
        with open(save_dir / 'config.yaml', 'w') as f:
            yaml.safe_dump(raw, f, sort_keys=False)
    return resume_from


def start(cfg: TrainConfig, device: torch.device, amp_dtype: torch.dtype | None,
          resume_from: Path | str | None, rank: int, world_size: int,
          loader_generator: torch.Generator, say: Callable[[str], None]) -> TrainState:
    """A fresh model (the config's ``init``) or the checkpoint's, with optimizer and schedule."""
    ckpt = _read(resume_from) if resume_from else None
    if ckpt is not None:
        model = load_model(ckpt).to(device).train()
        optimizer = make_optimizer(model.parameters(), ckpt['optimizer'])
        optimizer.load_state_dict(ckpt['optimizer']['sd'])
        epoch_start = ckpt['epoch'] + 1
    else:
        model = apply_init(make_model(cfg.model), cfg.init).to(device).train()
        optimizer = make_optimizer(model.parameters(), cfg.optimizer)
        epoch_start = 1
    lr_scheduler = None
    if cfg.multi_step_lr is not None:
        lr_scheduler = MultiStepLR(optimizer, **cfg.multi_step_lr)
        # The restored optimizer already holds the decayed learning rate; only the epoch
        # count is set (the official resume steps the schedule again, decaying twice).
        lr_scheduler.last_epoch = epoch_start - 1
    # float16's 5-bit exponent underflows small gradients: they are scaled up, then back down.
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    state = TrainState(model, optimizer, lr_scheduler, scaler, epoch_start)
    if ckpt is not None:
        state.best_val = ckpt.get('best_val_psnr', state.best_val)
        state.log = ckpt['log'] if 'log' in ckpt else _logged(resume_from, epoch_start)
        rng = ckpt.get('rng')
        if rng is not None and len(rng) == world_size:
            set_rng_state(rng[rank], loader_generator)
        else:
            say('resume: the checkpoint has no random state for this number of processes; '
                'reseeding, so the run will not repeat an uninterrupted one exactly')
            seed_everything(cfg.seed + rank + 1000 * epoch_start)
        if scaler is not None and 'grad_scaler' in ckpt:
            scaler.load_state_dict(ckpt['grad_scaler'])
    n_params = sum(p.numel() for p in model.parameters())
    say(f'model: {n_params / 1e6:.2f}M parameters; epochs {epoch_start}..{cfg.epoch_max}')
    return state


def _read(path: Path | str) -> dict[str, Any]:
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # unreadable: report the file, as load_model does
        raise CheckpointError(f'{path}: cannot resume from it ({e})') from None


def _logged(checkpoint: Path | str, epoch_start: int) -> list[dict[str, Any]]:
    """The log lines before ``epoch_start`` beside a checkpoint that does not hold its log."""
    path = Path(checkpoint).parent / 'log.jsonl'
    if not path.is_file():
        return []
    return [r for r in read_records(path) if r.get('epoch', 0) < epoch_start]


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a JSON-lines file a run writes (``log.jsonl``, ``pieces.jsonl``)."""
    text = Path(path).read_text(encoding='utf-8')
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def gather_rng_states(world_size: int, loader_generator: torch.Generator
                      ) -> list[dict[str, Any]]:
    """Every process's random state, for rank 0's checkpoint (a collective under torchrun)."""
    states = [rng_state(loader_generator)]
    if world_size > 1:
        gathered: list[Any] = [None] * world_size
        torch.distributed.all_gather_object(gathered, states[0])
        states = gathered
    return states


def save(state: TrainState, cfg: TrainConfig, save_dir: Path, epoch: int,
         record: dict[str, Any], rng: list[dict[str, Any]]) -> None:
    """epoch-last.pth always, epoch-<N>.pth every epoch_save epochs, epoch-best.pth on a new
    best validation PSNR; each with what a bit-exact resume needs, and the log up to ``record``.
    """
    state.log.append(record)
    is_best = record.get('val_psnr', -math.inf) > state.best_val
    state.best_val = max(state.best_val, record.get('val_psnr', -math.inf))
    extra = {'optimizer': {**cfg.optimizer, 'sd': state.optimizer.state_dict()},
             'epoch': epoch, 'rng': rng, 'best_val_psnr': state.best_val, 'log': state.log,
             'data_norm': cfg.data_norm}
    if state.scaler is not None:
        extra['grad_scaler'] = state.scaler.state_dict()
    save_model(state.model, save_dir / 'epoch-last.pth', **extra)
    if cfg.epoch_save is not None and epoch % cfg.epoch_save == 0:
        save_model(state.model, save_dir / f'epoch-{epoch}.pth', **extra)
    if is_best:
        save_model(state.model, save_dir / 'epoch-best.pth', **extra)


def write_log(save_dir: Path, log: list[dict[str, Any]]) -> None:
    """Rewrite ``log.jsonl`` to hold exactly ``log`` (the checkpoint's records)."""
    with atomic_write(save_dir / 'log.jsonl') as f:
        f.write(''.join(json.dumps(record) + '\n' for record in log).encode())


def append_log(save_dir: Path, record: dict[str, Any]) -> None:
    with open(save_dir / 'log.jsonl', 'a') as f:
        f.write(json.dumps(record) + '\n')


def record_piece(save_dir: Path, epoch_start: int, world_size: int,
                 amp_dtype: torch.dtype | None, device: torch.device) -> None:
    """Append what this start or resume runs on to ``pieces.jsonl``."""
    piece = {'epoch_start': epoch_start, 'started': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
             'commit': _git_commit(), 'torch': torch.__version__,
             'cpu': cpu_name(), 'device': str(device), 'processes': world_size,
             'threads': torch.get_num_threads(),
             'precision': str(amp_dtype or torch.float32).replace('torch.', ''),
             'kernel_env': {k: os.environ[k] for k in KERNEL_ENV if k in os.environ}}
    with open(save_dir / 'pieces.jsonl', 'a') as f:
        f.write(json.dumps(piece) + '\n')


def _git_commit() -> str | None:
    """The commit of the checkout this package runs from (``-dirty`` with uncommitted changes),
    or None outside a git checkout."""
    try:
        out = subprocess.run(['git', 'describe', '--always', '--dirty', '--abbrev=40'],
                             cwd=Path(__file__).parent, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None
