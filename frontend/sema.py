"""Semantic analysis: lower a kernel's syntax tree, for one binding of its consts, to tile IR.

Compile-time values (consts, literals, dtypes) are folded here, so every tile shape in the IR is
static. Errors go to a ``DiagnosticSink``; a failed expression yields ``POISON`` so one mistake
does not cascade and the rest of the file is still checked.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

from tilec.ir import dtypes as D
from tilec.ir.core import Block, Kernel, Op, TensorParam, TensorType, Type, Value

from . import ast as A
from .diagnostics import DiagnosticSink, Loc


class _Poison:
    def __repr__(self) -> str:
        return "POISON"


POISON = _Poison()


@dataclass(frozen=True)
class DType:
    name: str


@dataclass
class Ref:
    """``T[...]``: a tensor access, only meaningful as the first argument of load/store."""
    tensor: TensorParam
    index: list          # per dim: ("scalar", Value) | ("slice", Value, size) | ("tile", Value)
    loc: Loc


@dataclass
class LoopLocal:
    loc: Loc


BUILTINS = {"program_id", "num_programs", "cdiv", "arange", "zeros", "full", "load", "store",
            "dot", "trans", "exp", "exp2", "log", "sqrt", "rsqrt", "abs", "sigmoid", "maximum",
            "minimum", "max", "min", "sum", "where", "cast", "static_assert", "grid", "range",
            "reshape"}
_UNARY_FLOAT = {"exp", "exp2", "log", "sqrt", "rsqrt", "sigmoid"}
_BINOPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "//": "floordiv", "%": "mod",
           "&": "and", "|": "or", "^": "xor", "and": "and", "or": "or"}
_CMPS = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq", "!=": "ne"}


def _static_int_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _static_mod(a: int, b: int) -> int:
    return a - _static_int_div(a, b) * b


class _Scope:
    def __init__(self, parent: "_Scope | None" = None):
        self.parent = parent
        self.vars: dict[str, object] = {}

    def lookup(self, name: str):
        s = self
        while s is not None:
            if name in s.vars:
                return s.vars[name]
            s = s.parent
        return None


def assigned_names(stmts: list) -> list[str]:
    out: list[str] = []
    for s in stmts:
        if isinstance(s, (A.Assign, A.AugAssign)):
            names = [s.target]
        elif isinstance(s, A.For):
            names = assigned_names(s.body)
        elif isinstance(s, A.If):
            names = assigned_names(s.body) + assigned_names(s.orelse)
        else:
            names = []
        for n in names:
            if n not in out:
                out.append(n)
    return out


class Lowering:
    def __init__(self, kernel: A.Kernel, binding: dict, sink: DiagnosticSink, filename: str,
                 probe: bool = False):
        self.probe = probe
        self.k = kernel
        self.binding = dict(binding)
        self.sink = sink
        self.filename = filename
        self.block: Block | None = None
        self.affine: dict[Value, dict] = {}     # scalar int value -> {atom/1: coeff}
        self.dim_values: set[Value] = set()     # symbolic dims: read-only in the kernel body
        self._loc = None                          # the expression being lowered (for emit's errors)
        self._big: set = set()                    # oversized tile shapes already reported

    # ------------------------------------------------------------------ helpers
    def err(self, loc, msg, hint=None):
        self.sink.error(loc, msg, hint)
        return POISON

    def emit(self, name, operands, types, attrs=None, loc=None, regions=None) -> Op:
        for t in types:
            if t.shape and t.numel > MAX_TILE and (name, t.shape) not in self._big:
                self._big.add((name, t.shape))      # one error per shape, at the expression
                self.err(loc or self._loc, f"a tile of shape {list(t.shape)} has {t.numel} elements; tiles "
                         f"hold at most {MAX_TILE} (no target's on-chip memory holds more)",
                         "use smaller tile consts")
        op = Op(name, list(operands), list(types), dict(attrs or {}), list(regions or []), loc)
        self.block.ops.append(op)
        return op

    def const(self, value, dtype: str) -> Value:
        if D.is_float(dtype):
            value = float(value)
        elif dtype == "bool":
            value = bool(value)
        else:
            value = int(value)
        v = self.emit("constant", [], [Type(dtype)], {"value": value}).result
        if D.is_int(dtype):
            self.affine[v] = {1: value}
        return v

    @staticmethod
    def static_dtype(x) -> str:
        if isinstance(x, bool):
            return "bool"
        if isinstance(x, int):
            return "i32" if -2**31 <= x < 2**31 else "i64"
        return "f32"

    def as_value(self, x, dtype: str | None = None, loc=None) -> Value:
        if isinstance(x, Value):
            return x if dtype is None else self.cast(x, dtype)
        return self.const(x, dtype or self.static_dtype(x))

    def cast(self, v: Value, dtype: str) -> Value:
        if v.type.dtype == dtype:
            return v
        return self.emit("cast", [v], [v.type.with_dtype(dtype)], {"dtype": dtype}).result

    def broadcast_to(self, v: Value, shape: tuple, loc=None):
        if v.type.shape == shape:
            return v
        if v.type.is_scalar:
            return self.emit("splat", [v], [Type(v.type.dtype, shape)], {"shape": list(shape)}).result
        src = v.type.shape
        while len(src) < len(shape):
            v = self.emit("expand_dims", [v], [Type(v.type.dtype, (1,) + src)], {"axis": 0}).result
            src = v.type.shape
        for a, b in zip(src, shape):
            if a != b and a != 1:
                return self.err(loc, f"cannot broadcast a tile of shape {list(v.type.shape)} to {list(shape)}")
        return self.emit("broadcast", [v], [Type(v.type.dtype, shape)], {"shape": list(shape)}).result

    def broadcast_shape(self, a: tuple, b: tuple, loc):
        n = max(len(a), len(b))
        a2, b2 = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
        out = []
        for x, y in zip(a2, b2):
            if x != y and 1 not in (x, y):
                self.err(loc, f"shape mismatch: cannot combine tiles of shapes {list(a)} and {list(b)}",
                         "use x[:, None] or x[None, :] to add a broadcast axis")
                return None
            out.append(max(x, y))
        return tuple(out)

    def unify(self, a, b, loc, dtype: str | None = None):
        """Make two operands (values or statics) the same type; return (va, vb, dtype)."""
        for x in (a, b):
            if x is POISON:
                return None
            if not isinstance(x, (Value, int, float, bool)):
                self.err(loc, f"expected a number or tile, got {self.describe(x)}")
                return None
        if isinstance(a, Value) and isinstance(b, Value):
            dt = dtype or D.promote(a.type.dtype, b.type.dtype)
        elif isinstance(a, Value):
            dt = dtype or self._adopt(a.type.dtype, b)
        elif isinstance(b, Value):
            dt = dtype or self._adopt(b.type.dtype, a)
        else:
            dt = dtype or D.promote(self.static_dtype(a), self.static_dtype(b))
        va, vb = self.as_value(a, dt), self.as_value(b, dt)
        shape = self.broadcast_shape(va.type.shape, vb.type.shape, loc)
        if shape is None:
            return None
        va, vb = self.broadcast_to(va, shape, loc), self.broadcast_to(vb, shape, loc)
        if va is POISON or vb is POISON:
            return None
        return va, vb, dt

    def _adopt(self, typed: str, literal) -> str:
        """A literal adapts to the typed operand (as in Triton), unless it is a float next to ints."""
        if isinstance(literal, float) and not D.is_float(typed):
            return "f32"
        if isinstance(literal, int) and not isinstance(literal, bool) and typed == "bool":
            return "i32"
        return typed

    def aff(self, v) -> dict | None:
        if isinstance(v, int) and not isinstance(v, bool):
            return {1: v}
        if isinstance(v, Value):
            return self.affine.get(v, {v: 1})
        return None

    # ------------------------------------------------------------------ kernel
    def lower(self) -> Kernel | None:
        k = self.k
        scope = _Scope()
        for name, dt in ((n, n) for n in D.ALL):
            scope.vars[name] = DType(dt)
        tensors, scalars, dims, order, dim_sources = [], [], {}, [], {}
        seen = set()
        params = {p.name: p for p in k.params}
        # consts and dtype params first: tensor dtypes and dims may refer to them
        for p in k.params:
            if p.name in seen:
                self.err(p.loc, f"parameter '{p.name}' is declared twice")
            seen.add(p.name)
            if p.name in BUILTINS:
                self.err(p.loc, f"parameter '{p.name}' shadows the builtin '{p.name}'")
            if p.kind in ("const", "dtype"):
                val = self.binding.get(p.name, p.default)
                if val is None and self.probe:
                    val = "f16" if p.kind == "dtype" else 16    # check-only stand-in value
                if val is None:
                    self.err(p.loc, f"const '{p.name}' has no value",
                             f"bind it with -D {p.name}=VALUE or give a default ('{p.name}: {p.kind} = ...')")
                    scope.vars[p.name] = POISON
                elif p.kind == "dtype":
                    if str(val) not in D.ALL:
                        self.err(p.loc, f"dtype param '{p.name}' bound to '{val}', which is not a dtype",
                                 f"use one of {', '.join(D.ALL)}")
                        scope.vars[p.name] = POISON
                    else:
                        scope.vars[p.name] = DType(str(val))
                        self.binding[p.name] = str(val)
                else:
                    try:
                        iv = int(val)
                        if isinstance(val, (bool, float)) or not 1 <= iv <= MAX_CONST:
                            raise ValueError
                        scope.vars[p.name] = iv
                        self.binding[p.name] = iv
                    except (TypeError, ValueError, OverflowError):
                        self.err(p.loc, f"const '{p.name}' must be an integer from 1 to {MAX_CONST}, got '{val}'",
                                 "consts size tiles, and no target holds a bigger one")
                        scope.vars[p.name] = POISON
        unknown = sorted(set(self.binding) - set(params) - self._dim_names())
        for u in unknown:
            self.err(k.loc, f"kernel '{k.name}' has no const or dim named '{u}'",
                     "consts: " + (", ".join(p.name for p in k.params if p.kind in ("const", "dtype")) or "none"))
        grid_block, body = Block(), Block()
        self.block = body
        for p in k.params:
            if p.kind == "tensor":
                dt = scope.lookup(p.dtype)
                if not isinstance(dt, DType):
                    if dt is not POISON:
                        self.err(p.loc, f"unknown element type '{p.dtype}' for tensor '{p.name}'",
                                 f"use one of {', '.join(D.ALL)} or a 'dtype' parameter")
                    scope.vars[p.name] = POISON           # known, but broken: no cascade
                    for d in p.dims:
                        if isinstance(d, str) and scope.lookup(d) is None:
                            scope.vars[d] = POISON
                    continue
                tdims = []
                for axis, (d, dloc) in enumerate(zip(p.dims, p.dim_locs)):
                    if isinstance(d, int):
                        tdims.append(d)
                        continue
                    if d in params and params[d].kind == "const":
                        c = scope.vars.get(d)
                        tdims.append(c if isinstance(c, int) else 1)
                        continue
                    if d in params:
                        self.err(dloc, f"dim '{d}' of tensor '{p.name}' names a {params[d].kind} parameter")
                        continue
                    if d in self.binding:
                        bv = self.binding[d]
                        if isinstance(bv, bool) or not isinstance(bv, int) or not 1 <= bv <= MAX_DIM:
                            self.err(dloc, f"dim '{d}' of tensor '{p.name}' bound to '{bv}'; a dim is an integer "
                                           f"from 1 to {MAX_DIM}")
                            scope.vars[d] = POISON
                            tdims.append(1)
                            continue
                        tdims.append(bv)
                        scope.vars[d] = bv
                    else:
                        tdims.append(d)
                        if d not in dims:
                            dims[d] = Value(Type("i32"), hint=d)
                            scope.vars[d] = dims[d]
                            self.dim_values.add(dims[d])
                    dim_sources.setdefault(d, (p.name, axis))
                tv = Value(TensorType(dt.name, tuple(tdims)), hint=p.name)
                tp = TensorParam(p.name, tv)
                tensors.append(tp)
                scope.vars[p.name] = tp
                order.append(p.name)
            elif p.kind == "scalar":
                dt = scope.lookup(p.dtype)
                if not isinstance(dt, DType):
                    self.err(p.loc, f"unknown type '{p.dtype}' for scalar '{p.name}'",
                             f"use one of {', '.join(D.ALL)}, 'const' or 'dtype'")
                    continue
                v = Value(Type(dt.name), hint=p.name)
                scalars.append(v)
                scope.vars[p.name] = v
                order.append(p.name)
        # the grid declaration comes first and only reads dims, scalars and consts
        stmts = list(k.body)
        while stmts and isinstance(stmts[0], A.ExprStmt) and isinstance(stmts[0].value, A.Call) \
                and stmts[0].value.func == "static_assert":
            self.expr(stmts.pop(0).value, scope)
        grid_vals = None
        if stmts and isinstance(stmts[0], A.ExprStmt) and isinstance(stmts[0].value, A.Call) \
                and stmts[0].value.func == "grid":
            call = stmts.pop(0).value
            self.block = grid_block
            if call.kwargs or not (1 <= len(call.args) <= 3):
                self.err(call.loc, "grid() takes 1 to 3 positional sizes")
            grid_vals = []
            for a in call.args[:3]:
                g = self.expr(a, scope)
                if g is POISON:
                    continue
                if not self._is_int_scalar(g):
                    self.err(a.loc, "grid sizes must be integer scalars")
                    continue
                grid_vals.append(self.as_value(g, "i32"))
            self.emit("yield", grid_vals, [])
            self.block = body
        else:
            self.err(k.loc, f"kernel '{k.name}' does not declare its launch grid",
                     "start the body with grid(n0[, n1[, n2]])")
        self.grid_rank = len(grid_vals) if grid_vals is not None else 3   # no cascade when missing
        self.stmts(stmts, scope)
        self.emit("yield", [], [])
        if self.sink.items:
            return None
        return Kernel(k.name, tensors, scalars, dims,
                      {p.name: self.binding[p.name] for p in k.params if p.kind in ("const", "dtype")},
                      grid_block, body, order, dim_sources, self.filename)

    def _dim_names(self) -> set:
        return {d for p in self.k.params if p.kind == "tensor" for d in p.dims if isinstance(d, str)}

    def _is_int_scalar(self, x) -> bool:
        if isinstance(x, bool):
            return False
        if isinstance(x, int):
            return True
        return isinstance(x, Value) and x.type.is_scalar and D.is_int(x.type.dtype)

    # ------------------------------------------------------------------ statements
    def stmts(self, stmts, scope):
        for s in stmts:
            self.stmt(s, scope)

    def assign_var(self, scope: _Scope, name: str, val, loc):
        if isinstance(scope.lookup(name), (TensorParam, DType)) or name in BUILTINS:
            self.err(loc, f"cannot assign to '{name}': it names a "
                     + ("builtin" if name in BUILTINS else "parameter"))
            return
        prev = scope.lookup(name)
        if isinstance(prev, Value) and prev in self.dim_values:
            self.err(loc, f"cannot assign to '{name}': it is a tensor dim")
            return
        scope.vars[name] = val
        if isinstance(val, Value) and val.hint is None and val.owner is not None:
            val.hint = name

    def stmt(self, s, scope):
        if isinstance(s, A.Assign):
            v = self.expr(s.value, scope)
            if isinstance(v, Ref):
                v = self.err(s.value.loc, "a tensor access must be read with load(...)",
                             "wrap it: load(T[...])")
            if isinstance(v, A.Node):
                v = POISON
            self.assign_var(scope, s.target, v, s.loc)
        elif isinstance(s, A.AugAssign):
            cur = scope.lookup(s.target)
            if cur is None:
                self.err(s.loc, f"'{s.target}' is used before it is assigned")
                return
            v = self.binop(s.op, cur, self.expr(s.value, scope), s.loc)
            self.assign_var(scope, s.target, v, s.loc)
        elif isinstance(s, A.ExprStmt):
            if isinstance(s.value, A.Call) and s.value.func == "grid":
                self.err(s.value.loc, "grid() must be the first statement of the kernel",
                         "only static_assert(...) may come before it")
                return
            v = s.value
            if not (isinstance(v, A.Call) and v.func in ("store", "static_assert")):
                self.err(v.loc, "expression statement has no effect",
                         "only store(...) and static_assert(...) stand alone")
                return
            self.expr(v, scope)
        elif isinstance(s, A.Pass):
            pass
        elif isinstance(s, A.For):
            self.for_stmt(s, scope)
        elif isinstance(s, A.If):
            self.if_stmt(s, scope)
        else:
            self.err(s.loc, "unsupported statement")

    def for_stmt(self, s: A.For, scope: _Scope):
        it = s.iter
        if not (isinstance(it, A.Call) and it.func == "range") or it.kwargs or not (1 <= len(it.args) <= 3):
            self.err(it.loc, "for loops iterate over range(start, stop[, step])")
            return
        vals = [self.expr(a, scope) for a in it.args]
        if any(v is POISON for v in vals):
            return
        for v, a in zip(vals, it.args):
            if not self._is_int_scalar(v):
                self.err(a.loc, "range bounds must be integer scalars")
                return
        lo, hi = (0, vals[0]) if len(vals) == 1 else (vals[0], vals[1])
        step = vals[2] if len(vals) == 3 else 1
        if not isinstance(step, int) or step <= 0:
            self.err(it.args[2].loc if len(vals) == 3 else it.loc,
                     "range step must be a positive compile-time constant")
            return
        # an i64 counter where a bound is i64 or a literal bound or step does not fit i32 (an
        # i32 counter would wrap: range(2**31, K) would run from -2**31)
        idt = "i64" if any((isinstance(x, Value) and x.type.dtype == "i64")
                           or (isinstance(x, int) and not -2**31 <= x < 2**31) for x in (lo, hi, step)) \
            else "i32"
        carried = [n for n in assigned_names(s.body) if n != s.var and isinstance(
            scope.lookup(n), (Value, int, float, bool))]
        init = {n: scope.lookup(n) for n in carried}
        types = {}
        for n, v in init.items():
            types[n] = v.type if isinstance(v, Value) else Type(self.static_dtype(v))
        outer_block = self.block
        for attempt in range(3):
            lo_v, hi_v = self.as_value(lo, idt), self.as_value(hi, idt)
            body = Block()
            iv = Value(Type(idt), hint=s.var, owner=body)
            args = {n: Value(types[n], hint=n, owner=body) for n in carried}
            body.args = [iv] + list(args.values())
            inner = _Scope(scope)
            inner.vars[s.var] = iv
            inner.vars.update(args)
            self.block = body
            n_errors = len(self.sink.items)
            self.stmts(s.body, inner)
            finals = {n: inner.vars.get(n, args[n]) for n in carried}
            retry = False
            for n in carried:
                f = finals[n]
                if isinstance(f, (int, float, bool)):
                    continue
                if f is POISON or not isinstance(f, Value):
                    continue
                if f.type != types[n]:
                    if not isinstance(init[n], Value) and attempt < 2:
                        types[n] = f.type     # a literal start adopts the type the loop gives it
                        retry = True
                    else:
                        self.err(s.loc, f"'{n}' is carried across iterations of this loop but changes "
                                 f"type from {types[n]} to {f.type}",
                                 f"give '{n}' its final type before the loop")
            if retry:
                del self.sink.items[n_errors:]
                self.block = outer_block
                continue
            ys = []
            for n in carried:
                f = finals[n]
                ys.append(args[n] if f is POISON or not isinstance(f, (Value, int, float, bool))
                          else self.as_value(f, types[n].dtype) if not isinstance(f, Value) else f)
            self.block = body
            ys = [self.broadcast_to(y, types[n].shape) if y.type.shape != types[n].shape else y
                  for y, n in zip(ys, carried)]
            self.emit("yield", ys, [])
            self.block = outer_block
            inits = [self.broadcast_to(self.as_value(init[n], types[n].dtype), types[n].shape)
                     for n in carried]
            op = self.emit("for", [lo_v, hi_v] + inits, [types[n] for n in carried],
                           {"step": step}, s.loc, [body])
            for n, r in zip(carried, op.results):
                r.hint = n
                scope.vars[n] = r
            for n, v in inner.vars.items():
                if n not in carried and n != s.var and n not in scope.vars:
                    scope.vars[n] = LoopLocal(s.loc)
            return

    def if_stmt(self, s: A.If, scope: _Scope):
        c = self.expr(s.cond, scope)
        if c is POISON:
            return
        if isinstance(c, (bool, int)) and not isinstance(c, Value):
            self.stmts(s.body if c else s.orelse, scope)     # static if: only the taken branch
            return
        if not isinstance(c, Value):
            self.err(s.cond.loc, "if needs a scalar condition")
            return
        if not c.type.is_scalar:
            self.err(s.cond.loc, f"if needs a scalar condition, got a tile {c.type}",
                     "use where(cond, a, b) to choose between tiles")
            return
        if c.type.dtype != "bool":
            c = self.emit("cmp", [c, self.as_value(0, c.type.dtype)], [Type("bool")], {"pred": "ne"}).result
        outer = self.block
        branches = []
        for stmts in (s.body, s.orelse):
            blk = Block()
            self.block = blk
            sc = _Scope(scope)
            self.stmts(stmts, sc)
            branches.append((blk, sc))
        self.block = outer
        names = []
        for _, sc in branches:
            for n, v in sc.vars.items():
                if n not in names and not isinstance(v, LoopLocal):
                    names.append(n)
        results, rtypes = [], []
        for n in names:
            vals = [sc.vars[n] if n in sc.vars else scope.lookup(n) for _, sc in branches]
            if any(v is None or isinstance(v, LoopLocal) for v in vals):
                scope.vars.setdefault(n, LoopLocal(s.loc))   # defined on one path only
                continue
            if any(v is POISON for v in vals):
                scope.vars[n] = POISON
                continue
            if not all(isinstance(v, (Value, int, float, bool)) for v in vals):
                self.err(s.loc, f"'{n}' cannot be assigned inside a runtime if")
                continue
            if all(not isinstance(v, Value) for v in vals) and vals[0] == vals[1] \
                    and type(vals[0]) is type(vals[1]):
                scope.vars[n] = vals[0]
                continue
            typed = [v.type for v in vals if isinstance(v, Value)]
            if len(typed) == 2 and typed[0] != typed[1]:
                self.err(s.loc, f"'{n}' has type {typed[0]} on one branch and {typed[1]} on the other")
                scope.vars[n] = POISON
                continue
            t = typed[0] if typed else Type(D.promote(self.static_dtype(vals[0]), self.static_dtype(vals[1])))
            results.append((n, vals))
            rtypes.append(t)
        for i, (blk, _) in enumerate(branches):
            self.block = blk
            ys = []
            for (n, vals), t in zip(results, rtypes):
                v = vals[i]
                ys.append(v if isinstance(v, Value) else self.broadcast_to(self.as_value(v, t.dtype), t.shape))
            self.emit("yield", ys, [])
        self.block = outer
        op = self.emit("if", [c], rtypes, {}, s.loc, [b for b, _ in branches])
        for (n, _), r in zip(results, op.results):
            r.hint = n
            scope.vars[n] = r

    # ------------------------------------------------------------------ expressions
    def expr(self, e, scope: _Scope):
        m = getattr(self, "e_" + type(e).__name__, None)
        if m is None:
            return self.err(e.loc, "unsupported expression")
        outer, self._loc = self._loc, e.loc or self._loc     # where an emitted op's errors point
        try:
            return m(e, scope)
        finally:
            self._loc = outer

    def e_Int(self, e, scope):
        return e.value

    def e_Float(self, e, scope):
        return e.value

    def e_Bool(self, e, scope):
        return e.value

    def e_Str(self, e, scope):
        return self.err(e.loc, "strings are only allowed as static_assert messages")

    def e_NoneLit(self, e, scope):
        return self.err(e.loc, "None is only allowed inside [] to add a broadcast axis")

    def e_Tuple(self, e, scope):
        items = tuple(self.expr(i, scope) for i in e.items)
        for node, it in zip(e.items, items):
            if isinstance(it, Ref):
                return self.err(node.loc, "a tensor access must be read with load(...)",
                                "wrap it: load(T[...])")
        return items

    def e_Name(self, e, scope):
        v = scope.lookup(e.id)
        if v is None:
            if e.id in BUILTINS:
                return self.err(e.loc, f"builtin '{e.id}' must be called")
            hint = None
            cands = [n for s in self._scopes(scope) for n in s.vars] + sorted(BUILTINS)
            close = difflib.get_close_matches(e.id, cands, n=1)
            if close:
                hint = f"did you mean '{close[0]}'?"
            return self.err(e.loc, f"unknown name '{e.id}'", hint)
        if isinstance(v, LoopLocal):
            return self.err(e.loc, f"'{e.id}' is only defined inside the loop or branch at line "
                            f"{v.loc.line}", "assign it before that block so it is carried out of it")
        return v

    @staticmethod
    def _scopes(scope):
        while scope is not None:
            yield scope
            scope = scope.parent

    def e_UnaryOp(self, e, scope):
        x = self.expr(e.operand, scope)
        if x is POISON:
            return POISON
        if e.op == "-":
            if isinstance(x, (int, float)) and not isinstance(x, bool):
                return -x
            if isinstance(x, Value):
                return self.emit("unary", [x], [x.type], {"op": "neg"}).result
        if e.op in ("~", "not"):
            if isinstance(x, bool):
                return not x
            if isinstance(x, int) and e.op == "~":
                return ~x
            if isinstance(x, Value) and (x.type.dtype == "bool" or (e.op == "~" and D.is_int(x.type.dtype))):
                return self.emit("unary", [x], [x.type], {"op": "not"}).result
        return self.err(e.loc, f"operator '{e.op}' does not apply to {self.describe(x)}")

    def describe(self, x) -> str:
        if isinstance(x, Value):
            return f"a {'scalar' if x.type.is_scalar else 'tile'} of type {x.type}"
        if isinstance(x, TensorParam):
            return f"tensor '{x.name}'"
        if isinstance(x, DType):
            return f"the dtype {x.name}"
        if isinstance(x, tuple):
            return "a tuple"
        return f"the constant {x!r}"

    def e_BinOp(self, e, scope):
        return self.binop(e.op, self.expr(e.left, scope), self.expr(e.right, scope), e.loc)

    def binop(self, op, a, b, loc):
        if a is POISON or b is POISON:
            return POISON
        for x in (a, b):
            if not isinstance(x, (Value, int, float, bool)):
                return self.err(loc, f"operator '{op}' does not apply to {self.describe(x)}")
        if not isinstance(a, Value) and not isinstance(b, Value):
            return self.fold(op, a, b, loc)
        if op in _CMPS:
            u = self.unify(a, b, loc)
            if u is None:
                return POISON
            va, vb, _ = u
            return self.emit("cmp", [va, vb], [Type("bool", va.type.shape)], {"pred": _CMPS[op]}).result
        kind = _BINOPS.get(op)
        if kind is None:
            return self.err(loc, f"unknown operator '{op}'")
        u = self.unify(a, b, loc)
        if u is None:
            return POISON
        va, vb, dt = u
        if kind in ("and", "or", "xor") and D.is_float(dt):
            return self.err(loc, f"operator '{op}' needs integer or bool operands, got {dt}")
        if kind in ("floordiv", "mod") and dt == "bool":
            return self.err(loc, f"operator '{op}' needs numbers, got bool")
        if kind == "div" and not D.is_float(dt):
            va, vb, dt = self.cast(va, "f32"), self.cast(vb, "f32"), "f32"
        if kind in ("add", "sub", "mul") and dt == "bool":
            return self.err(loc, f"arithmetic on bool values; cast them first")
        r = self.emit("binary", [va, vb], [va.type.with_dtype(dt)], {"op": kind}, loc).result
        if r.type.is_scalar and D.is_int(dt):
            self._track_affine(kind, va, vb, r)
        return r

    def _track_affine(self, kind, a, b, r):
        fa, fb = self.aff(a), self.aff(b)
        if kind in ("add", "sub"):
            s = -1 if kind == "sub" else 1
            out = dict(fa)
            for k, c in fb.items():
                out[k] = out.get(k, 0) + s * c
            self.affine[r] = {k: c for k, c in out.items() if c != 0 or k == 1}
        elif kind == "mul":
            for x, y in ((fa, fb), (fb, fa)):
                if set(y) <= {1}:
                    c = y.get(1, 0)
                    self.affine[r] = {k: v * c for k, v in x.items()}
                    return

    def fold(self, op, a, b, loc):
        try:
            if op in _CMPS:
                return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b, "!=": a != b}[op]
            both_int = isinstance(a, int) and isinstance(b, int)
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if op == "*":
                return a * b
            if op == "/":
                return a / b
            if op == "//":
                return _static_int_div(a, b) if both_int else float(math.trunc(a / b))
            if op == "%":
                return _static_mod(a, b) if both_int else math.fmod(a, b)
            if op in ("&", "and"):
                return a & b if both_int else bool(a) and bool(b)
            if op in ("|", "or"):
                return a | b if both_int else bool(a) or bool(b)
            if op == "^":
                return a ^ b
        except ZeroDivisionError:
            return self.err(loc, "division by zero in a constant expression")
        except TypeError:
            pass
        return self.err(loc, f"operator '{op}' does not apply to {a!r} and {b!r}")

    def e_Subscript(self, e, scope):
        base = self.expr(e.value, scope)
        if base is POISON:
            return POISON
        if isinstance(base, TensorParam):
            return self.tensor_ref(base, e, scope)
        if isinstance(base, Value):
            # x[:, None] / x[None, :]: add broadcast axes; ':' keeps an axis whole
            out, axis = base, 0
            for it in e.items:
                if isinstance(it, A.NoneLit):
                    shp = out.type.shape
                    out = self.emit("expand_dims", [out], [Type(out.type.dtype, shp[:axis] + (1,) + shp[axis:])],
                                    {"axis": axis}).result
                    axis += 1
                elif isinstance(it, A.Slice) and it.lower is None and it.upper is None:
                    axis += 1
                else:
                    return self.err(it.loc, "tiles can only be indexed with ':' and None",
                                    "load from a tensor to select elements")
            if axis - sum(isinstance(i, A.NoneLit) for i in e.items) != len(base.type.shape):
                return self.err(e.loc, f"index has {axis - sum(isinstance(i, A.NoneLit) for i in e.items)} "
                                f"':' but the tile has rank {len(base.type.shape)}")
            return out
        return self.err(e.loc, f"cannot index {self.describe(base)}")

    def tensor_ref(self, t: TensorParam, e: A.Subscript, scope):
        tt = t.type
        if len(e.items) != tt.rank:
            return self.err(e.loc, f"tensor '{t.name}' has {tt.rank} dims but is indexed with {len(e.items)}")
        index = []
        for axis, it in enumerate(e.items):
            if isinstance(it, A.NoneLit):
                return self.err(it.loc, "None cannot index a tensor")
            if isinstance(it, A.Slice):
                lo = self.expr(it.lower, scope) if it.lower is not None else 0
                dim = tt.dims[axis]
                if it.upper is not None:
                    hi = self.expr(it.upper, scope)
                elif isinstance(dim, int):
                    hi = dim
                else:
                    return self.err(it.loc, f"slice extent is not static: '{t.name}' dim {axis} is the runtime "
                                    f"size '{dim}'", "write an explicit end, e.g. i : i + BLOCK")
                if lo is POISON or hi is POISON:
                    return POISON
                if not (self._is_int_scalar(lo) and self._is_int_scalar(hi)):
                    return self.err(it.loc, "slice bounds must be integer scalars")
                fa, fb = self.aff(lo), self.aff(hi)
                diff = dict(fb)
                for k2, c in fa.items():
                    diff[k2] = diff.get(k2, 0) - c
                if any(c != 0 for k2, c in diff.items() if k2 != 1):
                    return self.err(it.loc, "slice extent is not static",
                                    "write slices as start : start + SIZE with SIZE a const")
                size = diff.get(1, 0)
                if size <= 0:
                    return self.err(it.loc, f"slice extent must be positive, got {size}")
                index.append(("slice", self.as_value(lo, "i32") if not isinstance(lo, Value) else lo, size))
                continue
            x = self.expr(it, scope)
            if x is POISON:
                return POISON
            if self._is_int_scalar(x):
                index.append(("scalar", self.as_value(x)))
            elif isinstance(x, Value) and D.is_int(x.type.dtype):
                index.append(("tile", x))
            else:
                return self.err(it.loc, f"tensor index must be an integer scalar, slice or integer tile, "
                                f"got {self.describe(x)}")
        kinds = {i[0] for i in index}
        if "slice" in kinds and "tile" in kinds:
            return self.err(e.loc, "cannot mix slices and index tiles in one access",
                            "build the slice's index tile with arange(0, SIZE)")
        return Ref(t, index, e.loc)

    # ------------------------------------------------------------------ calls
    def e_Call(self, e: A.Call, scope):
        f = e.func
        if f not in BUILTINS:
            v = scope.lookup(f)
            if v is not None:
                return self.err(e.func_loc, f"'{f}' is not a function")
            close = difflib.get_close_matches(f, sorted(BUILTINS), n=1)
            return self.err(e.func_loc, f"unknown function '{f}'",
                            f"did you mean '{close[0]}'?" if close else None)
        if f == "grid":
            return self.err(e.loc, "grid() must be the first statement of the kernel")
        if f == "range":
            return self.err(e.loc, "range() is only allowed in a for loop")
        return getattr(self, "c_" + f)(e, scope)

    def _args(self, e: A.Call, names: list[str], required: int, scope, raw=()):
        """Bind positional and keyword args to ``names``; check arity. ``raw`` are left unevaluated."""
        if len(e.args) > len(names):
            self.err(e.loc, f"{e.func}() takes at most {len(names)} argument{'s' if len(names) != 1 else ''} "
                     f"({', '.join(names)}), got {len(e.args)}")
            return None
        bound = dict(zip(names, e.args))
        for k, v in e.kwargs.items():
            if k not in names:
                self.err(v.loc, f"{e.func}() has no argument '{k}'", f"arguments: {', '.join(names)}")
                return None
            if k in bound:
                self.err(v.loc, f"{e.func}() got argument '{k}' twice")
                return None
            bound[k] = v
        missing = [n for n in names[:required] if n not in bound]
        if missing:
            self.err(e.loc, f"{e.func}() is missing argument '{missing[0]}'",
                     f"{e.func}({', '.join(names)})")
            return None
        out = {}
        for n in names:
            if n in bound:
                out[n] = bound[n] if n in raw else self.expr(bound[n], scope)
                if out[n] is POISON:
                    return None
            else:
                out[n] = None
        return out

    def _static_int(self, x, node, what):
        if isinstance(x, int) and not isinstance(x, bool):
            return x
        if isinstance(x, Value):
            self.err(node.loc, f"{what} must be a compile-time constant, but this is a runtime value",
                     "use a const parameter")
        elif x is not POISON:
            self.err(node.loc, f"{what} must be an integer")
        return None

    def _shape(self, x, node):
        items = x if isinstance(x, tuple) else (x,)
        nodes = node.items if isinstance(node, A.Tuple) else [node] * len(items)
        out = []
        for v, n in zip(items, nodes):
            if isinstance(v, Value):
                self.err(n.loc, "tile shape is not static: this dimension is a runtime value",
                         "tile shapes must be built from consts and literals")
                return None
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                self.err(n.loc, f"tile dimensions must be positive integers, got {v!r}")
                return None
            out.append(v)
        return tuple(out)

    def _dtype(self, x, node):
        if isinstance(x, DType):
            return x.name
        self.err(node.loc, f"expected a dtype ({', '.join(D.ALL)}), got {self.describe(x)}")
        return None

    def c_program_id(self, e, scope):
        a = self._args(e, ["axis"], 1, scope)
        if a is None:
            return POISON
        ax = self._static_int(a["axis"], e.args[0] if e.args else e, "program_id axis")
        if ax is None:
            return POISON
        if not 0 <= ax < max(1, self.grid_rank):
            return self.err(e.loc, f"program_id({ax}) but the grid has {self.grid_rank} dims")
        return self.emit("program_id" if e.func == "program_id" else "num_programs", [], [Type("i32")], {"axis": ax}).result

    c_num_programs = c_program_id

    def c_cdiv(self, e, scope):
        a = self._args(e, ["a", "b"], 2, scope)
        if a is None:
            return POISON
        x, y = a["a"], a["b"]
        if not (self._is_int_scalar(x) and self._is_int_scalar(y)):
            return self.err(e.loc, "cdiv() takes two integer scalars")
        if isinstance(x, int) and isinstance(y, int):
            if y == 0:
                return self.err(e.loc, "cdiv by zero")
            return -(-x // y)
        return self.binop("//", self.binop("-", self.binop("+", x, y, e.loc), 1, e.loc), y, e.loc)

    def c_static_assert(self, e, scope):
        if not e.args or len(e.args) > 2 or e.kwargs:
            return self.err(e.loc, "static_assert(condition[, \"message\"])")
        c = self.expr(e.args[0], scope)
        if c is POISON:
            return POISON
        if isinstance(c, Value):
            return self.err(e.args[0].loc, "static_assert needs a compile-time condition")
        if not c:
            msg = e.args[1].value if len(e.args) == 2 and isinstance(e.args[1], A.Str) else "static assertion failed"
            binding = ", ".join(f"{k}={v}" for k, v in self.binding.items())
            return self.err(e.loc, msg, f"with {binding}" if binding else None)
        return None

    def c_arange(self, e, scope):
        a = self._args(e, ["start", "end"], 2, scope)
        if a is None:
            return POISON
        s = self._static_int(a["start"], e.args[0] if e.args else e, "arange start")
        t = self._static_int(a["end"], e.args[1] if len(e.args) > 1 else e, "arange end")
        if s is None or t is None:
            return POISON
        if t <= s:
            return self.err(e.loc, f"arange({s}, {t}) is empty")
        return self.emit("arange", [], [Type("i32", (t - s,))], {"start": s, "end": t}).result

    def c_zeros(self, e, scope):
        a = self._args(e, ["shape", "dtype"], 1, scope)
        if a is None:
            return POISON
        return self._full(e, a["shape"], 0, a["dtype"] or DType("f32"), e.args[0] if e.args else e)

    def c_full(self, e, scope):
        a = self._args(e, ["shape", "value", "dtype"], 2, scope)
        if a is None:
            return POISON
        v = a["value"]
        if not isinstance(v, (Value, int, float, bool)):
            return self.err(e.loc, f"fill value must be a number, got {self.describe(v)}")
        dt = a["dtype"] or DType(v.type.dtype if isinstance(v, Value) else self.static_dtype(v))
        return self._full(e, a["shape"], v, dt, e.args[0] if e.args else e)

    def _full(self, e, shape, value, dtype, shape_node):
        shp = self._shape(shape, shape_node)
        dt = self._dtype(dtype, e)
        if shp is None or dt is None:
            return POISON
        if not isinstance(value, (Value, int, float, bool)):
            return self.err(e.loc, f"fill value must be a number, got {self.describe(value)}")
        if isinstance(value, Value):
            if not value.type.is_scalar:
                return self.err(e.loc, "full() value must be a scalar")
            return self.broadcast_to(self.cast(value, dt), shp)
        return self.emit("full", [], [Type(dt, shp)], {"value": float(value) if D.is_float(dt) else
                                                       (bool(value) if dt == "bool" else int(value)),
                                                       "shape": list(shp), "dtype": dt}).result

    def _ref(self, e, scope, what):
        if not e.args and "ref" not in e.kwargs:
            self.err(e.loc, f"{what}() is missing its tensor access", f"{what}(T[i : i + BLOCK, ...])")
            return None
        node = e.args[0] if e.args else e.kwargs["ref"]
        r = self.expr(node, scope)
        if r is POISON:
            return None
        if not isinstance(r, Ref):
            if isinstance(r, TensorParam):
                self.err(node.loc, f"{what}() needs an indexed tensor, e.g. {r.name}[...]")
            else:
                self.err(node.loc, f"{what}() needs a tensor access T[...], got {self.describe(r)}")
            return None
        return r

    def _access(self, ref: Ref, loc):
        """Index operands broadcast to the access shape; returns (operands, kinds, shape)."""
        tiles = [i[1] for i in ref.index if i[0] == "tile"]
        if tiles:
            shape = ()
            for t in tiles:
                shape = self.broadcast_shape(shape, t.type.shape, loc)
                if shape is None:
                    return None
        else:
            shape = tuple(i[2] for i in ref.index if i[0] == "slice")
        ops, kinds = [], []
        for i in ref.index:
            if i[0] == "tile":
                v = self.broadcast_to(i[1], shape, loc)
                if v is POISON:
                    return None
                ops.append(v)
                kinds.append(["tile"])
            elif i[0] == "slice":
                ops.append(i[1])
                kinds.append(["slice", i[2]])
            else:
                ops.append(i[1])
                kinds.append(["scalar"])
        return ops, kinds, shape

    def _mask(self, m, shape, node):
        if m is None:
            return None
        if isinstance(m, bool):
            m = self.as_value(m, "bool")
        if not isinstance(m, Value) or m.type.dtype != "bool":
            self.err(node.loc, f"mask must be bool, got {self.describe(m)}", "compare, e.g. idx < n")
            return POISON
        if len(m.type.shape) > len(shape) or self.broadcast_shape(m.type.shape, shape, node.loc) != shape:
            self.err(node.loc, f"mask of shape {list(m.type.shape)} does not fit the access shape {list(shape)}")
            return POISON
        return self.broadcast_to(m, shape, node.loc)

    def c_load(self, e, scope):
        ref = self._ref(e, scope, "load")
        a = self._args(e, ["ref", "mask", "other"], 1, scope, raw=("ref",))
        if ref is None or a is None:
            return POISON
        acc = self._access(ref, e.loc)
        if acc is None:
            return POISON
        ops, kinds, shape = acc
        dt = ref.tensor.type.dtype
        mask = self._mask(a["mask"], shape, e.kwargs.get("mask", e))
        if mask is POISON:
            return POISON
        other = a["other"]
        if other is not None:
            if isinstance(other, Value) and not other.type.is_scalar:
                return self.err(e.kwargs.get("other", e).loc, "load(other=...) must be a scalar")
            if not isinstance(other, (Value, int, float, bool)):
                return self.err(e.kwargs.get("other", e).loc, f"bad other value: {self.describe(other)}")
            if isinstance(other, float) and not D.is_float(dt) and other not in (float("inf"), float("-inf")):
                if other != int(other):
                    return self.err(e.kwargs.get("other", e).loc, f"other={other} does not fit {dt}")
        operands = [ref.tensor.value] + ops
        if mask is not None:
            operands.append(mask)
        if other is not None:
            operands.append(self.as_value(other, dt))
        return self.emit("load", operands, [Type(dt, shape)],
                         {"index": kinds, "masked": [True] * len(kinds), "has_mask": mask is not None,
                          "has_other": other is not None}, e.loc).result

    def c_store(self, e, scope):
        ref = self._ref(e, scope, "store")
        a = self._args(e, ["ref", "value", "mask"], 2, scope, raw=("ref",))
        if ref is None or a is None:
            return POISON
        acc = self._access(ref, e.loc)
        if acc is None:
            return POISON
        ops, kinds, shape = acc
        v = a["value"]
        dt = ref.tensor.type.dtype
        if not isinstance(v, (Value, int, float, bool)):
            return self.err(e.args[1].loc if len(e.args) > 1 else e.loc, f"cannot store {self.describe(v)}")
        v = self.as_value(v, dt)
        if v.type.shape != shape:
            if len(v.type.shape) > len(shape) or self.broadcast_shape(v.type.shape, shape, e.loc) != shape:
                return self.err(e.loc, f"stored value has shape {list(v.type.shape)} but the access "
                                f"'{ref.tensor.name}[...]' has shape {list(shape)}")
            v = self.broadcast_to(v, shape, e.loc)
        v = self.cast(v, dt)
        mask = self._mask(a["mask"], shape, e.kwargs.get("mask", e))
        if mask is POISON:
            return POISON
        operands = [ref.tensor.value] + ops + [v] + ([mask] if mask is not None else [])
        self.emit("store", operands, [], {"index": kinds, "masked": [True] * len(kinds),
                                          "has_mask": mask is not None}, e.loc)
        return None

    def _tile(self, x, node, what):
        if isinstance(x, Value):
            return x
        self.err(node.loc, f"{what} needs a tile, got {self.describe(x)}")
        return None

    def c_dot(self, e, scope):
        a = self._args(e, ["a", "b"], 2, scope)
        if a is None:
            return POISON
        x, y = self._tile(a["a"], e, "dot()"), self._tile(a["b"], e, "dot()")
        if x is None or y is None:
            return POISON
        if len(x.type.shape) != 2 or len(y.type.shape) != 2:
            return self.err(e.loc, f"dot() takes 2-D tiles, got {x.type} and {y.type}")
        if x.type.shape[1] != y.type.shape[0]:
            return self.err(e.loc, f"shape mismatch in dot(): {x.type} @ {y.type} (inner dims "
                            f"{x.type.shape[1]} and {y.type.shape[0]})", "use trans() on one operand?")
        if not (D.is_float(x.type.dtype) and D.is_float(y.type.dtype)):
            return self.err(e.loc, f"dot() takes float tiles, got {x.type.dtype} and {y.type.dtype}")
        if x.type.dtype != y.type.dtype:
            return self.err(e.loc, f"dtype mismatch in dot(): {x.type.dtype} and {y.type.dtype}",
                            "cast one operand so both match")
        return self.emit("dot", [x, y], [Type("f32", (x.type.shape[0], y.type.shape[1]))], {}, e.loc).result

    def c_trans(self, e, scope):
        a = self._args(e, ["x"], 1, scope)
        if a is None:
            return POISON
        x = self._tile(a["x"], e, "trans()")
        if x is None:
            return POISON
        if len(x.type.shape) != 2:
            return self.err(e.loc, f"trans() takes a 2-D tile, got {x.type}")
        return self.emit("trans", [x], [Type(x.type.dtype, x.type.shape[::-1])]).result

    def c_reshape(self, e, scope):
        a = self._args(e, ["x", "shape"], 2, scope)
        if a is None:
            return POISON
        x = self._tile(a["x"], e, "reshape()")
        shp = self._shape(a["shape"], e.args[1] if len(e.args) > 1 else e)
        if x is None or shp is None:
            return POISON
        if math.prod(shp) != x.type.numel:
            return self.err(e.loc, f"cannot reshape {x.type} to {list(shp)}")
        return self.emit("reshape", [x], [Type(x.type.dtype, shp)], {"shape": list(shp)}).result

    def _unary(self, e, scope, op):
        a = self._args(e, ["x"], 1, scope)
        if a is None:
            return POISON
        x = a["x"]
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            x = self.as_value(float(x), "f32")
        if not isinstance(x, Value):
            return self.err(e.loc, f"{op}() needs a number, got {self.describe(x)}")
        if op in _UNARY_FLOAT and not D.is_float(x.type.dtype):
            x = self.cast(x, "f32")
        if x.type.dtype == "bool":
            return self.err(e.loc, f"{op}() needs a number, got bool")
        return self.emit("unary", [x], [x.type], {"op": op}).result

    def c_exp(self, e, s): return self._unary(e, s, "exp")
    def c_exp2(self, e, s): return self._unary(e, s, "exp2")
    def c_log(self, e, s): return self._unary(e, s, "log")
    def c_sqrt(self, e, s): return self._unary(e, s, "sqrt")
    def c_rsqrt(self, e, s): return self._unary(e, s, "rsqrt")
    def c_abs(self, e, s): return self._unary(e, s, "abs")
    def c_sigmoid(self, e, s): return self._unary(e, s, "sigmoid")

    def _minmax(self, e, scope, op):
        a = self._args(e, ["a", "b"], 2, scope)
        if a is None:
            return POISON
        x, y = a["a"], a["b"]
        if not isinstance(x, Value) and not isinstance(y, Value):
            return (max if op == "maximum" else min)(x, y)
        u = self.unify(x, y, e.loc)
        if u is None:
            return POISON
        va, vb, dt = u
        r = self.emit("binary", [va, vb], [va.type], {"op": op}).result
        return r

    def c_maximum(self, e, s): return self._minmax(e, s, "maximum")
    def c_minimum(self, e, s): return self._minmax(e, s, "minimum")

    def _reduce(self, e, scope, kind):
        a = self._args(e, ["x", "axis"], 1, scope)
        if a is None:
            return POISON
        x = self._tile(a["x"], e, f"{kind}()")
        if x is None:
            return POISON
        if x.type.is_scalar:
            return self.err(e.loc, f"{kind}() reduces a tile along an axis; use maximum/minimum for scalars")
        if a["axis"] is None:
            if len(x.type.shape) != 1:
                return self.err(e.loc, f"{kind}() of a {len(x.type.shape)}-D tile needs an axis")
            ax = 0
        else:
            ax = self._static_int(a["axis"], e, f"{kind}() axis")
            if ax is None:
                return POISON
        if not -len(x.type.shape) <= ax < len(x.type.shape):
            return self.err(e.loc, f"axis {ax} is out of range for {x.type}")
        ax %= len(x.type.shape)
        if x.type.dtype == "bool":
            x = self.cast(x, "i32")
        shp = x.type.shape[:ax] + x.type.shape[ax + 1:]
        return self.emit("reduce", [x], [Type(x.type.dtype, shp)], {"kind": kind, "axis": ax}).result

    def c_max(self, e, s): return self._reduce(e, s, "max")
    def c_min(self, e, s): return self._reduce(e, s, "min")
    def c_sum(self, e, s): return self._reduce(e, s, "sum")

    def c_where(self, e, scope):
        a = self._args(e, ["cond", "a", "b"], 3, scope)
        if a is None:
            return POISON
        c, x, y = a["cond"], a["a"], a["b"]
        if isinstance(c, bool):
            return x if c else y
        if not isinstance(c, Value) or c.type.dtype != "bool":
            return self.err(e.loc, f"where() condition must be bool, got {self.describe(c)}")
        u = self.unify(x, y, e.loc)
        if u is None:
            return POISON
        vx, vy, _ = u
        shape = self.broadcast_shape(c.type.shape, vx.type.shape, e.loc)
        if shape is None:
            return POISON
        c, vx, vy = (self.broadcast_to(v, shape, e.loc) for v in (c, vx, vy))
        return self.emit("select", [c, vx, vy], [vx.type]).result

    def c_cast(self, e, scope):
        a = self._args(e, ["x", "dtype"], 2, scope)
        if a is None:
            return POISON
        dt = self._dtype(a["dtype"], e)
        if dt is None:
            return POISON
        x = a["x"]
        if not isinstance(x, Value):
            if isinstance(x, (int, float, bool)):
                return self.as_value(x, dt)
            return self.err(e.loc, f"cannot cast {self.describe(x)}")
        return self.cast(x, dt)


MAX_CONST = 1 << 20        # a tile extent no target holds (largest on-chip buffers are ~MiB)
MAX_TILE = 1 << 20         # tile elements (4 MiB of f32: several times any on-chip buffer)
MAX_DIM = (1 << 31) - 1    # dims are i32


def lower_kernel(kernel: A.Kernel, binding: dict, sink: DiagnosticSink, filename: str,
                 probe: bool = False) -> Kernel | None:
    """``probe``: consts with neither binding nor default get a stand-in (16, f16) so that
    ``tilec check`` can type-check kernels whose tile sizes are chosen later."""
    return Lowering(kernel, binding, sink, filename, probe).lower()
