"""LIIF as ONNX graphs: any checkpoint, run by any ONNX runtime (a web page's included).

The model is cut where the fast path cuts it (``liif.py``): everything that depends on the
image alone runs once, everything that depends on a query runs per query.

* ``encoder.onnx``: ``image`` (1, 3, h, w) float32 RGB in [0, 1], any h and w ->
  ``table`` (h, w, D): the input normalisation (``data_norm['inp']``), the encoder and
  ``LIIF.project_codes``, the first decoder layer applied to every code's neighbourhood, bias
  included. Row (i, j) belongs to the code of input pixel (i, j).
* ``decoder.onnx``: ``table`` (h, w, D), ``coord`` (Q, 2) and ``cell`` (Q, 2) -> ``rgb`` (Q, 3)
  in [0, 1]. Coordinates are (row, col) in the frame of ``make_coord`` (pixel centres of the
  whole output at -1 + (2i + 1) / H); outside [-1, 1] they read the border codes. ``cell`` is
  (2/H, 2/W) of the output grid, or any other cell; models without cell decoding ignore it.
  The result is what ``render(model, lr, ..., window=...)`` returns for the same queries.
* ``decoder_no_ensemble.onnx``: the same decoder with the local ensemble off (nearest code only).
* ``model.json``: what the graphs are, with the sha256 of each (``MODEL_JSON_FORMAT``).

In the decoder graph the nearest code is plain arithmetic: the index that ``grid_sample`` (mode
nearest, ``align_corners=False``) computes, round-half-to-even of ((q + 1) * n / 2 - 0.5), and
the code centre as ``make_coord`` makes it. The few scalars that the library forms in Python
double (the ensemble's shifts, the centres' step and start) are formed in double in the graph
too, from the table's size, so that the shifted queries are the same floats and ties break the
same way.

Book: chapter 7's live viewer runs these graphs in the page.
"""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_write
from .kernels import single_threaded
from .liif import LIIF
from .pretrained import DEFAULT_MODEL, resolve_model
from .render import MODEL_DATA_NORM, data_norm_of, norm_tensors
from .sampling import AREA_EPS, ENSEMBLE_SHIFTS, EPS_SHIFT, clamp_inside, ensemble_weights

# model.json's layout; raised whenever a field changes meaning or goes away.
MODEL_JSON_FORMAT = 1
# Opset 17: every op used here exists there, and runtimes from 2022 on (onnxruntime >= 1.12,
# onnxruntime-web included) run it.
OPSET = 17
GRAPHS = {'encoder': 'encoder.onnx', 'decoder': 'decoder.onnx',
          'decoder_no_ensemble': 'decoder_no_ensemble.onnx'}
# Example sizes the graphs are traced at; every one of them is dynamic in the files. None is 1
# or 2, which the tracer could take for a broadcast or a fixed (row, col) axis.
TRACE_IMAGE = (5, 7)
TRACE_QUERIES = 11


class EncoderGraph(nn.Module):
    """``image`` (1, 3, h, w) in [0, 1] -> ``table`` (h, w, D), normalisation included."""

    def __init__(self, model: LIIF, data_norm: dict | None):
        super().__init__()
        self.model = model
        inp_sub, inp_div, _, _ = norm_tensors(data_norm, 'cpu')  # (1, 3 or 1, 1, 1)
        self.register_buffer('inp_sub', inp_sub)
        self.register_buffer('inp_div', inp_div)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        feat = self.model.encoder((image - self.inp_sub) / self.inp_div)  # (1, C, h, w)
        proj = self.model.project_codes(feat)  # (h*w, D), rows ordered (i, j)
        return proj.view(feat.shape[2], feat.shape[3], -1)  # (h, w, D)


class DecoderGraph(nn.Module):
    """``table`` (h, w, D), ``coord`` and ``cell`` (Q, 2) -> ``rgb`` (Q, 3) in [0, 1].

    The fast path's ``_lookup_codes`` and MLP for one image, without the chunking: the queries'
    codes, their rank-2 (rel) or rank-4 (rel, cell) term of the first layer, the other layers,
    the ensemble's area weights, then the de-normalisation and the clamp of ``predict``.
    """

    def __init__(self, model: LIIF, data_norm: dict | None, local_ensemble: bool):
        super().__init__()
        first, *others = model.imnet.linears
        self.layers = nn.ModuleList(others)
        # The first layer's rel and cell columns, (2 or 4, D); its code columns and bias are in
        # the table.
        self.register_buffer('w_query', first.weight[:, model.code_dim:].t().detach().clone())
        self.cell_decode = model.cell_decode
        # (T, 2) of -1, 0 or +1: towards which neighbour each member looks.
        self.register_buffer('shifts', torch.tensor(
            ENSEMBLE_SHIFTS if local_ensemble else ((0, 0),), dtype=torch.float64))
        self.members = self.shifts.shape[0]  # T, fixed in the graph
        self.eps_shift = EPS_SHIFT if local_ensemble else 0.0
        _, _, gt_sub, gt_div = norm_tensors(data_norm, 'cpu')  # (1, 1, 3 or 1)
        self.register_buffer('gt_sub', gt_sub[0])
        self.register_buffer('gt_div', gt_div[0])

    def forward(self, table: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor
                ) -> torch.Tensor:
        Q, T = coord.shape[0], self.members
        size = torch._shape_as_tensor(table)[:2]  # (2,) int64: h, w, a Shape op in the graph
        n = size.to(torch.float64)
        # The shifts of ensemble_offsets, d * (2 / n / 2) + eps, in double and rounded once.
        offsets = (self.shifts * (2 / n / 2) + self.eps_shift).to(torch.float32)  # (T, 2)
        shifted = clamp_inside(coord.unsqueeze(1) + offsets)  # (Q, T, 2)
        # grid_sample's nearest index. A clamped query stays several float32 steps inside the
        # first and last codes, so the bounds never bite: they only keep every gather in the table.
        index = ((shifted + 1) * (n / 2).to(torch.float32) - 0.5).round()  # (Q, T, 2)
        index = torch.minimum(index.clamp(min=0), (n - 1).to(torch.float32))
        # make_coord's centre of that code: fl32(2r) * i + fl32(-1 + r), r = 1 / n in double.
        r = 2 / (2 * n)
        centre = index * (2 * r).to(torch.float32) + (-1 + r).to(torch.float32)  # (Q, T, 2)
        scale = n.to(torch.float32)  # (2,): one code cell has length 2 in these units
        rel = (coord.unsqueeze(1) - centre) * scale  # (Q, T, 2)
        rows, cols = index.to(torch.int64).unbind(-1)  # (Q, T) each
        flat = rows * size[1] + cols  # (Q, T): the code's row of the table
        x = table.reshape(-1, table.shape[-1]).index_select(0, flat.view(-1))  # (Q*T, D)
        # Without cell decoding the cell still enters the graph (as zero columns) so that it
        # stays an input: every decoder file takes the same three inputs.
        rel_cell = (cell * scale) if self.cell_decode else cell[:, :0]  # (Q, 2 or 0)
        terms = torch.cat((rel, rel_cell.unsqueeze(1).expand(Q, T, -1)), dim=-1)  # (Q, T, 2|4)
        x = torch.addmm(x, terms.view(Q * T, -1), self.w_query).relu()  # (Q*T, D)
        for layer in self.layers[:-1]:
            x = layer(x).relu()
        pred = self.layers[-1](x).view(Q, T, -1)  # (Q, T, 3)
        if T == 1:
            out = pred[:, 0]  # one member, weight exactly 1
        else:
            area = (rel[..., 0] * rel[..., 1]).abs() + AREA_EPS  # (Q, T)
            out = (pred * ensemble_weights(area, dim=-1).unsqueeze(-1)).sum(dim=1)  # (Q, 3)
        return (out * self.gt_div + self.gt_sub).clamp(0, 1)


def _check_exportable(model: nn.Module) -> LIIF:
    if not isinstance(model, LIIF):
        raise ValueError(f'only LIIF models export to ONNX, not {type(model).__name__}')
    if model.imnet is None:
        raise ValueError('this LIIF has no decoder (a fixed-scale baseline): nothing to export')
    return model


def _arch(model: LIIF) -> str:
    """'edsr-baseline-liif': the encoder's registry name and the model's."""
    return f"{model.spec['args']['encoder_spec']['name']}-{model.spec['name']}"


def _onnx_bytes(graph: nn.Module, args: tuple[torch.Tensor, ...], inputs: dict[str, dict],
                outputs: dict[str, dict], opset: int) -> bytes:
    """One graph as ONNX bytes, with the axes named in ``inputs``/``outputs`` left dynamic."""
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # A TracerWarning means a size was frozen into the graph: an error, not a remark.
        warnings.simplefilter('error', torch.jit.TracerWarning)
        # The TorchScript exporter on purpose (dynamo=False): it needs onnx alone (the dynamo
        # exporter also onnxscript), and its graphs were checked in a browser's runtime.
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.onnx.export(graph, args, buffer, input_names=list(inputs),
                          output_names=list(outputs), dynamic_axes={**inputs, **outputs},
                          opset_version=opset, dynamo=False)
    return buffer.getvalue()


def _graphs(model: LIIF, data_norm: dict | None, opset: int) -> dict[str, bytes]:
    """The three graphs of ``model`` as ONNX bytes, by GRAPHS key."""
    D = model.imnet.linears[0].out_features
    h, w = TRACE_IMAGE
    image = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    table = torch.zeros(h, w, D)
    coord = torch.zeros(TRACE_QUERIES, 2)
    query_axes = {'coord': {0: 'Q'}, 'cell': {0: 'Q'}}
    decoder_io = ({'table': {0: 'h', 1: 'w'}, **query_axes}, {'rgb': {0: 'Q'}})
    return {
        'encoder': _onnx_bytes(EncoderGraph(model, data_norm), (image,),
                               {'image': {2: 'h', 3: 'w'}}, {'table': {0: 'h', 1: 'w'}}, opset),
        'decoder': _onnx_bytes(DecoderGraph(model, data_norm, model.local_ensemble),
                               (table, coord, coord), *decoder_io, opset),
        'decoder_no_ensemble': _onnx_bytes(DecoderGraph(model, data_norm, False),
                                           (table, coord, coord), *decoder_io, opset),
    }


def export_onnx(weights: str | os.PathLike | nn.Module | None, out_dir: str | os.PathLike, *,
                data_norm: dict | str | None = MODEL_DATA_NORM, name: str | None = None,
                opset: int = OPSET) -> dict[str, Any]:
    """Write a LIIF model as ``encoder.onnx``, ``decoder.onnx``, ``decoder_no_ensemble.onnx``
    and ``model.json`` into ``out_dir`` (created if needed; the four files are replaced).

    Args:
        weights: a model, a checkpoint file (shipped, official, or a training save), the name
            of shipped weights or of an official checkpoint fetched with ``liif data fetch``,
            or None for the default shipped weights (``resolve_weights`` says how names are
            found).
        out_dir: the folder to write.
        data_norm: the normalisation the model was trained with; default ``MODEL_DATA_NORM``:
            the one its checkpoint records (``data_norm_of``: checkpoints written by
            ``liif train`` record it; official ones do not and get the paper's).
        name: the model's name in model.json; default the weights' name or file stem.
        opset: the ONNX opset.

    Returns:
        model.json's content, plus ``paths``: the absolute path of each file written.

    The files depend only on the weights, ``data_norm``, ``name`` and the versions of torch and
    the opset: the same inputs give byte-identical files.

    Example:
        >>> info = export_onnx(None, 'models/')                  # doctest: +SKIP
        >>> info['sha256']['decoder.onnx']                       # doctest: +SKIP
    """
    if importlib.util.find_spec('onnx') is None:
        raise ModuleNotFoundError("ONNX export needs the onnx package (torch's exporter writes "
                                  "with it): pip install 'liif_core[onnx]'")
    if isinstance(weights, nn.Module):
        model = _check_exportable(weights)
        default_name = _arch(model)
    else:
        model = _check_exportable(resolve_model(weights))
        # A file is named by its stem; a name of weights ('edsr_baseline_liif.standin_long')
        # has a dot that is no suffix.
        default_name = (DEFAULT_MODEL if weights is None else
                        Path(weights).stem if Path(weights).is_file() else str(weights))
    if any(p.dtype != torch.float32 or p.device.type != 'cpu' for p in model.parameters()):
        model = copy.deepcopy(model).float().cpu()  # the graphs are float32, traced on the CPU
    if data_norm == MODEL_DATA_NORM:
        data_norm = data_norm_of(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with single_threaded():  # tracing runs tiny convolutions, which threads only slow down
        contents = _graphs(model, data_norm, opset)
    for key, data in contents.items():
        with atomic_write(out_dir / GRAPHS[key]) as f:
            f.write(data)
    info = {
        'format_version': MODEL_JSON_FORMAT,
        'name': name or default_name,
        'arch': _arch(model),
        'spec': model.spec,
        'D': model.imnet.linears[0].out_features,
        'local_ensemble': model.local_ensemble,
        'feat_unfold': model.feat_unfold,
        'cell_decode': model.cell_decode,
        'data_norm': data_norm,
        'files': dict(GRAPHS),
        # Shapes by graph: 'D' is D above, other names are dynamic axes (one name, one size).
        'io': {'encoder': {'image': [1, 3, 'h', 'w'], 'table': ['h', 'w', 'D']},
               'decoder': {'table': ['h', 'w', 'D'], 'coord': ['Q', 2], 'cell': ['Q', 2],
                           'rgb': ['Q', 3]}},
        'sha256': {GRAPHS[key]: hashlib.sha256(data).hexdigest()
                   for key, data in contents.items()},
        'torch': torch.__version__,
        'opset': opset,
    }
    with atomic_write(out_dir / 'model.json') as f:
        f.write((json.dumps(info, indent=1) + '\n').encode())
    paths = {key: str((out_dir / file).resolve()) for key, file in GRAPHS.items()}
    return {**info, 'paths': {**paths, 'model_json': str((out_dir / 'model.json').resolve())}}
