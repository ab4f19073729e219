"""Devices named on the command line or passed to the library, checked before any work: a
device that cannot run here is refused with one line, before a checkpoint is read or a file
written, rather than failing later in a way that blames something else; and the machine
described, to label timings and training logs."""
from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

import torch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device ``device`` names, checked to exist on this machine; None: CUDA if available,
    else the CPU.

    Raises:
        ValueError: an unknown name, a CPU index other than 0, CUDA without a GPU or with an
            index past the last GPU, 'meta' (which holds no data), or another backend this
            build of torch cannot run.
    """
    if device is None:
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f'unknown device {str(device)!r}; use cpu, cuda or cuda:N') from None
    if dev.type == 'cpu':
        if dev.index not in (None, 0):
            raise ValueError(f"device {str(device)!r}: there is one CPU device; use cpu")
        return torch.device('cpu')  # as parameters report it
    if dev.type == 'meta':
        raise ValueError("device 'meta' holds no data, so nothing can be computed on it; use "
                         'cpu or cuda')
    if dev.type == 'cuda':
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f'device {str(device)!r}: no CUDA GPU is usable here (torch '
                             f'{torch.__version__}); use cpu')
        if dev.index is not None and dev.index >= count:
            raise ValueError(f'device {str(device)!r}: this machine has {count} CUDA '
                             f'device(s), cuda:0 to cuda:{count - 1}')
        return dev
    try:
        torch.empty(0, device=dev)
    except Exception as e:  # each backend fails in its own way (assertion, NotImplementedError)
        raise ValueError(f'device {str(device)!r} is not usable here '
                         f'({str(e).splitlines()[0][:120]}); use cpu or cuda') from None
    return dev


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo where there is one), to label timings."""
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:  # no /proc: macOS, Windows
        pass
    return platform.processor() or platform.machine()


def machine_description(threads: int) -> str:
    """CPU model, threads and torch version."""
    return (f'{cpu_name()}, {os.cpu_count()} logical CPUs, {threads} torch threads, '
            f'torch {torch.__version__}, Python {platform.python_version()}')


@functools.cache
def cpu_flags() -> frozenset[str] | None:
    """The instruction-set flags of this machine's CPU (x86 ``flags``, Arm ``Features``) from
    /proc/cpuinfo, read once; None where there is no /proc/cpuinfo."""
    try:
        text = Path('/proc/cpuinfo').read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(':')
        if key.strip() in ('flags', 'Features'):
            return frozenset(value.split())
    return frozenset()


def cpu_has_bf16() -> bool:
    """Whether the CPU multiplies bfloat16 natively: x86 AVX-512 BF16 or AMX-BF16, or Arm's
    BF16 extension. oneDNN also runs bfloat16 on AVX-512 CPUs without them, by conversions
    that make it slower than float32, so its own check is used only where /proc/cpuinfo is
    missing."""
    flags = cpu_flags()
    if flags is None:
        return torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return bool(flags & {'avx512_bf16', 'amx_bf16', 'bf16'})
