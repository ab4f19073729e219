"""The decoding MLP shared by every position of the image (the paper's f_theta)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """Linear, ReLU, ..., Linear: ``len(hidden_list) + 1`` layers, no output activation.

    State-dict keys are ``layers.{0,2,4,...}.{weight,bias}`` (the ReLUs sit at the odd indices),
    as in the official checkpoints.

    Args:
        in_dim: input features per row. ``LIIF`` derives it from its flags.
        out_dim: output features per row (3 for RGB).
        hidden_list: widths of the hidden layers, e.g. [256, 256, 256, 256].
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_list: Sequence[int]):
        super().__init__()
        layers: list[nn.Module] = []
        last = in_dim
        for hidden in hidden_list:
            layers += [nn.Linear(last, hidden), nn.ReLU()]
            last = hidden
        layers.append(nn.Linear(last, out_dim))
        self.layers = nn.Sequential(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim

    @property
    def linears(self) -> list[nn.Linear]:
        """The Linear layers in order (the ReLUs between them are implied)."""
        return [m for m in self.layers if isinstance(m, nn.Linear)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_dim) -> (..., out_dim); any leading shape is flattened to rows."""
        lead = x.shape[:-1]
        x = self.layers(x.reshape(-1, x.shape[-1]))  # (rows, out_dim)
        return x.view(*lead, -1)
