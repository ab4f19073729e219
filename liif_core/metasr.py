"""MetaSR (Hu et al., "Meta-SR: A Magnification-Arbitrary Network for Super-Resolution", CVPR
2019), as the LIIF paper's baseline: a meta-MLP predicts, from a query's position relative to its
code and the scale, the weights of a per-query linear map from the unfolded code to RGB.

Same checkpoint layout as the official ``metasr`` model. Book: chapter 10, "Ablations".
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .encoders import ENCODERS
from .mlp import MLP
from .sampling import EPS_SHIFT, clamp_inside, code_centres, sample_nearest, unfold_features
from .spec import build_from_spec


class MetaSR(nn.Module):
    """Meta-upscale module on top of an encoder.

    Args:
        encoder_spec: ``{'name': ..., 'args': ...}`` of the encoder (no upsampling).

    The meta-MLP ``imnet`` maps (rel_row, rel_col, 1/scale) to a (9C x 3) weight matrix:
    Linear(3, 256), ReLU, Linear(256, 9C * 3). Like ``LIIF``, ``gen_feat`` caches the feature
    map that ``query_rgb`` reads.
    """

    def __init__(self, encoder_spec: dict[str, Any]):
        super().__init__()
        self.encoder = build_from_spec(encoder_spec, ENCODERS)
        code_dim = self.encoder.out_dim * 9  # always 3x3-unfolded
        self.imnet = MLP(in_dim=3, out_dim=code_dim * 3, hidden_list=[256])
        self.spec = {'name': 'metasr', 'args': {'encoder_spec': encoder_spec}}
        self.feat: torch.Tensor | None = None

    def gen_feat(self, inp: torch.Tensor) -> torch.Tensor:
        """Encode ``inp`` (B, 3, h, w) and cache the (B, C, h, w) feature map."""
        self.feat = self.encoder(inp)
        return self.feat

    def query_rgb(self, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """RGB at ``coord`` (B, Q, 2) with pixel sizes ``cell`` (B, Q, 2) -> (B, Q, 3)."""
        if self.feat is None:
            raise RuntimeError('query_rgb needs a feature map: call gen_feat(inp) first')
        return self.decode(self.feat, coord, cell)

    def decode(self, feat: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """Stateless ``query_rgb`` from the given feature map (B, C, h, w)."""
        B, C, h, w = feat.shape
        Q = coord.shape[1]
        codes = unfold_features(feat)  # (B, 9C, h, w)
        # MetaSR positions are pixel top-left corners: centres moved up and left by half a code.
        corners = code_centres(1, h, w, feat.device).clone()  # (1, 2, h, w)
        corners[:, 0] -= (2 / h) / 2
        corners[:, 1] -= (2 / w) / 2
        corners = corners.expand(B, 2, h, w)
        # Each query moves to its own pixel's top-left corner too.
        query = coord.clone()
        query[:, :, 0] -= cell[:, :, 0] / 2
        query[:, :, 1] -= cell[:, :, 1] / 2
        lookup = clamp_inside(query + EPS_SHIFT)
        code = sample_nearest(codes, lookup)  # (B, Q, 9C)
        corner = sample_nearest(corners, lookup)  # (B, Q, 2)
        rel = query - corner
        rel[:, :, 0] *= h / 2  # in code-pixel units
        rel[:, :, 1] *= w / 2
        inv_scale = cell[:, :, 0] * (h / 2)  # only the row component, as in the official model
        meta_inp = torch.cat([rel, inv_scale.unsqueeze(-1)], dim=-1)  # (B, Q, 3)
        weights = self.imnet(meta_inp.view(B * Q, -1)).view(B * Q, codes.shape[1], 3)
        pred = torch.bmm(code.contiguous().view(B * Q, 1, -1), weights)  # (B*Q, 1, 3)
        return pred.view(B, Q, 3)

    def forward(self, inp: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        self.gen_feat(inp)
        return self.query_rgb(coord, cell)
