"""Binding launch arguments to a kernel's signature, shared by every backend.

Checks what the caller passes (names, ranks, dtypes, static dims, consistent symbolic dims)
and evaluates the launch grid, so each backend receives validated, uniform inputs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tilec.ir import dtypes as D
from tilec.ir.core import Kernel


class LaunchError(ValueError):
    """Arguments that do not fit the kernel; the message names the argument."""


@dataclass
class Launch:
    tensors: dict          # name -> array/tensor as given
    scalars: dict          # name -> python scalar
    dims: dict             # symbolic dim -> int
    grid: tuple


def _dtype_of(x) -> str:
    if isinstance(x, np.ndarray):
        return D.from_numpy(x.dtype)
    try:
        import torch
        if isinstance(x, torch.Tensor):
            return D.from_torch(x.dtype)
    except ImportError:
        pass
    raise LaunchError(f"expected an array or tensor, got {type(x).__name__}")


def bind(kernel: Kernel, args: dict) -> Launch:
    names = set(kernel.param_order)
    extra = sorted(set(args) - names)
    if extra:
        raise LaunchError(f"{kernel.name}: unexpected argument(s) {', '.join(extra)}; "
                          f"takes {', '.join(kernel.param_order)}")
    missing = [n for n in kernel.param_order if n not in args]
    if missing:
        raise LaunchError(f"{kernel.name}: missing argument(s) {', '.join(missing)}")
    dims: dict[str, int] = {}
    tensors = {}
    for tp in kernel.tensors:
        x = args[tp.name]
        dt = _dtype_of(x)
        tt = tp.type
        if dt != tt.dtype:
            raise LaunchError(f"{kernel.name}: '{tp.name}' has dtype {dt}, kernel expects {tt.dtype}")
        shape = tuple(x.shape)
        if len(shape) != tt.rank:
            raise LaunchError(f"{kernel.name}: '{tp.name}' has {len(shape)} dims, kernel expects {tt.rank} "
                              f"({tt})")
        for axis, (d, n) in enumerate(zip(tt.dims, shape)):
            if isinstance(d, int):
                if d != n:
                    raise LaunchError(f"{kernel.name}: '{tp.name}' dim {axis} is {n}, but this variant was "
                                      f"compiled for {d}")
            elif d in dims and dims[d] != n:
                raise LaunchError(f"{kernel.name}: dim '{d}' is {dims[d]} from one tensor and {n} from "
                                  f"'{tp.name}' dim {axis}")
            else:
                dims[d] = n
        tensors[tp.name] = x
    scalars = {}
    for v in kernel.scalars:
        x = args[v.hint]
        if not isinstance(x, (int, float, bool, np.generic)):
            raise LaunchError(f"{kernel.name}: scalar '{v.hint}' must be a number, got {type(x).__name__}")
        scalars[v.hint] = x
    grid = eval_grid(kernel, dims, scalars)
    return Launch(tensors, scalars, dims, grid)


_GRID_CACHE_SIZE = 4096


def eval_grid(kernel: Kernel, dims: dict, scalars: dict) -> tuple:
    """The launch grid for these dims/scalars; memoised per kernel, because a server launches
    the same kernel with the same few shapes over and over and the evaluation (numpy scalar
    semantics, op by op) costs more than a small GEMM's Python overhead."""
    key = (tuple(dims.items()), tuple(scalars.items()))
    cache = kernel.__dict__.setdefault("_grid_cache", {})
    hit = cache.get(key)
    if hit is None:
        if len(cache) >= _GRID_CACHE_SIZE:
            cache.clear()
        hit = cache[key] = _eval_grid(kernel, dims, scalars)
    return hit


def _eval_grid(kernel: Kernel, dims: dict, scalars: dict) -> tuple:
    from tilec.ir.semantics import scalar_eval
    env = {v: dims[n] for n, v in kernel.dims.items()}
    env.update({v: scalars[v.hint] for v in kernel.scalars})
    for op in kernel.grid.ops:
        if op.name == "yield":
            return tuple(max(0, int(env[v])) for v in op.operands)
        if op.name == "constant":
            env[op.result] = op.attrs["value"]
        else:
            env[op.result] = scalar_eval(op, [env[v] for v in op.operands])
    raise AssertionError("grid block has no yield")
