"""LIIF: a feature map of latent codes plus a shared MLP is a continuous image.

The encoder turns an image (B, 3, h, w) into latent codes (B, C, h, w), one per input pixel,
each sitting at that pixel's centre. The RGB value at any continuous coordinate x is decoded
from the codes z* nearest to x by the MLP f: f(z*, x - v*, cell), blended over the four
surrounding codes (local ensemble, paper section 3.2).

Two implementations of ``query_rgb`` give the same numbers:

* the reference path (``fast=False``) follows the official algorithm step by step: unfold the
  feature map to 9C channels, look up the nearest code for each of four shifted queries, run
  the MLP on [code, relative coordinate, cell], blend by areas;
* the fast path (the default) uses the algebra of the first layer. Unfolding followed by the
  first Linear is one 3x3 convolution of the feature map, so it is computed once per latent
  code (``project_codes``) instead of once per query and ensemble member; each query then only
  gathers its code's projection, adds the rank-2 contributions of its relative coordinate and
  cell, and runs the remaining layers on all four ensemble members at once, in small chunks.

Book: chapters 2-5 derive every line of this file; chapter 4 shows why the fast path is exact.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .coords import make_coord
from .encoders import ENCODERS
from .kernels import (autocast_dtype, fast_chunks, hidden_layers, map_single_threaded,
                      work_units)
from .mlp import MLP
from .sampling import (AREA_EPS, clamp_inside, code_centres, ensemble_offsets, ensemble_weights,
                       sample_nearest, unfold_features)
from .spec import build_from_spec


class LIIF(nn.Module):
    """Local implicit image function (Chen, Liu and Wang, CVPR 2021).

    The arguments have the official names, so a checkpoint's ``args`` pass straight through.

    Args:
        encoder_spec: ``{'name': ..., 'args': ...}`` of the encoder, e.g. edsr-baseline with
            ``no_upsampling: True``.
        imnet_spec: spec of the decoding MLP, without ``in_dim`` (derived here). None gives
            the decoder-less model that samples the encoder output directly (the fixed-scale
            upsampling baselines).
        local_ensemble: blend the four surrounding codes by area (paper eq. 4).
        feat_unfold: concatenate each code's 3x3 neighbourhood (paper section 3.3).
        cell_decode: give the decoder the query pixel's size (paper section 3.4).

    State: ``gen_feat`` stores the feature map as ``self.feat`` and ``query_rgb`` reads it
    (the official contract). ``decode(feat, coord, cell)`` is the stateless equivalent.
    """

    def __init__(self, encoder_spec: dict[str, Any], imnet_spec: dict[str, Any] | None = None,
                 local_ensemble: bool = True, feat_unfold: bool = True, cell_decode: bool = True):
        super().__init__()
        self.local_ensemble = local_ensemble
        self.feat_unfold = feat_unfold
        self.cell_decode = cell_decode
        self.encoder = build_from_spec(encoder_spec, ENCODERS)
        if imnet_spec is not None:
            # Decoder input: the code (x9 when unfolded), the relative coordinate (2) and the
            # cell (2). in_dim is not stored in checkpoints: it is always derived like this.
            in_dim = self.code_dim + 2 + (2 if cell_decode else 0)
            self.imnet = build_from_spec(imnet_spec, {'mlp': MLP}, in_dim=in_dim)
        else:
            self.imnet = None
        self.spec = {'name': 'liif', 'args': {
            'encoder_spec': encoder_spec, 'imnet_spec': imnet_spec,
            'local_ensemble': local_ensemble, 'feat_unfold': feat_unfold,
            'cell_decode': cell_decode}}
        self.feat: torch.Tensor | None = None
        self._proj: torch.Tensor | None = None
        self._proj_key: torch.dtype | None = None

    @property
    def code_dim(self) -> int:
        """Features per latent code as the decoder reads it: C, or 9C when unfolded."""
        return self.encoder.out_dim * (9 if self.feat_unfold else 1)

    # -- encoding ----------------------------------------------------------------------------

    def gen_feat(self, inp: torch.Tensor) -> torch.Tensor:
        """Encode ``inp`` (B, 3, h, w), normalised to [-1, 1], and cache the (B, C, h, w) map."""
        self.feat = self.encoder(inp)
        self._proj = None  # projections of the previous feature map are stale
        return self.feat

    def project_codes(self, feat: torch.Tensor) -> torch.Tensor:
        """The first decoder layer applied to every latent code, once: (B, C, h, w) -> (B*h*w, D).

        The first Linear maps [unfolded code, rel, cell] to D units. Its code part, applied to
        the 3x3 unfolded map, is a 3x3 convolution of the feature map whose kernel is that
        part of the weight matrix viewed as (D, C, 3, 3), by the channel-major unfold layout.
        The bias is folded in here too. Rows are ordered (b, i, j) for gathering.
        """
        first = self.imnet.linears[0]
        B, _, h, w = feat.shape
        # C from the model, not the map: a traced graph (ONNX export) then has a kernel of
        # known shape.
        C = self.encoder.out_dim
        k = 3 if self.feat_unfold else 1
        kernel = first.weight[:, :C * k * k].reshape(-1, C, k, k)  # (D, C, k, k)
        proj = F.conv2d(feat, kernel, first.bias, padding=k // 2)  # (B, D, h, w)
        return proj.permute(0, 2, 3, 1).reshape(B * h * w, -1)  # (B*h*w, D)

    # -- decoding ----------------------------------------------------------------------------

    def query_rgb(self, coord: torch.Tensor, cell: torch.Tensor | None = None,
                  fast: bool = True) -> torch.Tensor:
        """RGB at continuous points from the map cached by ``gen_feat``.

        Args:
            coord: (B, Q, 2) as (row, col) in [-1, 1] (outside is allowed: border codes).
            cell: (B, Q, 2) pixel (height, width) of each query; unused without cell decoding.
            fast: the fast exact path (default) or the step-by-step reference algorithm.

        Returns:
            (B, Q, 3), normalised like the training targets (no clamp).
        """
        if self.feat is None:
            raise RuntimeError('query_rgb needs a feature map: call gen_feat(inp) first')
        if fast and self.imnet is not None:
            # A projection made under autocast is in its dtype: it is reused only under the same.
            key = autocast_dtype(self.feat.device)
            if self._proj is None or self._proj_key != key:
                self._proj, self._proj_key = self.project_codes(self.feat), key
        return self.decode(self.feat, coord, cell, fast=fast, proj=self._proj)

    def decode(self, feat: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor | None = None,
               fast: bool = True, proj: torch.Tensor | None = None) -> torch.Tensor:
        """Stateless ``query_rgb``: decode ``coord`` from the given feature map.

        Args:
            feat: (B, C, h, w) encoder output.
            coord, cell: (B, Q, 2), as in ``query_rgb``.
            fast: use the fast path.
            proj: ``project_codes(feat)``, when already computed (fast path only).

        Returns:
            (B, Q, 3).
        """
        if self.imnet is None:
            # Decoder-less baselines: the encoder already produced RGB at output resolution.
            return sample_nearest(feat, coord)
        if self.cell_decode and cell is None:
            raise ValueError('this model decodes cells: pass cell (B, Q, 2)')
        if fast:
            if proj is None:
                proj = self.project_codes(feat)
            return self._decode_fast(feat, proj, coord, cell)
        return self._decode_reference(feat, coord, cell)

    def _decode_reference(self, feat: torch.Tensor, coord: torch.Tensor,
                          cell: torch.Tensor | None) -> torch.Tensor:
        """The official algorithm, step by step."""
        B, C, h, w = feat.shape
        Q = coord.shape[1]
        if self.feat_unfold:
            feat = unfold_features(feat)  # (B, 9C, h, w)
        # Code centres, looked up with the same nearest rule as the codes.
        centres = code_centres(B, h, w, feat.device)  # (B, 2, h, w)
        preds, areas = [], []
        for d_row, d_col in ensemble_offsets(h, w, self.local_ensemble):
            shifted = coord.clone()
            shifted[..., 0] += d_row
            shifted[..., 1] += d_col
            shifted = clamp_inside(shifted)
            code = sample_nearest(feat, shifted)  # (B, Q, C')
            centre = sample_nearest(centres, shifted)  # (B, Q, 2)
            rel = coord - centre  # measured from the unshifted, unclamped query
            rel[..., 0] *= h  # in units where one code cell has length 2
            rel[..., 1] *= w
            parts = [code, rel]
            if self.cell_decode:
                rel_cell = cell.clone()
                rel_cell[..., 0] *= h  # cell size in the same units: 2/scale
                rel_cell[..., 1] *= w
                parts.append(rel_cell)
            pred = self.imnet(torch.cat(parts, dim=-1).view(B * Q, -1)).view(B, Q, -1)
            preds.append(pred)
            areas.append(torch.abs(rel[..., 0] * rel[..., 1]) + AREA_EPS)
        weights = ensemble_weights(torch.stack(areas), dim=0)  # (T, B, Q)
        out = 0
        for pred, weight in zip(preds, weights):
            out = out + pred * weight.unsqueeze(-1)
        return out

    def _decode_fast(self, feat: torch.Tensor, proj: torch.Tensor, coord: torch.Tensor,
                     cell: torch.Tensor | None) -> torch.Tensor:
        """Same numbers as ``_decode_reference`` (to float32 rounding), from ``project_codes``.

        The T ensemble members of every query are stacked as rows (query-major, so that a chunk
        of queries is a contiguous block of rows). Each row gathers its code's projection (the
        first layer's code part and bias) and adds the rank-2 or rank-4 term of its relative
        coordinate and cell in place; the hidden layers then run once on all rows of a chunk,
        and the members' activations are blended before the output layer, which is affine.
        Code lookups are done per work unit and the MLP per chunk (``fast_chunks``), so the
        many small lookup operations do not run once per MLP chunk. In inference the gathers
        of a work unit go into one reused buffer, and on a CPU in float32 the hidden layers run
        as oneDNN's fused linear + ReLU on weights packed once per call
        (``kernels.hidden_layers``).

        Work units (``kernels.work_units``) go to worker threads
        (``kernels.map_single_threaded``): one busy core then slows one worker, instead of every
        small operation waiting for it.
        """
        B, _, h, w = feat.shape
        Q = coord.shape[1]
        first, *hidden_linears, last = self.imnet.linears
        # The in-place addmm_ is not autocast: its operands take the projection's dtype (the
        # autocast dtype when project_codes ran under autocast), as autocast would cast the
        # reference path's decoder input. Lookups, terms and weights are made in float32.
        w_query = first.weight[:, self.code_dim:].t().to(proj.dtype)  # (2 or 4, D): rel, cell
        lookup = self._code_map(feat.shape, coord)  # (B, 4, h, w)
        offsets = _filled(ensemble_offsets(h, w, self.local_ensemble), coord)  # (T, 2)
        scale = _filled(((h, w),), coord)[0]  # (2,)
        hidden = hidden_layers(hidden_linears, proj)
        units = work_units(Q, coord.device)
        chunk = fast_chunks(coord.device)[1]
        reuse = not torch.is_grad_enabled()  # out= buffers have no gradient

        def unit(start: int) -> torch.Tensor:  # queries [start, start + step) -> (n, B, 3)
            stop = start + units.step
            flat, terms, weight = self._lookup_codes(
                lookup, offsets, scale, coord[:, start:stop],
                None if cell is None else cell[:, start:stop])
            terms = terms.to(proj.dtype)
            n, _, T = flat.shape
            gathered = proj.new_empty(min(chunk, n) * B * T, proj.shape[1]) if reuse else None
            out = []
            for s in range(0, n, chunk):
                m = min(chunk, n - s)
                rows = flat[s:s + m].view(-1)
                if gathered is None:
                    x = proj.index_select(0, rows)  # (m*B*T, D)
                else:
                    x = torch.index_select(proj, 0, rows, out=gathered[:m * B * T])
                x = hidden(x.addmm_(terms[s:s + m].view(m * B * T, -1), w_query).relu_())
                # The output layer is affine and the blend weights sum to 1, so the members'
                # activations are blended first: one output layer per query instead of T.
                x = torch.bmm(weight[s:s + m].view(m * B, 1, T).to(x.dtype),
                              x.view(m * B, T, -1))  # (m*B, 1, D)
                out.append(torch.addmm(last.bias, x.view(m * B, -1), last.weight.t()))
            # Under autocast the output layer gives bfloat16; the reference path's float32
            # blend weights give float32, and so does this path.
            return torch.cat(out).view(n, B, -1).to(weight.dtype)

        return torch.cat(map_single_threaded(unit, units, coord.device)
                         ).transpose(0, 1).contiguous()  # (B, Q, 3)

    @staticmethod
    def _code_map(shape: torch.Size, coord: torch.Tensor) -> torch.Tensor:
        """(row index, col index, row centre, col centre) of every code of a (B, C, h, w) map:
        (B, 4, h, w), in the coordinates' dtype (float32), whatever the features' dtype.

        Indices are exact in float32 below 2^24; centres are the ``make_coord`` values. (In
        half precision, centres would round by up to 5e-4 and indices above 2048 would not be
        exact.)
        """
        B, C, h, w = shape
        like = dict(dtype=coord.dtype, device=coord.device)
        index = torch.stack(torch.meshgrid(torch.arange(h, **like), torch.arange(w, **like),
                                           indexing='ij'), dim=-1)  # (h, w, 2)
        centres = make_coord((h, w), flatten=False, device=coord.device).to(coord.dtype)
        lookup = torch.cat((index, centres), dim=-1).permute(2, 0, 1)  # (4, h, w)
        return lookup.unsqueeze(0).expand(B, 4, h, w)

    def _lookup_codes(self, lookup: torch.Tensor, offsets: torch.Tensor, scale: torch.Tensor,
                      coord: torch.Tensor, cell: torch.Tensor | None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Code, decoder terms and blend weight of every ensemble member of every query.

        The shifted queries are the same floats as the reference makes (``ensemble_offsets``),
        and the code is found by ``sample_nearest`` on a map of code indices and centres: the
        reference's own lookup, ties included.

        Args:
            lookup: ``_code_map(feat)``, (B, 4, h, w).
            offsets: ``ensemble_offsets`` as a (T, 2) tensor like ``coord``.
            scale: (h, w) as a tensor like ``coord``.
            coord, cell: (B, n, 2).

        Returns:
            flat (n, B, T): row of ``project_codes(feat)``; terms (n, B, T, 2 or 4): rel, then
            cell, in units of code cells; weight (n, B, T): the blend weight (``ensemble_weights``).
        """
        B, _, h, w = lookup.shape
        n = coord.shape[1]
        T = offsets.shape[0]
        shifted = clamp_inside(coord.unsqueeze(2) + offsets)  # (B, n, T, 2)
        found = sample_nearest(lookup, shifted.view(B, n * T, 2))  # (B, n*T, 4)
        found = found.view(B, n, T, 4).transpose(0, 1).contiguous()  # (n, B, T, 4)
        rel = (coord.transpose(0, 1).unsqueeze(2) - found[..., 2:]) * scale  # (n, B, T, 2)
        rows, cols = found[..., 0].long(), found[..., 1].long()
        batch = torch.arange(B, device=coord.device).view(1, B, 1) * (h * w)
        flat = batch + rows * w + cols  # (n, B, T)
        terms = rel
        if self.cell_decode:
            rel_cell = (cell.transpose(0, 1) * scale).unsqueeze(2)  # (n, B, 1, 2)
            terms = torch.cat((rel, rel_cell.expand(n, B, T, 2)), dim=-1)  # (n, B, T, 4)
        area = (rel[..., 0] * rel[..., 1]).abs_() + AREA_EPS  # (n, B, T)
        weight = ensemble_weights(area, dim=-1)
        # Query-major rows: a chunk of queries must be a contiguous block.
        return flat.contiguous(), terms.contiguous(), weight.contiguous()

    def forward(self, inp: torch.Tensor, coord: torch.Tensor,
                cell: torch.Tensor | None = None) -> torch.Tensor:
        """Encode ``inp`` (B, 3, h, w) and decode ``coord``/``cell`` (B, Q, 2) -> (B, Q, 3)."""
        self.gen_feat(inp)
        return self.query_rgb(coord, cell)


def _filled(rows: Sequence[Sequence[float]], like: torch.Tensor) -> torch.Tensor:
    """Python numbers as a small tensor of ``like``'s dtype on its device, written by fill
    kernels: ``torch.tensor(rows, device='cuda')`` would copy them from the host and wait for
    the GPU's queue to drain, on every call (every training step)."""
    out = like.new_empty(len(rows), len(rows[0]))
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            out[i, j].fill_(value)
    return out


@torch.no_grad()
def batched_predict(model: nn.Module, inp: torch.Tensor, coord: torch.Tensor,
                    cell: torch.Tensor | None, bsize: int, **query_kwargs: Any) -> torch.Tensor:
    """Encode once, then decode the queries in chunks of ``bsize`` along Q (the official test
    and demo helper). Chunking does not change the result: every query is independent.

    Args:
        model: a ``LIIF`` or ``MetaSR``.
        inp: (B, 3, h, w) normalised input.
        coord: (B, Q, 2) query coordinates.
        cell: (B, Q, 2) cell sizes, or None for a model without cell decoding.
        bsize: queries per chunk.
        query_kwargs: passed to ``query_rgb`` (e.g. ``fast=False``).

    Returns:
        (B, Q, 3).
    """
    if bsize < 1:
        raise ValueError(f'bsize must be a positive number of queries, got {bsize}')
    model.gen_feat(inp)
    preds = []
    for start in range(0, coord.shape[1], bsize):
        stop = start + bsize
        chunk_cell = None if cell is None else cell[:, start:stop]
        preds.append(model.query_rgb(coord[:, start:stop], chunk_cell, **query_kwargs))
    return torch.cat(preds, dim=1)
