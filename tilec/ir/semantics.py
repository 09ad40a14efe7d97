"""The semantics of each tile-IR op on numpy values. This module *defines* the language's
meaning; every backend is tested against it.

- 16-bit floats are computed in f32 and rounded to the result type after each op.
- ``dot`` and reductions of 16-bit floats accumulate in f32.
- Integer ``//`` and ``%`` truncate toward zero (C semantics, as Triton and Ascend C do).
"""
from __future__ import annotations

import numpy as np

from tilec.ir import dtypes as D

_F32 = np.float32


def _np(dtype: str):
    return D.to_numpy(dtype)


def as_type(x, dtype: str, shape=None):
    a = np.asarray(x)
    if a.dtype != _np(dtype):
        with np.errstate(all="ignore"):
            if D.is_int(dtype) and a.dtype.kind == "f":
                a = np.trunc(a.astype(np.float64))
            a = a.astype(_np(dtype))
    return a


def _work(x):
    """Values a computation works on: 16-bit floats widen to f32."""
    a = np.asarray(x)
    if a.dtype in (np.float16, D.to_numpy("bf16")):
        return a.astype(_F32)
    return a


def binary(op: str, a, b, dtype: str):
    x, y = _work(a), _work(b)
    with np.errstate(all="ignore"):
        if op == "add":
            r = x + y
        elif op == "sub":
            r = x - y
        elif op == "mul":
            r = x * y
        elif op == "div":
            r = x / y
        elif op == "floordiv":
            if D.is_int(dtype):
                if np.any(y == 0):
                    raise ZeroDivisionError("integer division by zero")
                q = np.abs(x) // np.abs(y)
                r = np.where((x < 0) != (y < 0), -q, q)
            else:
                r = np.trunc(x / y)
        elif op == "mod":
            if D.is_int(dtype):
                if np.any(y == 0):
                    raise ZeroDivisionError("integer modulo by zero")
                q = np.abs(x) // np.abs(y)
                q = np.where((x < 0) != (y < 0), -q, q)
                r = x - q * y
            else:
                r = np.fmod(x, y)
        elif op == "maximum":
            r = np.maximum(x, y)
        elif op == "minimum":
            r = np.minimum(x, y)
        elif op == "and":
            r = np.logical_and(x, y) if dtype == "bool" else x & y
        elif op == "or":
            r = np.logical_or(x, y) if dtype == "bool" else x | y
        elif op == "xor":
            r = np.logical_xor(x, y) if dtype == "bool" else x ^ y
        else:
            raise ValueError(f"unknown binary op {op}")
    return as_type(r, dtype)


def cmp(pred: str, a, b):
    x, y = _work(a), _work(b)
    return {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
            "eq": np.equal, "ne": np.not_equal}[pred](x, y)


def unary(op: str, a, dtype: str):
    x = _work(a)
    with np.errstate(all="ignore"):
        if op == "neg":
            r = -x
        elif op == "not":
            r = np.logical_not(x) if dtype == "bool" else ~x
        elif op == "exp":
            r = np.exp(x)
        elif op == "exp2":
            r = np.exp2(x)
        elif op == "log":
            r = np.log(x)
        elif op == "sqrt":
            r = np.sqrt(x)
        elif op == "rsqrt":
            r = 1.0 / np.sqrt(x)
        elif op == "abs":
            r = np.abs(x)
        elif op == "sigmoid":
            r = 1.0 / (1.0 + np.exp(-x))
        else:
            raise ValueError(f"unknown unary op {op}")
    return as_type(r, dtype)


def reduce(kind: str, a, axis: int, dtype: str):
    x = _work(a)
    if kind == "sum":
        r = np.sum(x.astype(_F32) if D.is_float(dtype) else x, axis=axis)
    elif kind == "max":
        r = np.max(x, axis=axis)
    else:
        r = np.min(x, axis=axis)
    return as_type(r, dtype)


def dot(a, b):
    return np.matmul(np.asarray(a, dtype=_F32), np.asarray(b, dtype=_F32)).astype(_F32)


def scalar_eval(op, vals):
    """Evaluate a scalar op on Python/numpy scalars (used by constant folding and the grid)."""
    t = op.results[0].type.dtype
    if op.name == "binary":
        return binary(op.attrs["op"], as_type(vals[0], op.operands[0].type.dtype),
                      as_type(vals[1], op.operands[1].type.dtype), t)[()]
    if op.name == "cmp":
        return cmp(op.attrs["pred"], as_type(vals[0], op.operands[0].type.dtype),
                   as_type(vals[1], op.operands[1].type.dtype))[()]
    if op.name == "unary":
        return unary(op.attrs["op"], as_type(vals[0], op.operands[0].type.dtype), t)[()]
    if op.name == "cast":
        return as_type(vals[0], t)[()]
    if op.name == "select":
        return vals[1] if vals[0] else vals[2]
    raise ValueError(op.name)
