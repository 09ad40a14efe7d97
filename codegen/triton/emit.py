"""Tile IR -> Triton source.

One specialised ``Kernel`` becomes one ``@triton.jit`` function:

- parameters: for each tensor a pointer plus one runtime stride per axis (``A``, ``A_s0``,
  ``A_s1``), so non-contiguous tensors work; then the symbolic dims (``M_``) and the runtime
  scalars (``eps_``), re-typed at the top of the body with ``tl.cast`` (Triton specialises an
  int argument equal to 1 into a constexpr, and passes Python ints as i32 / floats as f32).
  Consts are baked in as literals.
- loads and stores: ``ptr = base + sum(index_d * stride_d)`` (in i64, so offsets past 2**31
  elements work); a bounds check is emitted only
  for the dims the bounds analysis marked ``masked``, ANDed with the explicit mask. A masked
  load always passes ``other`` (default 0): Triton leaves masked-off lanes undefined otherwise.
- numerics follow ``tilec/ir/semantics.py``: 16-bit float arithmetic is written out as
  f32 arithmetic rounded back to the 16-bit type after each op; reductions of 16-bit floats
  run in f32; ``dot`` accumulates in f32 (``input_precision="ieee"`` for f32 inputs).
  Integer ``//`` and ``%`` map to Triton's, which truncate toward zero (C semantics, as the
  language requires); float ``//`` and ``%`` are written out with an explicit truncation.
- Triton's interpreter (``TRITON_INTERPRET=1``, used on machines without a GPU) mishandles
  bf16 in ``tl.dot`` and in reductions, so when ``interpret=True`` the generated code upcasts
  16-bit ``dot`` operands to f32 (exact: products of 16-bit floats are exact in f32). Compiled
  code (``interpret=False``) feeds 16-bit operands to the tensor cores directly. The
  interpreter also turns ``bool & scalar-bool`` into 0/1 integers that its loads and stores
  reject as masks, so in interpreter mode each mask term is re-derived as ``(term) != 0``.

Triton tiles need power-of-2 extents and ``tl.dot`` needs every dim >= 16; kernels that
break either raise ``TritonUnsupported`` naming the op and the shape.
"""
from __future__ import annotations

import keyword
import math
import re

import numpy as np

from tilec.ir import dtypes as D
from tilec.ir.core import Block, Kernel, Op, Value


class TritonUnsupported(Exception):
    """The kernel uses something Triton cannot express (the message names the op and shape)."""


TL = {"f16": "tl.float16", "bf16": "tl.bfloat16", "f32": "tl.float32", "i32": "tl.int32",
      "i64": "tl.int64", "bool": "tl.int1"}
_16 = ("f16", "bf16")
_BIN = {"add": "+", "sub": "-", "mul": "*", "div": "/", "and": "&", "or": "|", "xor": "^"}
_CMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
_HINTS = {"program_id": "pid", "num_programs": "npid", "dot": "mm", "cast": "cvt",
          "splat": "splat", "broadcast": "bc", "expand_dims": "x", "trans": "tr", "arange": "ar",
          "full": "full", "cmp": "c", "select": "sel", "constant": "k", "reshape": "rs"}
_RESERVED = {"tl", "triton", "range", "float", "int", "bool", "len", "min", "max", "abs", "sum", "any",
             "all", "print", "pow", "round", "id", "type", "list", "tuple", "dict", "str"}


def _pow2(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


def _lit(value, dtype: str) -> str:
    if dtype == "bool":
        return "True" if value else "False"
    if D.is_int(dtype):
        return str(int(value))
    v = float(value)
    if math.isnan(v):
        return "float('nan')"
    if math.isinf(v):
        return "float('inf')" if v > 0 else "float('-inf')"
    return repr(v)


def _shape(shape) -> str:
    return "(" + "".join(f"{s}, " for s in shape).rstrip(" ") + ")" if shape else "()"


def _loc(op: Op) -> str:
    return f" at {op.loc}" if op.loc is not None else ""


def check_supported(kernel: Kernel) -> None:
    """Raise ``TritonUnsupported`` for shapes Triton cannot express."""
    if kernel.grid_rank > 3:
        raise TritonUnsupported(f"{kernel.name}: a {kernel.grid_rank}-d launch grid; Triton grids have "
                                f"at most 3 axes")
    for op in kernel.walk():
        if op.name == "arange":
            n = op.attrs["end"] - op.attrs["start"]
            if not _pow2(n):
                raise TritonUnsupported(
                    f"{kernel.name}: arange({op.attrs['start']}, {op.attrs['end']}){_loc(op)} has "
                    f"{n} elements; Triton needs power-of-2 extents (tl.arange)")
        for r in op.results:
            shape = getattr(r.type, "shape", ())
            bad = [s for s in shape if not _pow2(s)]
            if bad:
                raise TritonUnsupported(
                    f"{kernel.name}: op '{op.name}'{_loc(op)} produces a tile of shape "
                    f"{list(shape)}; Triton needs power-of-2 tile extents (dim of size {bad[0]})")
        if op.name in ("load", "store"):
            shape = _access_shape(op)
            bad = [s for s in shape if not _pow2(s)]
            if bad:
                raise TritonUnsupported(
                    f"{kernel.name}: op '{op.name}'{_loc(op)} accesses a block of shape "
                    f"{list(shape)}; Triton needs power-of-2 tile extents (dim of size {bad[0]})")
        if op.name == "dot":
            (m, k), (_, n) = op.operands[0].type.shape, op.operands[1].type.shape
            if min(m, n, k) < 16:
                raise TritonUnsupported(
                    f"{kernel.name}: op 'dot'{_loc(op)} multiplies [{m}, {k}] by [{k}, {n}]; "
                    f"tl.dot needs M, N and K >= 16")
            if not D.is_float(op.operands[0].type.dtype):
                raise TritonUnsupported(f"{kernel.name}: op 'dot'{_loc(op)} on "
                                        f"{op.operands[0].type.dtype}: only float dots are supported")


def _index_shapes(op: Op) -> list[tuple]:
    kinds = op.attrs["index"]
    n_slices = sum(1 for k in kinds if k[0] == "slice")
    out, pos = [], 0
    for k, v in zip(kinds, op.operands[1:1 + len(kinds)]):
        if k[0] == "slice":
            s = [1] * n_slices
            s[pos] = k[1]
            pos += 1
            out.append(tuple(s))
        else:
            out.append(tuple(v.type.shape))
    return out


def _unbroadcast(v: Value) -> Value:
    """The tile a ``broadcast`` grew (same rank, size-1 axes): addresses and masks are built
    at the indices' own shapes and broadcast once by the final add / by tl.load itself, rather
    than as full-block i32 tiles each widened and multiplied in i64 (the register pressure that
    made paged-KV loads spill)."""
    while v.owner is not None and getattr(v.owner, "name", None) == "broadcast":
        v = v.owner.operands[0]
    return v


def _peeled_shape(op: Op) -> tuple:
    """The block shape the address expression has once each index is un-broadcast."""
    kinds = op.attrs["index"]
    shapes = _index_shapes(op)
    out = [s if k[0] == "slice" else tuple(_unbroadcast(v).type.shape)
           for k, s, v in zip(kinds, shapes, op.operands[1:1 + len(kinds)])]
    return tuple(np.broadcast_shapes(*out)) if out else ()


def _access_shape(op: Op) -> tuple:
    return tuple(np.broadcast_shapes(*_index_shapes(op))) if op.attrs["index"] else ()


class _Emitter:
    def __init__(self, kernel: Kernel, interpret: bool):
        self.k = kernel
        self.interpret = interpret
        self.names: dict[Value, str] = {}
        self.lits: dict[Value, str] = {}      # constants inlined as Python literals
        self.used: set[str] = set(_RESERVED)
        self.lines: list[str] = []
        self.tmp = 0

    # -- naming ---------------------------------------------------------------------------
    def fresh(self, hint: str | None) -> str:
        base = re.sub(r"\W", "_", hint or "v") or "v"
        if base[0].isdigit():
            base = "v" + base
        if keyword.iskeyword(base):
            base += "_"
        name, i = base, 1
        while name in self.used:
            name = f"{base}_{i}"
            i += 1
        self.used.add(name)
        return name

    def bind(self, v: Value, hint: str | None = None) -> str:
        n = self.fresh(hint or v.hint)
        self.names[v] = n
        return n

    def ref(self, v: Value) -> str:
        """An operand that may be a Python literal (fine next to a typed tensor)."""
        if v in self.lits:
            return self.lits[v]
        return self.names[v]

    def tref(self, v: Value) -> str:
        """An operand that must be a Triton tensor (methods like .to() are called on it)."""
        if v in self.lits:
            return f"tl.full((), {self.lits[v]}, {TL[v.type.dtype]})"
        return self.names[v]

    def f32(self, v: Value) -> str:
        s = self.tref(v)
        return f"{s}.to(tl.float32)" if v.type.dtype in _16 else s

    def line(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    # -- the function ---------------------------------------------------------------------
    def emit(self) -> tuple[str, list[str]]:
        k = self.k
        params, pre = [], []
        for tp in k.tensors:
            p = self.bind(tp.value, tp.name)
            params.append(p)
            for ax in range(tp.type.rank):
                params.append(self.fresh(f"{p}_s{ax}"))
        self.strides = {}
        i = 0
        for tp in k.tensors:
            i += 1
            self.strides[tp.value] = params[i:i + tp.type.rank]
            i += tp.type.rank
        varying = []   # dims and scalars change from step to step: never specialise on them
        for name, v in k.dims.items():
            arg = self.fresh(f"{name}_")
            params.append(arg)
            varying.append(arg)
            pre.append(f"{self.bind(v, name)} = tl.cast({arg}, {TL[v.type.dtype]})")
        for v in k.scalars:
            arg = self.fresh(f"{v.hint}_")
            params.append(arg)
            varying.append(arg)
            pre.append(f"{self.bind(v, v.hint)} = tl.cast({arg}, {TL[v.type.dtype]})")
        consts = ", ".join(f"{a}={b}" for a, b in k.consts.items())
        head = [f"# generated by tilec (codegen/triton) from kernel '{k.name}'"
                + (f" [{consts}]" if consts else ""),
                "# interpreter mode: 16-bit dot operands upcast to f32" if self.interpret else
                "# compiled mode",
                "import triton", "import triton.language as tl", "", "",
                (f"@triton.jit(do_not_specialize={varying!r})" if varying else "@triton.jit"),
                f"def {k.name}({', '.join(params)}):"]
        self.lines = []
        for p in pre:
            self.line(1, p)
        self.block(k.body, 1)
        if not self.lines:
            self.line(1, "pass")
        return "\n".join(head + self.lines) + "\n", params

    def block(self, block: Block, depth: int) -> list[str]:
        for op in block.ops:
            if op.name == "yield":
                return [self.tref(v) for v in op.operands]
            self.op(op, depth)
        return []

    def define(self, op: Op, depth: int, expr: str) -> None:
        hint = op.result.hint
        if hint is None:
            hint = _HINTS.get(op.name, "v")
            if op.name in ("program_id", "num_programs"):
                hint += str(op.attrs["axis"])
            elif op.name == "reduce":
                hint = op.attrs["kind"]
            elif op.name in ("binary", "unary"):
                hint = op.attrs["op"]
        self.line(depth, f"{self.bind(op.result, hint)} = {expr}")

    def op(self, op: Op, depth: int) -> None:
        n = op.name
        a = op.operands
        rt = op.results[0].type if op.results else None
        if n == "constant":
            dt = rt.dtype
            if dt in ("i32", "f32"):
                self.lits[op.result] = _lit(op.attrs["value"], dt)
            else:
                self.define(op, depth, f"tl.full((), {_lit(op.attrs['value'], dt)}, {TL[dt]})")
        elif n == "program_id":
            self.define(op, depth, f"tl.program_id({op.attrs['axis']})")
        elif n == "num_programs":
            self.define(op, depth, f"tl.num_programs({op.attrs['axis']})")
        elif n == "binary":
            self.define(op, depth, self.binary(op.attrs["op"], a[0], a[1], rt.dtype))
        elif n == "cmp":
            x, y = self.ref(a[0]), self.ref(a[1])
            if a[0] in self.lits and a[1] in self.lits:
                x = self.tref(a[0])
            self.define(op, depth, f"{x} {_CMP[op.attrs['pred']]} {y}")
        elif n == "unary":
            self.define(op, depth, self.unary(op.attrs["op"], a[0], rt.dtype))
        elif n == "select":
            self.define(op, depth, f"tl.where({self.tref(a[0])}, {self.tref(a[1])}, "
                                   f"{self.ref(a[2])})")
        elif n == "cast":
            self.define(op, depth, self.cast(a[0], op.attrs["dtype"]))
        elif n == "splat":
            shape = _shape(op.attrs["shape"])
            if a[0] in self.lits or (a[0].owner is not None and getattr(a[0].owner, "name", None)
                                     == "constant"):
                self.define(op, depth, f"tl.full({shape}, {_lit(a[0].owner.attrs['value'], rt.dtype)}, "
                                       f"{TL[rt.dtype]})")
            else:
                self.define(op, depth, f"tl.broadcast_to({self.tref(a[0])}, {shape})")
        elif n == "broadcast":
            self.define(op, depth, f"tl.broadcast_to({self.tref(a[0])}, {_shape(op.attrs['shape'])})")
        elif n == "expand_dims":
            x = self.tref(a[0])
            rank = len(a[0].type.shape)
            if rank == 0:
                self.define(op, depth, f"tl.broadcast_to({x}, (1,))")
            else:
                ax = op.attrs["axis"] % (rank + 1)
                sub = [":"] * rank
                sub.insert(ax, "None")
                self.define(op, depth, f"{x}[{', '.join(sub)}]")
        elif n == "trans":
            self.define(op, depth, f"tl.trans({self.tref(a[0])})")
        elif n == "reshape":
            self.define(op, depth, f"tl.reshape({self.tref(a[0])}, {_shape(op.attrs['shape'])})")
        elif n == "reduce":
            fn = {"sum": "tl.sum", "max": "tl.max", "min": "tl.min"}[op.attrs["kind"]]
            src = a[0]
            x = self.f32(src) if src.type.dtype in _16 else self.tref(src)
            r = f"{fn}({x}, axis={op.attrs['axis']})"
            if rt.dtype != ("f32" if src.type.dtype in _16 else src.type.dtype) or src.type.dtype == "bool":
                r = f"{r}.to({TL[rt.dtype]})"
            self.define(op, depth, r)
        elif n == "dot":
            x, y = self.tref(a[0]), self.tref(a[1])
            dts = (a[0].type.dtype, a[1].type.dtype)
            if self.interpret or "f32" in dts or dts[0] != dts[1]:
                x, y = self.f32(a[0]), self.f32(a[1])
                prec = ', input_precision="ieee"'
            else:
                prec = ""
            self.define(op, depth, f"tl.dot({x}, {y}{prec}, out_dtype=tl.float32)")
        elif n == "arange":
            self.define(op, depth, f"tl.arange({op.attrs['start']}, {op.attrs['end']})")
        elif n == "full":
            dt = op.attrs["dtype"]
            self.define(op, depth, f"tl.full({_shape(op.attrs['shape'])}, "
                                   f"{_lit(op.attrs['value'], dt)}, {TL[dt]})")
        elif n == "load":
            self.load(op, depth)
        elif n == "store":
            self.store(op, depth)
        elif n == "for":
            self.for_(op, depth)
        elif n == "if":
            self.if_(op, depth)
        else:
            raise TritonUnsupported(f"{self.k.name}: op '{n}'{_loc(op)} has no Triton lowering")

    # -- elementwise ----------------------------------------------------------------------
    def binary(self, kind: str, x: Value, y: Value, dt: str) -> str:
        if dt in _16:
            xs, ys = self.f32(x), self.f32(y)
        else:
            xs, ys = self.ref(x), self.ref(y)
            if x in self.lits and y in self.lits:
                xs = self.tref(x)
        if kind in _BIN:
            r = f"({xs} {_BIN[kind]} {ys})"
        elif kind in ("maximum", "minimum"):
            # numpy's maximum/minimum propagate NaN; Triton's do not unless asked
            nan = ", propagate_nan=tl.PropagateNan.ALL" if D.is_float(dt) else ""
            r = f"tl.{kind}({xs}, {ys}{nan})"
        elif kind in ("floordiv", "mod"):
            if D.is_int(dt):    # Triton's integer // and % truncate toward zero (sdiv/srem)
                r = f"({xs} {'//' if kind == 'floordiv' else '%'} {ys})"
            else:               # float: trunc(x / y), and fmod as x - trunc(x / y) * y
                q = f"({xs} / {ys})"
                t = f"tl.where({q} < 0, tl.ceil({q}), tl.floor({q}))"
                r = t if kind == "floordiv" else f"({xs} - {t} * {ys})"
        else:
            raise TritonUnsupported(f"binary op '{kind}' has no Triton lowering")
        if dt in _16:
            r = f"{r}.to({TL[dt]})"
        return r

    def unary(self, kind: str, x: Value, dt: str) -> str:
        xs = self.f32(x)
        if kind == "neg":
            r = f"(-{xs})"
        elif kind == "not":
            r = f"({xs} == 0)" if dt == "bool" else f"(~{xs})"
        elif kind in ("exp", "exp2", "log", "sqrt", "rsqrt", "abs"):
            r = f"tl.{kind}({xs})"
        elif kind == "sigmoid":
            r = f"(1.0 / (1.0 + tl.exp(-{xs})))"
        else:
            raise TritonUnsupported(f"unary op '{kind}' has no Triton lowering")
        if dt in _16:
            r = f"{r}.to({TL[dt]})"
        return r

    def cast(self, x: Value, dt: str) -> str:
        src = x.type.dtype
        xs = self.tref(x)
        if src == dt:
            return xs
        if dt == "bool":
            return f"({xs} != 0)"
        if src in _16 and dt in _16:
            return f"{xs}.to(tl.float32).to({TL[dt]})"
        return f"{xs}.to({TL[dt]})"

    # -- memory ---------------------------------------------------------------------------
    def _address(self, op: Op, depth: int):
        tv = op.operands[0]
        kinds = op.attrs["index"]
        idx = op.operands[1:1 + len(kinds)]
        n_slices = sum(1 for k in kinds if k[0] == "slice")
        dims = tv.type.dims
        terms, checks, pos = [], [], 0
        base = self.names[tv]
        for axis, (k, v) in enumerate(zip(kinds, idx)):
            if k[0] == "slice":
                sub = ["None"] * n_slices
                sub[pos] = ":"
                pos += 1
                ar = f"tl.arange(0, {k[1]})" + (f"[{', '.join(sub)}]" if n_slices > 1 else "")
                start = self.ref(v)
                e = ar if start == "0" else f"({start} + {ar})"
            else:
                v = _unbroadcast(v)
                e = self.ref(v)
            if op.attrs["masked"][axis] and not e.isidentifier():
                # name the index so the bounds check does not recompute it
                iname = self.fresh(f"{base}_i{axis}")
                self.line(depth, f"{iname} = {e}")
                e = iname
            if op.attrs["masked"][axis]:
                dim = dims[axis]
                dim_s = str(dim) if isinstance(dim, int) else self.names[self.k.dims[dim]]
                checks.append(f"({e} >= 0) & ({e} < {dim_s})")
            stride = self.strides[tv][axis]
            # 64-bit offsets: index * stride overflows i32 on large tensors (paged KV caches)
            wide = e if k[0] != "slice" and v in self.lits else f"{e}.to(tl.int64)"
            terms.append(f"{wide} * {stride}")
        ptr = " + ".join([base] + terms)
        shape = _access_shape(op)
        if shape and _peeled_shape(op) != shape:     # no index spans some axis of the block
            ptr = f"tl.broadcast_to({ptr}, {_shape(shape)})"
        return ptr, checks

    def _mask(self, checks: list[str], explicit: str | None, shape: tuple = ()) -> str | None:
        parts = list(checks) + ([explicit] if explicit else [])
        if not parts:
            return None
        if self.interpret:
            # Triton's interpreter can turn `bool & scalar-bool` into 0/1 integers, which its
            # load/store then reject ("mask has unsupported dtype"): re-derive a bool; and it
            # does not broadcast a scalar mask over a block itself
            m = "(" + " & ".join(f"({p})" for p in parts) + ")"
            if not shape:
                return f"{m} != 0"
            # (its broadcast_to of a scalar bool yields a dtype its load rejects; arithmetic does not)
            return f"(tl.zeros({_shape(shape)}, tl.int32) + {m}.to(tl.int32)) != 0"
        return " & ".join(f"({p})" if "&" in p and len(parts) > 1 else p for p in parts)

    def load(self, op: Op, depth: int) -> None:
        nidx = len(op.attrs["index"])
        rest = op.operands[1 + nidx:]
        ptr, checks = self._address(op, depth)
        explicit = other = None
        if op.attrs["has_mask"]:
            explicit = self.tref(_unbroadcast(rest.pop(0)))
        dt = op.result.type.dtype
        if op.attrs["has_other"]:
            o = rest[0]
            # the reference casts `other` to the tensor's dtype
            other = _lit(o.owner.attrs["value"], dt) if o in self.lits else self.cast(o, dt)
        mask = self._mask(checks, explicit, _access_shape(op))
        name = self.bind(op.result)
        p = self.fresh(f"{name}_ptr")
        self.line(depth, f"{p} = {ptr}")
        if mask is None:
            self.line(depth, f"{name} = tl.load({p})")
        else:
            m = self.fresh(f"{name}_mask")
            self.line(depth, f"{m} = {mask}")
            self.line(depth, f"{name} = tl.load({p}, mask={m}, other={other or _lit(0, dt)})")

    def store(self, op: Op, depth: int) -> None:
        nidx = len(op.attrs["index"])
        rest = op.operands[1 + nidx:]
        ptr, checks = self._address(op, depth)
        value = self.tref(rest[0])
        tdt = op.operands[0].type.dtype
        if rest[0].type.dtype != tdt:
            value = self.cast(rest[0], tdt)
        explicit = self.tref(_unbroadcast(rest[1])) if op.attrs["has_mask"] else None
        mask = self._mask(checks, explicit, _access_shape(op))
        p = self.fresh(f"{self.names[op.operands[0]]}_ptr")
        self.line(depth, f"{p} = {ptr}")
        if mask is None:
            self.line(depth, f"tl.store({p}, {value})")
        else:
            m = self.fresh(f"{self.names[op.operands[0]]}_mask")
            self.line(depth, f"{m} = {mask}")
            self.line(depth, f"tl.store({p}, {value}, mask={m})")

    # -- control flow ---------------------------------------------------------------------
    def for_(self, op: Op, depth: int) -> None:
        lo, hi, inits = op.operands[0], op.operands[1], op.operands[2:]
        body = op.regions[0]
        carried = []
        for arg, init in zip(body.args[1:], inits):
            n = self.bind(arg)
            carried.append(n)
            self.line(depth, f"{n} = {self.tref(init)}")
        iv = self.bind(body.args[0])
        start = len(self.lines) + 1
        if self.interpret:
            # the interpreter's loop variable is a Python int, not a tensor
            raw = self.fresh(f"{iv}_it")
            self.line(depth, f"for {raw} in range({self.ref(lo)}, {self.ref(hi)}, {op.attrs['step']}):")
            self.line(depth + 1, f"{iv} = tl.cast({raw}, {TL[body.args[0].type.dtype]})")
        else:
            self.line(depth, f"for {iv} in range({self.ref(lo)}, {self.ref(hi)}, {op.attrs['step']}):")
        ys = self.block(body, depth + 1)
        moves = [(n, y) for n, y in zip(carried, ys) if n != y]
        if len(moves) > 1 and any(y in carried for _, y in moves):   # a simultaneous update
            tmps = []
            for n, y in moves:
                t = self.fresh(f"{n}_next")
                self.line(depth + 1, f"{t} = {y}")
                tmps.append((n, t))
            moves = tmps
        for n, y in moves:
            self.line(depth + 1, f"{n} = {y}")
        if len(self.lines) == start:
            self.line(depth + 1, "pass")
        for res, n in zip(op.results, carried):
            self.names[res] = n

    def if_(self, op: Op, depth: int) -> None:
        outs = [self.bind(r) for r in op.results]
        self.line(depth, f"if {self.tref(op.operands[0])}:")
        for i, region in enumerate(op.regions):
            if i == 1:
                self.line(depth, "else:")
            start = len(self.lines)
            ys = self.block(region, depth + 1)
            for n, y, r in zip(outs, ys, op.results):
                self.line(depth + 1, f"{n} = {y}")
            if len(self.lines) == start:
                self.line(depth + 1, "pass")


def emit_source(kernel: Kernel, interpret: bool = False) -> tuple[str, list[str]]:
    """Return (Triton source, parameter names) for ``kernel``."""
    check_supported(kernel)
    return _Emitter(kernel, interpret).emit()
