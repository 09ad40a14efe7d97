"""Hardware target descriptions and their registry.

    >>> from tilec import targets
    >>> t = targets.get("ascend910b2")
    >>> t.kind, t.backend, t.aic_cores
    ('ascend', 'ascend', 24)

Every numeric field of a target has a citation in ``target.sources[field_name]``; figures
that are not from a public document say ``estimate`` there (or ``measured``).
"""
from __future__ import annotations

from typing import Union

from .ascend import ASCEND910B2, ASCEND910B4, AscendTarget
from .cpu import CPU, CpuTarget
from .gpu import H100, H200, GpuTarget

Target = Union[AscendTarget, GpuTarget, CpuTarget]

__all__ = ["Target", "AscendTarget", "GpuTarget", "CpuTarget", "UnknownTargetError",
           "get", "names", "all_targets",
           "ASCEND910B2", "ASCEND910B4", "H100", "H200", "CPU"]

_REGISTRY: dict[str, Target] = {t.name: t for t in (ASCEND910B2, ASCEND910B4, H100, H200, CPU)}


class UnknownTargetError(KeyError):
    """Raised by :func:`get` for a name no target has; the message lists the known ones."""

    def __init__(self, name: object):
        self.name = name
        self.message = f"unknown target {name!r}; known targets: {', '.join(names())}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return self.message


def names() -> tuple[str, ...]:
    """Names of all known targets, sorted."""
    return tuple(sorted(_REGISTRY))


def all_targets() -> tuple[Target, ...]:
    return tuple(_REGISTRY[n] for n in names())


def get(name: str) -> Target:
    """The target called ``name`` (case-insensitive)."""
    key = name.strip().lower() if isinstance(name, str) else name
    try:
        return _REGISTRY[key]
    except (KeyError, TypeError):
        raise UnknownTargetError(name) from None
