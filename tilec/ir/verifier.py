"""IR verifier: SSA scoping, terminators and the per-op type rules listed in core.py.
A failure is a compiler bug, reported as ``IRVerifyError`` naming the op."""
from __future__ import annotations

from .core import Block, Kernel, Op, TensorType, Type


class IRVerifyError(AssertionError):
    pass


_ELEMENTWISE_SAME = {"binary"}


def _fail(op: Op, msg: str):
    raise IRVerifyError(f"{op.name}{' at ' + str(op.loc) if op.loc else ''}: {msg}")


def _check_op(op: Op) -> None:
    t = [v.type for v in op.operands]
    n = op.name
    if n == "binary":
        if t[0] != t[1] or op.result.type != t[0]:
            _fail(op, f"operands {t[0]}, {t[1]} -> {op.result.type} must all match")
    elif n == "cmp":
        if t[0] != t[1] or op.result.type != Type("bool", t[0].shape):
            _fail(op, f"cmp {t[0]}, {t[1]} -> {op.result.type}")
    elif n == "unary":
        if op.result.type != t[0]:
            _fail(op, "result type differs from operand")
    elif n == "select":
        if not (t[0].dtype == "bool" and t[0].shape == t[1].shape and t[1] == t[2] == op.result.type):
            _fail(op, f"select({t[0]}, {t[1]}, {t[2]})")
    elif n == "dot":
        a, b = t
        if len(a.shape) != 2 or len(b.shape) != 2 or a.shape[1] != b.shape[0] or a.dtype != b.dtype:
            _fail(op, f"dot({a}, {b})")
        if op.result.type != Type("f32", (a.shape[0], b.shape[1])):
            _fail(op, "dot result must be f32[M,N]")
    elif n in ("load", "store"):
        if not isinstance(t[0], TensorType):
            _fail(op, "first operand must be a tensor")
        if len(op.attrs["index"]) != t[0].rank:
            _fail(op, "one index per tensor dim")
    elif n in ("for",):
        body = op.regions[0]
        carried = [v.type for v in op.operands[2:]]
        if [a.type for a in body.args[1:]] != carried or [r.type for r in op.results] != carried:
            _fail(op, "loop-carried types differ between init, block args and results")
        if [v.type for v in body.terminator.operands] != carried:
            _fail(op, "yield types differ from loop-carried types")
    elif n == "if":
        for r in op.regions:
            if [v.type for v in r.terminator.operands] != [x.type for x in op.results]:
                _fail(op, "branch yields differ from the if's result types")


def _verify_block(block: Block, visible: set) -> None:
    visible = set(visible) | set(block.args)
    if not block.ops or block.ops[-1].name != "yield":
        raise IRVerifyError("block does not end in yield")
    for op in block.ops:
        for v in op.operands:
            if v not in visible:
                _fail(op, f"uses {v!r} before its definition or outside its scope")
        if op.name == "yield" and op is not block.ops[-1]:
            _fail(op, "yield in the middle of a block")
        _check_op(op)
        for r in op.regions:
            _verify_block(r, visible)
        visible.update(op.results)


def verify(kernel: Kernel) -> Kernel:
    base = {tp.value for tp in kernel.tensors} | set(kernel.scalars) | set(kernel.dims.values())
    _verify_block(kernel.grid, base)
    _verify_block(kernel.body, base)
    return kernel
