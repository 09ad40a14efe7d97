"""Tile IR -> C++ for the native CPU backend: one program instance per call of ``program``,
instances spread over threads with OpenMP.

Values: scalars are C locals; tiles are row-major arrays of their static shape in a per-thread
arena (offsets fixed at compile time). 16-bit floats live in memory as their bit patterns and
in tiles as f32 values rounded after every op (the language's semantics). ``expand_dims`` and
``reshape`` alias their operand (row-major order is unchanged).

What makes it fast where generic element loops would not be:
- accesses: a slice access copies the part inside the tensor row by row and fills the rest
  with ``other`` (virtual padding); a gather whose index tiles vary along one axis each (paged
  K/V: a block per row, arange(D) per column) computes one address per row and, when the row
  is contiguous, copies it as a vector; other gathers and scatters go element by element;
- ``dot``: a micro-kernel on f32 tiles (codegen/native/prelude.h); ``dot(x, trans(w))`` reads
  W's rows directly (a linear layer's weight), and a slice load that only feeds a dot and lies
  inside an f32 tensor is not copied at all: the dot reads the tensor in place;
- K loops: ``for k: acc += dot(load(A[.., k:k+BK]), [trans](load(B[..])))`` over f32 tensors
  runs, where both tiles lie inside their tensors with unit inner stride, as one dot over the
  loop's whole K range (f32 sum reassociated, as in the cpu backend), so the micro-kernel's
  horizontal sums and the tile adds happen once instead of once per K step; other tiles run the
  loop as written;
- rows (codegen/cpu/rows.py): when a kernel's tile rows are independent and only rows under a
  per-row flag are stored, everything after the flag runs on rows [0, live) only, live being
  the last set flag + 1: a Meta-Attention decode tile computes its G rows, not BM;
- broadcasts that only feed accesses as per-axis index factors are never materialised.

The ABI (``tilec_launch``): tensor pointers, element strides (every tensor's, in signature
order), dims (signature order), scalars as doubles, the grid (3 ints) and a thread count;
returns nonzero when an integer division by zero happened (the launcher raises).
"""
from __future__ import annotations

import math
from pathlib import Path

from tilec.ir import dtypes as D
from tilec.ir.core import Block, Kernel, Op, Value

__all__ = ["emit_source", "NativeUnsupported", "PRELUDE"]

PRELUDE = (Path(__file__).with_name("prelude.h")).read_text()

CT = {"f16": "float", "bf16": "float", "f32": "float", "i32": "int32_t", "i64": "int64_t", "bool": "uint8_t"}
SCALAR = {"f16": "float", "bf16": "float", "f32": "float", "i32": "int32_t", "i64": "int64_t", "bool": "bool"}
STORE = {"f16": "uint16_t", "bf16": "uint16_t", "f32": "float", "i32": "int32_t", "i64": "int64_t",
         "bool": "uint8_t"}
SIZE = {"f16": 4, "bf16": 4, "f32": 4, "i32": 4, "i64": 8, "bool": 1}     # bytes per tile element
_CMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}


class NativeUnsupported(Exception):
    """A kernel this backend cannot lower (one line)."""


def _shape(v: Value) -> tuple:
    return tuple(getattr(v.type, "shape", ()) or ())


def _numel(shape) -> int:
    return math.prod(shape) if shape else 1


def _lit(x, dt: str) -> str:
    if dt in ("f16", "bf16", "f32"):
        x = float(x)
        if math.isnan(x):
            return "NAN"
        if math.isinf(x):
            return "INFINITY" if x > 0 else "-INFINITY"
        return repr(float(x)) + "f"
    if dt == "bool":
        return "1" if x else "0"
    if dt == "i64":
        return f"(int64_t){int(x)}LL"
    return f"(int32_t){int(x)}"


def _round(dt: str, e: str) -> str:
    return f"tl::rh({e})" if dt == "f16" else f"tl::rb({e})" if dt == "bf16" else e


def _dim(n) -> str:
    """A tensor dim as a C expression: its literal size, or the launch's D_<name>."""
    return str(n) if isinstance(n, int) else f"D_{n}"


def _checked_address(idx: list[str], checked, dimsz, stride, mask: str | None) -> tuple[str, str]:
    """``(in-bounds condition, element offset)`` of an access at index expressions ``idx``."""
    conds, addr = [], []
    for a, x in enumerate(idx):
        x = f"(int64_t){x}"
        addr.append(f"{x} * {stride[a]}")
        if checked[a]:
            conds.append(f"({x} >= 0 && {x} < {dimsz[a]})")
    if mask is not None:
        conds.append(f"({mask})")
    return " && ".join(conds) or "true", " + ".join(addr) or "0"


def _from_store(dt: str, e: str) -> str:
    return f"tl::h2f({e})" if dt == "f16" else f"tl::b2f({e})" if dt == "bf16" else e


def _to_store(dt: str, e: str) -> str:
    if dt == "f16":
        return f"tl::f2h({e})"
    if dt == "bf16":
        return f"tl::f2b({e})"
    if dt == "bool":
        return f"(uint8_t)(({e}) != 0)"
    return e


class _Emitter:
    def __init__(self, kernel: Kernel):
        self.k = kernel
        self.lines: list[str] = []
        self.names: dict[Value, str] = {}
        self.ptrs: dict[Value, tuple[str, str]] = {}   # tile -> (pointer expr, leading dim) for dot
        self.offset = 0
        self.counter = 0
        self.params = {tp.value: tp for tp in kernel.tensors}
        self.uses: dict[Value, list[Op]] = {}
        self._collect_uses(kernel.body)
        try:
            from codegen.cpu.rows import analyse
            self.rowplan, _ = analyse(kernel)
        except Exception:        # noqa: BLE001  (the analysis is an optimisation only)
            self.rowplan = None
        self.in_rows = False

    # ------------------------------------------------------------------ helpers
    def _collect_uses(self, b: Block) -> None:
        for op in b.ops:
            for v in op.operands:
                self.uses.setdefault(v, []).append(op)
            for r in op.regions:
                self._collect_uses(r)

    def fresh(self, base: str = "v") -> str:
        self.counter += 1
        return f"{base}{self.counter}"

    def line(self, depth: int, s: str) -> None:
        self.lines.append("    " * depth + s)

    def alloc(self, v: Value, depth: int) -> str:
        """An arena buffer for tile value v (declared as a typed pointer)."""
        n = self.fresh("t")
        size = _numel(_shape(v)) * SIZE[v.type.dtype]
        off = self.offset
        self.offset += (size + 63) // 64 * 64
        self.line(depth, f"{CT[v.type.dtype]}* __restrict {n} = ({CT[v.type.dtype]}*)(ar + {off});")
        self.names[v] = n
        return n

    def scratch(self, nbytes: int) -> str:
        off = self.offset
        self.offset += (nbytes + 63) // 64 * 64
        return f"(ar + {off})"

    def n(self, v: Value) -> str:
        if v in self.names:
            return self.names[v]
        raise NativeUnsupported(f"value {v!r} used before it is computed")

    def extents(self, v: Value) -> list[str]:
        """Loop extent per axis of v: its static size, or ``live`` on the row axis."""
        sh = _shape(v)
        out = [str(s) for s in sh]
        if self.in_rows and self.rowplan is not None:
            for ax in self.rowplan.row_axes(v):
                out[ax] = "live"
        return out

    def loops(self, depth: int, shape: tuple, ext: list[str], body, inner_simd: bool = True) -> None:
        """Nested loops over ``shape`` (row-major), calling body(depth, flat index, idx names)."""
        if not shape:
            body(depth, "0", [])
            return
        if all(e == str(s) for e, s in zip(ext, shape)):        # whole tile: one flat loop
            e = self.fresh("e")
            if inner_simd:
                self.line(depth, "#pragma omp simd")
            self.line(depth, f"for (int64_t {e} = 0; {e} < {_numel(shape)}; ++{e}) {{")
            idx = []
            rem = e
            strides = [_numel(shape[a + 1:]) for a in range(len(shape))]
            for a, st in enumerate(strides):
                idx.append(f"(({e}) / {st} % {shape[a]})" if a else f"(({e}) / {st})")
            body(depth + 1, e, idx)
            self.line(depth, "}")
            return
        names = [self.fresh("i") for _ in shape]
        for a, (nm, ex) in enumerate(zip(names, ext)):
            if a == len(shape) - 1 and inner_simd:
                self.line(depth + a, "#pragma omp simd")
            self.line(depth + a, f"for (int64_t {nm} = 0; {nm} < {ex}; ++{nm}) {{")
        strides = [_numel(shape[a + 1:]) for a in range(len(shape))]
        flat = " + ".join(f"{nm} * {st}" if st != 1 else nm for nm, st in zip(names, strides))
        body(depth + len(shape), f"({flat})", names)
        for a in reversed(range(len(shape))):
            self.line(depth + a, "}")

    def elem(self, v: Value, e: str) -> str:
        """Element e of v (a scalar broadcasts)."""
        return self.n(v) if not _shape(v) else f"{self.n(v)}[{e}]"

    # ------------------------------------------------------------------ the kernel
    def emit(self) -> str:
        k = self.k
        body: list[str] = []
        self.lines = body
        d = 1
        for i, tp in enumerate(k.tensors):
            st = STORE[tp.type.dtype]
            self.line(d, f"{st}* __restrict T_{tp.name} = ({st}*)c.ptr[{i}];")
            for ax in range(tp.type.rank):
                self.line(d, f"const int64_t S_{tp.name}_{ax} = c.str[{i}][{ax}];")
            self.names[tp.value] = f"T_{tp.name}"
        for j, (name, v) in enumerate(k.dims.items()):
            self.names[v] = f"D_{name}"
            self.line(d, f"const int32_t D_{name} = (int32_t)c.dim[{j}];")
        for j, v in enumerate(k.scalars):
            nm = f"P_{v.hint}"
            self.names[v] = nm
            self.line(d, f"const {SCALAR[v.type.dtype]} {nm} = ({SCALAR[v.type.dtype]})c.sc[{j}];")
        self.block(k.body, d, top=True)
        maxrank = max([tp.type.rank for tp in k.tensors] + [1])
        consts = ", ".join(f"{a}={b}" for a, b in k.consts.items())
        src = [f"// generated by tilec's native backend from kernel '{k.name}'" + (f" [{consts}]" if consts else ""),
               PRELUDE,
               f"struct Ctx {{ void* ptr[{max(len(k.tensors), 1)}]; int64_t str[{max(len(k.tensors), 1)}][{maxrank}]; "
               f"int64_t dim[{max(len(k.dims), 1)}]; double sc[{max(len(k.scalars), 1)}]; int64_t g[3]; int err; }};",
               "",
               "static void program(Ctx& c, char* __restrict ar, const int32_t pid0, const int32_t pid1, "
               "const int32_t pid2) {",
               "    int* err = &c.err; (void)err; (void)ar;"]
        src += body
        src += ["}", "", f"static const int64_t ARENA = {self.offset};", "",
                'extern "C" int tilec_launch(void** ptrs, const int64_t* strides, const int64_t* dims, '
                'const double* scalars, const int64_t* grid, int64_t threads) {',
                "    Ctx c;",
                f"    for (int t = 0; t < {len(k.tensors)}; ++t) {{ c.ptr[t] = ptrs[t]; "
                f"for (int a = 0; a < {maxrank}; ++a) c.str[t][a] = strides[t * {maxrank} + a]; }}",
                f"    for (int j = 0; j < {len(k.dims)}; ++j) c.dim[j] = dims[j];",
                f"    for (int j = 0; j < {len(k.scalars)}; ++j) c.sc[j] = scalars[j];",
                "    c.g[0] = grid[0]; c.g[1] = grid[1]; c.g[2] = grid[2]; c.err = 0;",
                "    const int64_t n = c.g[0] * c.g[1] * c.g[2];",
                "    if (n <= 0) return 0;",
                "    int64_t nt = threads > 0 ? threads : omp_get_max_threads();",
                "    if (nt > n) nt = n;",
                "    const int64_t g12 = c.g[1] * c.g[2];",
                "    if (nt <= 1) {",
                "        char* ar = tl::arena(ARENA);",
                "        for (int64_t i = 0; i < n; ++i) program(c, ar, (int32_t)(i / g12), (int32_t)((i / c.g[2]) % c.g[1]), (int32_t)(i % c.g[2]));",
                "        return c.err;",
                "    }",
                "    #pragma omp parallel num_threads((int)nt)",
                "    {",
                "        char* ar = tl::arena(ARENA);",
                "        #pragma omp for schedule(dynamic, 1)",
                "        for (int64_t i = 0; i < n; ++i) program(c, ar, (int32_t)(i / g12), (int32_t)((i / c.g[2]) % c.g[1]), (int32_t)(i % c.g[2]));",
                "    }",
                "    return c.err;",
                "}",
                f'extern "C" int tilec_maxrank() {{ return {maxrank}; }}', ""]
        return "\n".join(src)

    def block(self, b: Block, depth: int, top: bool = False) -> list[str] | None:
        for i, op in enumerate(b.ops):
            if top and self.rowplan is not None and i == self.rowplan.split and not self.in_rows:
                self._start_rows(depth)
            if op.name == "yield":
                return [self.n(v) for v in op.operands]
            self.op(op, depth)
        return None

    def _start_rows(self, depth: int) -> None:
        f = self.rowplan.flag
        n = _numel(_shape(f))
        self.line(depth, "// rows past the last set per-row flag are never stored: compute [0, live) only")
        self.line(depth, "int64_t live = 0;")
        self.line(depth, f"for (int64_t r = {n} - 1; r >= 0; --r) if ({self.elem(f, 'r')}) {{ live = r + 1; break; }}")
        self.in_rows = True

    # ------------------------------------------------------------------ ops
    def op(self, op: Op, d: int) -> None:
        nm = op.name
        if nm in ("for", "if"):
            return getattr(self, "op_" + nm)(op, d)
        fn = getattr(self, "op_" + nm, None)
        if fn is None:
            raise NativeUnsupported(f"native backend: op '{nm}' is not supported")
        fn(op, d)

    def _scalar(self, op: Op, d: int, expr: str) -> None:
        r = op.results[0]
        nm = self.fresh("s")
        self.names[r] = nm
        self.line(d, f"const {SCALAR[r.type.dtype]} {nm} = {expr};")

    def _elementwise(self, op: Op, d: int, fn) -> None:
        """r[e] = fn(operand elements at e) (all operands share r's shape, or are scalars)."""
        r = op.results[0]
        if not _shape(r):
            return self._scalar(op, d, fn([self.n(v) for v in op.operands]))
        out = self.alloc(r, d)
        self.loops(d, _shape(r), self.extents(r),
                   lambda dd, e, idx: self.line(dd, f"{out}[{e}] = {fn([self.elem(v, e) for v in op.operands])};"))

    def op_constant(self, op, d):
        r = op.results[0]
        self._scalar(op, d, _lit(op.attrs["value"], r.type.dtype) if r.type.dtype != "bool"
                     else ("true" if op.attrs["value"] else "false"))

    def op_program_id(self, op, d):
        self._scalar(op, d, f"pid{op.attrs['axis']}")

    def op_num_programs(self, op, d):
        self._scalar(op, d, f"(int32_t)c.g[{op.attrs['axis']}]")

    def op_binary(self, op, d):
        dt = op.results[0].type.dtype
        k = op.attrs["op"]
        ct = SCALAR[dt]

        def f(a):
            x, y = a
            if k in ("add", "sub", "mul"):
                e = f"({x} {'+-*'[('add', 'sub', 'mul').index(k)]} {y})"
                return _round(dt, e) if D.is_float(dt) else f"({ct}){e}"
            if k == "div":
                return _round(dt, f"({x} / {y})") if D.is_float(dt) else f"tl::idiv<{ct}>({x}, {y}, err)"
            if k == "floordiv":
                return _round(dt, f"std::trunc({x} / {y})") if D.is_float(dt) else f"tl::idiv<{ct}>({x}, {y}, err)"
            if k == "mod":
                return _round(dt, f"std::fmod({x}, {y})") if D.is_float(dt) else f"tl::imod<{ct}>({x}, {y}, err)"
            if k in ("maximum", "minimum"):
                if D.is_float(dt):
                    return _round(dt, f"tl::{'mx' if k == 'maximum' else 'mn'}({x}, {y})")
                return f"tl::i{'mx' if k == 'maximum' else 'mn'}<{ct}>({x}, {y})"
            if k in ("and", "or", "xor"):
                if dt == "bool":
                    return {"and": f"({x} && {y})", "or": f"({x} || {y})", "xor": f"(({x} != 0) != ({y} != 0))"}[k]
                return f"({ct})({x} {'&|^'[('and', 'or', 'xor').index(k)]} {y})"
            raise NativeUnsupported(f"native backend: binary op {k}")
        self._elementwise(op, d, f)

    def op_cmp(self, op, d):
        p = _CMP[op.attrs["pred"]]
        self._elementwise(op, d, lambda a: f"({a[0]} {p} {a[1]})")

    def op_unary(self, op, d):
        dt = op.results[0].type.dtype
        k = op.attrs["op"]
        ct = SCALAR[dt]

        def f(a):
            x = a[0]
            if k == "neg":
                return f"(-{x})" if D.is_float(dt) else f"({ct})(0 - {x})"
            if k == "not":
                return f"(!{x})" if dt == "bool" else f"({ct})(~{x})"
            if k == "abs":
                return f"std::fabs({x})" if D.is_float(dt) else f"({ct})({x} < 0 ? 0 - {x} : {x})"
            fn = {"exp": "tl::vexp", "exp2": "tl::vexp2", "log": "std::log", "sqrt": "std::sqrt",
                  "rsqrt": "1.0f / std::sqrt", "sigmoid": "tl::sigm"}.get(k)
            if fn is None or not D.is_float(dt):
                raise NativeUnsupported(f"native backend: unary op {k} on {dt}")
            return _round(dt, f"({fn}({x}))")
        self._elementwise(op, d, f)

    def op_select(self, op, d):
        dt = op.results[0].type.dtype
        self._elementwise(op, d, lambda a: f"({a[0]} ? {a[1]} : {a[2]})" if dt != "bool"
                          else f"({a[0]} ? ({a[1]} != 0) : ({a[2]} != 0))")

    def op_cast(self, op, d):
        src = op.operands[0].type.dtype
        dt = op.attrs["dtype"]

        def f(a):
            x = a[0]
            if dt == "bool":
                return f"({x} != 0)"
            if D.is_float(dt):
                return _round(dt, f"(float)({x})") if dt != "f32" or src != "f32" else x
            if D.is_float(src):
                return f"tl::f2i<{SCALAR[dt]}>({x})"
            return f"({SCALAR[dt]})({x})"
        self._elementwise(op, d, f)

    def op_splat(self, op, d):
        r = op.results[0]
        out = self.alloc(r, d)
        s = self.n(op.operands[0])
        self.loops(d, _shape(r), self.extents(r), lambda dd, e, idx: self.line(dd, f"{out}[{e}] = {s};"))

    def op_full(self, op, d):
        r = op.results[0]
        out = self.alloc(r, d)
        v = _lit(op.attrs["value"], op.attrs["dtype"])
        self.loops(d, _shape(r), [str(s) for s in _shape(r)], lambda dd, e, idx: self.line(dd, f"{out}[{e}] = {v};"))

    def op_arange(self, op, d):
        r = op.results[0]
        out = self.alloc(r, d)
        s0 = int(op.attrs["start"])
        self.loops(d, _shape(r), [str(s) for s in _shape(r)],
                   lambda dd, e, idx: self.line(dd, f"{out}[{e}] = (int32_t)({s0} + {e});"))

    def op_expand_dims(self, op, d):
        x, r = op.operands[0], op.results[0]
        if not _shape(x):                     # a scalar becomes a one-element tile
            out = self.alloc(r, d)
            self.line(d, f"{out}[0] = {self.n(x)};")
            return
        self.names[r] = self.n(x)             # row-major order is unchanged: alias

    def op_reshape(self, op, d):
        self.names[op.results[0]] = self.n(op.operands[0])

    def op_broadcast(self, op, d):
        x, r = op.operands[0], op.results[0]
        if self._factor_only(r):
            return                            # every use reads it as a per-axis factor
        out = self.alloc(r, d)
        xs, rs = _shape(x), _shape(r)
        xs = (1,) * (len(rs) - len(xs)) + xs
        strides = [_numel(xs[a + 1:]) for a in range(len(xs))]

        def body(dd, e, idx):
            src = " + ".join(f"{i} * {st}" for i, n, st in zip(idx, xs, strides) if n != 1) or "0"
            self.line(dd, f"{out}[{e}] = {self.n(x)}[{src}];")
        self.loops(d, rs, self.extents(r), body)

    def op_trans(self, op, d):
        x, r = op.operands[0], op.results[0]
        if all(u.name == "dot" and u.operands[1] is r and u.operands[0] is not r for u in self.uses.get(r, [])):
            self.names[r] = self.n(x)         # read as W^T by the dot itself
            self.ptrs[r] = self.ptrs.get(x, (self.n(x), str(_shape(x)[1])))
            return
        out = self.alloc(r, d)
        a, b = _shape(x)
        self.loops(d, (a, b), [str(a), str(b)],
                   lambda dd, e, idx: self.line(dd, f"{out}[{idx[1]} * {a} + {idx[0]}] = {self.n(x)}[{e}];"))

    def op_reduce(self, op, d):
        x, r = op.operands[0], op.results[0]
        ax, kind = op.attrs["axis"], op.attrs["kind"]
        xs = _shape(x)
        dt = r.type.dtype
        isf = D.is_float(dt)
        init = {"sum": "0", "max": "-INFINITY" if isf else f"std::numeric_limits<{SCALAR[dt]}>::lowest()",
                "min": "INFINITY" if isf else f"std::numeric_limits<{SCALAR[dt]}>::max()"}[kind]
        acc_t = "float" if isf else ("int64_t" if kind == "sum" else SCALAR[dt])
        rs = _shape(r)
        xstr = [_numel(xs[a + 1:]) for a in range(len(xs))]
        if not rs:
            out = self.fresh("s")
            self.names[r] = out
            acc = self.fresh("a")
            self.line(d, f"{acc_t} {acc} = {init};")
            self._reduce_loop(d, x, acc, kind, isf, "0", xs[ax], xstr[ax])
            self.line(d, f"const {SCALAR[dt]} {out} = {_round(dt, f'({SCALAR[dt]}){acc}')};")
            return
        out = self.alloc(r, d)
        xext = self.extents(x)
        ext = [e for a, e in enumerate(xext) if a != ax]

        def body(dd, e, idx):
            full = list(idx)
            full.insert(ax, "0")
            base = " + ".join(f"{i} * {st}" for i, st in zip(full, xstr)) or "0"
            acc = self.fresh("a")
            self.line(dd, f"{acc_t} {acc} = {init};")
            self._reduce_loop(dd, x, acc, kind, isf, base, xs[ax], xstr[ax])
            self.line(dd, f"{out}[{e}] = {_round(dt, f'({CT[dt]}){acc}')};")
        self.loops(d, rs, ext, body, inner_simd=False)

    def _reduce_loop(self, d, x, acc, kind, isf, base, n, stride):
        j = self.fresh("j")
        el = f"{self.n(x)}[{base} + {j} * {stride}]"
        if kind == "sum":
            self.line(d, f"#pragma omp simd reduction(+:{acc})")
            self.line(d, f"for (int64_t {j} = 0; {j} < {n}; ++{j}) {acc} += {el};")
        else:
            f = ("tl::mx" if kind == "max" else "tl::mn") if isf else ("tl::imx" if kind == "max" else "tl::imn")
            self.line(d, f"for (int64_t {j} = 0; {j} < {n}; ++{j}) {acc} = {f}({acc}, {el});")

    def op_dot(self, op, d):
        a, b = op.operands
        r = op.results[0]
        M, K = _shape(a)
        N = _shape(r)[1]
        out = self.alloc(r, d)
        ap, lda = self.ptrs.get(a, (self.n(a), str(K)))
        rows = self.extents(r)[0]
        tro = b.owner if isinstance(b.owner, Op) else None
        if tro is not None and tro.name == "trans" and self.names.get(b) == self.names.get(tro.operands[0]):
            w = tro.operands[0]
            wp, ldw = self.ptrs.get(w, (self.n(w), str(_shape(w)[1])))
            scr = self.scratch(4 * N * K)
            self.line(d, f"tl::dot_nt({ap}, {lda}, {wp}, {ldw}, {out}, {N}, {rows}, {N}, {K}, (float*){scr});")
        else:
            bp, ldb = self.ptrs.get(b, (self.n(b), str(N)))
            self.line(d, f"tl::dot_nn({ap}, {lda}, {bp}, {ldb}, {out}, {N}, {rows}, {N}, {K});")

    # ------------------------------------------------------------------ control flow
    def _raisable(self, op):
        """For ``for k: acc += dot(load(A[r:r+BM, k:k+BK]), [trans](load(B[..])))`` over f32
        tensors: what a single dot over the whole K range needs (the loop, raised, as the cpu
        backend does), else None. Each load must take the loop variable as its K start and a
        start defined outside the loop on its other axis."""
        body = op.regions[0]
        ops = body.ops
        if len(op.results) != 1 or len(body.args) != 2 or len(ops) not in (5, 6):
            return None
        iv, carried = body.args
        names = [o.name for o in ops]
        if names not in (["load", "load", "trans", "dot", "binary", "yield"],
                         ["load", "load", "dot", "binary", "yield"]):
            return None
        dot, add, yld = ops[-3], ops[-2], ops[-1]
        la, lb = ops[0], ops[1]
        trans = ops[2] if names[2] == "trans" else None
        if add.attrs.get("op") != "add" or set(add.operands) != {carried, dot.results[0]} \
                or yld.operands[0] is not add.results[0] or dot.operands[0] is not la.results[0]:
            return None
        if (trans.operands[0] if trans else dot.operands[1]) is not lb.results[0] or \
                (trans is not None and dot.operands[1] is not trans.results[0]):
            return None
        inside = {r for o in ops for r in o.results}
        out = []
        for ld, k_axis in ((la, 1), (lb, 0 if trans is None else 1)):
            kinds = ld.attrs["index"]
            tp = self.params.get(ld.operands[0])
            if tp is None or tp.type.dtype != "f32" or len(kinds) != 2 or ld.attrs["has_mask"] \
                    or ld.attrs["has_other"] or any(k[0] != "slice" for k in kinds):
                return None
            starts = ld.operands[1:3]
            if starts[k_axis] is not iv or starts[1 - k_axis] in inside or starts[1 - k_axis] is iv:
                return None
            if kinds[k_axis][1] != op.attrs["step"]:
                return None
            out.append((tp, starts[1 - k_axis], kinds[1 - k_axis][1], k_axis))
        return out, trans is not None

    def _raised_dot(self, op, d, plan) -> str:
        """Emit the single-dot form of a raisable K loop behind its run-time conditions; returns
        the name of the flag saying it ran (the loop itself runs otherwise)."""
        (ta, ra, bm, _), (tb, rb, bn, kb), nt = plan
        lo, hi = (self.n(v) for v in op.operands[:2])
        acc = op.results[0]
        step = op.attrs["step"]
        kdim = ta.type.dims[1]
        kd = _dim(kdim)
        rows = self.extents(acc)[0]
        dims_a, dims_b = ([_dim(n) for n in t.type.dims] for t in (ta, tb))
        nrow_b = dims_b[0] if nt else dims_b[1]
        kl, kn, ok = self.fresh("kl"), self.fresh("kn"), self.fresh("raised")
        # the chunks cover [lo, lo + ceil((hi - lo) / step) * step), cut at K (masked past it)
        self.line(d, f"const int64_t {kl} = (int64_t){lo};")
        self.line(d, f"const int64_t {kn} = (int64_t){hi} > {kl} ? std::min<int64_t>({kl} + ((int64_t){hi} - {kl} + "
                     f"{step - 1}) / {step} * {step}, (int64_t){kd}) - {kl} : 0;")
        sa, sb = f"S_{ta.name}", f"S_{tb.name}"
        ra_, rb_ = f"(int64_t){self.n(ra)}", f"(int64_t){self.n(rb)}"
        kdim_b = tb.type.dims[kb]
        kd_b = _dim(kdim_b)
        conds = [f"{kl} >= 0", f"{kl} + {kn} <= (int64_t){kd_b}", f"{ra_} >= 0",
                 f"{ra_} + (int64_t){rows} <= (int64_t){dims_a[0]}", f"{rb_} >= 0",
                 f"{rb_} + {bn} <= (int64_t){nrow_b}", f"{sa}_1 == 1", f"{sb}_1 == 1"]
        self.line(d, f"const bool {ok} = {' && '.join(conds)};")
        buf = self.alloc(acc, d)
        self.line(d, f"if ({ok}) {{")
        self._copy_tile(d + 1, buf, self.n(op.operands[2]), acc)
        part = self.fresh("part")
        off = self.scratch(4 * bm * bn)
        self.line(d + 1, f"float* __restrict {part} = (float*){off};")
        pa = f"T_{ta.name} + {ra_} * {sa}_0 + {kl}"
        if nt:
            pb = f"T_{tb.name} + {rb_} * {sb}_0 + {kl}"
            scr = self.scratch(4 * bn * 8)
            self.line(d + 1, f"if ({kn} > 0) tl::dot_nt({pa}, {sa}_0, {pb}, {sb}_0, {part}, {bn}, {rows}, {bn}, "
                             f"{kn}, (float*){scr});")
        else:
            pb = f"T_{tb.name} + {kl} * {sb}_0 + {rb_}"
            self.line(d + 1, f"if ({kn} > 0) tl::dot_nn({pa}, {sa}_0, {pb}, {sb}_0, {part}, {bn}, {rows}, {bn}, {kn});")
        e = self.fresh("e")
        self.line(d + 1, f"if ({kn} > 0) for (int64_t {e} = 0; {e} < (int64_t){rows} * {bn}; ++{e}) "
                         f"{buf}[{e}] += {part}[{e}];")
        self.line(d, "} else {")
        return ok

    def op_for(self, op, d):
        plan = self._raisable(op)
        if plan is not None:
            self._raised_dot(op, d, (*plan[0], plan[1]))
            # the loop below runs only where the single dot could not (a ragged or strided tile)
            self._loop(op, d + 1, reuse=True)
            self.line(d, "}")
            return
        self._loop(op, d)

    def _loop(self, op, d, reuse: bool = False):
        lo, hi, *init = op.operands
        body = op.regions[0]
        res = []
        for v, iv in zip(op.results, init):
            if _shape(v):
                if reuse:          # the raised form declared the buffer; same name, same slot
                    buf = self.names[v]
                else:
                    buf = self.alloc(v, d)
                self._copy_tile(d, buf, self.n(iv), v)
            else:
                nm = self.fresh("c")
                self.line(d, f"{SCALAR[v.type.dtype]} {nm} = {self.n(iv)};")
                self.names[v] = nm
            res.append(self.names[v])
        for arg, v in zip(body.args[1:], op.results):
            self.names[arg] = self.names[v]
        it = self.fresh("iv")
        self.names[body.args[0]] = it
        ivt = SCALAR[body.args[0].type.dtype]
        self.line(d, f"for ({ivt} {it} = {self.n(lo)}; {it} < {self.n(hi)}; {it} += {op.attrs['step']}) {{")
        ys = self.block(body, d + 1)
        self._assign(d + 1, op.results, ys)
        self.line(d, "}")

    def op_if(self, op, d):
        for v in op.results:
            if _shape(v):
                self.alloc(v, d)
            else:
                nm = self.fresh("c")
                self.line(d, f"{SCALAR[v.type.dtype]} {nm};")
                self.names[v] = nm
        self.line(d, f"if ({self.n(op.operands[0])}) {{")
        ys = self.block(op.regions[0], d + 1)
        self._assign(d + 1, op.results, ys)
        self.line(d, "} else {")
        ys = self.block(op.regions[1], d + 1)
        self._assign(d + 1, op.results, ys)
        self.line(d, "}")

    def _assign(self, d, results, ys) -> None:
        """Carried values take the yielded ones (via temporaries where one reads another)."""
        if not results:
            return
        dst = [self.names[v] for v in results]
        temps = []
        for v, y in zip(results, ys):
            if not _shape(v):
                t = self.fresh("y")
                self.line(d, f"const {SCALAR[v.type.dtype]} {t} = {y};")
                temps.append(t)
            elif y in dst and dst.index(y) != len(temps):       # another carried tile: snapshot
                t = self.fresh("ty")
                off = self.scratch(_numel(_shape(v)) * SIZE[v.type.dtype])
                self.line(d, f"{CT[v.type.dtype]}* {t} = ({CT[v.type.dtype]}*){off};")
                self._copy_tile(d, t, y, v)
                temps.append(t)
            else:
                temps.append(y)
        for v, nm, t in zip(results, dst, temps):
            if not _shape(v):
                self.line(d, f"{nm} = {t};")
            elif t != nm:
                self._copy_tile(d, nm, t, v)

    def _copy_tile(self, d, dst: str, src: str, v: Value) -> None:
        n = _numel(_shape(v))
        self.line(d, f"std::memcpy({dst}, {src}, {n * SIZE[v.type.dtype]});")

    # ------------------------------------------------------------------ accesses
    @staticmethod
    def _peel(v: Value) -> Value:
        """v with the broadcasts that made it undone (their source holds the same values)."""
        while isinstance(v.owner, Op) and v.owner.name == "broadcast":
            v = v.owner.operands[0]
        return v

    @classmethod
    def _axis_of(cls, v: Value, rank: int):
        """(source, axis) when v, broadcast right-aligned to ``rank`` dims, varies along one
        axis only; (source, None) when it varies along none; None otherwise."""
        src = cls._peel(v)
        vs = _shape(src)
        vs = (1,) * (rank - len(vs)) + vs
        big = [a for a, n in enumerate(vs) if n != 1]
        if len(big) > 1:
            return None
        return src, (big[0] if big else None)

    def _factor(self, v: Value, shape: tuple):
        """How index / mask operand v varies over the access's result: ("s", expr) a scalar,
        ("a", axis, buffer, length) a vector along one result axis, or None."""
        if not _shape(v):
            return ("s", self.n(v))
        got = self._axis_of(v, len(shape))
        if got is None:
            return None
        src, ax = got
        if src not in self.names:
            return None
        if ax is None:
            return ("s", f"{self.names[src]}[0]")
        return ("a", ax, self.names[src], shape[ax])

    def _factor_only(self, v: Value) -> bool:
        """Every use of v is an access that will read it as a per-axis factor."""
        us = self.uses.get(v, [])
        if not us:
            return True
        for u in us:
            if u.name not in ("load", "store") or u.operands[0] is v:
                return False
            nidx = len(u.attrs["index"])
            acc = u.results[0] if u.name == "load" else u.operands[1 + nidx]
            if u.name == "store" and u.operands[1 + nidx] is v:
                return False
            if not _shape(acc) or not self._separable(u, _shape(acc)):
                return False
        return self._axis_of(v, len(_shape(v))) is not None

    def _separable(self, op: Op, shape: tuple) -> bool:
        """Whether every index/mask/other operand of a gather varies along at most one result
        axis (static structure only)."""
        nidx = len(op.attrs["index"])
        if any(k[0] == "slice" for k in op.attrs["index"]):
            return False
        rest = list(op.operands[1 + nidx:])
        if op.name == "store":
            rest = rest[1:]
        return all(not _shape(v) or self._axis_of(v, len(shape)) is not None
                   for v in list(op.operands[1:1 + nidx]) + rest)

    def op_load(self, op, d):
        self._access(op, d, load=True)

    def op_store(self, op, d):
        self._access(op, d, load=False)

    def _access(self, op: Op, d: int, load: bool) -> None:
        t = op.operands[0]
        tp = self.params[t]
        tname, sdt = tp.name, tp.type.dtype
        kinds = op.attrs["index"]
        nidx = len(kinds)
        idx = op.operands[1:1 + nidx]
        rest = list(op.operands[1 + nidx:])
        value = rest.pop(0) if not load else None
        mask = rest.pop(0) if op.attrs["has_mask"] else None
        other = rest.pop(0) if load and op.attrs["has_other"] else None
        checked = op.attrs["masked"]
        r = op.results[0] if load else None
        shape = _shape(r) if load else _shape(value)
        dims = tp.type.dims
        dimsz = [_dim(n) for n in dims]
        stride = [f"S_{tname}_{a}" for a in range(len(dims))]
        rdt = r.type.dtype if load else None
        oth = None
        if load:
            oth = _lit(0, rdt) if other is None else None

        def other_at(e):
            if oth is not None:
                return oth
            return self.elem(other, e) if _shape(other) else self.n(other)

        # ---- scalar access
        if not shape:
            ok, a = _checked_address([self.n(v) for v in idx], checked, dimsz, stride,
                                     self.n(mask) if mask is not None else None)
            if load:
                nm = self.fresh("s")
                self.names[r] = nm
                self.line(d, f"const {SCALAR[rdt]} {nm} = ({ok}) ? ({SCALAR[rdt]}){_from_store(sdt, f'T_{tname}[{a}]')} "
                             f": ({SCALAR[rdt]}){other_at('0')};")
            else:
                self.line(d, f"if ({ok}) T_{tname}[{a}] = {_to_store(sdt, self.n(value))};")
            return

        ext = self.extents(r if load else value)
        out = None
        if load:
            view = self._view_candidate(op, kinds, shape)
            out = self.alloc(r, d)
            if view:
                self.ptrs[r] = (out, str(shape[1]))

        # ---- slice access: base + per-axis ranges, row copies
        if any(k[0] == "slice" for k in kinds):
            base, ranges, conds = [], [], []
            ax = 0
            for a, (k, v) in enumerate(zip(kinds, idx)):
                x = f"(int64_t){self.n(v)}"
                base.append(f"{x} * {stride[a]}")
                if k[0] == "slice":
                    lo, hi = self.fresh("lo"), self.fresh("hi")
                    if checked[a]:
                        self.line(d, f"const int64_t {lo} = {x} < 0 ? -{x} : 0;")
                        self.line(d, f"const int64_t {hi} = std::min<int64_t>({k[1]}, (int64_t){dimsz[a]} - {x});")
                    else:
                        self.line(d, f"const int64_t {lo} = 0, {hi} = {k[1]};")
                    ranges.append((ax, lo, hi, stride[a]))
                    ax += 1
                elif checked[a]:
                    conds.append(f"({x} >= 0 && {x} < {dimsz[a]})")
            b = self.fresh("b")
            self.line(d, f"const int64_t {b} = {' + '.join(base) or '0'};")
            inside = self.fresh("in")
            cond = " && ".join(conds + [f"{lo} < {hi}" for _, lo, hi, _ in ranges]) or "true"
            self.line(d, f"const bool {inside} = {cond};")
            if load and op in self._views and mask is None and sdt == "f32":
                # a dot reads the tile in place when it lies inside the tensor with unit columns
                full = " && ".join([f"{lo} == 0 && {hi} == {shape[i]}" for i, lo, hi, _ in ranges] +
                                   [inside, f"{ranges[-1][3]} == 1"])
                pv, ldv = self.fresh("pv"), self.fresh("ld")
                self.line(d, f"const float* {pv} = {out}; int64_t {ldv} = {shape[1]};")
                self.line(d, f"if ({full}) {{ {pv} = T_{tname} + {b}; {ldv} = {ranges[0][3]}; }} else {{")
                self._slice_copy(op, d + 1, load, out, shape, ext, ranges, inside, b, tname, sdt, mask, value,
                                 other_at, rdt)
                self.line(d, "}")
                self.ptrs[r] = (pv, ldv)
                return
            self._slice_copy(op, d, load, out, shape, ext, ranges, inside, b, tname, sdt, mask, value, other_at, rdt)
            return

        # ---- gather / scatter through index tiles
        facs = [self._factor(v, shape) if k[0] == "tile" else ("s", self.n(v)) for k, v in zip(kinds, idx)]
        mf = self._factor(mask, shape) if mask is not None else None
        of = self._factor(other, shape) if other is not None and _shape(other) else None
        sep = all(f is not None for f in facs) and (mask is None or mf is not None) and \
            (other is None or not _shape(other) or of is not None)
        if sep:
            self._separable_access(op, d, load, out, shape, ext, facs, mf, of, checked, dimsz, stride, tname, sdt,
                                   value, other_at, rdt)
            return
        # generic: per element
        def body(dd, e, names):
            ok, ad = _checked_address([self._bcast_elem(v, shape, names) for v in idx], checked, dimsz, stride,
                                      self._bcast_elem(mask, shape, names) if mask is not None else None)
            if load:
                ov = self._bcast_elem(other, shape, names) if other is not None else oth
                self.line(dd, f"{out}[{e}] = ({ok}) ? ({CT[rdt]}){_from_store(sdt, f'T_{tname}[{ad}]')} : "
                              f"({CT[rdt]}){ov};")
            else:
                self.line(dd, f"if ({ok}) T_{tname}[{ad}] = {_to_store(sdt, self._bcast_elem(value, shape, names))};")
        self.loops(d, shape, ext, body, inner_simd=False)

    def _bcast_elem(self, v: Value, shape: tuple, names: list) -> str:
        """Element of v (broadcast right-aligned to ``shape``) at loop indices ``names``."""
        vs = _shape(v)
        if not vs:
            return self.n(v)
        vs = (1,) * (len(shape) - len(vs)) + vs
        if v not in self.names:
            x = self._peel(v)                             # a skipped broadcast: read its source
            xs = (1,) * (len(vs) - len(_shape(x))) + _shape(x)
            st = [_numel(xs[a + 1:]) for a in range(len(xs))]
            e = " + ".join(f"{i} * {s}" for i, n, s in zip(names, xs, st) if n != 1) or "0"
            return f"{self.n(x)}[{e}]"
        st = [_numel(vs[a + 1:]) for a in range(len(vs))]
        e = " + ".join(f"{i} * {s}" for i, n, s in zip(names, vs, st) if n != 1) or "0"
        return f"{self.n(v)}[{e}]"

    def _slice_copy(self, op, d, load, out, shape, ext, ranges, inside, b, tname, sdt, mask, value, other_at, rdt):
        """A slice access: per row (all axes but the last), the row's part inside the tensor
        ([lo, hi) of the last axis) is copied and the rest filled with ``other``."""
        rank = len(shape)
        names = [self.fresh("i") for _ in shape]
        for a in range(rank - 1):
            _, lo, hi, _ = ranges[a]
            if load:
                self.line(d + a, f"for (int64_t {names[a]} = 0; {names[a]} < {ext[a]}; ++{names[a]}) {{")
            else:
                self.line(d + a, f"for (int64_t {names[a]} = {lo}; {names[a]} < std::min<int64_t>({hi}, {ext[a]}); "
                                 f"++{names[a]}) {{")
        dd = d + rank - 1
        j = names[-1]
        _, lo, hi, st = ranges[-1]
        row = " + ".join(f"{nm} * {_numel(shape[a + 1:])}" for a, nm in enumerate(names[:-1])) or "0"
        radr = " + ".join([b] + [f"{nm} * {ranges[a][3]}" for a, nm in enumerate(names[:-1])])
        addr = f"{radr} + {j} * {st}"
        el = f"{row} + {j}"
        if load:
            rowok = " && ".join([inside] + [f"{nm} >= {ranges[a][1]} && {nm} < {ranges[a][2]}"
                                            for a, nm in enumerate(names[:-1])])
            n = shape[-1]
            ok = self.fresh("rok")
            self.line(dd, f"const bool {ok} = {rowok};")
            self.line(dd, f"const int64_t {lo}r = {ok} ? {lo} : {n}, {hi}r = {ok} ? {hi} : {n};")
            fill = lambda rng: (self.line(dd, "#pragma omp simd"),  # noqa: E731
                                self.line(dd, f"for (int64_t {j} = {rng[0]}; {j} < {rng[1]}; ++{j}) "
                                              f"{out}[{el}] = ({CT[rdt]}){other_at(el)};"))
            fill(("0", f"{lo}r"))
            self.line(dd, "#pragma omp simd")
            if mask is None:
                self.line(dd, f"for (int64_t {j} = {lo}r; {j} < {hi}r; ++{j}) "
                              f"{out}[{el}] = ({CT[rdt]}){_from_store(sdt, f'T_{tname}[{addr}]')};")
            else:
                m = self._bcast_elem(mask, shape, names)
                self.line(dd, f"for (int64_t {j} = {lo}r; {j} < {hi}r; ++{j}) {{ const {CT[rdt]} x_ = "
                              f"({CT[rdt]}){_from_store(sdt, f'T_{tname}[{addr}]')}; "
                              f"{out}[{el}] = ({m}) ? x_ : ({CT[rdt]}){other_at(el)}; }}")
            fill((f"std::max<int64_t>({lo}r, {hi}r)", str(n)))
        else:
            cond = inside
            if mask is not None:
                cond += f" && ({self._bcast_elem(mask, shape, names)})"
            self.line(dd, f"for (int64_t {j} = {lo}; {j} < std::min<int64_t>({hi}, {ext[-1]}); ++{j}) "
                          f"if ({cond}) T_{tname}[{addr}] = {_to_store(sdt, self._bcast_elem(value, shape, names))};")
        for a in reversed(range(rank - 1)):
            self.line(d + a, "}")

    def _separable_access(self, op, d, load, out, shape, ext, facs, mf, of, checked, dimsz, stride, tname, sdt,
                          value, other_at, rdt):
        """Per-axis partial addresses and validity, then rows of the result (a paged K/V row
        is one address and, with unit stride along an arange, a contiguous copy)."""
        rank = len(shape)
        base, bconds = [], []
        per_axis: dict[int, list] = {a: [] for a in range(rank)}
        for a, f in enumerate(facs):
            if f[0] == "s":
                x = f"(int64_t){f[1]}"
                base.append(f"{x} * {stride[a]}")
                if checked[a]:
                    bconds.append(f"({x} >= 0 && {x} < {dimsz[a]})")
            else:
                per_axis[f[1]].append(("idx", f[2], stride[a], dimsz[a] if checked[a] else None))
        if mf is not None:
            if mf[0] == "s":
                bconds.append(f"({mf[1]})")
            else:
                per_axis[mf[1]].append(("mask", mf[2]))
        b = self.fresh("b")
        self.line(d, f"const int64_t {b} = {' + '.join(base) or '0'};")
        bok = self.fresh("ok")
        self.line(d, f"const bool {bok} = {' && '.join(bconds) or 'true'};")
        # per-axis address and validity vectors (small: one entry per index along that axis)
        vecs = {}
        for a in range(rank):
            if not per_axis[a]:
                continue
            pa, va = self.fresh("pa"), self.fresh("va")
            n = shape[a]
            self.line(d, f"int64_t {pa}[{n}]; bool {va}[{n}];")
            self.line(d, f"for (int64_t q = 0; q < {ext[a]}; ++q) {{")
            terms, conds = [], []
            for item in per_axis[a]:
                if item[0] == "idx":
                    x = f"(int64_t){item[1]}[q]"
                    terms.append(f"{x} * {item[2]}")
                    if item[3] is not None:
                        conds.append(f"({x} >= 0 && {x} < {item[3]})")
                else:
                    conds.append(f"({item[1]}[q] != 0)")
            self.line(d + 1, f"{pa}[q] = {' + '.join(terms) or '0'}; {va}[q] = {' && '.join(conds) or 'true'};")
            self.line(d, "}")
            vecs[a] = (pa, va)
        names = [self.fresh("i") for _ in shape]
        lin = " + ".join(f"{nm} * {_numel(shape[a + 1:])}" if a < rank - 1 else nm for a, nm in enumerate(names))
        # the innermost axis: contiguous when its only factor is an arange with unit stride
        last = rank - 1
        contiguous = False
        if last in vecs and len(per_axis[last]) == 1 and per_axis[last][0][0] == "idx":
            src = per_axis[last][0]
            vo = self._arange_of(src[1])
            contiguous = vo is not None and vo == (0, shape[last])
            if contiguous:
                step = src[2]
        for a in range(rank - 1):
            self.line(d + a, f"for (int64_t {names[a]} = 0; {names[a]} < {ext[a]}; ++{names[a]}) {{")
        dd = d + rank - 1
        row_terms = [b] + [f"{vecs[a][0]}[{names[a]}]" for a in range(rank - 1) if a in vecs]
        row_ok = [bok] + [f"{vecs[a][1]}[{names[a]}]" for a in range(rank - 1) if a in vecs]
        ra, rk = self.fresh("ra"), self.fresh("rk")
        self.line(dd, f"const int64_t {ra} = {' + '.join(row_terms)}; const bool {rk} = {' && '.join(row_ok)};")
        j = names[last]
        col_addr = f"{vecs[last][0]}[{j}]" if last in vecs else "0"
        col_ok = f"{vecs[last][1]}[{j}]" if last in vecs else "true"
        if load:
            if contiguous:
                self.line(dd, f"if ({rk} && {step} == 1) {{")
                self.line(dd + 1, "#pragma omp simd")
                self.line(dd + 1, f"for (int64_t {j} = 0; {j} < {shape[last]}; ++{j}) "
                                  f"{out}[{lin}] = ({CT[rdt]}){_from_store(sdt, f'T_{tname}[{ra} + {j}]')};")
                self.line(dd, "} else {")
                dd2 = dd + 1
            else:
                dd2 = dd
            self.line(dd2, f"for (int64_t {j} = 0; {j} < {ext[last]}; ++{j}) "
                           f"{out}[{lin}] = ({rk} && {col_ok}) ? ({CT[rdt]}){_from_store(sdt, f'T_{tname}[{ra} + {col_addr}]')} "
                           f": ({CT[rdt]}){self._other_sep(of, other_at, lin, names)};")
            if contiguous:
                self.line(dd, "}")
        else:
            self.line(dd, f"if ({rk}) for (int64_t {j} = 0; {j} < {ext[last]}; ++{j}) if ({col_ok}) "
                          f"T_{tname}[{ra} + {col_addr}] = {_to_store(sdt, self._bcast_elem(value, shape, names))};")
        for a in reversed(range(rank - 1)):
            self.line(d + a, "}")

    @staticmethod
    def _other_sep(of, other_at, lin, names) -> str:
        if of is None:
            return other_at(lin)
        return of[1] if of[0] == "s" else f"{of[2]}[{names[of[1]]}]"

    def _arange_of(self, buf: str):
        """(start, length) when buffer ``buf`` holds an arange (directly or broadcast from one)."""
        for v, nm in self.names.items():
            if nm == buf:
                o = v.owner
                while isinstance(o, Op) and o.name in ("expand_dims", "reshape"):
                    o = o.operands[0].owner
                if isinstance(o, Op) and o.name == "arange":
                    return (int(o.attrs["start"]), int(o.attrs["end"]) - int(o.attrs["start"]))
                return None
        return None

    # slice loads whose only use is a dot operand (directly or through trans): read in place
    @property
    def _views(self) -> set:
        if not hasattr(self, "_view_set"):
            self._view_set = set()
        return self._view_set

    def _view_candidate(self, op: Op, kinds, shape) -> bool:
        r = op.results[0]
        if len(shape) != 2 or [k[0] for k in kinds].count("slice") != 2 or op.attrs["has_mask"]:
            return False
        for u in self.uses.get(r, []):
            if u.name == "dot" and u.operands[0] is r:
                continue
            if u.name == "trans" and all(x.name == "dot" and x.operands[1] is u.results[0] and
                                         x.operands[0] is not u.results[0] for x in self.uses.get(u.results[0], [])):
                continue
            return False
        if self.rowplan is not None and self.in_rows:
            return False
        self._views.add(op)
        return True


def emit_source(kernel: Kernel) -> str:
    """The C++ source of ``kernel`` for the native backend."""
    return _Emitter(kernel).emit()
