"""Row classes: run each program instance on only as many tile rows as it can store.

A Meta-Attention launch mixes tiles whose rows are nearly all real (prefill) with tiles that
hold one token x G heads of BM rows (decode). Vectorised over the grid, every instance pays
for all BM rows. This analysis finds a kernel's *row axis* and proves two things about it:

1. rows are independent: a row's values depend only on the same row of other values (no
   reduction or contraction over it, no reshape of it, no slice index feeding it), so
   computing rows [0, R) of every value gives exactly the values the full tile would have;
2. a per-row flag F (a value with the row axis as its only non-unit dim, defined at the top
   level of the kernel body) is an AND-factor of the mask of every store that writes row-axis
   data, so rows at or past the last set flag of F are never observed.

The cpu emitter then splits the code after F into a loop over *row classes*: instances are
grouped by their live row count (the index of the last set flag + 1) and each group runs with
its tiles cut to the group's largest count (rt.row_classes). Integer division whose result
lies on the row axis disables the split, so a division by zero in a dead row still raises as
the reference does.

Dims are tracked as (value, axis) pairs joined by a union-find: element-wise ops, loop-carried
values and load/store index broadcasting join the dims they line up; splat, full, arange and
broadcasting of unit dims make fresh ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tilec.ir import dtypes as D
from tilec.ir.core import Kernel, Op, Value

_ELEMENTWISE = ("binary", "cmp", "unary", "select", "cast")


@dataclass
class RowPlan:
    flag: Value                     # the per-row flag F (bool, row axis its only non-unit dim)
    split: int                      # ops of kernel.body before this index run on whole tiles
    rows: int                       # BM, the row axis' size
    dims: dict = field(default_factory=dict)    # value -> axes of it on the row axis

    def row_axes(self, v: Value) -> tuple:
        return self.dims.get(v, ())


class _UF:
    def __init__(self):
        self.parent: dict = {}

    def find(self, x):
        p = self.parent.setdefault(x, x)
        while p != x:
            self.parent[x] = self.parent.setdefault(p, p)
            x, p = p, self.parent[p]
        return x

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb


def tile_shape(v: Value) -> tuple:
    return tuple(getattr(v.type, "shape", ()) or ())


def _join_aligned(uf: _UF, res: Value, others) -> None:
    """Load/store operands broadcast left-aligned against the access shape (as the emitter
    does): dims of equal, non-unit size line up."""
    rs = tile_shape(res)
    for v in others:
        for i, n in enumerate(tile_shape(v)):
            if i < len(rs) and n == rs[i] and n > 1:
                uf.union((res, i), (v, i))


def unify(kernel: Kernel) -> _UF:
    """The union-find of the kernel's tile dims (shared by this analysis and lanes.py)."""
    uf = _UF()
    _unify(kernel, uf)
    return uf


def _unify(kernel: Kernel, uf: _UF) -> None:
    for op in kernel.walk():
        nm = op.name
        res = op.results[0] if op.results else None
        if nm in _ELEMENTWISE:
            for v in op.operands:
                if len(tile_shape(v)) == len(tile_shape(res)):
                    for i in range(len(tile_shape(res))):
                        uf.union((res, i), (v, i))
        elif nm == "broadcast":
            src = op.operands[0]
            for i, (a, b) in enumerate(zip(tile_shape(src), tile_shape(res))):
                if a == b:
                    uf.union((res, i), (src, i))
        elif nm == "expand_dims":
            src, ax = op.operands[0], op.attrs["axis"]
            for i in range(len(tile_shape(src))):
                uf.union((res, i + (i >= ax)), (src, i))
        elif nm == "trans":
            uf.union((res, 0), (op.operands[0], 1))
            uf.union((res, 1), (op.operands[0], 0))
        elif nm == "reduce":
            src, ax = op.operands[0], op.attrs["axis"]
            for i in range(len(tile_shape(res))):
                uf.union((res, i), (src, i + (i >= ax)))
        elif nm == "dot":
            x, y = op.operands
            uf.union((res, 0), (x, 0))
            uf.union((res, 1), (y, 1))
            uf.union((x, 1), (y, 0))
        elif nm == "load":
            _join_aligned(uf, res, op.operands[1:])
        elif nm == "store":
            nidx = len(op.attrs["index"])
            value = op.operands[1 + nidx]
            _join_aligned(uf, value, list(op.operands[1:1 + nidx]) + list(op.operands[2 + nidx:]))
        elif nm == "for":
            body = op.regions[0]
            for init, arg, y, r in zip(op.operands[2:], body.args[1:], body.terminator.operands,
                                       op.results):
                for i in range(len(tile_shape(r))):
                    for v in (init, arg, y):
                        uf.union((r, i), (v, i))
        elif nm == "if":
            then, els = op.regions
            for i_, r in enumerate(op.results):
                for i in range(len(tile_shape(r))):
                    uf.union((r, i), (then.terminator.operands[i_], i))
                    uf.union((r, i), (els.terminator.operands[i_], i))


def peel(v: Value) -> Value:
    while isinstance(v.owner, Op) and v.owner.name in ("broadcast", "splat", "expand_dims"):
        v = v.owner.operands[0]
    return v


def _nonzero_constant(v: Value) -> bool:
    v = peel(v)
    o = v.owner
    return isinstance(o, Op) and o.name == "constant" and o.attrs["value"] != 0


def and_factors(v: Value) -> list:
    o = v.owner
    if isinstance(o, Op) and o.name == "binary" and o.attrs["op"] == "and":
        return and_factors(o.operands[0]) + and_factors(o.operands[1])
    if isinstance(o, Op) and o.name in ("broadcast", "expand_dims"):
        return [v] + and_factors(o.operands[0])
    return [v]


def flag_axis(v: Value) -> int | None:
    """The axis of a per-row flag (a bool tile with one non-unit dim), else None."""
    big = [i for i, n in enumerate(tile_shape(v)) if n > 1]
    return big[0] if len(big) == 1 and v.type.dtype == "bool" else None


def _row_flags(store: Op) -> list:
    """Candidate per-row flags of a store's mask: AND-factors with one non-unit dim."""
    if not store.attrs["has_mask"]:
        return []
    mask = store.operands[2 + len(store.attrs["index"])]
    out = []
    for f in map(peel, and_factors(mask)):
        if flag_axis(f) is not None and f not in out:
            out.append(f)
    return out


def analyse(kernel: Kernel, uf: _UF | None = None) -> tuple[RowPlan | None, str]:
    """(plan, "") when the kernel's rows can be cut per instance, else (None, why not).
    ``uf``: the kernel's dim union-find (unify), if the caller has built it already."""
    if kernel.grid_rank != 1:
        return None, "grid rank is not 1"
    uf = uf if uf is not None else unify(kernel)
    stores = [op for op in kernel.walk() if op.name == "store"]
    top = {r: i for i, op in enumerate(kernel.body.ops) for r in op.results}
    why = "no store masked by a per-row flag"
    for st in stores:
        for flag in _row_flags(st):
            ax = flag_axis(flag)
            if flag not in top:
                why = "the per-row flag is not computed at the top level of the kernel"
                continue
            plan, why = _check(kernel, uf, flag, ax, top[flag] + 1, stores)
            if plan is not None:
                return plan, ""
    return None, why


def _check(kernel, uf, flag, ax, split, stores):
    cls = uf.find((flag, ax))
    bm = tile_shape(flag)[ax]
    dims: dict = {}

    def on_row(v: Value) -> tuple:
        if v not in dims:
            dims[v] = tuple(i for i in range(len(tile_shape(v))) if uf.find((v, i)) == cls)
        return dims[v]

    for op in kernel.walk():
        vals = list(op.operands) + list(op.results) + [a for r in op.regions for a in r.args]
        for v in vals:
            for i in on_row(v):
                if tile_shape(v)[i] != bm:
                    return None, f"row axis has sizes other than {bm}"
        nm = op.name
        if nm == "reduce" and op.attrs["axis"] in on_row(op.operands[0]):
            return None, "a reduction over the row axis"
        if nm == "dot" and 1 in on_row(op.operands[0]):
            return None, "a contraction over the row axis"
        if nm == "reshape" and (on_row(op.operands[0]) or on_row(op.results[0])):
            return None, "a reshape of the row axis"
        if nm == "binary" and op.attrs["op"] in ("div", "floordiv", "mod") and \
                D.is_int(op.results[0].type.dtype) and on_row(op.results[0]) and \
                not _nonzero_constant(op.operands[1]):
            return None, "an integer division on the row axis (it must raise as in the reference)"
        if nm in ("load", "store"):
            nidx = len(op.attrs["index"])
            acc = op.results[0] if nm == "load" else op.operands[1 + nidx]
            nsl = sum(1 for k in op.attrs["index"] if k[0] == "slice")
            rank = len(tile_shape(acc))
            if nsl and any(i >= rank - nsl for i in on_row(acc)):
                return None, "a slice index on the row axis"
    for st in stores:
        touched = any(on_row(v) for v in st.operands[1:])
        if touched and flag not in _row_flags(st):
            return None, "a store of row data not masked by the per-row flag"
    # values of the kernel body (and loops) that lie on the row axis
    row_dims = {}
    for op in kernel.walk():
        for v in list(op.operands) + list(op.results) + [a for r in op.regions for a in r.args]:
            if on_row(v):
                row_dims[v] = on_row(v)
    return RowPlan(flag=flag, split=split, rows=bm, dims=row_dims), ""
