"""Recognise the Meta-Attention pattern in a specialised kernel's tile IR.

The attention lowering is pattern-based (like lower.py's GEMM): it accepts a kernel whose
signature is meta_attention's (Q, KC, VC, O, BT, TASKS[.,10], TREE, scale; consts BM, BN,
D, G, DT) and whose body holds the GEMM-softmax-GEMM chain (dot, reduce max, exp or exp2,
reduce sum, dot) in one KV loop, or in two consecutive ones (the tiles every row sees whole,
then the masked rest: the same chain split by where the mask is needed; the Ascend program
masks per tile itself). Anything else gets an AscendLoweringError naming file:line:col.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import construct, fail, where

_RANKS = (("Q", 3), ("KC", 4), ("VC", 4), ("O", 3), ("BT", 2), ("TASKS", 2), ("TREE", 1))


@dataclass(frozen=True)
class AttentionSpec:
    """What the lowering needs from the kernel: names of the tensor roles and the consts."""
    kernel: str
    tensors: dict          # role (Q, KC, VC, O, BT, TASKS, TREE) -> kernel tensor name
    scale: str             # name of the softmax-scale scalar
    BM: int
    BN: int
    D: int
    G: int
    dtype: str
    source: str            # "file:line:col" of the KV loop


def _fail(kernel, op, msg):
    fail(kernel, op, msg, f"kernel '{kernel.name}' is not lowered as Meta-Attention")


def recognise(kernel) -> AttentionSpec:
    first = next((o for o in kernel.walk() if getattr(o, "loc", None) is not None), None)
    ts = kernel.tensors
    if len(ts) != len(_RANKS):
        _fail(kernel, first, f"expected {len(_RANKS)} tensor parameters "
                             f"({', '.join(r for r, _ in _RANKS)}), got {len(ts)}")
    roles = {}
    for (role, rank), tp in zip(_RANKS, ts):
        if tp.type.rank != rank:
            _fail(kernel, first, f"tensor '{tp.name}' (role {role}) must have rank {rank}, "
                                 f"got {tp.type.rank}")
        roles[role] = tp.name
    dt = ts[0].type.dtype
    for tp, role in zip(ts[:4], ("Q", "KC", "VC", "O")):
        if tp.type.dtype != dt or dt not in ("f16", "bf16"):
            _fail(kernel, first, f"tensor '{tp.name}' ({role}) must be f16/bf16 like Q, got "
                                 f"{tp.type.dtype}")
    for tp in ts[4:]:
        if tp.type.dtype != "i32":
            _fail(kernel, first, f"tensor '{tp.name}' must be i32, got {tp.type.dtype}")
    if ts[5].type.dims[1] != 10:
        _fail(kernel, first, f"task table '{ts[5].name}' must have 10 columns (runtime/plan.py "
                             f"ABI), got {ts[5].type.dims[1]}")
    if len(kernel.scalars) != 1 or kernel.scalars[0].type.dtype != "f32":
        _fail(kernel, first, "expected one f32 scalar (the softmax scale)")
    c = kernel.consts
    for name in ("BM", "BN", "D", "G"):
        if not isinstance(c.get(name), int):
            _fail(kernel, first, f"const '{name}' must be bound to an integer")
    loops = [op for op in kernel.body.ops if op.name == "for"]
    if len(loops) not in (1, 2):
        _fail(kernel, loops[2] if len(loops) > 2 else first,
              f"expected one KV loop (or an unmasked and a masked one), found {len(loops)}")
    for loop in loops:
        _check_loop(kernel, loop)
    loop = loops[-1]
    return AttentionSpec(kernel.name, roles, kernel.scalars[0].hint or "scale", c["BM"], c["BN"],
                         c["D"], c["G"], dt, where(kernel, loop))


def _check_loop(kernel, loop) -> None:
    inner = [op for op in loop.walk()]
    names = [(o.name, o.attrs.get("op") or o.attrs.get("kind") or "") for o in inner]
    exp = ("unary", "exp2") if ("unary", "exp2") in names else ("unary", "exp")
    for need in (("dot", ""), ("reduce", "max"), exp, ("reduce", "sum")):
        if need not in names:
            _fail(kernel, loop, f"KV loop lacks the softmax chain: no '{' '.join(need).strip()}'")
    if sum(1 for n, _ in names if n == "dot") != 2:
        _fail(kernel, loop, "KV loop must hold exactly two dots (Q K^T and P V)")
    for op in inner:
        if op.name in ("for", "if") and op is not loop:
            _fail(kernel, op, f"{construct(op)} nested inside the KV loop is not supported; the KV loop "
                              f"body must be straight-line code")
