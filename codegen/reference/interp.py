"""Interpret a specialised kernel with numpy, one program instance at a time.

This is the definition of the language's semantics (virtual padding included): a block read
past a tensor's edge yields ``other`` (default 0), a write past it does nothing.
"""
from __future__ import annotations

import itertools

import numpy as np

from codegen.launch import bind
from tilec.ir import dtypes as D
from tilec.ir.core import Block, Kernel

from tilec.ir import semantics as S


class BoundsClaimError(AssertionError):
    """An access the bounds analysis marked unmasked left the tensor: a compiler bug."""


def run(kernel: Kernel, args: dict) -> None:
    """Run ``kernel`` on numpy arrays (in place: stores write into the given arrays)."""
    launch = bind(kernel, args)
    for name, a in launch.tensors.items():
        if not isinstance(a, np.ndarray):
            raise TypeError(f"reference backend takes numpy arrays; '{name}' is {type(a).__name__}")
    base = {tp.value: launch.tensors[tp.name] for tp in kernel.tensors}
    base.update({v: S.as_type(launch.scalars[v.hint], v.type.dtype)[()] for v in kernel.scalars})
    base.update({v: np.int32(launch.dims[n]) for n, v in kernel.dims.items()})
    grid = launch.grid
    for pid in itertools.product(*(range(g) for g in grid)):
        env = dict(base)
        _exec(kernel.body, env, pid, grid)


def _index_arrays(op, env, nidx):
    tensor = env[op.operands[0]]
    kinds = op.attrs["index"]
    idx_vals = op.operands[1:1 + nidx]
    n_slices = sum(1 for k in kinds if k[0] == "slice")
    arrays, pos = [], 0
    for k, v in zip(kinds, idx_vals):
        x = env[v]
        if k[0] == "slice":
            shape = [1] * n_slices
            shape[pos] = k[1]
            arrays.append((int(x) + np.arange(k[1], dtype=np.int64)).reshape(shape))
            pos += 1
        else:
            arrays.append(np.asarray(x, dtype=np.int64))
    arrays = np.broadcast_arrays(*arrays)
    valid = np.ones(arrays[0].shape, dtype=bool)
    for axis, (a, need) in enumerate(zip(arrays, op.attrs["masked"])):
        inside = (a >= 0) & (a < tensor.shape[axis])
        if not need and not inside.all():
            raise BoundsClaimError(f"{op.name} at {op.loc}: dim {axis} marked unmasked but indexes "
                                   f"{int(a.min())}..{int(a.max())} of {tensor.shape[axis]}")
        valid &= inside
    return tensor, arrays, valid


def _exec(block: Block, env: dict, pid, grid):
    for op in block.ops:
        name = op.name
        if name == "yield":
            return [env[v] for v in op.operands]
        a = [env[v] for v in op.operands]
        if name == "constant":
            r = S.as_type(op.attrs["value"], op.result.type.dtype)[()]
        elif name == "program_id":
            r = np.int32(pid[op.attrs["axis"]])
        elif name == "num_programs":
            r = np.int32(grid[op.attrs["axis"]])
        elif name == "binary":
            r = S.binary(op.attrs["op"], a[0], a[1], op.result.type.dtype)
        elif name == "cmp":
            r = S.cmp(op.attrs["pred"], a[0], a[1])
        elif name == "unary":
            r = S.unary(op.attrs["op"], a[0], op.result.type.dtype)
        elif name == "select":
            r = np.where(a[0], a[1], a[2]).astype(D.to_numpy(op.result.type.dtype))
        elif name == "cast":
            r = S.as_type(a[0], op.attrs["dtype"])
        elif name in ("splat", "broadcast"):
            r = np.broadcast_to(a[0], tuple(op.attrs["shape"])).copy()
        elif name == "expand_dims":
            r = np.expand_dims(np.asarray(a[0]), op.attrs["axis"])
        elif name == "trans":
            r = np.ascontiguousarray(np.asarray(a[0]).T)
        elif name == "reshape":
            r = np.asarray(a[0]).reshape(op.attrs["shape"])
        elif name == "reduce":
            r = S.reduce(op.attrs["kind"], a[0], op.attrs["axis"], op.result.type.dtype)
        elif name == "dot":
            r = S.dot(a[0], a[1])
        elif name == "arange":
            r = np.arange(op.attrs["start"], op.attrs["end"], dtype=np.int32)
        elif name == "full":
            r = np.full(tuple(op.attrs["shape"]), op.attrs["value"], dtype=D.to_numpy(op.attrs["dtype"]))
        elif name == "load":
            nidx = len(op.attrs["index"])
            tensor, arrays, valid = _index_arrays(op, env, nidx)
            rest = a[1 + nidx:]
            if op.attrs["has_mask"]:
                valid = valid & rest.pop(0)
            other = rest[0] if op.attrs["has_other"] else 0
            safe = tuple(np.where(valid, ar, 0) for ar in arrays)
            vals = tensor[safe] if tensor.size else np.zeros(valid.shape, tensor.dtype)
            r = np.where(valid, vals, np.asarray(other).astype(tensor.dtype)).astype(tensor.dtype)
            if r.ndim == 0:
                r = r[()]
        elif name == "store":
            nidx = len(op.attrs["index"])
            tensor, arrays, valid = _index_arrays(op, env, nidx)
            rest = a[1 + nidx:]
            value = np.broadcast_to(rest[0], valid.shape)
            if op.attrs["has_mask"]:
                valid = valid & rest[1]
            tensor[tuple(ar[valid] for ar in arrays)] = value[valid]
            continue
        elif name == "for":
            lo, hi = int(a[0]), int(a[1])
            carried = a[2:]
            body = op.regions[0]
            for i in range(lo, hi, op.attrs["step"]):
                env[body.args[0]] = np.asarray(i, dtype=D.to_numpy(body.args[0].type.dtype))[()]
                for arg, v in zip(body.args[1:], carried):
                    env[arg] = v
                carried = _exec(body, env, pid, grid)
            for res, v in zip(op.results, carried):
                env[res] = v
            continue
        elif name == "if":
            out = _exec(op.regions[0] if bool(a[0]) else op.regions[1], env, pid, grid)
            for res, v in zip(op.results, out):
                env[res] = v
            continue
        else:
            raise ValueError(f"reference backend: unknown op {name}")
        env[op.results[0]] = r
    return []
