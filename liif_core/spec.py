"""The official model spec, ``{'name': ..., 'args': {...}}``: one constructor call.

Checkpoints and YAML configs name their models with these dicts; ``build_from_spec`` turns one
into a module, given the table of names it may use (all models for ``make_model``, the encoders
for a LIIF's ``encoder_spec``).
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Mapping

from torch import nn


class ModelSpecError(ValueError):
    """A model spec names an unknown model or passes arguments its constructor does not take."""


def build_from_spec(spec: dict[str, Any], constructors: Mapping[str, Callable[..., nn.Module]],
                    **extra_args: Any) -> nn.Module:
    """Call the constructor ``spec['name']`` names with ``spec['args']`` and ``extra_args``.

    Args:
        spec: ``{'name': ..., 'args': {...}}``; ``args`` may be missing.
        constructors: the names this spec may use.
        extra_args: arguments added to ``spec['args']`` (how ``LIIF`` passes the MLP's in_dim).

    Returns:
        the module, with ``spec`` (a copy of the given one) attached as ``model.spec``.
    """
    if not isinstance(spec, dict) or 'name' not in spec:
        raise ModelSpecError(f"a model spec is a dict {{'name': ..., 'args': ...}}, got {spec!r}")
    name = spec['name']
    if name not in constructors:
        raise ModelSpecError(f"unknown model name {name!r}; known names: {', '.join(constructors)}")
    args = dict(spec.get('args') or {}, **extra_args)
    try:
        model = constructors[name](**args)
    except TypeError as e:
        raise ModelSpecError(f'model {name!r} cannot be built from args {sorted(args)}: {e}') from e
    model.spec = copy.deepcopy({'name': name, 'args': dict(spec.get('args') or {})})
    return model
