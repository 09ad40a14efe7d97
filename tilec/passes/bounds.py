"""Bounds analysis: for each load/store dimension decide whether a bounds mask is needed.

A slice ``start : start + S`` of a dimension of static size N needs no mask when S divides N
and ``start`` is provably a multiple of S (a product with S, a loop stepping by S from an
aligned start, ...): the block is then wholly inside or wholly outside the tensor, and
kernels only address blocks inside. An index (scalar or tile, or a slice's start) also needs
none when its value range is provably inside the dimension: ``arange(0, D)`` on a dim of
size D, ``j % BS`` with ``j >= 0`` on the dim named BS, ``program_id(0)`` on the dim the grid
launches over. Everything else (runtime sizes, gathers of loaded indices) keeps its mask: that
is virtual padding. The reference backend checks every unmasked access and reports any that
would leave the tensor, so a wrong claim here cannot go unnoticed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from tilec.ir import dtypes as D
from tilec.ir.core import Block, Kernel, Value

_BIG = 1 << 30


def _divisibility(kernel: Kernel) -> dict[Value, int]:
    div: dict[Value, int] = {}

    def d(v: Value) -> int:
        return div.get(v, 1)

    def walk(block: Block) -> None:
        for op in block.ops:
            if op.name == "constant" and isinstance(op.attrs["value"], int) \
                    and not isinstance(op.attrs["value"], bool):
                c = abs(op.attrs["value"])
                div[op.result] = c if c else _BIG
            elif op.name == "binary" and op.result.type.is_scalar:
                a, b = op.operands
                kind = op.attrs["op"]
                if kind == "mul":
                    div[op.result] = min(_BIG, d(a) * d(b))
                elif kind in ("add", "sub"):
                    div[op.result] = math.gcd(d(a), d(b))
            elif op.name == "for":
                body = op.regions[0]
                div[body.args[0]] = math.gcd(d(op.operands[0]), op.attrs["step"])
            for r in op.regions:
                walk(r)
    walk(kernel.body)
    return div


@dataclass(frozen=True)
class _Range:
    """Every element of an integer value lies in [lo, hi] (None: unbounded that side) and below
    each dim named in ``below`` (a launch-time size, so no number is known)."""
    lo: int | None = None
    hi: int | None = None
    below: frozenset = frozenset()


_ANY = _Range()


def _add(x, y):
    return None if x is None or y is None else x + y


def _ranges(kernel: Kernel) -> dict[Value, _Range]:
    rng: dict[Value, _Range] = {}
    dim_of = {v: n for n, v in kernel.dims.items()}
    for v in dim_of:
        rng[v] = _Range(0, None)          # a tensor's size is never negative
    grid = kernel.grid.terminator.operands if kernel.grid.terminator else []

    def r(v: Value) -> _Range:
        return rng.get(v, _ANY)

    def through(v: Value) -> Value:
        """The scalar behind splats and broadcasts (a dim's value is spread over a tile)."""
        while v.owner is not None and getattr(v.owner, "name", "") in ("splat", "broadcast",
                                                                        "expand_dims"):
            v = v.owner.operands[0]
        return v

    def binary(kind: str, a: _Range, b: _Range, bv: Value) -> _Range:
        if kind == "add":
            return _Range(_add(a.lo, b.lo), _add(a.hi, b.hi))
        if kind == "sub":
            return _Range(_add(a.lo, None if b.hi is None else -b.hi),
                          _add(a.hi, None if b.lo is None else -b.lo))
        if kind == "mul" and a.lo is not None and b.lo is not None and a.lo >= 0 and b.lo >= 0:
            return _Range(a.lo * b.lo, None if a.hi is None or b.hi is None else a.hi * b.hi)
        if kind == "minimum":
            his = [h for h in (a.hi, b.hi) if h is not None]
            return _Range(None if a.lo is None or b.lo is None else min(a.lo, b.lo),
                          min(his) if his else None, a.below | b.below)
        if kind == "maximum":
            los = [x for x in (a.lo, b.lo) if x is not None]
            return _Range(max(los) if los else None,
                          None if a.hi is None or b.hi is None else max(a.hi, b.hi),
                          a.below & b.below)
        n = dim_of.get(through(bv))
        if kind == "mod" and n and a.lo is not None and a.lo >= 0:
            # x % N on the dim named N: below N whenever N >= 1 (N = 0 leaves nothing to index,
            # and x % 0 is an error in the language; the runtime rejects empty KV blocks)
            return _Range(0, a.hi, frozenset([n]))
        if a.lo is None or a.lo < 0 or b.lo is None or b.lo < 1:
            return _ANY                   # truncating // and % need x >= 0 and y >= 1 here
        if kind == "floordiv":
            return _Range(a.lo // b.hi if b.hi is not None else 0,
                          None if a.hi is None else a.hi // b.lo)
        if kind == "mod":
            his = [h for h in (a.hi, None if b.hi is None else b.hi - 1) if h is not None]
            return _Range(0, min(his) if his else None)
        return _ANY

    def walk(block: Block) -> None:
        for op in block.ops:
            name, res = op.name, op.results[0] if op.results else None
            if res is not None and not D.is_int(res.type.dtype):
                res = None
            if name == "for":           # lo <= iv < hi: the frontend requires a positive step
                iv = op.regions[0].args[0]
                lo, hi = r(op.operands[0]), r(op.operands[1])
                rng[iv] = _Range(lo.lo, None if hi.hi is None else hi.hi - 1, hi.below)
            elif res is None:
                pass
            elif name == "constant" and not isinstance(op.attrs["value"], bool):
                rng[res] = _Range(op.attrs["value"], op.attrs["value"])
            elif name == "arange":
                rng[res] = _Range(op.attrs["start"], op.attrs["end"] - 1)
            elif name == "program_id":
                ax = op.attrs["axis"]
                n = dim_of.get(grid[ax]) if ax < len(grid) else None
                rng[res] = _Range(0, None, frozenset([n]) if n else frozenset())
            elif name in ("splat", "broadcast", "expand_dims", "reshape", "trans"):
                rng[res] = r(op.operands[0])
            elif name == "cast" and D.is_int(op.operands[0].type.dtype):
                rng[res] = r(op.operands[0])
            elif name == "select":
                a, b = r(op.operands[1]), r(op.operands[2])
                rng[res] = _Range(None if a.lo is None or b.lo is None else min(a.lo, b.lo),
                                  None if a.hi is None or b.hi is None else max(a.hi, b.hi),
                                  a.below & b.below)
            elif name == "binary":
                rng[res] = binary(op.attrs["op"], r(op.operands[0]), r(op.operands[1]),
                                  op.operands[1])
            for reg in op.regions:
                walk(reg)
    walk(kernel.body)
    return rng


def _inside(rg: _Range, n, extent: int = 1) -> bool:
    """Every index in rg (a block of ``extent`` from each) lies in a dim of size n."""
    if rg.lo is None or rg.lo < 0:
        return False
    if isinstance(n, int):
        return rg.hi is not None and rg.hi + extent <= n
    return extent == 1 and n in rg.below


def analyse_bounds(kernel: Kernel) -> Kernel:
    div = _divisibility(kernel)
    rng = _ranges(kernel)

    def visit(block: Block) -> None:
        for op in block.ops:
            if op.name in ("load", "store"):
                dims = op.operands[0].type.dims
                masked = []
                for axis, (kind, idx) in enumerate(zip(op.attrs["index"], op.operands[1:])):
                    n = dims[axis]
                    rg = rng.get(idx, _ANY)
                    if kind[0] == "slice":
                        size = kind[1]
                        need = not ((isinstance(n, int) and n % size == 0
                                     and div.get(idx, 1) % size == 0) or _inside(rg, n, size))
                    else:
                        need = not _inside(rg, n)
                    masked.append(need)
                op.attrs["masked"] = masked
            for r in op.regions:
                visit(r)
    visit(kernel.body)
    return kernel
