"""Training: the paper's recipe, in one process or several under ``torchrun``.

The config is an official training YAML, read unchanged:

    train_dataset: {dataset: spec, wrapper: spec, batch_size}
    val_dataset:   {dataset: spec, wrapper: spec, batch_size}         (optional)
    data_norm:     {inp: {sub, div}, gt: {sub, div}}                   (default sub 0, div 1)
    eval_type, eval_bsize                                              (validation, optional)
    model: spec;  optimizer: {name: adam, args: {lr}};  epoch_max
    multi_step_lr: {milestones, gamma}                                 (optional)
    epoch_val, epoch_save                                              (optional)
    resume: a checkpoint to start from                                 (optional)

and three optional keys of ours: ``num_workers`` (the official code always uses 8), ``seed``, and
``init: bilinear`` to start the model as bilinear interpolation (``liif_core.init``) instead of
random weights.

Each epoch trains on the whole training set (Adam, L1 loss on normalised targets), steps the
MultiStepLR schedule, validates (PSNR, and bicubic's PSNR on the same crops), and writes
``epoch-last.pth``, ``epoch-<N>.pth`` every ``epoch_save`` epochs and ``epoch-best.pth`` in the
official checkpoint layout, plus the RNG states that make a resumed run bit-exact on CPU, a
``log.jsonl`` line, and TensorBoard events when TensorBoard is installed.

Launched by ``torchrun`` (RANK / WORLD_SIZE set), every process trains on its share of each
batch under DistributedDataParallel and rank 0 alone validates, logs and saves. Each process
builds its own training set, so a ``cache: in_memory`` set is held once per process.

Where this differs from the official script, and why:
- validation crops come from a fixed seed, the same every epoch (the official ones are re-drawn
  each epoch, adding crop noise to the PSNR curve), and bicubic is scored on them once;
- ``epoch-last.pth`` is written after validation, so it also records the best PSNR so far;
- resuming sets the schedule's epoch instead of stepping it again: the official resume steps a
  new MultiStepLR over an optimizer that already holds the decayed rate, so every milestone
  already passed decays the rate a second time;
- an existing run is never overwritten: continue it with ``resume`` or pick another folder.

Book: chapter 8, "Training".
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import MultiStepLR
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from .checkpoint import CheckpointError, load_model, save_model
from .data.specs import DEFAULT_DATA_ROOT
from .evaluate import evaluate, norm_tensors
from .init import apply_init
from .registry import make_model

OPTIMIZERS = {'adam': torch.optim.Adam, 'sgd': torch.optim.SGD}


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite; the message names the epoch and step."""


# -- random state ------------------------------------------------------------------------------
# The data pipeline draws scales, crops and flips from Python's ``random``, query samples from
# numpy's global RNG, and the DataLoader's worker seeds from its generator (the sampler is
# seeded by (seed, epoch) itself). Saving all of them with each checkpoint is what makes a
# resumed run continue exactly where the uninterrupted one would be.


def rng_state(loader_generator: torch.Generator) -> dict[str, Any]:
    """Every RNG the training loop reads, as plain containers and tensors (weights_only-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        'torch': torch.get_rng_state(),
        'numpy': [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        'python': [version, list(internal), gauss_next],
        'loader': loader_generator.get_state(),
    }
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], loader_generator: torch.Generator) -> None:
    """Restore what ``rng_state`` saved."""
    torch.set_rng_state(state['torch'])
    kind, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state['python']
    random.setstate((version, tuple(internal), gauss_next))
    loader_generator.set_state(state['loader'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy and ``random`` from the worker's torch seed,
    which the loader derives from its generator afresh each epoch, so every worker of every
    epoch draws its own reproducible sequence (the official code, on PyTorch < 1.9, let
    workers repeat numpy's draws)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


@contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Run a block from a fixed seed, then put every global RNG back as it was: validation
    sees the same crops every epoch and takes nothing from the training sequence."""
    saved = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    seed_everything(seed)
    try:
        yield
    finally:
        torch.set_rng_state(saved[0])
        np.random.set_state(saved[1])
        random.setstate(saved[2])


# -- helpers -----------------------------------------------------------------------------------


def make_optimizer(params: Any, spec: dict[str, Any]) -> torch.optim.Optimizer:
    """``{'name': 'adam', 'args': {'lr': 1e-4}}`` -> the optimizer (other settings PyTorch's)."""
    if spec['name'] not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {spec['name']!r}; known: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[spec['name']](params, **spec.get('args', {}))


def distributed_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment; (0, 1, 0) without it."""
    if 'RANK' not in os.environ or 'WORLD_SIZE' not in os.environ:
        return 0, 1, 0
    return (int(os.environ['RANK']), int(os.environ['WORLD_SIZE']),
            int(os.environ.get('LOCAL_RANK', 0)))


def validate(model: nn.Module | str, loader: DataLoader, config: dict[str, Any], seed: int,
             progress: bool) -> float:
    """Validation PSNR (the official ``eval_psnr`` with the config's eval_type, eval_bsize and
    data_norm) on crops drawn from ``seed``: the same crops every epoch, drawn without touching
    the training run's random state. The official code re-draws them each epoch, so its curve
    also carries crop-to-crop noise. ``model`` may be ``'bicubic'``."""
    seed += 10_000  # apart from the training seeds
    with isolated_rng(seed):
        loader.generator.manual_seed(seed)  # the workers' seeds
        return evaluate(model, loader, config.get('eval_type'), config.get('eval_bsize'),
                        config.get('data_norm'), progress=progress).psnr


def _open_tensorboard(save_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # TensorBoard is optional; log.jsonl always has the numbers
        return None
    return SummaryWriter(str(save_dir / 'tensorboard'))


# -- the training run --------------------------------------------------------------------------


def train(config: dict[str, Any], save_dir: str | os.PathLike, resume: bool = False, *,
          data_root: str | os.PathLike | None = None, device: str | torch.device | None = None,
          num_workers: int | None = None, amp: bool = False,
          train_data: Dataset | None = None, val_data: Dataset | None = None,
          progress: bool = True, log: Callable[[str], None] = tqdm.write) -> dict[str, Any]:
    """Train a model as the official ``train_liif.py`` does.

    Args:
        config: an official training config (see the module docstring).
        save_dir: where checkpoints, ``config.yaml`` and ``log.jsonl`` go.
        resume: continue from ``save_dir/epoch-last.pth`` (a ``resume`` path in the config
            is honoured too, as in the official code).
        data_root: where the configs' ``./load/...`` data paths point (see ``liif_core.data``).
        device: 'cpu', 'cuda', ...; default: CUDA when available. Under torchrun each process
            takes ``cuda:LOCAL_RANK``.
        num_workers: DataLoader workers; default ``config['num_workers']``, else 8 as the
            official code (at most the number of CPUs).
        amp: mixed precision (float16 autocast with gradient scaling); CUDA only.
        train_data, val_data: datasets of {'inp', 'coord', 'cell', 'gt'} to use instead of
            building them from the config's ``train_dataset`` / ``val_dataset``.
        progress: show progress bars.
        log: receives one human-readable line per event.

    Returns:
        ``{'epoch': last epoch trained, 'best_val_psnr': ..., 'save_dir': ...}``.

    Raises:
        TrainingDiverged: a NaN or infinite loss; ``epoch-last.pth`` keeps the last good epoch.
    """
    # -- processes and devices ---------------------------------------------------------------
    rank, world_size, local_rank = distributed_env()
    is_main = rank == 0
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    device = torch.device(device)
    if device.type == 'cuda' and world_size > 1:
        device = torch.device('cuda', local_rank)
        torch.cuda.set_device(device)
    if amp and device.type != 'cuda':
        raise ValueError('mixed precision (--amp) needs a CUDA device; on CPU training runs '
                         'in float32')
    created_group = world_size > 1 and not dist.is_initialized()
    if created_group:
        dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo')
    try:
        return _train(config, Path(save_dir), resume, data_root, device, num_workers, amp,
                      train_data, val_data, progress and is_main, log if is_main else None,
                      rank, world_size)
    finally:
        if created_group:
            dist.destroy_process_group()


def _train(config: dict[str, Any], save_dir: Path, resume: bool, data_root: Any,
           device: torch.device, num_workers: int | None, amp: bool, train_data: Dataset | None,
           val_data: Dataset | None, progress: bool, log: Callable[[str], None] | None,
           rank: int, world_size: int) -> dict[str, Any]:
    """The loop itself; ``train`` has set up processes and devices."""
    is_main = rank == 0
    say = log or (lambda line: None)
    seed = int(config.get('seed', 0))
    data_norm = config.get('data_norm')  # None: no normalisation, as the official default
    epoch_max = config['epoch_max']
    epoch_val, epoch_save = config.get('epoch_val'), config.get('epoch_save')

    # -- where the run lives ------------------------------------------------------------------
    last_path = save_dir / 'epoch-last.pth'
    resume_from = last_path if resume else config.get('resume')
    if resume and not last_path.is_file():
        raise ValueError(f'{save_dir}: nothing to resume (no epoch-last.pth)')
    if not resume_from and last_path.is_file():
        raise ValueError(f'{save_dir} already holds a run (epoch-last.pth): pass --resume to '
                         'continue it, or choose another --name / --save-dir')
    if is_main:
        save_dir.mkdir(parents=True, exist_ok=True)
        with open(save_dir / 'config.yaml', 'w') as f:
            yaml.safe_dump(config, f, sort_keys=False)

    # -- data ---------------------------------------------------------------------------------
    # Seeding before the datasets are built also fixes the model initialisation below. Each
    # process draws its own augmentations (seed + rank); DDP copies rank 0's weights anyway.
    seed_everything(seed + rank)
    if train_data is None:
        from .data import make_data  # the data pipeline is needed only for config datasets
        train_data = make_data(config['train_dataset'], data_root=data_root)
    if val_data is None and config.get('val_dataset') and is_main:  # rank 0 validates
        from .data import make_data
        val_data = make_data(config['val_dataset'], data_root=data_root)
    batch_size = config['train_dataset']['batch_size']
    if batch_size % world_size:
        raise ValueError(f'the batch size {batch_size} does not split evenly over '
                         f'{world_size} processes')
    if num_workers is None:
        num_workers = min(int(config.get('num_workers', 8)), os.cpu_count() or 1)
    # One sampler for one process or many: a permutation from (seed, epoch), rank r taking
    # every world_size-th index, so the ranks' batches together are the single-process batch.
    sampler = DistributedSampler(train_data, num_replicas=world_size, rank=rank, shuffle=True,
                                 seed=seed)
    loader_generator = torch.Generator().manual_seed(seed + rank)  # worker seeds per epoch
    train_loader = DataLoader(train_data, batch_size=batch_size // world_size, sampler=sampler,
                              num_workers=num_workers, worker_init_fn=seed_worker,
                              generator=loader_generator, pin_memory=device.type == 'cuda')
    val_loader = None
    if val_data is not None and is_main:
        val_batch_size = (config.get('val_dataset') or {}).get('batch_size', batch_size)
        val_loader = DataLoader(val_data, batch_size=val_batch_size,
                                num_workers=num_workers, worker_init_fn=seed_worker,
                                generator=torch.Generator(), pin_memory=device.type == 'cuda')
    say(f'train: {len(train_data)} samples, {len(train_loader)} iterations per epoch'
        + (f' per process x {world_size}' if world_size > 1 else '')
        + (f'; val: {len(val_data)} samples' if val_loader is not None else ''))

    # -- model, optimizer, schedule -------------------------------------------------------------
    ckpt = None
    if resume_from:
        try:
            ckpt = torch.load(resume_from, map_location='cpu', weights_only=True)
        except Exception as e:  # unreadable: report the file, as load_model does
            raise CheckpointError(f'{resume_from}: cannot resume from it ({e})') from None
        model = load_model(ckpt).to(device).train()
        optimizer = make_optimizer(model.parameters(), ckpt['optimizer'])
        optimizer.load_state_dict(ckpt['optimizer']['sd'])
        epoch_start = ckpt['epoch'] + 1
    else:
        model = apply_init(make_model(config['model']), config.get('init')).to(device).train()
        optimizer = make_optimizer(model.parameters(), config['optimizer'])
        epoch_start = 1
    lr_scheduler = None
    if config.get('multi_step_lr') is not None:
        lr_scheduler = MultiStepLR(optimizer, **config['multi_step_lr'])
        # The restored optimizer already holds the decayed learning rate; only the epoch
        # count is set (the official resume steps the schedule again, decaying twice).
        lr_scheduler.last_epoch = epoch_start - 1
    scaler = torch.amp.GradScaler('cuda') if amp else None
    best_val = -math.inf
    if ckpt is not None:
        best_val = ckpt.get('best_val_psnr', best_val)
        states = ckpt.get('rng')
        if states is not None and len(states) == world_size:
            set_rng_state(states[rank], loader_generator)
        else:
            say('resume: the checkpoint has no random state for this number of processes; '
                'reseeding, so the run will not repeat an uninterrupted one exactly')
            seed_everything(seed + rank + 1000 * epoch_start)
        if scaler is not None and 'grad_scaler' in ckpt:
            scaler.load_state_dict(ckpt['grad_scaler'])
    n_params = sum(p.numel() for p in model.parameters())
    say(f'model: {n_params / 1e6:.2f}M parameters; epochs {epoch_start}..{epoch_max}')
    net = model
    if world_size > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == 'cuda'
                                      else None)
    inp_sub, inp_div, gt_sub, gt_div = norm_tensors(data_norm, device)
    loss_fn = nn.L1Loss()
    writer = _open_tensorboard(save_dir) if is_main else None
    bicubic_psnr = None
    epoch = epoch_start - 1

    for epoch in range(epoch_start, epoch_max + 1):
        t0 = time.time()
        lr = optimizer.param_groups[0]['lr']
        sampler.set_epoch(epoch)

        # -- one pass over the training set ---------------------------------------------------
        net.train()
        loss_sum, n_steps = 0.0, 0
        bar = tqdm(train_loader, desc=f'epoch {epoch}/{epoch_max}', leave=False,
                   disable=not progress)
        for step, batch in enumerate(bar, start=1):
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            inp = (batch['inp'] - inp_sub) / inp_div
            gt = (batch['gt'] - gt_sub) / gt_div
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                pred = net(inp, batch['coord'], batch['cell'])  # LIIF's default, fast decoding
            loss = loss_fn(pred.float(), gt)
            # All processes see the same mean loss (one all-reduce), so all stop together.
            mean_loss = loss.detach().clone()
            if world_size > 1:
                dist.all_reduce(mean_loss)
                mean_loss /= world_size
            mean_loss = mean_loss.item()
            if not math.isfinite(mean_loss):
                raise TrainingDiverged(
                    f'loss is {mean_loss} at epoch {epoch}, step {step} of '
                    f'{len(train_loader)}; stopped. '
                    + (f'{last_path} holds the last good weights (epoch {epoch - 1})'
                       if epoch > 1 or resume_from else 'No checkpoint was written yet'))
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:  # float16 gradients are scaled up to stay representable, then back down
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            loss_sum += mean_loss
            n_steps += 1
            bar.set_postfix(loss=f'{mean_loss:.4f}')
        if lr_scheduler is not None:
            lr_scheduler.step()
        train_loss = loss_sum / max(n_steps, 1)
        states = [rng_state(loader_generator)]
        if world_size > 1:  # every process's random state goes into rank 0's checkpoint
            gathered: list[Any] = [None] * world_size
            dist.all_gather_object(gathered, states[0])
            states = gathered

        # -- validation, checkpoints and logs (rank 0) ---------------------------------------
        if is_main:
            record: dict[str, Any] = {'epoch': epoch, 'train_loss': train_loss, 'lr': lr}
            if val_loader is not None and epoch_val is not None and epoch % epoch_val == 0:
                record['val_psnr'] = validate(model, val_loader, config, seed, progress)
                if bicubic_psnr is None:  # the same crops every epoch: once is enough
                    bicubic_psnr = validate('bicubic', val_loader, config, seed, progress)
                record['val_psnr_bicubic'] = bicubic_psnr
                model.train()
            extra = {'optimizer': {**config['optimizer'], 'sd': optimizer.state_dict()},
                     'epoch': epoch, 'rng': states}
            is_best = record.get('val_psnr', -math.inf) > best_val
            best_val = max(best_val, record.get('val_psnr', -math.inf))
            extra['best_val_psnr'] = best_val
            if scaler is not None:
                extra['grad_scaler'] = scaler.state_dict()
            save_model(model, last_path, **extra)
            if epoch_save is not None and epoch % epoch_save == 0:
                save_model(model, save_dir / f'epoch-{epoch}.pth', **extra)
            if is_best:
                save_model(model, save_dir / 'epoch-best.pth', **extra)
            record['time'] = time.time() - t0
            with open(save_dir / 'log.jsonl', 'a') as f:
                f.write(json.dumps(record) + '\n')
            if writer is not None:
                writer.add_scalar('lr', lr, epoch)
                writer.add_scalar('loss/train', train_loss, epoch)
                if 'val_psnr' in record:
                    writer.add_scalar('psnr/val', record['val_psnr'], epoch)
                    writer.add_scalar('psnr/val_bicubic', bicubic_psnr, epoch)
                writer.flush()
            say(f'epoch {epoch}/{epoch_max}: loss {train_loss:.4f}, lr {lr:.3g}'
                + (f', val PSNR {record["val_psnr"]:.2f} dB (bicubic {bicubic_psnr:.2f} dB)'
                   if 'val_psnr' in record else '')
                + f', {record["time"]:.1f} s')
        if world_size > 1:
            dist.barrier()  # the others wait while rank 0 validates and saves

    if writer is not None:
        writer.close()
    return {'epoch': epoch, 'best_val_psnr': best_val, 'save_dir': str(save_dir)}


# -- command line: liif train ------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('config', help='a training config: a YAML file or a packaged name')
    parser.add_argument('--name', help='run name (default: _<config stem>, as the official '
                                       'code); the run is saved in save/<name>')
    parser.add_argument('--save-dir', help='save folder (overrides save/<name>)')
    parser.add_argument('--resume', action='store_true',
                        help='continue from the save folder\'s epoch-last.pth')
    parser.add_argument('--data-root', default=DEFAULT_DATA_ROOT,
                        help="where the config's ./load/... data paths point (default: %(default)s, "
                             'where `liif data fetch` puts them; `load` for the official layout)')
    parser.add_argument('--device', help='cpu, cuda, cuda:1, ... (default: CUDA if available)')
    parser.add_argument('--num-workers', type=int, help='DataLoader workers per process')
    parser.add_argument('--amp', action='store_true', help='mixed precision (CUDA only)')
    parser.add_argument('--epochs', type=int, help='override epoch_max')
    parser.add_argument('--seed', type=int, help="override the config's seed (default 0)")
    parser.add_argument('--threads', type=int, help='CPU threads for PyTorch (on a busy machine '
                        '1 can be many times faster than the default)')


def run(args: argparse.Namespace) -> int:
    from .configs import load_config
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = load_config(args.config)
    if args.epochs is not None:
        config['epoch_max'] = args.epochs
    if args.seed is not None:
        config['seed'] = args.seed
    name = args.name or '_' + Path(args.config).stem
    save_dir = Path(args.save_dir) if args.save_dir else Path('save') / name
    result = train(config, save_dir, resume=args.resume, data_root=args.data_root,
                   device=args.device, num_workers=args.num_workers, amp=args.amp)
    if distributed_env()[0] == 0:
        print(f'done: epoch {result["epoch"]}, checkpoints in {save_dir}')
    return 0
