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
import fcntl
import json
import math
import os
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import yaml
from torch import nn
from torch.optim.lr_scheduler import MultiStepLR

from .atomic import atomic_write
from .checkpoint import CheckpointError, load_model, read_checkpoint, save_model
from .device import cpu_name
from .init import apply_init
from .registry import make_model
from .rng import rng_state, seed_everything, set_rng_state
from .render import NO_DATA_NORM
from .train_config import OPTIMIZERS, ConfigError, TrainConfig

# Environment variables that choose CPU kernels (and so change float results).
KERNEL_ENV = ('ATEN_CPU_CAPABILITY', 'MKL_ENABLE_INSTRUCTIONS', 'ONEDNN_MAX_CPU_ISA',
              'OMP_NUM_THREADS')


def make_optimizer(params: Any, spec: dict[str, Any]) -> torch.optim.Optimizer:
    """``{'name': 'adam', 'args': {'lr': 1e-4}}`` -> the optimizer (other settings PyTorch's)."""
    if spec['name'] not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {spec['name']!r}; known: {', '.join(OPTIMIZERS)}")
    return getattr(torch.optim, OPTIMIZERS[spec['name']])(params, **spec.get('args', {}))


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


class RunFolderBusy(OSError):
    """Another process is writing to the run folder."""


@contextmanager
def hold_save_dir(save_dir: Path, is_main: bool) -> Iterator[None]:
    """One writer per run folder: an exclusive ``flock`` on ``save_dir/.writer.lock``, held
    while the run lasts (rank 0 alone writes, so only rank 0 takes it). The kernel releases it
    when the process ends in any way, so a lock file left by a killed run holds no one back;
    the file says who holds it, for the message a second run gets."""
    if not is_main:
        yield
        return
    created = not save_dir.exists()
    save_dir.mkdir(parents=True, exist_ok=True)
    path = save_dir / '.writer.lock'
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors='replace').strip() or 'unknown'
            raise RunFolderBusy(f'{save_dir}: another training run is writing to it ({holder});'
                                ' wait for it to end, or choose another --save-dir') from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'pid {os.getpid()} on {socket.gethostname()}, since '
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        try:
            yield
        except BaseException:
            if created and os.listdir(save_dir) == [path.name]:  # refused before any work
                path.unlink()
                save_dir.rmdir()
            raise
    finally:
        os.close(fd)  # releases the lock


@dataclass
class Resume:
    """Where a run continues from: the checkpoint's path and contents."""
    path: Path | str
    ckpt: dict[str, Any]


def claim_save_dir(save_dir: Path, config: dict[str, Any] | TrainConfig, resume: bool,
                   is_main: bool, new_optimizer: bool = False) -> Resume | None:
    """The checkpoint to start from, if any, checked to continue the same run; refuses to
    overwrite a run; writes config.yaml (only once the run may start)."""
    cfg = TrainConfig.from_dict(config)
    last_path = save_dir / 'epoch-last.pth'
    resume_from = last_path if resume else cfg.resume
    if resume and not last_path.is_file():
        raise ValueError(f'{save_dir}: nothing to resume (no epoch-last.pth)')
    if not resume_from and last_path.is_file():
        raise ValueError(f'{save_dir} already holds a run (epoch-last.pth): pass --resume to '
                         'continue it, or choose another --name / --save-dir')
    start_from = None
    if resume_from:
        start_from = Resume(resume_from, read_resumable(resume_from))
        check_same_run(start_from, cfg, new_optimizer)
    if is_main:
        save_dir.mkdir(parents=True, exist_ok=True)
        # The config as given, key for key (a TrainConfig is written with all its fields).
        raw = dataclasses.asdict(config) if isinstance(config, TrainConfig) else config
        with atomic_write(save_dir / 'config.yaml') as f:
            f.write(yaml.safe_dump(raw, sort_keys=False).encode())
    return start_from


def read_resumable(path: Path | str) -> dict[str, Any]:
    """A checkpoint written by ``save``: the weights with the optimizer state and the epoch."""
    ckpt = read_checkpoint(path)  # one line for an unreadable file or one that holds code
    if not isinstance(ckpt, dict):
        raise CheckpointError(f'{path}: cannot resume from it: not a checkpoint dict')
    optimizer = ckpt.get('optimizer')
    if not (isinstance(optimizer, dict) and isinstance(optimizer.get('name'), str)
            and isinstance(optimizer.get('args', {}), dict)
            and isinstance(optimizer.get('sd'), dict)):
        raise CheckpointError(f'{path}: cannot resume from it: it holds weights but no '
                              'optimizer state (shipped or released weights are such files); '
                              f'to start a new run from its weights, set `init: {path}` in '
                              'the config')
    sd = optimizer['sd']
    if not (isinstance(sd.get('state'), dict) and isinstance(sd.get('param_groups'), list)):
        raise CheckpointError(f'{path}: cannot resume from it: its optimizer state is damaged '
                              "(expected {'state': {...}, 'param_groups': [...]})")
    epoch = ckpt.get('epoch')
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        raise CheckpointError(f'{path}: cannot resume from it: its epoch is {epoch!r}, not a '
                              'whole number >= 1')
    return ckpt


# What a checkpoint records of its run, and the config keys they must match.
RUN_KEYS = ('model', 'optimizer', 'data_norm')


def check_same_run(start_from: Resume, cfg: TrainConfig, new_optimizer: bool) -> None:
    """Refuse a config that would continue the checkpoint's run as another one: a different
    model, normalisation or (unless ``new_optimizer``) optimizer, naming every key; and a run
    with no epoch left to train."""
    ckpt, path = start_from.ckpt, start_from.path
    recorded = {'model': {k: ckpt['model'][k] for k in ('name', 'args')},
                'optimizer': {k: v for k, v in ckpt['optimizer'].items() if k != 'sd'}}
    if 'data_norm' in ckpt:  # older checkpoints do not record it
        recorded['data_norm'] = ckpt['data_norm']
    given = {'model': {'name': cfg.model.get('name'), 'args': cfg.model.get('args')},
             'optimizer': cfg.optimizer, 'data_norm': effective_norm(cfg)}
    keys = [k for k in RUN_KEYS if k in recorded and not (k == 'optimizer' and new_optimizer)]
    differences = [d for k in keys for d in _differences(k, recorded[k], given[k])]
    if differences:
        flag = ('' if any(d.startswith(('model', 'data_norm')) for d in differences) else
                '; to continue with the new optimizer settings on purpose, pass '
                '--new-optimizer (new_optimizer=True)')
        raise ConfigError(f'{path}: the config differs from the run being resumed in '
                          + '; '.join(differences) + flag)
    if ckpt['epoch'] >= cfg.epoch_max:
        raise ConfigError(f"{path}: the run has trained {ckpt['epoch']} epochs, epoch_max is "
                          f'{cfg.epoch_max}: nothing left to train; raise epoch_max (--epochs) '
                          'to train further')


def _differences(key: str, recorded: Any, given: Any) -> list[str]:
    """'key.sub (x in the checkpoint, y in the config)' for every leaf that differs."""
    if isinstance(recorded, dict) and isinstance(given, dict):
        return [d for k in sorted(set(recorded) | set(given), key=str)
                for d in _differences(f'{key}.{k}', recorded.get(k, '(none)'),
                                      given.get(k, '(none)'))]
    if recorded == given:
        return []
    return [f'{key} ({recorded!r} in the checkpoint, {given!r} in the config)']


def effective_norm(cfg: TrainConfig) -> dict[str, Any]:
    """The normalisation a run trains with: the config's, none (official) without one."""
    return NO_DATA_NORM if cfg.data_norm is None else cfg.data_norm


def start(cfg: TrainConfig, device: torch.device, amp_dtype: torch.dtype | None,
          start_from: Resume | None, rank: int, world_size: int,
          loader_generator: torch.Generator, say: Callable[[str], None],
          new_optimizer: bool = False) -> TrainState:
    """A fresh model (the config's ``init``) or the checkpoint's, with optimizer and schedule.
    ``new_optimizer``: the config's optimizer settings replace the checkpoint's (its state,
    e.g. Adam's moments, is kept when the optimizer is the same kind), with the learning rate
    decayed by the milestones already passed, as if the run had used them from the start."""
    ckpt = start_from.ckpt if start_from else None
    if ckpt is not None:
        model = load_model(ckpt).to(device).train()
        epoch_start = ckpt['epoch'] + 1
        try:
            optimizer = _resumed_optimizer(model, ckpt['optimizer'], cfg, epoch_start,
                                           new_optimizer)
        except (ValueError, TypeError, KeyError) as e:
            raise CheckpointError(f'{start_from.path}: cannot resume from it: its optimizer '
                                  f'state does not fit ({str(e).splitlines()[0]})') from None
    else:
        model = apply_init(make_model(cfg.model), cfg.init).to(device).train()
        optimizer = make_optimizer(model.parameters(), cfg.optimizer)
        epoch_start = 1
    model.data_norm = effective_norm(cfg)
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
        state.log = ckpt['log'] if 'log' in ckpt else _logged(start_from.path, epoch_start)
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


def _resumed_optimizer(model: nn.Module, saved: dict[str, Any], cfg: TrainConfig,
                       epoch_start: int, new_optimizer: bool) -> torch.optim.Optimizer:
    if not new_optimizer:
        optimizer = make_optimizer(model.parameters(), saved)
        optimizer.load_state_dict(saved['sd'])
        return optimizer
    optimizer = make_optimizer(model.parameters(), cfg.optimizer)
    if saved['name'] == cfg.optimizer['name']:
        hyper = optimizer.state_dict()['param_groups']
        optimizer.load_state_dict(saved['sd'])  # the state; then the new settings
        for group, new in zip(optimizer.param_groups, hyper):
            group.update({k: v for k, v in new.items() if k != 'params'})
    schedule = cfg.multi_step_lr or {}
    passed = sum(m < epoch_start for m in schedule.get('milestones', []))
    for group in optimizer.param_groups:
        group['lr'] *= schedule.get('gamma', 0.1) ** passed
    return optimizer


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
             'data_norm': effective_norm(cfg)}
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
