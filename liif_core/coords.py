"""The continuous frame: pixel-centre coordinates, pixel samples and cells.

An image of H x W pixels is seen as samples of a function on the square [-1, 1]^2. Pixel (i, j)
covers a cell of height 2/H and width 2/W, and its sample sits at the cell's centre. Coordinates
are always (row, col): component 0 runs down the H axis, component 1 along the W axis (the
reverse of ``grid_sample``'s (x, y); the one conversion lives in ``liif.py``).

Book: chapter 1, "Images as functions".
"""
from __future__ import annotations

from typing import Sequence

import torch


def make_coord(shape: Sequence[int], ranges: Sequence[Sequence[float]] | None = None,
               flatten: bool = True, device: torch.device | str | None = None) -> torch.Tensor:
    """Coordinates of the pixel centres of a grid.

    Along an axis of length n with range (v0, v1) the half-pixel is r = (v1 - v0) / (2n) and
    pixel i sits at v0 + r + 2r * i; for the default range (-1, 1) that is -1 + (2i + 1) / n.

    Args:
        shape: the grid size, e.g. (H, W).
        ranges: one (v0, v1) pair per axis; (-1, 1) for every axis when None.
        flatten: return (prod(shape), ndim) in row-major order instead of ``(*shape, ndim)``.
        device: where to create the tensor.

    Returns:
        float32 tensor ``(*shape, ndim)`` or (prod(shape), ndim); the last axis is (row, col, ...).
    """
    seqs = []
    for axis, n in enumerate(shape):
        v0, v1 = (-1.0, 1.0) if ranges is None else ranges[axis]
        r = (v1 - v0) / (2 * n)
        # Bit-exact with the official grids: 2r and v0 + r are rounded to float32 once, then one
        # float32 multiply and one float32 add. linspace, or float64 followed by a cast, differ
        # in the last bit for about 10 % of the entries. The rounded values stay Python floats
        # (exact in float32, so the products are the same): a tensor made on a GPU from a
        # Python value would be copied from the host, waiting for the GPU's queue every call.
        step = torch.tensor(2 * r, dtype=torch.float32).item()
        start = torch.tensor(v0 + r, dtype=torch.float32).item()
        seqs.append(torch.arange(n, dtype=torch.float32, device=device) * step + start)
    coord = torch.stack(torch.meshgrid(*seqs, indexing='ij'), dim=-1)  # (*shape, ndim)
    if flatten:
        coord = coord.view(-1, coord.shape[-1])  # (prod(shape), ndim)
    return coord


def to_pixel_samples(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An image as (coordinate, value) pairs.

    Args:
        img: (C, H, W).

    Returns:
        coord (H*W, 2) from ``make_coord((H, W))`` and values (H*W, C), both in row-major order.
    """
    coord = make_coord(img.shape[-2:], device=img.device)
    values = img.reshape(img.shape[0], -1).permute(1, 0)  # (H*W, C)
    return coord, values


def make_cell(coord: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The cell of every query: the height and width of one output pixel, (2/H, 2/W).

    Args:
        coord: (..., 2) query coordinates; only its shape, dtype and device are used.
        shape: the output grid (H, W) the queries belong to.

    Returns:
        a tensor like ``coord`` holding (2/H, 2/W) in every row.
    """
    cell = torch.ones_like(coord)
    cell[..., 0] *= 2 / shape[0]
    cell[..., 1] *= 2 / shape[1]
    return cell
