"""Runtime helpers called by the generated torch code of the cpu backend.

Every IR value is a torch tensor with a leading *instance* axis: size P (one row per program
instance of the grid) for values that differ between instances, or size 1 for values that are
the same in all of them (constants, dims, scalars); torch broadcasting mixes the two freely.
"""
from __future__ import annotations

import numpy as np
import torch

from tilec.ir import semantics as S
from tilec.ir import dtypes as D

DTYPES = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32,
          "i32": torch.int32, "i64": torch.int64, "bool": torch.bool}


def from_numpy(a: np.ndarray) -> torch.Tensor:
    """Share memory with a numpy array (bf16 from ml_dtypes goes through an int16 view)."""
    if a.dtype == D.to_numpy("bf16"):
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def const(value, dtype: str, shape=()) -> torch.Tensor:
    """A uniform value [1, *shape], converted exactly as the reference does (ops.as_type)."""
    a = np.ascontiguousarray(np.broadcast_to(S.as_type(value, dtype), tuple(shape)))
    return from_numpy(a.copy()).reshape(1, *shape)


def program_ids(grid: tuple) -> tuple:
    """program_id(axis) for every instance, in the reference's order (last axis fastest)."""
    p = 1
    for g in grid:
        p *= g
    lin = torch.arange(p, dtype=torch.int64)
    out, stride = [], p
    for g in grid:
        stride //= g
        out.append(((lin // stride) % g).to(torch.int32))
    return tuple(out)


def flat(t: torch.Tensor):
    """A 1-D view over every element ``t`` can address (linear index = sum idx_d * stride_d),
    and the largest valid linear index. Empty tensors get a 1-element dummy for gathers."""
    if t.numel() == 0:
        return torch.zeros(1, dtype=t.dtype), 0, False
    span = 1 + sum((n - 1) * s for n, s in zip(t.shape, t.stride()))
    return t.as_strided((span,), (1,), t.storage_offset()), span - 1, True


def align(x: torch.Tensor, rank: int) -> torch.Tensor:
    """Right-align a value's tile shape to ``rank`` dims (after the instance axis)."""
    k = rank - (x.dim() - 1)
    if k <= 0:
        return x
    return x.reshape(x.shape[0], *([1] * k), *x.shape[1:])


def _zero_check(b: torch.Tensor, act) -> None:
    z = b == 0
    if act is not None:
        z = z & align(act, z.dim() - 1)
    if bool(z.any()):
        raise ZeroDivisionError("integer division by zero")


def idiv(a, b, act=None):
    """Integer division truncating toward zero; raises for a zero divisor in an active instance."""
    _zero_check(b, act)
    return torch.div(a, torch.where(b == 0, torch.ones_like(b), b), rounding_mode="trunc")


def imod(a, b, act=None):
    _zero_check(b, act)
    return torch.fmod(a, torch.where(b == 0, torch.ones_like(b), b))


def iv_range(lo: torch.Tensor, hi: torch.Tensor, step: int):
    """Induction values of a loop whose bounds are the same in every instance: [1] tensors."""
    return torch.arange(int(lo.reshape(-1)[0]), int(hi.reshape(-1)[0]), step,
                        dtype=lo.dtype).reshape(-1, 1)


def trips(lo: torch.Tensor, hi: torch.Tensor, step: int, act=None):
    """Per-instance trip counts of ``range(lo, hi, step)`` (0 where inactive) and their max."""
    d = hi.to(torch.int64) - lo.to(torch.int64)
    if step < 0:
        d, step = -d, -step
    n = torch.div(d + (step - 1), step, rounding_mode="floor").clamp_min(0)
    if act is not None:
        n = torch.where(act, n, torch.zeros_like(n))
    n = n.expand(max(n.shape[0], 1 if act is None else act.shape[0]))
    return n, (int(n.max()) if n.numel() else 0)
