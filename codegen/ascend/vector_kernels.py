"""Lower a straight-line, Cube-free tile kernel (rmsnorm, silu_mul, rope, ...) to an AIV
program (vector.py): one grid point = one task of row blocks in UB.

The kernel body is scheduled in three phases per task, double-buffered across tasks:
    MTE2: every load (hoisted; GM inputs only)  -> flag ->
    VECTOR: the element-wise / row-reduction ops -> flag ->
    MTE3: every store (valid part only).
Loaded tiles and stored tiles live in ping-pong UB slots (slot = task index % 2), so MTE2 of
the next task overlaps Vector of this one; Vector temporaries live in single-slot buffers,
reused once dead. What cannot be lowered (loops, ifs, masked access, dot, reductions over
rows, a non-commutative op with a broadcast on its left, ...) raises AscendLoweringError
naming the op and its source location.
"""
from __future__ import annotations

from tilec import targets as T
from tilec.ir.core import Kernel, Op

from .errors import AscendLegalityError, AscendLoweringError, construct, fail, targeted
from .program import Buffer, Ref, SetFlag, WaitFlag
from .vector import (AivProgram, Bcast, CopyGmToUb, CopyGmToUbGather, CopyUbToGm, GmView,
                     Scalar, SOp, UbLegalityError, VBinary, VCast, VCompare, VDup, VReduce,
                     VSelect, VUnary, check_ub, reduce_scratch)

_BINARY = {"add": "add", "sub": "sub", "mul": "mul", "div": "div", "maximum": "max",
           "minimum": "min"}
_COMMUTATIVE = {"add", "mul", "max", "min"}
_UNARY = {"exp": "exp", "log": "ln", "sqrt": "sqrt", "rsqrt": "rsqrt", "abs": "abs", "neg": "neg"}
_SWAP = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le", "eq": "eq", "ne": "ne"}
_SCALAR = {"add": "add", "sub": "sub", "mul": "mul", "floordiv": "floordiv",
           "maximum": "max", "minimum": "min"}


class _T:
    """A tile value during lowering: a UB buffer (kind 'tile'), a broadcast of one ('bcast'),
    or a scalar splat ('scalar'). ``orient`` says how a 1-D value sits in UB: 'row' (1, n) or
    'col' (n, 1)."""
    __slots__ = ("kind", "buf", "axis", "scalar", "orient")

    def __init__(self, kind, buf=None, axis=None, scalar=None, orient=None):
        self.kind, self.buf, self.axis, self.scalar, self.orient = kind, buf, axis, scalar, orient

    def operand(self, slot):
        if self.kind == "tile":
            return Ref(self.buf, slot)
        if self.kind == "bcast":
            return Bcast(Ref(self.buf, slot), self.axis)
        return Scalar(self.scalar)


class _Lowering:
    def __init__(self, kernel: Kernel, tgt):
        self.k, self.tgt = kernel, tgt
        self.tparams = {tp.value: tp for tp in kernel.tensors}
        self.names = {v: n for n, v in kernel.dims.items()}
        self.names.update({v: v.hint for v in kernel.scalars})
        self.used = set(self.names.values()) | {"pid0", "pid1", "pid2"}
        self.vals: dict = {}                 # IR value -> scalar name/number or _T
        self.bufs: dict[str, Buffer] = {}
        self.slot: dict[str, object] = {}    # buffer -> "p" (ping-pong) or 0
        self.free: list[str] = []            # dead single-slot temporaries
        self.scalars, self.loads, self.vec, self.stores = [], [], [], []
        self.index_count: dict[str, str] = {}   # 1-D index buffer -> its valid-count scalar
        ops = kernel.body.ops
        self.last_use = {}
        for i, op in enumerate(ops):
            for v in op.operands:
                self.last_use[v] = i

    # -- errors --------------------------------------------------------------------------------
    def fail(self, op, msg):
        fail(self.k, op, msg, loc=self.loc_of(op))

    def loc_of(self, op):
        """The op's own location, else that of the first located op using its result
        (calls like sum(...) carry none), else the nearest located op before it."""
        if op is None or op.loc is not None:
            return None if op is None else op.loc
        todo, seen = [op], set()
        while todo:
            o = todo.pop(0)
            for r in o.results:
                for u in getattr(self, "users", {}).get(r, ()):
                    if u.loc is not None:
                        return u.loc
                    if id(u) not in seen:
                        seen.add(id(u))
                        todo.append(u)
        ops = self.k.body.ops
        i = next((i for i, o in enumerate(ops) if o is op), len(ops))
        return next((o.loc for o in reversed(ops[:i]) if o.loc is not None), None)

    # -- names and buffers ---------------------------------------------------------------------
    def fresh(self, hint):
        base = hint or "s"
        n, i = base, 0
        while n in self.used:
            i += 1
            n = f"{base}{i}"
        self.used.add(n)
        return n

    def new_buf(self, hint, shape, dtype, pingpong):
        if not pingpong:
            for name in self.free:
                b = self.bufs[name]
                if b.shape == shape and b.dtype == dtype:
                    self.free.remove(name)
                    return name
        name = self.fresh(("in_" if pingpong == "in" else "out_" if pingpong == "out" else "t_")
                          + (hint or "v"))
        self.bufs[name] = Buffer(name, "UB", shape, dtype, 2 if pingpong else 1, "ND")
        self.slot[name] = "p" if pingpong else 0
        return name

    def ref(self, name):
        return Ref(name, self.slot[name])

    def retire(self, i, op):
        """Temporaries whose last use is op i become free for reuse."""
        for v in op.operands:
            t = self.vals.get(v)
            if isinstance(t, _T) and t.kind == "tile" and self.last_use.get(v) == i \
                    and self.slot[t.buf] == 0 and t.buf not in self.free \
                    and not any(o.buf == t.buf for o in self.live_tiles(v)):
                self.free.append(t.buf)

    def live_tiles(self, dead):
        return [t for v, t in self.vals.items() if v is not dead and isinstance(t, _T)
                and t.kind != "scalar" and self.last_use.get(v, -1) > self.i]

    # -- scalars -------------------------------------------------------------------------------
    def sval(self, v, op):
        if v in self.names:
            return self.names[v]
        if v in self.vals and not isinstance(self.vals[v], _T):
            return self.vals[v]
        self.fail(op, "operand is not a scalar known to the AIV scalar unit")

    def scalar_op(self, op):
        name = op.name
        if name == "constant":
            self.vals[op.result] = op.attrs["value"]
        elif name == "program_id":
            self.vals[op.result] = f"pid{op.attrs['axis']}"
        elif name == "binary" and op.attrs["op"] in _SCALAR or \
                name == "binary" and op.attrs["op"] == "div" and op.result.type.dtype == "f32":
            a, b = (self.sval(x, op) for x in op.operands)
            dst = self.fresh(op.result.hint)
            self.scalars.append(SOp(dst=dst, op=_SCALAR.get(op.attrs["op"], "div"), a=a, b=b))
            self.vals[op.result] = dst
        elif name == "cast" and op.attrs["dtype"] == "f32":
            dst = self.fresh(op.result.hint or "f")
            self.scalars.append(SOp(dst=dst, op="f32", a=self.sval(op.operands[0], op)))
            self.vals[op.result] = dst
        else:
            self.fail(op, f"{construct(op)} on scalars is not supported on the AI vector core's scalar "
                          f"unit (it has +, -, *, / and casts to f32)")

    # -- tiles ---------------------------------------------------------------------------------
    def tile(self, v, op) -> _T:
        t = self.vals.get(v)
        if not isinstance(t, _T):
            self.fail(op, "operand is not a tile the vector unit holds")
        return t

    def shape2(self, typ, orient):
        s = typ.shape
        if len(s) == 2:
            return tuple(s)
        if len(s) == 1:
            return (1, s[0]) if orient == "row" else (s[0], 1)
        raise ValueError(s)

    def out_tile(self, op, orient, pingpong=False, hint=None):
        typ = op.result.type
        if len(typ.shape) not in (1, 2):
            self.fail(op, f"tiles of rank {len(typ.shape)} are not lowered to UB")
        name = self.new_buf(hint or op.result.hint, self.shape2(typ, orient), typ.dtype, pingpong)
        t = _T("tile", name, orient=orient if len(typ.shape) == 1 else None)
        self.vals[op.result] = t
        return t

    def gm_view(self, op, n_idx):
        tp = self.tparams.get(op.operands[0])
        if tp is None:
            self.fail(op, f"{op.name} must address a tensor parameter")
        idx = []
        for kind, v in zip(op.attrs["index"], op.operands[1:1 + n_idx]):
            if kind[0] == "slice":
                idx.append((self.sval(v, op), kind[1]))
            elif kind[0] == "scalar":
                idx.append((self.sval(v, op), None))
            else:
                return tp, None
        return tp, GmView(tp.name, tuple(idx))

    def load(self, op):
        if op.attrs.get("has_mask"):
            self.fail(op, "masked loads are not lowered to the AIV")
        pad = 0.0
        n_idx = len(op.attrs["index"])
        if op.attrs.get("has_other"):
            other = op.operands[1 + n_idx]
            pad = self.sval(other, op)
            if isinstance(pad, str):
                self.fail(op, "load 'other' must be a constant on the AIV")
        if op.operands[0] in self.stored:
            self.fail(op, f"load of '{self.tparams[op.operands[0]].name}', which this kernel "
                              "also stores: loads are hoisted before stores on the AIV")
        tp, view = self.gm_view(op, n_idx)
        if view is None:
            return self.gather(op, tp)
        if len(op.result.type.shape) not in (1, 2):
            self.fail(op, "a UB tile keeps one or two tensor dims")
        t = self.out_tile(op, "row", pingpong="in", hint=op.result.hint or tp.name)
        self.loads.append(CopyGmToUb(src=view, dst=self.ref(t.buf), pad=float(pad)))
        if len(op.result.type.shape) == 1 and op.result.type.dtype == "i32":
            # a 1-D index tile: remember how many of its rows are real (for gathers)
            (off, ext), dim = next((p, d) for p, d in zip(view.index, tp.type.dims)
                                   if p[1] is not None)
            dimv = dim if isinstance(dim, int) else dim
            left = self.fresh("left")
            cnt = self.fresh("rows")
            self.scalars += [SOp(dst=left, op="sub", a=dimv, b=off),
                             SOp(dst=cnt, op="min", a=left, b=ext)]
            self.index_count[t.buf] = cnt

    def gather(self, op, tp):
        """load(TAB[idx[:, None], arange(a, b)[None, :]]): rows of TAB picked by an index tile."""
        kinds = op.attrs["index"]
        if len(kinds) != 2 or tp.type.rank != 2:
            self.fail(op, "only 2-d row gathers TAB[idx[:, None], arange(a, b)[None, :]] "
                              "are lowered to the AIV")
        rows, cols = op.operands[1], op.operands[2]

        def through(v, want_axis):
            b = v.owner
            if not (isinstance(b, Op) and b.name == "broadcast"):
                return None
            e = b.operands[0].owner
            if not (isinstance(e, Op) and e.name == "expand_dims" and e.attrs["axis"] == want_axis):
                return None
            return e.operands[0]
        idx, ar = through(rows, 1), through(cols, 0)
        aro = ar.owner if ar is not None else None
        if idx is None or not (isinstance(aro, Op) and aro.name == "arange"):
            self.fail(op, "gather index must be idx[:, None] with column arange(a, b)[None, :]")
        it = self.vals.get(idx)
        if not (isinstance(it, _T) and it.kind == "tile" and it.buf in self.index_count):
            self.fail(op, "gather rows must come from a loaded 1-D i32 tile")
        t = self.out_tile(op, "row", pingpong="in", hint=op.result.hint or tp.name)
        a, b = aro.attrs["start"], aro.attrs["end"]
        self.loads.append(CopyGmToUbGather(table=tp.name, index=self.ref(it.buf), cols=(a, b - a),
                                           dst=self.ref(t.buf), count=self.index_count[it.buf]))

    def store(self, op):
        if op.attrs.get("has_mask"):
            self.fail(op, "masked stores are not lowered to the AIV")
        n_idx = len(op.attrs["index"])
        tp, view = self.gm_view(op, n_idx)
        if view is None:
            self.fail(op, "scatter stores are not lowered to the AIV")
        val = op.operands[1 + n_idx]
        t = self.tile(val, op)
        if t.kind != "tile":
            self.fail(op, "stored value must be a computed tile")
        if self.slot[t.buf] != "p" or not t.buf.startswith("out_"):
            # the stored tile must sit in a ping-pong output buffer MTE3 owns: copy it there
            src = t
            dst = self.new_buf(val.hint or "y", self.bufs[src.buf].shape, self.bufs[src.buf].dtype,
                               "out")
            if self.bufs[src.buf].dtype == "f32":
                self.vec.append(VBinary(op="add", dst=self.ref(dst), a=self.ref(src.buf),
                                        b=Scalar(0.0)))
            else:
                self.vec.append(VCast(dst=self.ref(dst), src=self.ref(src.buf)))
            t = _T("tile", dst)
        self.stores.append(CopyUbToGm(src=self.ref(t.buf), dst=view))
        self.stored.add(op.operands[0])

    def vector(self, op, i):
        name = op.name
        st = next((u for u in self.users.get(op.result, ())
                   if u.name == "store" and u.operands[-1] is op.result), None)
        pp = "out" if st is not None else False
        hint = self.tparams[st.operands[0]].name if st is not None else None
        if name == "cast":
            src = self.tile(op.operands[0], op)
            t = self.out_tile(op, src.orient, pp, hint)
            self.vec.append(VCast(dst=self.ref(t.buf), src=src.operand(self.slot[src.buf])))
        elif name == "splat":
            self.vals[op.result] = _T("scalar", scalar=self.sval(op.operands[0], op))
        elif name == "expand_dims":
            src = self.tile(op.operands[0], op)
            want = "row" if op.attrs["axis"] == 0 else "col"
            if src.kind == "scalar":
                self.vals[op.result] = src
            elif src.orient != want:
                self.fail(op, f"a 1-D {src.orient} tile used as a {want} needs a transpose, "
                                  "which the AIV lowering does not do")
            else:
                self.vals[op.result] = _T("tile", src.buf)
        elif name == "broadcast":
            src = self.tile(op.operands[0], op)
            shp = op.operands[0].type.shape
            if src.kind == "scalar":
                self.vals[op.result] = src
            elif len(shp) == 2 and shp[0] == 1:
                self.vals[op.result] = _T("bcast", src.buf, axis="row")
            elif len(shp) == 2 and shp[1] == 1:
                self.vals[op.result] = _T("bcast", src.buf, axis="col")
            else:
                self.fail(op, "only (1, C) and (R, 1) tiles broadcast on the AIV")
        elif name == "binary":
            bop = _BINARY.get(op.attrs["op"])
            if bop is None:
                self.fail(op, f"binary '{op.attrs['op']}' has no AIV vector instruction")
            a, b = (self.tile(v, op) for v in op.operands)
            if a.kind != "tile" and b.kind == "tile" and bop in _COMMUTATIVE:
                a, b = b, a
            if a.kind != "tile":
                self.fail(op, f"'{bop}' with a broadcast or scalar on its left is not lowered "
                                  "(swap the operands or materialise the tile)")
            t = self.out_tile(op, a.orient, pp, hint)
            self.vec.append(VBinary(op=bop, dst=self.ref(t.buf), a=a.operand(self.slot[a.buf]),
                                    b=b.operand(self.slot.get(b.buf, 0))))
        elif name == "unary":
            src = self.tile(op.operands[0], op)
            if src.kind != "tile":
                self.fail(op, "unary op on a broadcast is not lowered")
            t = self.out_tile(op, src.orient, pp, hint)
            s, d = self.ref(src.buf), self.ref(t.buf)
            u = op.attrs["op"]
            if u == "sigmoid":              # 1 / (1 + exp(-x)), as the language defines it
                self.vec += [VUnary(op="neg", dst=d, src=s), VUnary(op="exp", dst=d, src=d),
                             VBinary(op="add", dst=d, a=d, b=Scalar(1.0)),
                             VUnary(op="reciprocal", dst=d, src=d)]
            elif u in _UNARY:
                self.vec.append(VUnary(op=_UNARY[u], dst=d, src=s))
            else:
                self.fail(op, f"unary '{u}' has no AIV vector instruction")
        elif name == "full":
            t = self.out_tile(op, "row", pp, hint)
            self.vec.append(VDup(dst=self.ref(t.buf), value=Scalar(op.attrs["value"])))
        elif name == "cmp":
            a, b = (self.tile(v, op) for v in op.operands)
            pred = op.attrs["pred"]
            if a.kind != "tile" and b.kind == "tile":
                a, b, pred = b, a, _SWAP[pred]
            if a.kind != "tile":
                self.fail(op, "comparison of two broadcasts is not lowered")
            t = self.out_tile(op, a.orient, pp, hint)
            self.vec.append(VCompare(pred=pred, dst=self.ref(t.buf), a=a.operand(self.slot[a.buf]),
                                     b=b.operand(self.slot.get(b.buf, 0))))
        elif name == "select":
            c, a, b = (self.tile(v, op) for v in op.operands)
            if c.kind != "tile":
                self.fail(op, "select needs a computed mask tile")
            t = self.out_tile(op, c.orient, pp, hint)
            if a.kind == "scalar":          # Select takes its scalar on the right: splat the left
                tmp = self.new_buf("splat", self.bufs[t.buf].shape, self.bufs[t.buf].dtype, False)
                self.vec.append(VDup(dst=self.ref(tmp), value=Scalar(a.scalar)))
                a = _T("tile", tmp)
                self.free.append(tmp)       # dead once the select has read it
            self.vec.append(VSelect(dst=self.ref(t.buf), mask=self.ref(c.buf),
                                    a=a.operand(self.slot.get(a.buf, 0)),
                                    b=b.operand(self.slot.get(b.buf, 0))))
        elif name == "reduce":
            src = self.tile(op.operands[0], op)
            if op.attrs["axis"] != 1 or len(op.operands[0].type.shape) != 2 or src.kind != "tile" \
                    or op.attrs["kind"] not in ("sum", "max"):
                self.fail(op, f"only row reductions (sum/max over axis 1 of a 2-d tile) "
                                  f"are lowered, not {op.attrs['kind']} over axis {op.attrs['axis']}")
            t = self.out_tile(op, "col", pp, hint)
            self.vec.append(VReduce(kind=op.attrs["kind"], dst=self.ref(t.buf), src=self.ref(src.buf)))
        else:
            self.fail(op, f"{construct(op)} is not supported on the AI vector core (AIV); vector "
                          f"kernels are loads, elementwise math, row reductions and stores")

    def index_only(self, v) -> bool:
        """v only feeds gather indices (directly or through expand_dims/broadcast)."""
        us = self.users.get(v, ())
        for u in us:
            if u.name == "load":
                n = len(u.attrs["index"])
                if v not in u.operands[1:1 + n] or u.attrs["index"][u.operands.index(v) - 1][0] != "tile":
                    return False
            elif u.name not in ("expand_dims", "broadcast") or not self.index_only(u.result):
                return False
        return bool(us)

    def run(self) -> AivProgram:
        ops = self.k.body.ops
        self.stored = set()
        self.users: dict = {}
        for op in ops:
            for v in op.operands:
                self.users.setdefault(v, []).append(op)
        for i, op in enumerate(ops):
            self.i = i
            if op.name == "yield":
                continue
            if op.name in ("arange", "expand_dims", "broadcast") and self.index_only(op.result):
                continue                    # index arithmetic of a gather, read there
            if op.name in ("for", "if", "dot", "trans", "arange", "reshape"):
                self.fail(op, f"{construct(op)} is not supported in a vector kernel on the AI vector "
                              f"core (AIV); loops, dot() and trans() need the Cube GEMM or "
                              f"Meta-Attention form")
            if op.results and op.result.type.is_scalar:
                self.scalar_op(op)
            elif op.name == "load":
                self.load(op)
            elif op.name == "store":
                self.store(op)
            else:
                self.vector(op, i)
            self.retire(i, op)
        if not self.stores:
            self.fail(ops[-1] if ops else None, "kernel stores nothing")
        return self.assemble()

    def assemble(self) -> AivProgram:
        V, M2, M3 = "VECTOR", "MTE2", "MTE3"
        prologue = [SetFlag(src=V, dst=M2, event=0), SetFlag(src=V, dst=M2, event=1),
                    SetFlag(src=M3, dst=V, event=0), SetFlag(src=M3, dst=V, event=1)]
        body = [WaitFlag(src=V, dst=M2, event="p"), *self.loads,
                SetFlag(src=M2, dst=V, event="p"), WaitFlag(src=M2, dst=V, event="p"),
                WaitFlag(src=M3, dst=V, event="p"), *self.vec,
                SetFlag(src=V, dst=M2, event="p"),
                SetFlag(src=V, dst=M3, event="p"), WaitFlag(src=V, dst=M3, event="p"),
                *self.stores, SetFlag(src=M3, dst=V, event="p")]
        epilogue = [WaitFlag(src=V, dst=M2, event=0), WaitFlag(src=V, dst=M2, event=1),
                    WaitFlag(src=M3, dst=V, event=0), WaitFlag(src=M3, dst=V, event=1)]
        tile = {k: v for k, v in self.k.consts.items()}
        return AivProgram(self.k.name, dict(self.bufs), self.scalars, prologue, body, epilogue,
                          tile, {tp.name: tp.type.dtype for tp in self.k.tensors},
                          tuple(v.hint for v in self.k.scalars), grid_exprs(self.k),
                          {tp.name: tuple(tp.type.dims) for tp in self.k.tensors})


def grid_exprs(kernel: Kernel) -> tuple:
    """The kernel's grid extents as C expressions over its dims (for the host tiling)."""
    names = {v: n for n, v in kernel.dims.items()}
    sym = {"add": "+", "sub": "-", "mul": "*", "floordiv": "/"}
    for op in kernel.grid.ops:
        if op.name == "constant":
            names[op.result] = str(op.attrs["value"])
        elif op.name == "binary" and op.attrs["op"] in sym:
            a, b = (names[v] for v in op.operands)
            names[op.result] = f"({a} {sym[op.attrs['op']]} {b})"
        elif op.name == "yield":
            return tuple(names[v] for v in op.operands)
        else:
            fail(kernel, op, f"the grid uses {construct(op)}, which the host tiling cannot compute; "
                             f"write the grid with +, -, * and cdiv over dims and constants")
    return ()


@targeted
def lower_vector(kernel: Kernel, target="ascend910b2") -> AivProgram:
    tgt = T.get(target) if isinstance(target, str) else target
    prog = _Lowering(kernel, tgt).run()
    try:
        check_ub(prog.buffers.values(), tgt, kernel.name, reduce_scratch(prog.body, prog.buffers))
    except UbLegalityError as e:
        raise AscendLegalityError(str(e)) from None
    return prog
