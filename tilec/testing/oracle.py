"""Independent float32 oracles in torch for the kernels of the standard library.

Inputs may be numpy arrays of any float dtype (f16, bf16 via ml_dtypes, f32) or torch
tensors; all math is float32 and results are float32 numpy arrays.  The attention oracle
deliberately shares nothing with runtime.plan: it gathers each stage's K/V from the paged
cache and builds an explicit boolean mask per stage.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "to_f32", "attention_oracle", "attention_oracle_arrays", "stage_mask", "gemm_oracle",
    "rmsnorm_oracle", "silu_mul_oracle", "rope_oracle", "rope_cache", "tolerance",
    "assert_close",
]


def to_f32(x) -> np.ndarray:
    """Any float array (numpy f16 / ml_dtypes bf16 / f32, or a torch tensor) as float32."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float32).numpy()
    return np.asarray(x).astype(np.float32)


def _t(x) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(to_f32(x)))


# ---------------------------------------------------------------------------- attention
def stage_mask(kind: str, num_tokens: int, context_len: int, tree=None) -> np.ndarray:
    """bool [num_tokens, context_len + num_tokens]: may query i see key position j.

    Queries sit at positions context_len + i.  Causal (prefill, decode, chain verify):
    j <= context_len + i.  Tree verify: every context key, and spec key j - context_len
    iff tree[i, j - context_len]."""
    kv_len = context_len + num_tokens
    qpos = context_len + np.arange(num_tokens)[:, None]
    mask = np.arange(kv_len)[None, :] <= qpos
    if tree is not None:
        tree = np.asarray(tree, dtype=bool)
        if tree.shape != (num_tokens, num_tokens):
            raise ValueError(f"tree mask shape {tree.shape} != ({num_tokens}, {num_tokens})")
        mask[:, context_len:] = tree
    return mask


def attention_oracle_arrays(q, k_cache, v_cache, block_table, stages: Sequence,
                            scale: float) -> np.ndarray:
    """Attention of a hybrid batch; float32 [T, HQ, D].  Tokens of Q that no stage covers
    stay 0.  `stages` are objects with kind, seq, q_start, num_tokens, context_len, tree."""
    qf, kc, vc = _t(q), _t(k_cache), _t(v_cache)
    bt = torch.from_numpy(np.asarray(block_table).astype(np.int64))
    T, HQ, D = qf.shape
    NB, BS, HKV, _ = kc.shape
    if HQ % HKV:
        raise ValueError(f"query heads {HQ} not a multiple of KV heads {HKV}")
    G = HQ // HKV
    out = torch.zeros((T, HQ, D), dtype=torch.float32)
    for st in stages:
        n, ctx = int(st.num_tokens), int(st.context_len)
        kv_len = ctx + n
        pos = torch.arange(kv_len)
        phys = bt[int(st.seq), pos // BS]
        k = kc[phys, pos % BS].repeat_interleave(G, dim=1)       # [L, HQ, D]
        v = vc[phys, pos % BS].repeat_interleave(G, dim=1)
        qs = qf[int(st.q_start):int(st.q_start) + n]              # [n, HQ, D]
        mask = torch.from_numpy(stage_mask(st.kind, n, ctx, getattr(st, "tree", None)))
        o = F.scaled_dot_product_attention(
            qs.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None],
            attn_mask=mask[None, None], scale=float(scale))
        out[int(st.q_start):int(st.q_start) + n] = o[0].transpose(0, 1)
    return out.numpy()


def attention_oracle(case) -> np.ndarray:
    """attention_oracle_arrays on an AttentionCase; float32 [T, HQ, D]."""
    return attention_oracle_arrays(case.q, case.k_cache, case.v_cache, case.block_table,
                                   case.stages, case.scale)


# ---------------------------------------------------------------------------- linear etc.
def gemm_oracle(a, b, trans_b: bool = False) -> np.ndarray:
    """a @ b (or a @ b^T with trans_b; b is then [.., N, K]) in float32."""
    at, bt = _t(a), _t(b)
    if trans_b:
        bt = bt.transpose(-1, -2)
    return torch.matmul(at, bt).numpy()


def rmsnorm_oracle(x, w, eps: float = 1e-6) -> np.ndarray:
    """x * rsqrt(mean(x^2, last axis) + eps) * w, float32."""
    xt, wt = _t(x), _t(w)
    return (xt * torch.rsqrt(xt.pow(2).mean(-1, keepdim=True) + eps) * wt).numpy()


def silu_mul_oracle(gate, up) -> np.ndarray:
    """silu(gate) * up, float32."""
    return (F.silu(_t(gate)) * _t(up)).numpy()


def rope_cache(max_pos: int, head_dim: int, theta: float = 10000.0
               ) -> Tuple[np.ndarray, np.ndarray]:
    """(cos, sin), float32 [max_pos, head_dim // 2]: angle[p, i] = p * theta^(-2i / D)."""
    if head_dim % 2:
        raise ValueError(f"rope needs an even head_dim, got {head_dim}")
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    ang = np.arange(max_pos, dtype=np.float64)[:, None] * inv_freq[None, :]
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def rope_oracle(x, positions, cos_cache, sin_cache) -> np.ndarray:
    """NeoX-style rotary embedding of x [T, H, D] at positions [T] (first half / second half):
    out1 = x1 cos - x2 sin, out2 = x2 cos + x1 sin.  float32."""
    xt = _t(x)
    pos = torch.from_numpy(np.asarray(positions).astype(np.int64))
    cos = _t(cos_cache)[pos][:, None, :]
    sin = _t(sin_cache)[pos][:, None, :]
    half = xt.shape[-1] // 2
    x1, x2 = xt[..., :half], xt[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).numpy()


# ---------------------------------------------------------------------------- tolerances
_TOL = {
    "f16": (1e-2, 1e-2),
    "bf16": (3e-2, 3e-2),
    "f32": (1e-4, 1e-4),
}


def _dtype_name(dtype) -> str:
    if isinstance(dtype, str):
        name = {"float16": "f16", "bfloat16": "bf16", "float32": "f32"}.get(dtype, dtype)
    elif isinstance(dtype, torch.dtype):
        name = {torch.float16: "f16", torch.bfloat16: "bf16", torch.float32: "f32"}.get(
            dtype, str(dtype))
    else:
        name = {"float16": "f16", "bfloat16": "bf16", "float32": "f32"}.get(
            np.dtype(dtype).name, np.dtype(dtype).name)
    return name


def tolerance(dtype, tf32: bool = False) -> Tuple[float, float]:
    """(atol, rtol) for comparing a kernel's output of `dtype` (f16, bf16, f32; numpy, torch
    or name) against a float32 oracle, for O(1)-magnitude data with f32 accumulation.
    tf32=True loosens f32 for GPU dots that run in TF32."""
    name = _dtype_name(dtype)
    if name == "f32" and tf32:
        return (5e-3, 5e-3)
    if name not in _TOL:
        raise ValueError(f"no tolerance for dtype {dtype!r}; expected f16, bf16 or f32")
    return _TOL[name]


def assert_close(actual, expected, dtype=None, *, atol=None, rtol=None, what: str = "output"
                 ) -> None:
    """np.allclose with tolerance(dtype) (dtype defaults to actual's), and an error message
    that says how many elements differ and where the worst one is."""
    a = to_f32(actual)
    e = to_f32(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{what}: shape {a.shape} != expected {e.shape}")
    if dtype is None:
        dtype = actual.dtype if hasattr(actual, "dtype") else np.float32
    d_atol, d_rtol = tolerance(dtype)
    atol = d_atol if atol is None else atol
    rtol = d_rtol if rtol is None else rtol
    bad = ~np.isclose(a, e, atol=atol, rtol=rtol)
    bad |= np.isnan(a) != np.isnan(e)
    if bad.any():
        err = np.abs(a - e)
        err[np.isnan(err)] = np.inf
        worst = np.unravel_index(int(np.argmax(err)), err.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} elements differ beyond atol={atol}, "
            f"rtol={rtol}; worst at {tuple(int(i) for i in worst)}: got {a[worst]}, "
            f"expected {e[worst]} (abs err {err[worst]:.3g})")
