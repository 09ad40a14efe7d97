"""Binding launch arguments to a kernel, shared by every backend: ``bind(kernel, args)``
checks names, ranks, dtypes, devices, static and symbolic dims and evaluates the grid, through
the kernel's launch signature (codegen/signature.py), the same one an artifact entry stores."""
from __future__ import annotations

from codegen.signature import Launch, LaunchError, Signature

__all__ = ["Launch", "LaunchError", "bind", "eval_grid"]


def bind(kernel, args: dict) -> Launch:
    return Signature.of(kernel).bind(args)


def eval_grid(kernel, dims: dict, scalars: dict) -> tuple:
    return Signature.of(kernel).eval_grid(dims, scalars)
