"""Lower the GEMM pattern of smooth_gemm / smooth_gemm_t to an Ascend program for one AI core
tile task (see program.py), with ping-pong L1/L0A/L0B buffers, and check it against the target.

Recognised IR (per specialisation):
    m0 = program_id(0) * BM ; n0 = program_id(1) * BN ; acc = full(0, f32[BM,BN])
    for k in range(0, K, BK): a = load(A[m0, k]); b = load(B[k, n0]) | trans(load(W[n0, k]))
                              acc = acc + dot(a, b)
    store(C[m0, n0], cast(acc, DT))
Anything else raises AscendLoweringError naming the op and its source location.
"""
from __future__ import annotations

from tilec import targets as T
from tilec.ir.core import Kernel, Op

from .errors import AscendLegalityError
from .errors import construct, targeted
from .errors import fail as _fail
from .program import (Buffer, CopyGmToL1, FixPipe, GmTile, LoadL0, Mmad, Program, Ref,
                      SetFlag, WaitFlag)


def _const(v):
    o = v.owner
    if isinstance(o, Op) and o.name == "constant":
        return o.attrs["value"]
    return None


def _pid_times(v, axis):
    """If v == program_id(axis) * c, return c."""
    o = v.owner
    if not (isinstance(o, Op) and o.name == "binary" and o.attrs.get("op") == "mul"):
        return None
    x, y = o.operands
    for p, c in ((x, y), (y, x)):
        po = p.owner
        if isinstance(po, Op) and po.name == "program_id" and po.attrs["axis"] == axis:
            return _const(c)
    return None


def _user_op(ops, op):
    """The op to blame for ``op``: an implicit splat/broadcast is reported at its first user (the
    operator the user wrote), whose position is the one that means something to them."""
    if op.name not in ("splat", "broadcast", "expand_dims"):
        return op
    for o in ops:
        if op.result in o.operands:
            return _user_op(ops, o)
    return op


@targeted
def lower_gemm(kernel: Kernel, target="ascend910b2") -> Program:
    tgt = T.get(target) if isinstance(target, str) else target
    tparams = {tp.value: tp.name for tp in kernel.tensors}
    scalar_ok = {"program_id", "constant", "binary"}
    loop = store = zero = None
    for op in kernel.body.ops:
        if op.name in scalar_ok and op.results and op.result.type.is_scalar:
            continue
        if op.name == "full" and zero is None:
            zero = op
        elif op.name == "for" and loop is None:
            loop = op
        elif op.name == "cast" and store is None:
            continue
        elif op.name == "store" and store is None:
            store = op
        elif op.name == "yield":
            continue
        else:
            op = _user_op(kernel.body.ops, op)
            _fail(kernel, op, f"{construct(op)} is not supported outside the K loop of a Cube GEMM "
                              f"kernel; a GEMM kernel is: acc = zeros(...); for k: acc += dot(load(A tile), "
                              f"load(B tile)); store(C tile, cast(acc, DT)) (elementwise epilogues go in "
                              f"a separate vector kernel)")
    if loop is None or store is None or zero is None:
        bad = next((o for o in kernel.body.ops if o.name not in scalar_ok), kernel.body.ops[0])
        _fail(kernel, bad, "this kernel uses dot() but is not a GEMM the Cube unit runs: write "
                           "acc = zeros((BM, BN), f32), a for loop over K with acc += dot(a, b), "
                           "then store(C[...], cast(acc, DT))")
    if zero.attrs["value"] != 0 or zero.result.type.dtype != "f32":
        _fail(kernel, zero, "accumulator must start as f32 zeros")
    BM, BN = zero.result.type.shape
    if len(loop.operands) != 3 or loop.operands[2] is not zero.result or _const(loop.operands[0]) != 0:
        _fail(kernel, loop, "K loop must start at 0 and carry only the accumulator")
    BK = loop.attrs["step"]
    hi = loop.operands[1]
    if _const(hi) is not None:
        k_extent = ("const", int(_const(hi)))
    else:
        names = {v: n for n, v in kernel.dims.items()}
        if hi not in names:
            _fail(kernel, loop, "K loop bound must be a tensor dim or a constant")
        k_extent = ("dim", names[hi])

    # loop body
    body = loop.regions[0]
    kv, accv = body.args
    loads, trans_op, dot_op, add_op = [], None, None, None
    for op in body.ops:
        if op.name == "load":
            if op.attrs.get("has_mask") or op.attrs.get("has_other") or \
                    any(k[0] != "slice" for k in op.attrs["index"]) or len(op.attrs["index"]) != 2:
                _fail(kernel, op, "only unmasked 2-d block loads are supported")
            loads.append(op)
        elif op.name == "trans" and trans_op is None:
            trans_op = op
        elif op.name == "dot" and dot_op is None:
            dot_op = op
        elif op.name == "binary" and op.attrs["op"] == "add" and add_op is None:
            add_op = op
        elif op.name == "yield":
            if op.operands != [add_op.result] if add_op else True:
                _fail(kernel, op, "loop must yield acc + dot(...)")
        elif op.name in scalar_ok and op.result.type.is_scalar:
            continue
        else:
            _fail(kernel, op, f"{construct(op)} is not supported inside the K loop of a Cube GEMM; "
                              f"the loop may only load the A and B tiles and accumulate acc += dot(a, b)")
    if dot_op is None or add_op is None or len(loads) != 2:
        _fail(kernel, loop, "K loop must hold two loads, a dot and an accumulate")
    if set(add_op.operands) != {accv, dot_op.result}:
        _fail(kernel, add_op, "accumulate must be acc + dot(...)")
    a_val, b_val = dot_op.operands
    a_load = a_val.owner
    if a_load not in loads:
        _fail(kernel, dot_op, "dot lhs must be a loaded tile")
    transpose_b = False
    if b_val.owner is trans_op and trans_op is not None:
        b_load, transpose_b = trans_op.operands[0].owner, True
    else:
        b_load = b_val.owner
    if b_load not in loads or b_load is a_load:
        _fail(kernel, dot_op, "dot rhs must be a loaded tile (optionally transposed)")

    def sym(v, op):
        if v is kv:
            return "k"
        c = _pid_times(v, 0)
        if c == BM:
            return "m0"
        c = _pid_times(v, 1)
        if c == BN:
            return "n0"
        _fail(kernel, op, "tile offsets must be program_id(0)*BM, program_id(1)*BN or k")

    def gm(op, n_idx=2):
        t = op.operands[0]
        if t not in tparams:
            _fail(kernel, op, "load/store must address a tensor parameter")
        (r, c) = [sym(v, op) for v in op.operands[1:1 + n_idx]]
        shp = [k[1] for k in op.attrs["index"]]
        return GmTile(tparams[t], (r, shp[0]), (c, shp[1]))

    a_gm, b_gm = gm(a_load), gm(b_load)
    want_b = ("n0", "k") if transpose_b else ("k", "n0")
    if (a_gm.rows[0], a_gm.cols[0]) != ("m0", "k") or (b_gm.rows[0], b_gm.cols[0]) != want_b:
        _fail(kernel, dot_op, f"operands must be A[m0, k] and "
                              f"{'W[n0, k]^T' if transpose_b else 'B[k, n0]'}")
    # store(C[m0, n0], cast(acc))
    if store.attrs.get("has_mask"):
        _fail(kernel, store, "masked stores are not supported")
    val = store.operands[3]
    cast_op = val.owner
    if not (isinstance(cast_op, Op) and cast_op.name == "cast" and cast_op.operands[0] is loop.results[0]):
        _fail(kernel, store, "store value must be cast(acc)")
    c_gm = gm(store)
    if (c_gm.rows[0], c_gm.cols[0]) != ("m0", "n0"):
        _fail(kernel, store, "store must write C[m0, n0]")
    dt = a_load.result.type.dtype
    if dt not in tgt.cube_macs_per_cycle or b_load.result.type.dtype != dt:
        _fail(kernel, dot_op, f"Cube inputs must share a supported dtype, got {dt}")
    out_dt = cast_op.attrs["dtype"]

    bl1 = (BN, BK) if transpose_b else (BK, BN)
    bufs = {
        "L1A": Buffer("L1A", "L1", (BM, BK), dt, 2, "NZ"),
        "L1B": Buffer("L1B", "L1", bl1, dt, 2, "NZ"),
        "L0A": Buffer("L0A", "L0A", (BM, BK), dt, 2, "zZ"),
        "L0B": Buffer("L0B", "L0B", (BK, BN), dt, 2, "nZ"),
        "L0C": Buffer("L0C", "L0C", (BM, BN), "f32", 1, "NZ"),
    }
    prologue = [SetFlag(src="MTE1", dst="MTE2", event=0), SetFlag(src="MTE1", dst="MTE2", event=1),
                SetFlag(src="CUBE", dst="MTE1", event=0), SetFlag(src="CUBE", dst="MTE1", event=1)]
    body_i = [
        WaitFlag(src="MTE1", dst="MTE2", event="p"),
        CopyGmToL1(src=a_gm, dst=Ref("L1A", "p")),
        CopyGmToL1(src=b_gm, dst=Ref("L1B", "p")),
        SetFlag(src="MTE2", dst="MTE1", event="p"),
        WaitFlag(src="MTE2", dst="MTE1", event="p"),
        WaitFlag(src="CUBE", dst="MTE1", event="p"),
        LoadL0(src=Ref("L1A", "p"), dst=Ref("L0A", "p")),
        LoadL0(src=Ref("L1B", "p"), dst=Ref("L0B", "p"), transpose=transpose_b),
        SetFlag(src="MTE1", dst="MTE2", event="p"),
        SetFlag(src="MTE1", dst="CUBE", event="p"),
        WaitFlag(src="MTE1", dst="CUBE", event="p"),
        Mmad(a=Ref("L0A", "p"), b=Ref("L0B", "p"), dst=Ref("L0C", 0)),
        SetFlag(src="CUBE", dst="MTE1", event="p"),
    ]
    epilogue = [SetFlag(src="CUBE", dst="FIXPIPE", event=0),
                WaitFlag(src="CUBE", dst="FIXPIPE", event=0),
                FixPipe(src=Ref("L0C", 0), dst=c_gm, dtype=out_dt),
                WaitFlag(src="MTE1", dst="MTE2", event=0), WaitFlag(src="MTE1", dst="MTE2", event=1),
                WaitFlag(src="CUBE", dst="MTE1", event=0), WaitFlag(src="CUBE", dst="MTE1", event=1)]
    prog = Program(kernel.name, bufs, prologue, body_i, epilogue,
                   dict(BM=BM, BN=BN, BK=BK, dtype=dt, out_dtype=out_dt), k_extent,
                   dict(A=a_gm.tensor, B=b_gm.tensor, C=c_gm.tensor), transpose_b)
    check_legality(prog, tgt)
    return prog


def check_legality(prog: Program, tgt) -> None:
    """Fractal shape, alignment and capacity of every on-chip buffer (all slots) per space."""
    used: dict[str, int] = {}
    for b in prog.buffers.values():
        space = b.space.lower()
        if b.space in ("L1", "L0A", "L0B"):
            fr, fc = tgt.fractal_shape(b.dtype)
        else:
            fr, fc = tgt.l0c_fractal
        if b.shape[0] % fr or b.shape[1] % fc:
            raise AscendLegalityError(
                f"{b.space} buffer '{b.name}' {b.dtype}[{b.shape[0]},{b.shape[1]}] is not a whole "
                f"number of {fr}x{fc} fractals")
        align = tgt.alignment(space)
        if b.bytes % align:
            raise AscendLegalityError(f"{b.space} buffer '{b.name}' slot of {b.bytes} bytes is not "
                                      f"a multiple of the {align}-byte alignment")
        cap = tgt.capacity(space)
        used[space] = used.get(space, 0) + b.total_bytes
        if used[space] > cap:
            raise AscendLegalityError(
                f"{b.space} buffer '{b.name}' ({b.dtype}[{b.shape[0]},{b.shape[1]}] x{b.count}) "
                f"needs {b.total_bytes} bytes ({used[space]} in {b.space} in all) but only {cap} "
                f"bytes are available on {tgt.name}")

