"""How the fast path's work runs on the machine: its chunk sizes on each device, the MLP's
hidden layers as oneDNN's fused kernels on a CPU, worker threads that each run torch on one
thread, and the encoder's threads, as many as the cores nobody else is using.

``liif`` decodes with these; ``bands`` runs the encoder under ``convolution_threads`` and
``export`` traces under ``single_threaded``. Nothing here knows the model: the functions take
layers, tensors and callables.

Book: chapter 4 (the fast path).
"""
from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

# Queries per MLP chunk of the fast path on a CPU: 4 ensemble members x 256 queries x 256
# hidden units is 1 MiB per activation, small enough to stay in a core's cache between the
# MLP's layers (measured on one thread: 128 and 256 run about 10 % faster than 512, 20 % faster
# than 1024).
FAST_CHUNK = 256
# Queries per work unit of the fast path on a CPU: code lookups for that many at once (their
# small per-query tensors, about 100 bytes per query, serve 16 MLP chunks), and the unit of
# work handed to one worker thread. Small enough that 2-16 workers balance on an x4 48 x 48
# image.
WORK_UNIT = 4096
# Queries per work unit and MLP chunk on a GPU, where every chunk costs a round of kernel
# launches and caches do not decide: a training batch (16 x 2304 queries) in 3 chunks instead
# of 144, at 4 x 2^14 x 256 float32 (64 MiB) per activation.
CUDA_CHUNK = 2**14
# oneDNN's fused linear + ReLU on prepacked weights for the hidden layers in float32 inference
# on a CPU; False: addmm and relu_ everywhere. Measured on one thread against addmm + relu_, in
# one process: 1.06-1.11x as fast on an AVX-512 Xeon, 0.82-1.03x on an AVX2 EPYC (within its
# noise of about 10 %): so only where torch runs its AVX-512 kernels.
FUSED_LINEAR = (torch.backends.mkldnn.is_available()
                and hasattr(torch.ops.mkldnn, '_linear_pointwise')
                and torch.backends.cpu.get_cpu_capability() == 'AVX512')


def fast_chunks(device: torch.device) -> tuple[int, int]:
    """(work unit, MLP chunk) in queries of the fast path on ``device``."""
    if device.type == 'cuda':
        return CUDA_CHUNK, CUDA_CHUNK
    return WORK_UNIT, FAST_CHUNK


def workers(device: torch.device) -> int:
    """Worker threads ``map_single_threaded`` runs items on now: torch's thread setting for CPU
    inference, otherwise 1 (items in order)."""
    if device.type != 'cpu' or torch.is_grad_enabled():
        return 1
    return torch.get_num_threads()


def work_units(queries: int, device: torch.device) -> range:
    """Start of every work unit of ``queries`` queries, for ``map_single_threaded``; the step is
    the unit's size, at most ``fast_chunks(device)[0]``.

    With several workers the units are as many as a multiple of the workers and of near-equal
    size, so that no worker is left alone with the last one: an x4 48 x 48 image in units of
    4096 queries is 9 units, which take 2 workers 5 units of time for 4.5 units of work.
    """
    unit = fast_chunks(device)[0]
    n = workers(device)
    if n == 1:
        return range(0, queries, unit)
    count = -(-queries // (unit * n)) * n
    return range(0, queries, max(1, -(-queries // count)))


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype autocast runs matrix products in on ``device`` now; None when it is off."""
    if not torch.is_autocast_enabled(device.type):
        return None
    return torch.get_autocast_dtype(device.type)


def hidden_layers(layers: Sequence[nn.Linear], proj: torch.Tensor
                  ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The MLP's hidden layers (each a Linear and a ReLU) as one function of the activations.

    In float32 inference on a CPU (``FUSED_LINEAR``): oneDNN's linear with the ReLU fused, on
    weights packed once here for all of the call's chunks, so that no pass copies the bias
    into the output and none applies the ReLU. Otherwise (gradients, autocast, a GPU):
    ``addmm`` and ``relu_``, which autocast covers.
    """
    if (FUSED_LINEAR and proj.device.type == 'cpu' and proj.dtype == torch.float32
            and not torch.is_grad_enabled() and autocast_dtype(proj.device) is None):
        ops = torch.ops.mkldnn
        packed = [(ops._reorder_linear_weight(layer.weight), layer.bias) for layer in layers]

        def fused(x: torch.Tensor) -> torch.Tensor:
            for weight, bias in packed:
                x = ops._linear_pointwise(x, weight, bias, 'relu', [], '')
            return x
        return fused

    def plain(x: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            x = torch.addmm(layer.bias, x, layer.weight.t()).relu_()
        return x
    return plain


def map_single_threaded(fn: Callable[[int], torch.Tensor], items: Sequence[int],
                        device: torch.device) -> list[torch.Tensor]:
    """``[fn(i) for i in items]``, on CPU inference spread over ``torch.get_num_threads()``
    worker threads that each run single-threaded operations.

    With torch's intra-op threads, each of the fast path's thousands of small operations is a
    parallel region that waits for its slowest thread: when another process holds one core,
    two threads ran the fast path 5-15x slower than one. Workers that each take whole items
    from a queue degrade gracefully instead: a slowed worker just finishes fewer items. The
    workers see the caller's autocast; with gradients enabled (training) or off the CPU, items
    run in order here.
    """
    threads = workers(device)
    if threads == 1 or len(items) == 1:
        return [fn(i) for i in items]
    autocast = autocast_dtype(device)

    def work(i: int) -> torch.Tensor:
        # Grad mode and autocast are per thread: restate the caller's.
        with torch.no_grad(), torch.autocast('cpu', dtype=autocast or torch.bfloat16,
                                             enabled=autocast is not None):
            return fn(i)

    # New threads (the workers) start with torch's setting of the moment.
    with single_threaded(), ThreadPoolExecutor(min(threads, len(items))) as pool:
        return list(pool.map(work, items))


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch's CPU operations on one thread inside the block, then restore the setting:
    for ``map_single_threaded``'s workers, and for work of many tiny operations (tracing in
    ``export``), which threads only slow down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def runnable_elsewhere() -> int | None:
    """Threads ready to run on the machine now besides the caller: the fourth field of Linux's
    /proc/loadavg ("running/total", the reading thread included), less one. None where it
    cannot be read."""
    try:
        return int(Path('/proc/loadavg').read_text().split()[3].split('/')[0]) - 1
    except (OSError, IndexError, ValueError):
        return None


@contextlib.contextmanager
def convolution_threads() -> Iterator[None]:
    """Inside the block, torch's CPU operations run on the cores nobody else is using now: at
    most torch's thread setting, at least one, and one where the machine cannot tell.

    For the encoder's convolutions, which cannot be split into items: on a 2-core machine two
    threads ran them 1.7x as fast as one when nothing else ran, and 2.4x slower while another
    process held a core (each of EDSR-baseline's 34 convolutions waits for its slowest
    thread). Their outputs do not depend on the number of threads (bit for bit on the CPUs
    measured, where each output's sum is made in one order): only the time does.
    """
    elsewhere = runnable_elsewhere()
    free = 1 if elsewhere is None else len(os.sched_getaffinity(0)) - elsewhere
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, min(threads, free)))
    try:
        yield
    finally:
        torch.set_num_threads(threads)
