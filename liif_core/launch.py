"""Where and how a training process runs: its rank under ``torchrun``, its device, its
mixed precision and TF32, set up before the run and put back after it.

Launched by ``torchrun`` (RANK / WORLD_SIZE set), each process joins the process group (NCCL
on CUDA, gloo on CPU) and, on CUDA, takes ``cuda:LOCAL_RANK``; without it there is one process.

Book: chapter 8, "Training".
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.distributed as dist

from .device import resolve_device

AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def amp_dtype(amp: bool | str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train(amp=...)``: None (float32) for False, 'bf16' or 'fp16' as
    named, and for True float16 on CUDA (every CUDA GPU runs it) and bfloat16 elsewhere."""
    if amp is False:
        return None
    if amp is True:
        return torch.float16 if device.type == 'cuda' else torch.bfloat16
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp must be True, False or one of {', '.join(AMP_DTYPES)}, "
                         f'got {amp!r}')
    return AMP_DTYPES[amp]


def distributed_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment; (0, 1, 0) without it."""
    if 'RANK' not in os.environ or 'WORLD_SIZE' not in os.environ:
        return 0, 1, 0
    return (int(os.environ['RANK']), int(os.environ['WORLD_SIZE']),
            int(os.environ.get('LOCAL_RANK', 0)))


@contextmanager
def training_process(device: str | torch.device | None, tf32: bool
                     ) -> Iterator[tuple[torch.device, int, int]]:
    """Set up this process for training; yields ``(device, rank, world_size)``.

    ``device`` None: CUDA when available. ``tf32``: on CUDA, let float32 matrix products and
    convolutions use TF32 (10-bit mantissa inputs, float32 accumulation), several times faster
    on Ampere and later; the previous setting comes back afterwards, as does the process group
    (left as it was found, when the caller had already made one).
    """
    rank, world_size, local_rank = distributed_env()
    dev = resolve_device(device)
    if dev.type == 'cuda' and world_size > 1:
        dev = torch.device('cuda', local_rank)
        torch.cuda.set_device(dev)
    created_group = world_size > 1 and not dist.is_initialized()
    if created_group:
        dist.init_process_group('nccl' if dev.type == 'cuda' else 'gloo')
    tf32_before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if dev.type == 'cuda':
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield dev, rank, world_size
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32_before
        if created_group:
            dist.destroy_process_group()
