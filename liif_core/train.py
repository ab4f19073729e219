"""Training: the paper's recipe, in one process or several under ``torchrun``.

The config is an official training YAML, read unchanged: ``TrainConfig`` lists its keys (the
official ones, plus ``num_workers``, ``seed``, ``val_seed`` and ``init`` of ours) and reports
every missing or unknown key before anything runs.

Each epoch trains on the whole training set (Adam, L1 loss on normalised targets), steps the
MultiStepLR schedule, validates (``validation``: PSNR, and bicubic's on the same crops), writes
``epoch-last.pth``, ``epoch-<N>.pth`` every ``epoch_save`` epochs and ``epoch-best.pth`` in the
official checkpoint layout, plus the RNG states that make a resumed run bit-exact on CPU, a
``log.jsonl`` line, and TensorBoard events when TensorBoard is installed (``train_state`` says
what a checkpoint holds). A run may stop at a time limit and resume later, in pieces: the
schedule is planned over ``epoch_max``, so the pieces together equal one uninterrupted run.

Launched by ``torchrun`` (see ``launch``), every process trains on its share of each batch
under DistributedDataParallel and rank 0 alone validates, logs and saves.

Mixed precision (``amp``) runs the model under ``torch.autocast``: float16 with gradient scaling
(every CUDA GPU has it) or bfloat16 without (Ampere GPUs and later, and CPUs); the loss is
always taken in float32. On CUDA, float32 matrix products use TF32 unless ``tf32=False``.
The loop never waits for the device to read a loss back except every ``LOSS_READ_STEPS``
steps, and the DataLoader's workers live as long as the run.

Where this differs from the official script, and why:
- validation crops come from a fixed seed (``val_seed``, else ``seed``), the same every epoch
  (the official ones are re-drawn each epoch, adding crop noise to the PSNR curve), and bicubic
  is scored on them once;
- ``epoch-last.pth`` is written after validation, so it also records the best PSNR so far;
- resuming sets the schedule's epoch instead of stepping it again: the official resume steps a
  new MultiStepLR over an optimizer that already holds the decayed rate, so every milestone
  already passed decays the rate a second time;
- an existing run is never overwritten: continue it with ``resume`` or pick another folder.

Book: chapter 8, "Training".
"""
from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from . import train_state
from .launch import amp_dtype, training_process
from .render import norm_tensors
from .rng import EpochIndices, EpochSeeded, seed_everything
from .train_config import TrainConfig
from .train_state import TrainState
from .validation import Validation, check_val_batches

# On an accelerator, reading a loss back stalls the host until the queued steps are done; the
# losses stay on the device and are read (and checked for NaN) every this many steps. A CPU
# computes synchronously, so there every step is read at no cost.
LOSS_READ_STEPS = 50


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite; the message names the epoch and step."""


# -- helpers -----------------------------------------------------------------------------------


def loss_read_steps(device: torch.device) -> int:
    """Every how many steps the training loop reads the losses back from ``device``."""
    return 1 if device.type == 'cpu' else LOSS_READ_STEPS


@contextmanager
def worker_errors_in_one_line() -> Iterator[None]:
    """An error in a DataLoader worker reaches the main process as the same exception type
    with the worker's whole traceback in its message; it is raised again with the worker's
    own message alone (``--debug`` still shows where it came from, as the cause)."""
    try:
        yield
    except (ValueError, OSError) as e:
        text = str(e)
        if 'DataLoader worker process' not in text:
            raise
        # The traceback's last line is 'module.Type: message'.
        message = text.strip().splitlines()[-1].split(': ', 1)[-1]
        try:
            error = type(e)(message)
        except Exception:  # a type that takes other arguments
            error = ValueError(message)
        raise error from e


def _open_tensorboard(save_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # TensorBoard is optional; log.jsonl always has the numbers
        return None
    return SummaryWriter(str(save_dir / 'tensorboard'))


# -- the training run --------------------------------------------------------------------------


def train(config: dict[str, Any] | TrainConfig, save_dir: str | os.PathLike,
          resume: bool = False, *, data_root: str | os.PathLike | None = None,
          device: str | torch.device | None = None, num_workers: int | None = None,
          amp: bool | str = False, tf32: bool = True, train_data: Dataset | None = None,
          val_data: Dataset | None = None, time_limit: float | None = None,
          progress: bool = True, log: Callable[[str], None] = tqdm.write,
          new_optimizer: bool = False) -> dict[str, Any]:
    """Train a model as the official ``train_liif.py`` does.

    Args:
        config: an official training config (the keys of ``TrainConfig``) or a ``TrainConfig``;
            every missing or unknown key is reported at once, before anything runs.
        save_dir: where checkpoints, ``config.yaml`` and ``log.jsonl`` go.
        resume: continue from ``save_dir/epoch-last.pth`` (a ``resume`` path in the config
            is honoured too, as in the official code).
        data_root: where the configs' ``./load/...`` data paths point (see ``liif_core.data``).
        device: 'cpu', 'cuda', ...; default: CUDA when available. Under torchrun each process
            takes ``cuda:LOCAL_RANK``.
        num_workers: DataLoader workers; default ``config['num_workers']``, else 8 as the
            official code (at most the number of CPUs).
        amp: mixed precision: 'fp16' (autocast to float16, gradients scaled), 'bf16'
            (autocast to bfloat16), True (fp16 on CUDA, bf16 on CPU) or False (float32).
        tf32: on CUDA, let float32 matrix products and convolutions use TF32 (10-bit
            mantissa inputs, float32 accumulation), several times faster on Ampere and later.
        train_data, val_data: datasets of {'inp', 'coord', 'cell', 'gt'} to use instead of
            building them from the config's ``train_dataset`` / ``val_dataset``.
        time_limit: stop, after saving, at the end of the last epoch that fits in this many
            seconds (judged by the length of the epoch before); ``resume=True`` continues.
            The schedule stays planned over ``epoch_max``, so a run in pieces equals one run.
        progress: show progress bars.
        log: receives one human-readable line per event.
        new_optimizer: on resume, continue with the config's optimizer settings where they
            differ from the checkpoint's (without it such a resume is refused, as is one whose
            model or data_norm differ).

    Returns:
        ``{'epoch': last epoch trained, 'best_val_psnr': ..., 'save_dir': ...}``.

    Raises:
        TrainingDiverged: a NaN or infinite loss; ``epoch-last.pth`` keeps the last good epoch.
        RunFolderBusy: another run is writing to ``save_dir`` (one writer per run folder).
    """
    cfg = TrainConfig.from_dict(config)
    with training_process(device, tf32) as (dev, rank, world_size):
        if num_workers is None:
            num_workers = min(cfg.num_workers, os.cpu_count() or 1)
        job = _Job(cfg, Path(save_dir), dev, amp_dtype(amp, dev), rank, world_size,
                   progress and rank == 0, (log if rank == 0 else None) or (lambda line: None),
                   new_optimizer)
        with train_state.hold_save_dir(job.save_dir, job.is_main), worker_errors_in_one_line():
            return _train(job, config, resume, data_root, num_workers, train_data, val_data,
                          time_limit)


@dataclass
class _Job:
    """What every stage of a run reads: the config and where and how this process runs."""
    cfg: TrainConfig
    save_dir: Path
    device: torch.device
    amp_dtype: torch.dtype | None  # the autocast dtype; None: float32
    rank: int
    world_size: int
    progress: bool  # this process shows progress bars
    say: Callable[[str], None]  # one line per event (a no-op on ranks other than 0)
    new_optimizer: bool = False  # a resume takes the config's optimizer settings

    @property
    def is_main(self) -> bool:
        return self.rank == 0  # rank 0 alone validates, logs and saves


def _train(job: _Job, config: dict[str, Any] | TrainConfig, resume: bool, data_root: Any,
           num_workers: int, train_data: Dataset | None, val_data: Dataset | None,
           time_limit: float | None) -> dict[str, Any]:
    """The run, stage by stage; ``train`` has set up processes and devices."""
    cfg, t_start = job.cfg, time.time()
    resume_from = train_state.claim_save_dir(job.save_dir, config, resume, job.is_main,
                                              job.new_optimizer)
    # Seeding before the datasets are built also fixes the model initialisation below. Each
    # process draws its own augmentations (seed + rank); DDP copies rank 0's weights anyway.
    seed_everything(cfg.seed + job.rank)
    sampler, train_loader, val_loader = _make_loaders(job, data_root, num_workers,
                                                      train_data, val_data)
    state = train_state.start(cfg, job.device, job.amp_dtype, resume_from, job.rank,
                              job.world_size, train_loader.generator, job.say,
                              job.new_optimizer)
    if job.is_main:
        train_state.write_log(job.save_dir, state.log)  # the log as the checkpoint has it
        train_state.record_piece(job.save_dir, state.epoch_start, job.world_size,
                                 job.amp_dtype, job.device)
    net = state.model
    if job.world_size > 1:
        net = DistributedDataParallel(state.model, device_ids=[job.device.index]
                                      if job.device.type == 'cuda' else None)
    writer = _open_tensorboard(job.save_dir) if job.is_main else None
    validation = Validation(val_loader)
    epoch = state.epoch_start - 1
    for epoch in range(state.epoch_start, cfg.epoch_max + 1):
        t0, lr = time.time(), state.optimizer.param_groups[0]['lr']
        sampler.set_epoch(epoch)
        train_loss = _train_epoch(job, net, state, train_loader, epoch,
                                  has_checkpoint=epoch > 1 or bool(resume_from))
        if state.lr_scheduler is not None:
            state.lr_scheduler.step()
        rng = train_state.gather_rng_states(job.world_size, train_loader.generator)
        if job.is_main:
            record = {'epoch': epoch, 'train_loss': train_loss, 'lr': lr,
                      **validation.run(state.model, cfg, epoch, job.progress)}
            record['time'] = time.time() - t0
            train_state.save(state, cfg, job.save_dir, epoch, record, rng)
            _log(job, writer, record)
        if job.world_size > 1:
            dist.barrier()  # the others wait while rank 0 validates and saves
        if epoch < cfg.epoch_max and _out_of_time(job, t_start, time.time() - t0, time_limit):
            job.say(f'time limit: stopped after epoch {epoch}; continue with --resume')
            break
    if writer is not None:
        writer.close()
    return {'epoch': epoch, 'best_val_psnr': state.best_val, 'save_dir': str(job.save_dir)}


def _out_of_time(job: _Job, t_start: float, epoch_time: float, limit: float | None) -> bool:
    """Whether another epoch as long as the last would end past ``limit`` seconds from the
    start; rank 0 decides for all processes, so that they stop at the same epoch."""
    if limit is None:
        return False
    stop = [time.time() - t_start + epoch_time > limit]
    if job.world_size > 1:
        dist.broadcast_object_list(stop, src=0)
    return stop[0]


def _make_loaders(job: _Job, data_root: Any, num_workers: int, train_data: Dataset | None,
                  val_data: Dataset | None
                  ) -> tuple[EpochIndices, DataLoader, DataLoader | None]:
    """The training sampler and loader, and the validation loader (rank 0, when configured)."""
    cfg, pin = job.cfg, job.device.type == 'cuda'
    if train_data is None:
        from .data import make_data  # the data pipeline is needed only for config datasets
        train_data = make_data(cfg.train_dataset, data_root=data_root)
    if val_data is None and cfg.val_dataset and job.is_main:  # rank 0 validates
        from .data import make_data
        val_data = make_data(cfg.val_dataset, data_root=data_root)
    batch_size = cfg.train_dataset['batch_size']
    if batch_size % job.world_size:
        raise ValueError(f'the batch size {batch_size} does not split evenly over '
                         f'{job.world_size} processes')
    # One sampler for one process or many: a permutation from (seed, epoch), rank r taking
    # every world_size-th index, so the ranks' batches together are the single-process batch.
    sampler = EpochIndices(DistributedSampler(train_data, num_replicas=job.world_size,
                                              rank=job.rank, shuffle=True, seed=cfg.seed))
    # The loader draws a seed from its generator each epoch; this one keeps that draw off the
    # global RNG that the training process's own data draws use.
    loader_generator = torch.Generator().manual_seed(cfg.seed + job.rank)
    train_loader = DataLoader(EpochSeeded(train_data, cfg.seed, job.rank),
                              batch_size=batch_size // job.world_size, sampler=sampler,
                              num_workers=num_workers, persistent_workers=num_workers > 0,
                              generator=loader_generator, pin_memory=pin)
    val_loader = None
    if val_data is not None and job.is_main:
        val_batch_size = (cfg.val_dataset or {}).get('batch_size', batch_size)
        check_val_batches(val_data, val_batch_size)
        # No workers: the crops are drawn here, the same whatever num_workers is (see
        # validation.validate).
        val_loader = DataLoader(val_data, batch_size=val_batch_size, pin_memory=pin)
    job.say(f'train: {len(train_data)} samples, {len(train_loader)} iterations per epoch'
            + (f' per process x {job.world_size}' if job.world_size > 1 else '')
            + (f'; val: {len(val_data)} samples' if val_loader is not None else ''))
    return sampler, train_loader, val_loader


def _train_epoch(job: _Job, net: nn.Module, state: TrainState, loader: DataLoader, epoch: int,
                 has_checkpoint: bool) -> float:
    """One pass over the training set (Adam, L1 on normalised targets): the mean loss."""
    inp_sub, inp_div, gt_sub, gt_div = norm_tensors(job.cfg.data_norm, job.device)
    net.train()
    read_every = loss_read_steps(job.device)
    losses = torch.zeros(len(loader), device=job.device)  # each step's loss, on the device
    read: list[float] = []  # the losses read back so far
    bar = tqdm(loader, desc=f'epoch {epoch}/{job.cfg.epoch_max}', leave=False,
               disable=not job.progress)
    for step, batch in enumerate(bar, start=1):
        batch = {k: v.to(job.device, non_blocking=True) for k, v in batch.items()}
        inp = (batch['inp'] - inp_sub) / inp_div
        gt = (batch['gt'] - gt_sub) / gt_div
        loss = train_step(net, state.optimizer, state.scaler, inp, batch['coord'],
                          batch['cell'], gt, job.amp_dtype)
        # All processes see the same mean loss (one all-reduce), so all stop together.
        if job.world_size > 1:
            dist.all_reduce(loss)
            loss /= job.world_size
        losses[step - 1] = loss
        if step % read_every == 0 or step == len(loader):
            _read_losses(job, losses, read, step, epoch, has_checkpoint)
            bar.set_postfix(loss=f'{read[-1]:.4f}')
    return sum(read) / max(len(read), 1)


def train_step(net: nn.Module, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler | None, inp: torch.Tensor, coord: torch.Tensor,
               cell: torch.Tensor, gt: torch.Tensor, amp_dtype: torch.dtype | None = None
               ) -> torch.Tensor:
    """One optimiser step on a normalised batch (L1 loss, taken in float32); the detached loss,
    left on the device. ``amp_dtype``: autocast to it (None: float32); ``scaler``: scale the
    loss for float16 gradients."""
    device_type = inp.device.type
    with torch.autocast(device_type, dtype=amp_dtype, enabled=amp_dtype is not None):
        pred = net(inp, coord, cell)  # LIIF's default, fast decoding
    loss = nn.functional.l1_loss(pred.float(), gt)
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return loss.detach()


def _read_losses(job: _Job, losses: torch.Tensor, read: list[float], step: int, epoch: int,
                 has_checkpoint: bool) -> None:
    """Append the losses of the steps up to ``step`` to ``read``; stop at the first that is NaN
    or infinite, naming its step (later steps may have run on the device meanwhile)."""
    first = len(read)
    read += losses[first:step].tolist()
    bad = next((i for i in range(first, step) if not math.isfinite(read[i])), None)
    if bad is not None:
        raise TrainingDiverged(
            f'loss is {read[bad]} at epoch {epoch}, step {bad + 1} of {len(losses)}; stopped. '
            + (f"{job.save_dir / 'epoch-last.pth'} holds the last good weights "
               f'(epoch {epoch - 1})' if has_checkpoint else 'No checkpoint was written yet'))


def _log(job: _Job, writer: Any, record: dict[str, Any]) -> None:
    """One line of log.jsonl, TensorBoard scalars, and one line for the user."""
    train_state.append_log(job.save_dir, record)
    epoch, lr, loss = record['epoch'], record['lr'], record['train_loss']
    if writer is not None:
        writer.add_scalar('lr', lr, epoch)
        writer.add_scalar('loss/train', loss, epoch)
        if 'val_psnr' in record:
            writer.add_scalar('psnr/val', record['val_psnr'], epoch)
            writer.add_scalar('psnr/val_bicubic', record['val_psnr_bicubic'], epoch)
        writer.flush()
    job.say(f'epoch {epoch}/{job.cfg.epoch_max}: loss {loss:.4f}, lr {lr:.3g}'
            + (f', val PSNR {record["val_psnr"]:.2f} dB (bicubic '
               f'{record["val_psnr_bicubic"]:.2f} dB)' if 'val_psnr' in record else '')
            + f', {record["time"]:.1f} s')
