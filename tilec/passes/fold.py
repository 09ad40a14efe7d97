"""Constant folding: scalar ops whose operands are all constants become constants, and
trivially dead pure ops are dropped."""
from __future__ import annotations

import numpy as np

from tilec.ir import dtypes as D
from tilec.ir.core import Block, Kernel, Op

_PURE = {"constant", "binary", "cmp", "unary", "cast", "splat", "broadcast", "expand_dims",
         "trans", "reshape", "reduce", "dot", "arange", "full", "select", "program_id",
         "num_programs", "load"}


def _fold(op: Op, consts: dict):
    vals = [consts.get(v) for v in op.operands]
    if any(v is None for v in vals) or not op.results or not op.results[0].type.is_scalar:
        return None
    # reuse the reference semantics so folding can never disagree with execution
    from tilec.ir.semantics import scalar_eval
    try:
        return scalar_eval(op, vals)
    except (ArithmeticError, ValueError):
        return None


def _run(block: Block, consts: dict) -> None:
    for op in block.ops:
        for r in op.regions:
            _run(r, consts)
        if op.name == "constant":
            consts[op.result] = op.attrs["value"]
        elif op.name in ("binary", "cmp", "unary", "cast", "select"):
            v = _fold(op, consts)
            if v is not None:
                dt = op.result.type.dtype
                py = float(v) if D.is_float(dt) else bool(v) if dt == "bool" else int(v)
                op.name, op.operands, op.attrs = "constant", [], {"value": py}
                consts[op.result] = py


def _dce(block: Block) -> None:
    used = set()

    def mark(b: Block):
        for op in b.ops:
            used.update(op.operands)
            for r in op.regions:
                mark(r)
    mark(block)
    changed = True
    while changed:
        changed = False
        keep = []
        for op in block.ops:
            if op.name in _PURE and op.results and not any(r in used for r in op.results):
                changed = True
                continue
            keep.append(op)
        block.ops = keep
        used = set()
        mark(block)
    for op in block.ops:
        for r in op.regions:
            _dce(r)


def fold_constants(kernel: Kernel) -> Kernel:
    consts: dict = {}
    _run(kernel.grid, consts)
    _run(kernel.body, consts)
    _dce(kernel.body)
    _dce(kernel.grid)
    return kernel
