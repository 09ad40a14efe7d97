"""Masked-off lanes nothing observes: a row gather may leave them as fetched.

A masked load reads ``other`` in its masked-off lanes. For a paged K tile those are the keys
past the end of the KV range; the cpu backend fetches whole rows by clamped index and then
blanks the invalid ones (rt.blank_rows), which costs a pass over the tile every KV step.
When every path from the loaded value replaces exactly those lanes before anything reads
them, the blanking is dead work. For attention:

    s = dot(q, trans(k)) * scale          # column j of s depends on row j of k only
    s = where(vis, s, -1e30)              # vis = ... & kv_ok[None, :] & ...: lane j replaced

The check follows the value forward. Element-wise ops and ``trans`` keep lanes in place;
``dot`` keeps them in place when the flagged axis is not contracted. A ``select`` whose
condition has the load's flag as an AND-factor along the same axis ends the path, provided
the value is the selected-when-true operand. Anything else (a store, a reduction, loop-carried
state, a contraction over the flagged axis, a reshape) counts as observing them.
Axes are matched with the union-find of rows.py.
"""
from __future__ import annotations

from tilec.ir.core import Kernel, Op, Value

from .rows import and_factors, flag_axis, peel, tile_shape, unify


class Lanes:
    def __init__(self, kernel: Kernel, uf=None, uses: dict | None = None):
        """``uf``: rows.unify(kernel); ``uses``: value -> [(op, parent op)] (the emitter's);
        both built here when not given."""
        self.uf = uf if uf is not None else unify(kernel)
        if uses is None:
            uses = {}
            for op in kernel.walk():
                for v in op.operands:
                    uses.setdefault(v, []).append((op, None))
        self.uses = uses

    def flag(self, load: Op):
        """(F, class of F's axis) for a load masked by a per-row flag F, else None."""
        if not load.attrs["has_mask"]:
            return None
        f = peel(load.operands[1 + len(load.attrs["index"])])
        ax = flag_axis(f)
        return None if ax is None else (f, self.uf.find((f, ax)))

    def unobserved(self, load: Op) -> bool:
        """Whether the lanes ``load``'s per-row flag switches off are never observed."""
        fl = self.flag(load)
        if fl is None:
            return False
        flag, cls = fl

        def axes(v: Value) -> list:
            return [i for i in range(len(tile_shape(v))) if self.uf.find((v, i)) == cls]

        work, seen = [load.results[0]], set()
        while work:
            v = work.pop()
            if v in seen:
                continue
            seen.add(v)
            ax = axes(v)
            if len(ax) != 1:
                return False             # flagged lanes on no axis, or on two: give up
            for o, _ in self.uses.get(v, []):
                nm = o.name
                if nm in ("binary", "unary", "cast", "cmp", "trans"):
                    work.append(o.results[0])
                elif nm == "dot":
                    x, y = o.operands
                    if (v is x and ax == [1]) or (v is y and ax == [0]):
                        return False     # contracted: every output mixes the flagged lanes
                    work.append(o.results[0])
                elif nm == "select":
                    c, a, b = o.operands
                    if v is not a or v is b or v is c:
                        return False
                    if not any(peel(f) is flag for f in and_factors(c)):
                        work.append(o.results[0])
                else:
                    return False
        return True
