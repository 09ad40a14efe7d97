"""Runtime helpers called by the generated torch code of the cpu backend.

Every IR value is a torch tensor with G leading *instance* axes, one per grid axis (G = the
grid's rank): along grid axis a a value has size g_a if it may differ between the programs of
that axis, 1 if not. Constants, dims and scalars are [1]*G; an A row-block indexed by
program_id(0) is [g0, 1, ...] and is loaded once, not once per program of axis 1. Torch
broadcasting mixes the shapes freely.
"""
from __future__ import annotations

import math

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


def const(value, dtype: str, shape=(), lead: int = 1) -> torch.Tensor:
    """A uniform value [1]*lead + shape, converted exactly as the reference does (as_type).
    Memoised (dims and scalars are re-made every launch); generated code never writes into
    a value it did not gather itself, so sharing one tensor is safe."""
    key = (type(value), repr(value), dtype, tuple(shape), lead)     # repr: -0.0 is not 0.0
    return _memo(_CONSTS, key, lambda: _const(value, dtype, shape, lead))


_CONSTS: dict = {}


def _const(value, dtype, shape, lead):
    a = np.ascontiguousarray(np.broadcast_to(S.as_type(value, dtype), tuple(shape)))
    return from_numpy(a.copy()).reshape(*([1] * lead), *shape)


def program_ids(grid: tuple) -> tuple:
    """program_id(axis) for every instance: arange(g_axis) along its own instance axis."""
    out = []
    for a, g in enumerate(grid):
        s = [1] * len(grid)
        s[a] = g
        out.append(torch.arange(g, dtype=torch.int32).reshape(s))
    return tuple(out)


def flat(t: torch.Tensor):
    """A 1-D view over every element ``t`` can address (linear index = sum idx_d * stride_d),
    and the largest valid linear index. Empty tensors get a 1-element dummy for gathers."""
    if t.numel() == 0:
        return torch.zeros(1, dtype=t.dtype), 0, False
    span = 1 + sum((n - 1) * s for n, s in zip(t.shape, t.stride()))
    return t.as_strided((span,), (1,), t.storage_offset()), span - 1, True


_BITS = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16,
         torch.int32: torch.int32, torch.int64: torch.int64, torch.int16: torch.int16}


NONE = torch.zeros((), dtype=torch.bool)      # validity of every access to an empty tensor
_LAST_MASK: tuple = (None, None)


def select(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """where(c, a, b), bit-exact (NaN payloads, -0.0). Past ~1e5 lanes as integer bit
    operations on the values' bits, which beat torch's CPU where there (measured on this
    project's VM); below that one torch.where call is cheaper."""
    it = _BITS.get(a.dtype)
    if it is None or b.dtype != a.dtype or c.dtype != torch.bool or \
            max(c.numel(), a.numel(), b.numel()) < 100_000:   # below ~1e5 lanes torch.where is faster
        return torch.where(c, a, b)
    global _LAST_MASK
    if _LAST_MASK[0] is c and _LAST_MASK[1].dtype == it:
        m = _LAST_MASK[1]                      # attention selects twice on the same mask
    else:
        m = c.to(it).neg_()                    # all ones where c, zeros elsewhere
        _LAST_MASK = (c, m)                    # (holding c keeps its identity unique)
    ai, bi = a.view(it), b.view(it)
    return (bi ^ ((ai ^ bi) & m)).view(a.dtype)


def full_rank(x: torch.Tensor, rank: int) -> torch.Tensor:
    """x with leading unit dims added up to ``rank`` (a load's ``other`` may be a scalar)."""
    return x.reshape(*([1] * (rank - x.dim())), *x.shape) if x.dim() < rank else x


def blank_rows(x: torch.Tensor, ok: torch.Tensor, other: torch.Tensor) -> None:
    """x [..., n], gathered whole rows: set the rows where ``ok`` (broadcastable to
    x[..., :1]) is False to ``other`` (a single value), in place."""
    bad = ~ok.expand(*x.shape[:-1], 1)[..., 0]
    if any_(bad):
        if x.is_contiguous():        # index_fill_ of rows: ~2.5x a boolean-mask assignment
            x.view(-1, x.shape[-1]).index_fill_(0, bad.reshape(-1).nonzero().reshape(-1),
                                                other.reshape(()).to(x.dtype))
        else:
            x[bad] = other.reshape(()).to(x.dtype)


def any_(x: torch.Tensor) -> bool:
    """bool(x.any()) for a bool tile: torch's CPU any() on bool is ~15x slower than a max over
    the same bytes (a guard runs every loop step)."""
    if x.dtype == torch.bool:
        return bool(x.view(torch.uint8).max()) if x.numel() else False
    return bool(x.any())


def gather_rows(f: torch.Tensor, hi: int, n: int, s: int, lin: torch.Tensor) -> torch.Tensor:
    """Whole rows f[lin + s * arange(n)] for a row-start index ``lin`` [..., 1]: one
    index_select (several times faster than advanced indexing on CPU)."""
    idx = lin.reshape(-1)
    return torch.index_select(rows(f, hi, n, s), 0, idx).reshape(*lin.shape[:-1], n)


def _bshape(*shapes) -> tuple:
    """torch.broadcast_shapes without its ~50 us of Python."""
    r = max(len(s) for s in shapes)
    out = [1] * r
    for s in shapes:
        for i, n in enumerate(s, r - len(s)):
            if n != 1:
                out[i] = n
    return tuple(out)


def store_rows(t: torch.Tensor, f: torch.Tensor, lin: torch.Tensor, ok, value: torch.Tensor,
               n: int, s: int) -> None:
    """Scatter whole rows of ``t`` (flat view ``f``): f[lin + s * arange(n)] = value[..., :] for
    the rows where ``ok`` (broadcastable to lin, [..., 1]; None: every row). Only the written
    rows are touched, never a mask over the whole tile; when every row start is a multiple of n
    (contiguous rows, say O[T, H, D]) it is one index_copy_ of rows (~5x an element scatter)."""
    shape = _bshape(lin.shape, value.shape[:-1] + (1,), ok.shape if ok is not None else (1,))
    lin = lin.expand(shape).reshape(-1)
    val = value.expand(*shape[:-1], n).reshape(-1, n)
    if ok is not None:
        keep = ok.expand(shape).reshape(-1)
        if keep.numel() and not bool(keep.view(torch.uint8).min()):    # some row is off
            idx = keep.nonzero().reshape(-1)       # one nonzero for both selections
            lin, val = lin.index_select(0, idx), val.index_select(0, idx)
    if not lin.numel():
        return
    if s == 1 and f.numel() % n == 0 and all(x % n == 0 for x in t.stride()[:-1]):
        f.view(-1, n).index_copy_(0, torch.div(lin, n, rounding_mode="floor"), val.to(f.dtype))
    else:
        f[lin[:, None] + torch.arange(0, n * s, s, dtype=lin.dtype)] = val.to(f.dtype)


def exp(x: torch.Tensor) -> torch.Tensor:
    """exp in f32 through numpy: torch's vectorised exp takes a slow path (about 10x) on inputs
    whose results underflow, which attention's masked scores (-1e30 - max) always are; numpy's
    is fast on them and is what the reference backend computes with."""
    if x.dtype == torch.float32 and x.device.type == "cpu":
        return torch.from_numpy(np.exp(x.numpy()))
    return torch.exp(x)


def rows(f: torch.Tensor, hi: int, n: int, s: int) -> torch.Tensor:
    """Overlapping-window view of a flat tensor view: rows(f)[i] = f[i + s * arange(n)], so a
    gather by the linear index of a row's first element fetches the whole row."""
    count = hi + 1 - (n - 1) * s
    if count < 1:                  # empty tensor: every access is masked; any row will do
        return f.new_zeros(1, n)
    return f.as_strided((count, n), (1, s))


def _zero_check(b: torch.Tensor, act) -> None:
    z = b == 0
    if act is not None:        # act has the instance axes only; tile dims follow
        z = z & act.reshape(*act.shape, *([1] * (z.dim() - act.dim())))
    if any_(z):
        raise ZeroDivisionError("integer division by zero")


def _as_i32(b):
    """A dim passed as a Python int, wrapped to i32 as the reference does with dims."""
    return b if -2**31 <= b < 2**31 else int(const(b, "i32").reshape(()))


def _int_divisor(b, act):
    """A divisor that is one number (a dim as a Python int, or a splatted tile) as a Python
    int, raising for zero when an instance is active; None for a tile divisor."""
    if isinstance(b, int):
        d = _as_i32(b)
    elif b.numel() == 1:
        d = int(b.reshape(()))
    else:
        return None
    if d == 0 and (act is None or any_(act)):
        raise ZeroDivisionError("integer division by zero")
    return d or 1          # inactive instances divide by 1: their values are never used


def _safe(b, act):
    """A tile divisor checked for zero in active instances, zeros replaced by 1."""
    _zero_check(b, act)
    return torch.where(b == 0, torch.ones_like(b), b)


def idiv(a, b, act=None):
    """Integer division truncating toward zero; raises for a zero divisor in an active instance."""
    d = _int_divisor(b, act)
    return torch.div(a, _safe(b, act) if d is None else d, rounding_mode="trunc")


def imod(a, b, act=None):
    d = _int_divisor(b, act)
    return torch.fmod(a, _safe(b, act) if d is None else d)


def iv_range(lo: torch.Tensor, hi: torch.Tensor, step: int):
    """Induction values of a loop whose bounds are the same in every instance: [1]*G tensors."""
    a, b = int(lo.reshape(-1)[0]), int(hi.reshape(-1)[0])
    return torch.arange(a, max(a, b), step, dtype=lo.dtype).reshape(-1, *lo.shape)   # b <= a: no trips


def span(lo: torch.Tensor, hi: torch.Tensor, step: int) -> tuple:
    """(start, element count) covered by the iterations of a uniform ``range(lo, hi, step)``
    with step > 0 whose body reads [iv, iv + step): trip count x step elements."""
    a, b = int(lo.reshape(-1)[0]), int(hi.reshape(-1)[0])
    return a, max(0, -(-(b - a) // step)) * step


def trips(lo: torch.Tensor, hi: torch.Tensor, step: int, act=None):
    """Per-instance trip counts of ``range(lo, hi, step)`` (0 where inactive) and their max."""
    d = hi.to(torch.int64) - lo.to(torch.int64)
    if step < 0:
        d, step = -d, -step
    n = torch.div(d + (step - 1), step, rounding_mode="floor").clamp_min(0)
    if act is not None:
        n = torch.where(act, n, torch.zeros_like(n))
    return n, (int(n.max()) if n.numel() else 0)


def instances(x: torch.Tensor, sel) -> torch.Tensor:
    """The instances ``sel`` of a varying value (one that turned out the same for every
    instance, instance axis 1, stays as it is)."""
    if isinstance(sel, slice) or x.shape[0] == 1:
        return x
    return x.index_select(0, sel)


_RANKS: dict = {}


def live_rows(flag: torch.Tensor, p: int) -> torch.Tensor:
    """Per instance, the index of the last set per-row flag + 1 (rows at or past it are never
    stored; see rows.py). ``flag`` is [p or 1, ...] with one non-unit tile dim."""
    f = flag.reshape(flag.shape[0], -1)
    n = f.shape[1]
    ranks = _memo(_RANKS, n, lambda: torch.arange(1, n + 1, dtype=torch.int32))
    last = (f * ranks).amax(1)
    return last.expand(p) if last.shape[0] != p else last


# Cost of one more row class, in row x instance units: a class runs the whole kernel body once
# more (~100 torch calls per loop step, ~3 us each); a row of a [BM, BN] attention tile costs
# about 2 us per step (~25 element-wise ops over BN columns plus its share of two GEMMs).
ROW_CLASS_COST = 128


def _classes(vals: tuple, counts: tuple) -> list:
    """Group sorted distinct live-row counts into contiguous runs minimising
    sum(ROW_CLASS_COST + largest count x instances) (exact dynamic programme over the runs)."""
    k = len(vals)
    best = [0.0] + [float("inf")] * k
    cut = [0] * (k + 1)
    for i in range(1, k + 1):
        n = 0
        for j in range(i, 0, -1):            # run vals[j-1 .. i-1]
            n += counts[j - 1]
            c = best[j - 1] + ROW_CLASS_COST + vals[i - 1] * n
            if c < best[i]:
                best[i], cut[i] = c, j - 1
    runs, i = [], k
    while i > 0:
        runs.append((vals[cut[i]], vals[i - 1]))
        i = cut[i]
    return runs[::-1]


_CLASSES: dict = {}


def row_classes(live: torch.Tensor, rows: int) -> list:
    """[(instance selector, row count)]: instances grouped by live row count, each group to run
    with its tiles cut to its largest count. The selector is slice(None) when one group holds
    every instance (views instead of copies)."""
    live = live.clamp(1, rows)           # an instance with no live row still runs its row-free code
    hist = torch.bincount(live, minlength=rows + 1).tolist()
    vals = tuple(v for v, c in enumerate(hist) if c)
    key = (vals, tuple(hist[v] for v in vals))
    runs = _memo(_CLASSES, key, lambda: _classes(*key))
    if len(runs) == 1:
        return [(slice(None), runs[0][1])]
    return [(((live >= lo) & (live <= hi)).nonzero().reshape(-1), hi) for lo, hi in runs]


def trips_min(n: torch.Tensor) -> int:
    """Steps in which every instance is still active: carried values need no merge there."""
    return int(n.min()) if n.numel() else 0


# --- fast paths: blocked tile views and folded dots ------------------------------------------
# A "blocked" access reads, along tensor dim d, rows [pid_a * E + u, pid_a * E + u + E) for
# grid axis a (or [u, u + E) when no axis is named): the tiles of all programs of axis a are
# then one region of g_a * E rows, reshaped to (g_a, E). Such a region is read as a view when
# it lies inside the tensor, otherwise copied into a buffer pre-filled with ``other`` (reads
# outside the tensor give ``other``, as in the reference). dims: per tensor dim a tuple
# (u, E, axis or None, keep); keep=False drops the dim (a scalar index, E = 1).

class _TilePlan:
    """Everything tile_load/tile_store derive from (tensor shape, grid, dims): regions, the
    part inside the tensor, the split shape and permutations. Memoised (_PLANS): a server
    launches the same shapes over and over."""

    def __init__(self, n: tuple, lead: int, grid: tuple, dims: tuple):
        self.regions = [(u, e * grid[ax] if ax is not None else e) for u, e, ax, _ in dims]
        self.inside = all(u >= 0 and u + r <= n[d] for d, (u, r) in enumerate(self.regions))
        self.src = tuple(slice(u, u + r) for u, r in self.regions)
        lo = [max(u, 0) for u, _ in self.regions]
        hi = [min(u + r, n[d]) for d, (u, r) in enumerate(self.regions)]
        self.nonempty = all(h > l for l, h in zip(lo, hi))
        self.valid_src = tuple(slice(l, h) for l, h in zip(lo, hi))
        self.valid_dst = tuple(slice(l - u, h - u) for l, h, (u, _) in zip(lo, hi, self.regions))
        self.full = [r for _, r in self.regions]
        # the common ragged case, one blocked dim padded at its tail, is recorded (see _PAD)
        tail = [d for d, (u, r) in enumerate(self.regions) if not (u >= 0 and u + r <= n[d])]
        self.tail = None
        if len(tail) == 1:
            d0 = tail[0]
            u0, _, ax0, keep0 = dims[d0]
            if ax0 is not None and keep0 and u0 >= 0:
                self.tail = (ax0, sum(1 for _, _, _, k in dims[:d0] if k), max(n[d0] - u0, 0))
        labels, self.split = [], []
        for d, (_, e, ax, _) in enumerate(dims):
            if ax is not None:
                labels.append(("g", ax))
                self.split.append(grid[ax])
            labels.append(("t", d))
            self.split.append(e)
        self.order = [labels.index(("g", a)) for a in range(lead) if ("g", a) in labels]
        self.order += [i for i, lab in enumerate(labels) if lab[0] == "t"]
        self.inverse = [0] * len(self.order)
        for i, o in enumerate(self.order):
            self.inverse[o] = i
        used = {lab[1] for lab in labels if lab[0] == "g"}
        self.all_axes = len(used) == lead
        tile = [e for u, e, ax, keep in dims if keep]
        self.out = [grid[a] if a in used else 1 for a in range(lead)] + tile
        self.expand = list(grid) + tile
        self.unsqueezed = list(grid) + [e for u, e, ax, keep in dims]


def _memo(cache: dict, key, make):
    """cache[key], made by make() on a miss; a bounded cache (a server sees few shapes)."""
    hit = cache.get(key)
    if hit is None:
        if len(cache) >= 4096:
            cache.clear()
        hit = cache[key] = make()
    return hit


_PLANS: dict = {}


def _plan(t: torch.Tensor, lead: int, grid: tuple, dims) -> _TilePlan:
    key = (tuple(t.shape), lead, tuple(grid), tuple(dims))
    return _memo(_PLANS, key, lambda: _TilePlan(*key))


def tile_load(t: torch.Tensor, lead: int, grid: tuple, dims, other=0, fresh: bool = False) -> torch.Tensor:
    """The tiles of every program; a view of ``t`` where they lie inside it, unless ``fresh``
    (the kernel stores into ``t``, and a load must not see a later store)."""
    p = _plan(t, lead, grid, dims)
    if p.inside:
        x = t[p.src].clone() if fresh else t[p.src]
    else:
        x = t.new_full(p.full, other)
        if p.nonempty:
            x[p.valid_dst] = t[p.valid_src]
    x = x.reshape(p.split).permute(p.order).reshape(p.out)
    if p.tail is not None and not p.inside and other == 0:
        setattr(x, _PAD, p.tail)
    return x


# Attribute of a tile_load result whose only padding is zero rows at the tail of a blocked dim:
# (instance axis, tile dim, valid): along (axis, tile dim) flattened, rows >= valid are padding.
_PAD = "_tilec_tail_padding"


def tile_store(t: torch.Tensor, value: torch.Tensor, lead: int, grid: tuple, dims) -> None:
    """Write the tiles of every program (each grid axis blocks one tensor dim) in one copy;
    only the part of the region inside the tensor is written."""
    p = _plan(t, lead, grid, dims)
    if not p.all_axes:
        raise ValueError("tile_store: every grid axis must block a dim")   # the emitter checks
    if not p.nonempty:
        return
    v = value.expand(p.expand).reshape(p.unsqueezed).permute(p.inverse).reshape(p.full)
    t[p.valid_src] = v[p.valid_dst]


def _fold_plan(xs: tuple, ys: tuple, lead: int, ty: bool):
    """Permutations/sizes of dot()'s folding for one pair of instance shapes (memoised: a
    kernel sees the same few shapes every launch)."""
    both = [a for a in range(lead) if xs[a] > 1 and ys[a] > 1]
    xo = [a for a in range(lead) if xs[a] > 1 and ys[a] == 1]
    yo = [a for a in range(lead) if ys[a] > 1 and xs[a] == 1]
    rest = [a for a in range(lead) if a not in both and a not in xo and a not in yo]
    bsz = tuple(xs[a] for a in both)
    px = both + rest + yo + xo + [lead, lead + 1]
    if ty:
        py = both + rest + xo + yo + [lead, lead + 1]
    else:
        py = both + rest + xo + [lead] + yo + [lead + 1]
    labels = both + xo + ["m"] + yo + ["n"] + rest
    back = [labels.index(a) for a in range(lead)] + [labels.index("m"), labels.index("n")]
    return (both, xo, yo, rest, bsz, math.prod(bsz), math.prod(xs[a] for a in xo),
            math.prod(ys[a] for a in yo), px, py, back)


_FOLD: dict = {}


def dot(x: torch.Tensor, y: torch.Tensor, lead: int, ty: bool = False,
        rows_dead: bool = False) -> torch.Tensor:
    """x [*I, m, k] @ y [*I, k, n] (y [*I, n, k] when ``ty``: y transposed) in f32 over
    ``lead`` instance axes. Axes along which only one operand varies fold into that operand's
    rows or columns, so a tile shared by all programs of an axis is multiplied once, in one
    GEMM."""
    pad = getattr(x, _PAD, None)
    if x.dtype != torch.float32:
        x = x.float()
    if y.dtype != torch.float32:
        y = y.float()
    xs, ys = x.shape[:lead], y.shape[:lead]
    if lead == 1 and pad is None and xs == ys:     # one GEMM per instance: no folding to do
        return torch.bmm(x, y.transpose(1, 2) if ty else y)
    xs, ys = tuple(xs), tuple(ys)
    key = (xs, ys, lead, ty)
    both, xo, yo, rest, bsz, nb, nx, ny, px, py, back = _memo(_FOLD, key, lambda: _fold_plan(*key))
    m, k = x.shape[lead], x.shape[lead + 1]
    n = y.shape[lead] if ty else y.shape[lead + 1]
    x2 = x.permute(px).reshape(nb, nx * m, k)
    if ty:
        y2 = y.permute(py).reshape(nb, ny * n, k).transpose(1, 2)
    else:
        y2 = y.permute(py).reshape(nb, k, ny * n)
    if pad is not None and pad[1] == 0 and (xo == [pad[0]] or (not xo and xs[pad[0]] == 1)) \
            and pad[2] < nx * m:
        # x's rows past `valid` are virtual padding, all zero, so their results are all equal
        # (0 @ y: 0, or NaN under a non-finite column of y): multiply the real rows and ONE
        # padding row, and copy that row's result to the others.
        # rows_dead: the compiler proved those results unobservable; they are left unset.
        v = pad[2]
        r = torch.empty(nb, nx * m, ny * n, dtype=torch.float32)
        if rows_dead:                 # the rest of r stays unset: nothing reads it
            if nb == 1:
                torch.mm(x2[0, :v], y2[0], out=r[0, :v])
            else:
                torch.matmul(x2[:, :v], y2, out=r[:, :v])
        else:
            torch.matmul(x2[:, :v + 1], y2, out=r[:, :v + 1])
            r[:, v + 1:] = r[:, v:v + 1]
    else:
        r = torch.matmul(x2, y2)                      # [nb, nx*m, ny*n]
    r = r.reshape(*bsz, *[xs[a] for a in xo], m, *[ys[a] for a in yo], n, *([1] * len(rest)))
    return r.permute(back)
