"""Model names -> constructors, for the official ``{'name': ..., 'args': ...}`` specs.

Every class can also be built directly; the registry exists because checkpoints and YAML configs
name their models with these strings.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

from torch import nn

from .encoders import RDN, edsr, edsr_baseline
from .liif import LIIF
from .metasr import MetaSR
from .mlp import MLP

MODELS: dict[str, Callable[..., nn.Module]] = {
    'liif': LIIF,
    'metasr': MetaSR,
    'mlp': MLP,
    'edsr-baseline': edsr_baseline,
    'edsr': edsr,
    'rdn': RDN,
}


class ModelSpecError(ValueError):
    """A model spec names an unknown model or passes arguments its constructor does not take."""


def make_model(spec: dict[str, Any], **extra_args: Any) -> nn.Module:
    """Build a model from an official spec.

    Args:
        spec: ``{'name': 'liif', 'args': {...}}``; ``args`` may be missing.
        extra_args: arguments added to ``spec['args']`` (how ``LIIF`` passes the MLP's in_dim).

    Returns:
        the module, with ``spec`` (a copy of the given one) attached as ``model.spec``.

    Example:
        >>> model = make_model({'name': 'liif', 'args': {
        ...     'encoder_spec': {'name': 'edsr-baseline', 'args': {'no_upsampling': True}},
        ...     'imnet_spec': {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [256] * 4}}}})
    """
    if not isinstance(spec, dict) or 'name' not in spec:
        raise ModelSpecError(f"a model spec is a dict {{'name': ..., 'args': ...}}, got {spec!r}")
    name = spec['name']
    if name not in MODELS:
        raise ModelSpecError(f"unknown model name {name!r}; known names: {', '.join(MODELS)}")
    args = dict(spec.get('args') or {}, **extra_args)
    try:
        model = MODELS[name](**args)
    except TypeError as e:
        raise ModelSpecError(f'model {name!r} cannot be built from args {sorted(args)}: {e}') from e
    model.spec = copy.deepcopy({'name': name, 'args': dict(spec.get('args') or {})})
    return model
