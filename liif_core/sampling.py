"""Where a query reads the feature map: nearest codes, unfolding, the local ensemble's shifts
and weights. ``LIIF`` and ``MetaSR`` both decode through these.

Coordinates are (row, col) in [-1, 1]; code (i, j) of an h x w map sits at the pixel centre
``make_coord``'s grid gives it. Book: chapters 2 (nearest code), 3 (local ensemble) and 4
(unfolding).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .coords import make_coord

# The four neighbours of the local ensemble as (row, col) shifts, in the official order.
ENSEMBLE_SHIFTS = ((-1, -1), (-1, 1), (1, -1), (1, 1))
# Added to both components of every shifted query (same sign for all shifts): at odd integer
# scales a shifted query lands exactly on a cell edge, and this breaks the tie consistently.
EPS_SHIFT = 1e-6
# Shifted queries are clamped this far inside [-1, 1], so border queries reuse border codes
# (the paper says mirror padding; the official code replicates the border code like this).
CLAMP_EPS = 1e-6
# Added to each ensemble area so that a query exactly on a code centre has no 0/0 weight.
AREA_EPS = 1e-9


def sample_nearest(field: torch.Tensor, coord: torch.Tensor) -> torch.Tensor:
    """Values of ``field`` at the pixel nearest to each coordinate; zero for a coordinate
    outside [-1, 1] (``grid_sample``'s padding). The decoder never asks there: it clamps its
    queries just inside first (``clamp_inside``), so a query past the border reads the border
    code, as the chapters describe.

    The one place where (row, col) becomes ``grid_sample``'s (x, y): the Q queries are laid out
    as a 1 x Q image of grid points. Nearest rounding is half-to-even, as in the official code.

    Args:
        field: (B, C, h, w).
        coord: (B, Q, 2) as (row, col).

    Returns:
        (B, Q, C).
    """
    grid = coord.flip(-1).unsqueeze(1)  # (B, 1, Q, 2) as (x, y)
    out = F.grid_sample(field, grid, mode='nearest', align_corners=False)  # (B, C, 1, Q)
    return out[:, :, 0, :].permute(0, 2, 1)  # (B, Q, C)


def unfold_features(feat: torch.Tensor) -> torch.Tensor:
    """Feature unfolding: each code is replaced by its 3x3 neighbourhood (zero-padded).

    Channel-major layout, as in the official checkpoints: channel c * 9 + 3 * (d_row + 1) +
    (d_col + 1) holds feat[c] shifted by (d_row, d_col).

    Args:
        feat: (B, C, h, w).

    Returns:
        (B, 9C, h, w).
    """
    B, C, h, w = feat.shape
    return F.unfold(feat, 3, padding=1).view(B, C * 9, h, w)


def code_centres(B: int, h: int, w: int, device: torch.device) -> torch.Tensor:
    """The centre of every code as a map (B, 2, h, w), to be read with ``sample_nearest``."""
    centres = make_coord((h, w), flatten=False, device=device)  # (h, w, 2)
    return centres.permute(2, 0, 1).unsqueeze(0).expand(B, 2, h, w)


def clamp_inside(coord: torch.Tensor) -> torch.Tensor:
    """Clamp queries just inside [-1, 1], so that a query past the border reads the border code."""
    return coord.clamp(-1 + CLAMP_EPS, 1 - CLAMP_EPS)


def ensemble_offsets(h: int, w: int, local_ensemble: bool = True
                     ) -> tuple[tuple[float, float], ...]:
    """The (row, col) offset added to a query for each ensemble member, on an h x w code grid.

    Half a code cell towards each of the four neighbours, plus ``EPS_SHIFT``; without the local
    ensemble, one member and no shift. Each offset is formed in Python double and added once to
    the float32 query, as in the official code, so both decoding paths shift to the same floats.
    """
    if not local_ensemble:
        return ((0.0, 0.0),)
    return tuple((d_row * (2 / h / 2) + EPS_SHIFT, d_col * (2 / w / 2) + EPS_SHIFT)
                 for d_row, d_col in ENSEMBLE_SHIFTS)


def ensemble_weights(areas: torch.Tensor, dim: int) -> torch.Tensor:
    """Blend weights of the local ensemble (paper eq. 4) from the members' areas along ``dim``.

    Each member is weighted by the area of the rectangle between the query and the *diagonally
    opposite* code, so the nearest code gets the largest weight. With the official shift order,
    the opposite of member t is member T-1-t: a reversal. A single member gets weight 1 exactly.

    Args:
        areas: ``|rel_row * rel_col| + AREA_EPS`` of every member, members along ``dim``.
        dim: the members' dimension.

    Returns:
        the weights, shaped like ``areas``.
    """
    return areas.flip(dim) / areas.sum(dim=dim, keepdim=True)
