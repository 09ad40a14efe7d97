"""Checks at the runtime's boundary: every argument of a runtime call, and every index a kernel
will follow, is validated before a launch (DESIGN.md "Runtime"). Failures raise
``InvalidArgument`` (a ValueError) with one line that names the argument.

Tensors are torch tensors on their own device; numpy arrays are accepted at the edge and
viewed as torch tensors without a copy (``as_tensor``).
"""
from __future__ import annotations

import numpy as np
import torch

from tilec.ir import dtypes as D

__all__ = ["InvalidArgument", "as_tensor", "like_input", "dtype_name", "check_2d", "check_out",
           "check_index_values", "check_stages_cover", "check_block_table"]

_DT = {torch.float16: "f16", torch.bfloat16: "bf16", torch.float32: "f32", torch.int32: "i32",
       torch.int64: "i64", torch.bool: "bool"}
_BF16 = D.to_numpy("bf16")


class InvalidArgument(ValueError):
    """A runtime call with arguments that do not fit; one line naming the argument."""


def as_tensor(x, what: str) -> torch.Tensor:
    """``x`` as a torch tensor: itself, or a numpy array viewed without copying."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        if x.dtype == _BF16:
            return torch.from_numpy(x.view(np.int16)).view(torch.bfloat16)
        try:
            return torch.from_numpy(x)
        except TypeError:
            raise InvalidArgument(f"{what}: unsupported array dtype {x.dtype}") from None
    raise InvalidArgument(f"{what}: expected a torch tensor or numpy array, got {type(x).__name__}")


def like_input(t: torch.Tensor, x):
    """Return ``t`` in the kind the caller passed ``x`` in (a numpy view for numpy input)."""
    if isinstance(x, np.ndarray):
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy().view(_BF16)
        return t.numpy()
    return t


def dtype_name(t: torch.Tensor, what: str) -> str:
    try:
        return _DT[t.dtype]
    except KeyError:
        raise InvalidArgument(f"{what}: dtype {t.dtype} is not served (f16, bf16, f32)") from None


def check_2d(t: torch.Tensor, what: str) -> None:
    if t.ndim != 2:
        raise InvalidArgument(f"{what}: expected 2 dims, got shape {tuple(t.shape)}")


def check_same(ref: torch.Tensor, t: torch.Tensor, what: str, ref_what: str) -> None:
    if t.dtype != ref.dtype:
        raise InvalidArgument(f"{what}: dtype {t.dtype} differs from {ref_what}'s {ref.dtype}")
    if t.device != ref.device:
        raise InvalidArgument(f"{what}: on {t.device}, {ref_what} is on {ref.device}")


def check_out(out, shape: tuple, ref: torch.Tensor, what: str = "out") -> torch.Tensor:
    """A caller-given output: right shape, dtype and device, writable, no overlap with ``ref``."""
    if isinstance(out, np.ndarray) and not out.flags.writeable:
        raise InvalidArgument(f"{what}: the array is read-only")
    t = as_tensor(out, what)
    if tuple(t.shape) != tuple(shape):
        raise InvalidArgument(f"{what}: shape {tuple(t.shape)}, expected {tuple(shape)}")
    check_same(ref, t, what, "the input")
    if not t.is_contiguous() and any(st == 0 and n > 1 for st, n in zip(t.stride(), t.shape)):
        raise InvalidArgument(f"{what}: overlapping memory (a stride of 0, e.g. from expand); "
                              f"pass a tensor whose elements are distinct")
    return t


def check_index_values(idx: torch.Tensor, lo: int, hi: int, what: str) -> None:
    """Every value of ``idx`` in [lo, hi) (a device tensor is read back once)."""
    if idx.numel() == 0:
        return
    mn, mx = int(idx.min()), int(idx.max())
    if mn < lo or mx >= hi:
        bad = mn if mn < lo else mx
        pos = int((idx == bad).nonzero()[0, 0]) if idx.ndim == 1 else -1
        raise InvalidArgument(f"{what}: value {bad} at [{pos}] is outside [{lo}, {hi})")


def check_stages_cover(tokens) -> None:
    """Stages (already checked not to overlap) must cover Q tokens [0, total) with no gap: a
    gap would leave output rows unwritten."""
    gap = tokens.gap()
    if gap is not None:
        raise InvalidArgument(f"stages leave Q tokens [{gap[0]}, {gap[1]}) uncovered")


def check_block_table(tokens, bt: np.ndarray, num_blocks: int, block_size: int) -> None:
    """Every block the launch will follow: each stage's sequence row exists, the table is wide
    enough for its context, and each entry it reads names a block of the cache."""
    nseq, maxb = bt.shape
    seq = tokens.seq
    kv = tokens.kv_len
    bad = np.flatnonzero(seq >= nseq)
    if bad.size:
        i = int(bad[0])
        raise InvalidArgument(f"block_table: stage {i} is sequence {int(seq[i])}, the table has {nseq} rows")
    need = -(-kv.astype(np.int64) // block_size)
    bad = np.flatnonzero(need > maxb)
    if bad.size:
        i = int(bad[0])
        raise InvalidArgument(f"block_table: stage {i} has context {int(kv[i])} = {int(need[i])} blocks of "
                              f"{block_size}, the table has {maxb} columns")
    rows = bt[seq]                                            # [NSTAGE, MAXB]
    used = np.arange(maxb)[None, :] < need[:, None]
    vals = np.where(used, rows, 0)
    bad = np.argwhere((vals < 0) | (vals >= num_blocks))
    if bad.size:
        i, j = (int(v) for v in bad[0])
        raise InvalidArgument(f"block_table: stage {i} (sequence {int(seq[i])}) block {j} is "
                              f"{int(rows[i, j])}, the cache has {num_blocks} blocks")
