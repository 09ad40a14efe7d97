"""Bounds analysis: for each load/store dimension decide whether a bounds mask is needed.

A slice ``start : start + S`` of a dimension of static size N needs no mask when S divides N
and ``start`` is provably a multiple of S (a product with S, a loop stepping by S from an
aligned start, ...): the block is then wholly inside or wholly outside the tensor, and
kernels only address blocks inside. Everything else (runtime sizes, gathers, scalar indices)
keeps its mask: that is virtual padding. The reference backend checks every unmasked access
and reports any that would leave the tensor, so a wrong claim here cannot go unnoticed.
"""
from __future__ import annotations

import math

from tilec.ir.core import Block, Kernel, Op, Value

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


def analyse_bounds(kernel: Kernel) -> Kernel:
    div = _divisibility(kernel)

    def visit(block: Block) -> None:
        for op in block.ops:
            if op.name in ("load", "store"):
                dims = op.operands[0].type.dims
                masked = []
                for axis, (kind, idx) in enumerate(zip(op.attrs["index"], op.operands[1:])):
                    n = dims[axis]
                    need = True
                    if kind[0] == "slice" and isinstance(n, int):
                        size = kind[1]
                        need = not (n % size == 0 and div.get(idx, 1) % size == 0)
                    elif kind[0] == "scalar" and isinstance(n, int) and idx.owner is not None \
                            and getattr(idx.owner, "name", "") == "constant":
                        need = not (0 <= idx.owner.attrs["value"] < n)
                    masked.append(need)
                op.attrs["masked"] = masked
            for r in op.regions:
                visit(r)
    visit(kernel.body)
    return kernel
