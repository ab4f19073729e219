"""Encoders: image -> feature map of latent codes (B, 3, h, w) -> (B, C, h, w).

EDSR-baseline (Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution",
CVPR-W 2017) and RDN (Zhang et al., "Residual Dense Network for Image Super-Resolution", CVPR
2018), with the official LIIF argument and state-dict names. LIIF uses both with
``no_upsampling=True``: the feature map stays at input resolution.

Book: chapter 6, "Encoders and the full model".
"""
from __future__ import annotations

import math

import torch
from torch import nn

# RGB mean of DIV2K. The official EDSR builds mean-shift layers from it but never calls them
# (normalisation happens outside, (x - 0.5) / 0.5); they are kept so checkpoints load strictly.
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, padding=1)


class MeanShift(nn.Conv2d):
    """A frozen 1x1 convolution adding sign * rgb_range * mean (present only for state dicts)."""

    def __init__(self, rgb_range: float, sign: int):
        super().__init__(3, 3, kernel_size=1)
        self.weight.data = torch.eye(3).view(3, 3, 1, 1)
        self.bias.data = sign * rgb_range * torch.tensor(DIV2K_RGB_MEAN)
        for p in self.parameters():
            p.requires_grad = False


class ResBlock(nn.Module):
    """conv -> ReLU -> conv, scaled by ``res_scale`` and added to the input."""

    def __init__(self, n_feats: int, res_scale: float):
        super().__init__()
        self.body = nn.Sequential(conv3x3(n_feats, n_feats), nn.ReLU(True),
                                  conv3x3(n_feats, n_feats))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mul(self.res_scale) + x


class Upsampler(nn.Sequential):
    """Sub-pixel upsampling: log2(scale) x [conv C->4C, PixelShuffle(2)], or one x3 step."""

    def __init__(self, scale: int, n_feats: int):
        layers: list[nn.Module] = []
        if scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [conv3x3(n_feats, 4 * n_feats), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [conv3x3(n_feats, 9 * n_feats), nn.PixelShuffle(3)]
        else:
            raise ValueError(f'upsampling scale must be 3 or a power of 2, got {scale}')
        super().__init__(*layers)


class EDSR(nn.Module):
    """EDSR: head conv, residual blocks, body conv with a long skip, optional upsampling tail.

    The arguments have the official names; the defaults are the "edsr-baseline" factory's.

    Args:
        n_resblocks: residual blocks in the body.
        n_feats: channels of every block, and of the feature map when ``no_upsampling``.
        res_scale: scale of each residual branch.
        scale: upsampling factor of the tail (ignored with ``no_upsampling``).
        no_upsampling: return the (B, n_feats, h, w) feature map instead of an RGB image.
        rgb_range: value range for the unused mean-shift layers.
    """

    def __init__(self, n_resblocks: int = 16, n_feats: int = 64, res_scale: float = 1,
                 scale: int = 2, no_upsampling: bool = False, rgb_range: float = 1):
        super().__init__()
        self.sub_mean = MeanShift(rgb_range, sign=-1)
        self.add_mean = MeanShift(rgb_range, sign=1)
        self.head = nn.Sequential(conv3x3(3, n_feats))
        self.body = nn.Sequential(*[ResBlock(n_feats, res_scale) for _ in range(n_resblocks)],
                                  conv3x3(n_feats, n_feats))
        self.no_upsampling = no_upsampling
        if no_upsampling:
            self.out_dim = n_feats
        else:
            self.tail = nn.Sequential(Upsampler(scale, n_feats), conv3x3(n_feats, 3))
            self.out_dim = 3
        # Every 3x3 conv widens the receptive field by one pixel each side: exact tiling of the
        # encoder needs this many pixels of context around a tile.
        self.receptive_radius = 2 + 2 * n_resblocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) -> (B, n_feats, h, w), or (B, 3, h*scale, w*scale) with upsampling."""
        x = self.head(x)
        x = self.body(x) + x
        if self.no_upsampling:
            return x
        return self.tail(x)


def edsr_baseline(n_resblocks: int = 16, n_feats: int = 64, res_scale: float = 1,
                  scale: int = 2, no_upsampling: bool = False, rgb_range: float = 1) -> EDSR:
    """The small EDSR used by LIIF's "EDSR-baseline" models (1.22 M parameters)."""
    return EDSR(n_resblocks, n_feats, res_scale, scale, no_upsampling, rgb_range)


def edsr(n_resblocks: int = 32, n_feats: int = 256, res_scale: float = 0.1,
         scale: int = 2, no_upsampling: bool = False, rgb_range: float = 1) -> EDSR:
    """The full-size EDSR (registered by the official code; no LIIF config uses it)."""
    return EDSR(n_resblocks, n_feats, res_scale, scale, no_upsampling, rgb_range)


class DenseLayer(nn.Module):
    """conv -> ReLU whose output is concatenated to its input: C -> C + growth channels."""

    def __init__(self, in_ch: int, growth: int, k_size: int = 3):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_ch, growth, k_size, padding=(k_size - 1) // 2),
                                  nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.conv(x)), 1)


class RDB(nn.Module):
    """Residual dense block: ``n_layers`` dense layers, 1x1 local fusion, local residual."""

    def __init__(self, channels: int, growth: int, n_layers: int, k_size: int = 3):
        super().__init__()
        self.convs = nn.Sequential(*[DenseLayer(channels + c * growth, growth, k_size)
                                     for c in range(n_layers)])
        self.LFF = nn.Conv2d(channels + n_layers * growth, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LFF(self.convs(x)) + x


# RDNconfig -> (D blocks, C layers per block, G growth); LIIF uses 'B'.
RDN_CONFIGS = {'A': (20, 6, 32), 'B': (16, 8, 64)}


class RDN(nn.Module):
    """RDN: shallow features, D residual dense blocks, global feature fusion, global residual.

    The arguments have the official names.

    Args:
        G0: channels between blocks, and of the feature map when ``no_upsampling``.
        RDNkSize: kernel size of the 3x3 convolutions.
        RDNconfig: 'A' (20 blocks, 6 layers, growth 32) or 'B' (16, 8, 64).
        scale: upsampling factor of the tail (2, 3 or 4; ignored with ``no_upsampling``).
        no_upsampling: return the (B, G0, h, w) feature map instead of an RGB image.
    """

    def __init__(self, G0: int = 64, RDNkSize: int = 3, RDNconfig: str = 'B', scale: int = 2,
                 no_upsampling: bool = False):
        super().__init__()
        if RDNconfig not in RDN_CONFIGS:
            raise ValueError(f"RDNconfig must be one of {sorted(RDN_CONFIGS)}, got {RDNconfig!r}")
        n_blocks, n_layers, growth = RDN_CONFIGS[RDNconfig]
        k, pad = RDNkSize, (RDNkSize - 1) // 2
        self.SFENet1 = nn.Conv2d(3, G0, k, padding=pad)
        self.SFENet2 = nn.Conv2d(G0, G0, k, padding=pad)
        self.RDBs = nn.ModuleList([RDB(G0, growth, n_layers, k) for _ in range(n_blocks)])
        self.GFF = nn.Sequential(nn.Conv2d(n_blocks * G0, G0, 1), nn.Conv2d(G0, G0, k, padding=pad))
        self.no_upsampling = no_upsampling
        if no_upsampling:
            self.out_dim = G0
        else:
            if scale in (2, 3):
                up = [nn.Conv2d(G0, growth * scale * scale, k, padding=pad), nn.PixelShuffle(scale)]
            elif scale == 4:
                up = [nn.Conv2d(G0, growth * 4, k, padding=pad), nn.PixelShuffle(2),
                      nn.Conv2d(growth, growth * 4, k, padding=pad), nn.PixelShuffle(2)]
            else:
                raise ValueError(f'RDN upsampling scale must be 2, 3 or 4, got {scale}')
            self.UPNet = nn.Sequential(*up, nn.Conv2d(growth, 3, k, padding=pad))
            self.out_dim = 3
        # SFENet1, SFENet2, every dense layer and GFF.1 each add pad pixels of context.
        self.receptive_radius = pad * (3 + n_blocks * n_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) -> (B, G0, h, w), or (B, 3, h*scale, w*scale) with upsampling."""
        shallow = self.SFENet1(x)
        x = self.SFENet2(shallow)
        block_outputs = []
        for block in self.RDBs:
            x = block(x)
            block_outputs.append(x)
        x = self.GFF(torch.cat(block_outputs, 1)) + shallow  # (B, G0, h, w)
        if self.no_upsampling:
            return x
        return self.UPNet(x)


# The encoders by their names in the official specs.
ENCODERS = {'edsr-baseline': edsr_baseline, 'edsr': edsr, 'rdn': RDN}
