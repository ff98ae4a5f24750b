"""Registry of model parts (vision encoders, language models), in timm's register/list/create style."""
from __future__ import annotations

from typing import Any, Callable

import torch.nn as nn

KINDS = ("vision", "language", "text")
_REGISTRY: dict[str, dict[str, Callable[..., nn.Module]]] = {kind: {} for kind in KINDS}


def register_part(kind: str, name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: make `factory(**kwargs) -> nn.Module` creatable as `create_part(kind, name)`."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown part kind {kind!r}; kinds: {', '.join(KINDS)}")

    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY[kind]:
            raise ValueError(f"{kind} part {name!r} is registered twice")
        _REGISTRY[kind][name] = factory
        return factory

    return decorate


def list_parts(kind: str) -> list[str]:
    """Names registered for a kind, sorted."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown part kind {kind!r}; kinds: {', '.join(KINDS)}")
    return sorted(_REGISTRY[kind])


def create_part(kind: str, name: str, **kwargs: Any) -> nn.Module:
    """Build the registered part `name` of `kind` with the given arguments."""
    names = list_parts(kind)
    if name not in _REGISTRY[kind]:
        raise ValueError(f"unknown {kind} part {name!r}; registered: {', '.join(names)}")
    return _REGISTRY[kind][name](**kwargs)
