"""From a model and a low-resolution image to pixels: ``render`` for images, ``predict`` for
arbitrary query points, and ``BICUBIC``, the baseline that answers the same calls.

Images are (3, h, w) or (B, 3, h, w) floats in [0, 1]; the model sees them normalised by the
``data_norm`` it was trained with (``data_norm_of``: what its checkpoint records, else the
paper's (x - 0.5) / 0.5) and its output is de-normalised and clamped to [0, 1] here
(``normalise``, ``denormalise``), so that no caller writes that arithmetic again.

Book: chapters 8-10 render their images with this module.
"""
from __future__ import annotations

import contextlib
import math
import numbers
from typing import Any, Callable, ContextManager, Sequence, Union

import torch
from torch import nn

from .coords import make_cell, make_coord
from .device import cpu_has_bf16
from .kernels import fast_chunks
from .liif import LIIF, batched_predict
from .resize import resize_fn

# What every official config uses: the model sees (x - 0.5) / 0.5.
PAPER_DATA_NORM = {'inp': {'sub': [0.5], 'div': [0.5]}, 'gt': {'sub': [0.5], 'div': [0.5]}}
# What the official code assumes when a config has no data_norm.
NO_DATA_NORM = {'inp': {'sub': [0], 'div': [1]}, 'gt': {'sub': [0], 'div': [1]}}
# The ``data_norm`` argument that means: the model's own (``data_norm_of``).
MODEL_DATA_NORM = 'model'
# The official test chunk: queries decoded per pass, and the chunk on a CPU.
EVAL_BSIZE = 30000
# Share of the free CUDA memory one decoding chunk may take: the rest absorbs the caching
# allocator's rounding, the call's other tensors and the error of the per-query estimates.
CUDA_MEMORY_SHARE = 0.5
# Bytes one query of LIIF's fast path holds while its chunk decodes. The MLP runs on fixed
# chunks of queries whatever the chunk (``kernels.fast_chunks``; ``decoder_fixed_bytes``), so only
# the query's coordinate and cell (4 float32) and up to four float32 copies of its RGB on the
# way out grow with the chunk.
FAST_QUERY_BYTES = 4 * 4 + 4 * 3 * 4
# Activations of the fast path's MLP alive at once in inference: the gathered rows, and a
# layer's input and output.
FAST_LIVE_ACTIVATIONS = 3
# Inference precisions by name: float32, or autocast to a half-precision type.
DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}

# A model (sees normalised inputs), or a callable (inp, coord, cell) on [0, 1] such as BICUBIC.
Predictor = Union[nn.Module, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]]


def norm_tensors(data_norm: dict | None, device: torch.device | str
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(inp_sub, inp_div, gt_sub, gt_div)`` shaped to broadcast on (B, 3, h, w) and (B, Q, 3).

    ``data_norm`` None means no normalisation, as in the official code.
    """
    data_norm = NO_DATA_NORM if data_norm is None else data_norm
    inp, gt = data_norm['inp'], data_norm['gt']
    return (torch.tensor(inp['sub'], dtype=torch.float32, device=device).view(1, -1, 1, 1),
            torch.tensor(inp['div'], dtype=torch.float32, device=device).view(1, -1, 1, 1),
            torch.tensor(gt['sub'], dtype=torch.float32, device=device).view(1, 1, -1),
            torch.tensor(gt['div'], dtype=torch.float32, device=device).view(1, 1, -1))


def norm_problems(data_norm: dict[str, Any]) -> list[str]:
    """``{inp: {sub: [..], div: [..]}, gt: {...}}``, each list of 1 or 3 finite numbers, no
    divisor 0 (the official code broadcasts them over (3, H, W) images)."""
    problems = []
    for part in ('inp', 'gt'):
        entry = data_norm.get(part)
        if not isinstance(entry, dict):
            problems.append(f'data_norm.{part} must be a mapping of sub and div, got {entry!r}')
            continue
        for key in ('sub', 'div'):
            value = entry.get(key)
            ok = (isinstance(value, list) and len(value) in (1, 3)
                  and all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in value)
                  and (key == 'sub' or all(v != 0 for v in value)))
            if not ok:
                problems.append(f'data_norm.{part}.{key} must be a list of 1 or 3 finite numbers'
                                + (' other than 0' if key == 'div' else '') + f', got {value!r}')
    unknown = sorted(set(data_norm) - {'inp', 'gt'})
    if unknown:
        problems.append(f"data_norm has unknown keys {unknown}; it holds 'inp' and 'gt'")
    return problems


def data_norm_of(model: object) -> dict | None:
    """The normalisation ``model`` was trained with: the ``data_norm`` its checkpoint records
    (``load_model`` keeps it as ``model.data_norm``; None means none), else the paper's, which
    every official config, the released checkpoints and the shipped weights use."""
    return getattr(model, 'data_norm', PAPER_DATA_NORM)


def normalise(inp: torch.Tensor, data_norm: dict | None) -> torch.Tensor:
    """(B, 3, h, w) in [0, 1] -> what the model sees."""
    inp_sub, inp_div, _, _ = norm_tensors(data_norm, inp.device)
    return (inp - inp_sub) / inp_div


def denormalise(pred: torch.Tensor, data_norm: dict | None) -> torch.Tensor:
    """The model's (B, Q, 3) output -> float32 RGB clamped to [0, 1]."""
    _, _, gt_sub, gt_div = norm_tensors(data_norm, pred.device)
    return (pred.float() * gt_div + gt_sub).clamp_(0, 1)


class Bicubic:
    """The bicubic baseline as a predictor: ``resize_fn`` the input up to the output size
    given by the cell (2/H, 2/W), then read the pixel under each query.

    Call it as ``BICUBIC(inp, coord, cell)``: inp (B, 3, h, w) in [0, 1], not normalised;
    coord, cell (B, Q, 2), the queries being pixel centres of the H x W output. Returns
    (B, Q, 3) in [0, 1].
    """

    def __call__(self, inp: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor
                 ) -> torch.Tensor:
        preds = []
        for img, q, c in zip(inp, coord, cell):
            H, W = round(2 / c[0, 0].item()), round(2 / c[0, 1].item())
            up = resize_fn(img, (H, W))  # (3, H, W)
            # Centre -1 + (2i + 1)/H -> row i; rounding absorbs float error in the coordinate.
            rows = ((q[:, 0] + 1) * H / 2 - 0.5).round().long().clamp(0, H - 1)  # (Q,)
            cols = ((q[:, 1] + 1) * W / 2 - 0.5).round().long().clamp(0, W - 1)
            preds.append(up[:, rows, cols].t())  # (Q, 3)
        return torch.stack(preds)

    def __repr__(self) -> str:
        return 'BICUBIC'


BICUBIC = Bicubic()


def precision(dtype: str | torch.dtype | None, device: torch.device | str) -> ContextManager:
    """The context to run a model in at ``dtype`` on ``device``: nothing for float32 (or None),
    otherwise autocast to that dtype. Coordinates, cells and the local ensemble's weights stay
    float32 either way; the encoder and the decoder's matrix products run in ``dtype``.

    Raises ValueError, in one line, for an unknown dtype or one the device cannot run.
    """
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f'dtype must be one of {", ".join(DTYPES)}, got {dtype!r}')
        dtype = DTYPES[dtype]
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    if dtype not in DTYPES.values():
        raise ValueError(f'dtype must be one of {", ".join(DTYPES)}, got {dtype}')
    device = torch.device(device)
    name = str(dtype).removeprefix('torch.')
    if device.type == 'cpu':
        # Half precision on a CPU without its instructions would be emulated, slower than
        # float32.
        if dtype == torch.bfloat16 and not cpu_has_bf16():
            raise ValueError('bfloat16 inference needs a CPU with bfloat16 instructions '
                             '(AVX-512 BF16, AMX or Arm BF16), which this one lacks: it would '
                             'run slower than float32; use float32')
        supported = dtype == torch.bfloat16 or torch.ops.mkldnn._is_mkldnn_fp16_supported()
    elif device.type == 'cuda':
        supported = dtype == torch.float16 or torch.cuda.is_bf16_supported()
    else:
        supported = False
    if not supported:
        raise ValueError(f'{name} inference is not supported on {device}; use float32'
                         + ('' if dtype == torch.bfloat16 else ' or bfloat16'))
    return torch.autocast(device.type, dtype=dtype)


def query_bytes(model: nn.Module) -> int:
    """Device memory that each query of a chunk adds while ``model`` decodes it, in bytes: an
    upper estimate at float32.

    A LIIF with a decoder takes ``FAST_QUERY_BYTES`` (its fast path). Other models (MetaSR,
    the decoder-less LIIF) run every layer on all queries of the chunk at once: each query may
    then hold the input and output of every Linear layer together, beside its 3x3-unfolded
    code (9C floats) and ``FAST_QUERY_BYTES`` of coordinates and results.
    """
    if isinstance(model, LIIF) and model.imnet is not None:
        return FAST_QUERY_BYTES
    widths = sum(m.in_features + m.out_features for m in model.modules()
                 if isinstance(m, nn.Linear))
    code = 9 * getattr(getattr(model, 'encoder', None), 'out_dim', 0)
    return 4 * (widths + code) + FAST_QUERY_BYTES


def decoder_fixed_bytes(model: nn.Module, device: torch.device) -> int:
    """Device memory a decoding chunk of ``model`` takes whatever its size, in bytes: for
    LIIF's fast path, its MLP chunk (``kernels.fast_chunks``) of T ensemble members at the widest
    layer, ``FAST_LIVE_ACTIVATIONS`` times, in float32; 0 for other models."""
    if not isinstance(model, LIIF) or model.imnet is None:
        return 0
    width = max(layer.out_features for layer in model.imnet.linears)
    members = 4 if model.local_ensemble else 1
    return 4 * FAST_LIVE_ACTIVATIONS * members * width * fast_chunks(device)[1]


def chunk_size(device: torch.device, items: int, item_bytes: float, cpu_items: int,
               fixed_bytes: float = 0) -> int:
    """How many of ``items`` (queries, or output rows of queries) to decode at once on
    ``device``: the one rule behind ``render``'s and ``upscale``'s default chunks.

    On a CPU (and any device but CUDA): ``cpu_items``, the chunk sized for a CPU's caches and
    threads, so outputs stay bit-exact whatever the memory. On CUDA, where every chunk costs a
    round of kernel launches and a small chunk leaves the GPU idle: all ``items`` in one chunk
    when ``fixed_bytes + items * item_bytes`` fits in ``CUDA_MEMORY_SHARE`` of the free memory
    that ``torch.cuda.mem_get_info`` reports, otherwise as many as fit, at least one.

    Args:
        device: where the chunk is decoded.
        items: how many there are in all.
        item_bytes: device memory one item takes while its chunk decodes (``query_bytes``
            per query).
        cpu_items: the chunk on a CPU.
        fixed_bytes: device memory a chunk takes whatever its size.

    Returns:
        items per chunk, at least 1 (``cpu_items`` on a CPU, which may exceed ``items``).
    """
    if device.type != 'cuda':
        return cpu_items
    free, _ = torch.cuda.mem_get_info(device)
    fit = (free * CUDA_MEMORY_SHARE - fixed_bytes) // item_bytes
    return int(max(1, min(items, fit)))


def predict(model: Predictor, inp: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor,
            data_norm: dict | str | None = MODEL_DATA_NORM, bsize: int | str | None = None,
            dtype: str | torch.dtype | None = None) -> torch.Tensor:
    """RGB in [0, 1] at the queries: (B, 3, h, w) in [0, 1], (B, Q, 2) -> (B, Q, 3).

    A model sees the input normalised by ``data_norm`` (default ``MODEL_DATA_NORM``: the
    model's own, ``data_norm_of``; None: none); its output is de-normalised and clamped to
    [0, 1].
    ``bsize`` None decodes all queries in one pass, an integer in chunks of that many, and
    'auto' in chunks that suit the device (``chunk_size``: ``EVAL_BSIZE`` on a CPU, on CUDA
    all at once when they fit). ``dtype`` (see ``precision``) runs a model in half precision;
    the result is float32. Any other predictor (``BICUBIC``) is called on the input as it is.
    """
    if not isinstance(model, nn.Module):
        return model(inp, coord, cell)
    if bsize == 'auto':
        B, Q = coord.shape[:2]
        bsize = chunk_size(inp.device, Q, B * query_bytes(model), EVAL_BSIZE,
                           decoder_fixed_bytes(model, inp.device))
    if data_norm == MODEL_DATA_NORM:
        data_norm = data_norm_of(model)
    with torch.no_grad(), precision(dtype, inp.device):
        x = normalise(inp, data_norm)
        if bsize is None:
            pred = model(x, coord, cell)
        else:
            pred = batched_predict(model, x, coord, cell, bsize)
    return denormalise(pred, data_norm)


def _plain(scale: float | Sequence[float] | None) -> float | Sequence[float] | None:
    """numpy and torch scalars (0-d arrays and tensors too), alone or in a pair, as Python
    floats, as ``output_size`` checks them; anything else unchanged, for it to judge."""
    def one(s: object) -> object:
        return float(s) if isinstance(s, numbers.Real) or getattr(s, 'ndim', None) == 0 else s

    if scale is None or isinstance(scale, str):
        return scale
    if isinstance(scale, numbers.Real) or getattr(scale, 'ndim', None) == 0:
        return one(scale)
    try:
        return tuple(one(s) for s in scale)
    except TypeError:
        return scale


def output_size(h: int, w: int, size: Sequence[int] | None = None,
                scale: float | Sequence[float] | None = None) -> tuple[int, int]:
    """The (H, W) of the result: ``size`` itself, or ``round(h * s_row), round(w * s_col)``.

    Args:
        h: input height.
        w: input width.
        size: (H, W), positive integers.
        scale: one factor for both axes, or a (row, col) pair; any finite positive number
            (numpy and torch scalars too; below 1 shrinks). Rounding is Python's ``round``
            (halves to even), as the official evaluation does; a side never drops below 1
            pixel.

    Returns:
        (H, W).
    """
    if (size is None) == (scale is None):
        raise ValueError('give exactly one of size=(H, W) or scale')
    scale = _plain(scale)
    if size is not None:
        if len(size) != 2 or any(int(s) != s or s < 1 for s in size):
            raise ValueError(f'size must be two positive integers (H, W), got {size!r}')
        return int(size[0]), int(size[1])
    pair = (scale, scale) if isinstance(scale, (int, float)) else tuple(scale)
    if len(pair) != 2:
        raise ValueError(f'scale must be a number or a (row, col) pair, got {scale!r}')
    out = []
    for n, s in zip((h, w), pair):
        if not (isinstance(s, (int, float)) and math.isfinite(s) and s > 0):
            raise ValueError(f'scale must be a finite number above 0, got {s!r}')
        if not math.isfinite(n * s):
            raise ValueError(f'scale {s!r} gives an output too large to represent')
        out.append(max(1, round(n * s)))
    return out[0], out[1]


def render(model: Predictor, lr: torch.Tensor, size: Sequence[int] | None = None, *,
           scale: float | Sequence[float] | None = None,
           window: Sequence[float] | None = None, cell: Sequence[float] | None = None,
           bsize: int | str | None = 'auto', data_norm: dict | str | None = MODEL_DATA_NORM,
           dtype: str | torch.dtype | None = None) -> torch.Tensor:
    """The image a model makes of ``lr`` at (H, W), whole or a window of it.

    Args:
        model: a LIIF or MetaSR (on ``lr``'s device), or ``BICUBIC``.
        lr: (3, h, w) or (B, 3, h, w) in [0, 1].
        size: the output (H, W); or
        scale: one factor or a (row, col) pair (see ``output_size``).
        window: (top, left, height, width) in output pixels of the (H, W) image: only that
            part is decoded. top and left may be fractional or lie outside the image (queries
            outside [-1, 1] read the border codes).
        cell: the pixel (height, width) in [-1, 1] units told to the decoder; default the
            true one, (2/H, 2/W).
        bsize: queries per chunk; None: one pass; 'auto' (default): ``EVAL_BSIZE`` on a
            CPU, on CUDA as many as free memory allows, all in one pass when they fit
            (``chunk_size``).
        data_norm: the normalisation the model was trained with; default: the model's own
            (``data_norm_of``).
        dtype: 'float32' (default), 'bfloat16' or 'float16': the precision the model runs in
            (see ``precision``).

    Returns:
        (3, H', W') or (B, 3, H', W') in [0, 1]: (H, W), or the window's (height, width).

    Example:
        >>> sr = render(model, lr, scale=3.5)                           # doctest: +SKIP
        >>> zoom = render(model, lr, scale=12, window=(100, 40, 64, 64))  # doctest: +SKIP
    """
    batch = lr if lr.dim() == 4 else lr.unsqueeze(0)  # (B, 3, h, w)
    B, _, h, w = batch.shape
    H, W = output_size(h, w, size, scale)
    if window is None:
        shape, coord = (H, W), make_coord((H, W), device=lr.device)
    else:
        top, left, height, width = window
        shape = (int(height), int(width))
        ranges = ((-1 + 2 * top / H, -1 + 2 * (top + height) / H),
                  (-1 + 2 * left / W, -1 + 2 * (left + width) / W))
        coord = make_coord(shape, ranges=ranges, device=lr.device)
    coord = coord.unsqueeze(0).expand(B, -1, -1)  # (B, Q, 2)
    if cell is None:
        cells = make_cell(coord, (H, W))
    else:
        cells = torch.tensor(cell, dtype=coord.dtype, device=lr.device).expand_as(coord)
    pred = predict(model, batch, coord, cells, data_norm, bsize, dtype)  # (B, Q, 3)
    out = pred.view(B, *shape, 3).permute(0, 3, 1, 2)  # (B, 3, H', W')
    return out if lr.dim() == 4 else out[0]
