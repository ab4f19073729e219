"""Model names -> constructors, for the official ``{'name': ..., 'args': ...}`` specs.

Every class can also be built directly; the registry exists because checkpoints and YAML configs
name their models with these strings.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from .encoders import ENCODERS
from .liif import LIIF
from .metasr import MetaSR
from .mlp import MLP
from .spec import build_from_spec

MODELS: dict[str, Callable[..., nn.Module]] = {'liif': LIIF, 'metasr': MetaSR, 'mlp': MLP,
                                               **ENCODERS}


def make_model(spec: dict[str, Any], **extra_args: Any) -> nn.Module:
    """Build a model from an official spec.

    Args:
        spec: ``{'name': 'liif', 'args': {...}}``; ``args`` may be missing.
        extra_args: arguments added to ``spec['args']``.

    Returns:
        the module, with ``spec`` (a copy of the given one) attached as ``model.spec``.

    Example:
        >>> model = make_model({'name': 'liif', 'args': {
        ...     'encoder_spec': {'name': 'edsr-baseline', 'args': {'no_upsampling': True}},
        ...     'imnet_spec': {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [256] * 4}}}})
    """
    return build_from_spec(spec, MODELS, **extra_args)
