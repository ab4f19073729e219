"""Models by name, as timm names them: ``create_model('rdn_liif')`` (an architecture, fresh),
``create_model('edsr_baseline_liif.standin_long')`` (an architecture with weights, named
``architecture.tag``), ``list_models()`` and ``list_models(pretrained=True)``.

Each architecture is a small function that only writes the official spec and builds it, so a
model made here is the one ``make_model`` makes from a checkpoint or a YAML config, with the
same ``model.spec``. The weights are those that ship with the package (``.standin``,
``.standin_long``, the default) and the official released checkpoints (``.div2k``, once
``liif data fetch`` has them); ``liif upscale --weights`` takes the same names. A checkpoint
file loads with ``load_model``, or here with ``pretrained=PATH``.

Book: chapter 6 ("Encoders") builds the two encoders; chapter 10 the MetaSR baseline.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Callable

from torch import nn

from .checkpoint import CheckpointError, load_model
from .pretrained import OFFICIAL, PRETRAINED, resolve_model
from .registry import make_model

# The paper's decoder: 4 hidden layers of 256 units, RGB out (in_dim is derived by LIIF).
PAPER_IMNET_SPEC = {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [256, 256, 256, 256]}}


def liif_spec(encoder: str, **flags: bool) -> dict[str, Any]:
    """The official spec of a LIIF with the paper's decoder on the encoder ``encoder`` (a
    registry name such as 'edsr-baseline'), without its upsampling tail.

    ``flags`` (local_ensemble, feat_unfold, cell_decode) appear only when given, as in the
    official configs, so the default spec equals the one the released checkpoints carry.
    """
    return {'name': 'liif', 'args': {
        'encoder_spec': {'name': encoder, 'args': {'no_upsampling': True}},
        'imnet_spec': copy.deepcopy(PAPER_IMNET_SPEC), **flags}}


def metasr_spec(encoder: str) -> dict[str, Any]:
    """The official spec of MetaSR on the encoder ``encoder``."""
    return {'name': 'metasr', 'args': {
        'encoder_spec': {'name': encoder, 'args': {'no_upsampling': True}}}}


def edsr_baseline_liif(**flags: bool) -> nn.Module:
    """EDSR-baseline-LIIF, the paper's main model (1.57 M parameters); ``flags`` switch off
    local_ensemble, feat_unfold or cell_decode (the paper's ablations)."""
    return make_model(liif_spec('edsr-baseline', **flags))


def rdn_liif(**flags: bool) -> nn.Module:
    """RDN-LIIF, the paper's large model (22.3 M parameters)."""
    return make_model(liif_spec('rdn', **flags))


def edsr_baseline_metasr() -> nn.Module:
    """MetaSR on EDSR-baseline, the paper's baseline."""
    return make_model(metasr_spec('edsr-baseline'))


def rdn_metasr() -> nn.Module:
    """MetaSR on RDN."""
    return make_model(metasr_spec('rdn'))


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    'edsr_baseline_liif': edsr_baseline_liif,
    'rdn_liif': rdn_liif,
    'edsr_baseline_metasr': edsr_baseline_metasr,
    'rdn_metasr': rdn_metasr,
}


def list_models(pretrained: bool = False) -> list[str]:
    """The architecture names ``create_model`` takes; with ``pretrained``, the names of the
    weights (``architecture.tag``) instead."""
    return sorted([*PRETRAINED, *OFFICIAL] if pretrained else ARCHITECTURES)


def weights_name(architecture: str, tag: str) -> str:
    """The weights of ``architecture`` under ``tag``: 'edsr_baseline_liif.standin'. A tag's
    old spelling ('standin-long') is read as the new one."""
    return f"{architecture}.{tag.replace('-', '_')}"


def create_model(name: str, pretrained: str | os.PathLike | None = None,
                 **kwargs: Any) -> nn.Module:
    """An architecture by name, fresh or with weights.

    Args:
        name: one of ``list_models()``, or of ``list_models(pretrained=True)`` for the
            architecture with those weights.
        pretrained: None (fresh weights, unless ``name`` has a tag), a tag ('standin_long',
            'div2k'), or a checkpoint file of this architecture (e.g. the official
            ``rdn-liif.pth``).
        kwargs: the architecture's switches, e.g. ``cell_decode=False``.

    Returns:
        the model; with weights, in eval mode, on the CPU.

    Example:
        >>> model = create_model('edsr_baseline_liif.standin_long')
        >>> same = create_model('edsr_baseline_liif', pretrained='standin_long')
        >>> fresh = create_model('rdn_liif', cell_decode=False)
    """
    architecture, _, tag = name.partition('.')
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: "
                         f"{', '.join(list_models())}")
    if tag:
        if pretrained is not None:
            raise ValueError(f'{name} already names its weights; pass pretrained=None')
        pretrained = tag
    model = ARCHITECTURES[architecture](**kwargs)
    if pretrained is None:
        return model
    # A file, or a name that reads as one (a missing 'w.pt' is reported as a missing file).
    if Path(pretrained).exists() or Path(pretrained).suffix in ('.pth', '.pt', '.ckpt'):
        loaded = load_model(pretrained, map_location='cpu')
    elif weights_name(architecture, str(pretrained)) in list_models(pretrained=True):
        loaded = resolve_model(weights_name(architecture, str(pretrained)))
    else:
        known = [n for n in list_models(pretrained=True) if n.startswith(f'{architecture}.')]
        raise ValueError(f'no weights {pretrained!r} for {architecture}; known: '
                         f"{', '.join(known) or 'none'} (or pass a .pth checkpoint)")
    if loaded.spec != model.spec:
        raise CheckpointError(f'{pretrained}: the weights are a {loaded.spec!r}, not '
                              f'{architecture} with {kwargs or "its defaults"}')
    return loaded
