"""Emit Ascend C for an AIV program (vector.py / vector_kernels.py): kernel, tiling header and
host launcher, in the same shape as the GEMM emitter (emit_ascendc.py).

Mapping from the program:
  * ping-pong input tiles (MTE2-written)  -> ``TQue<QuePosition::VECIN, 2>``; output tiles
    (read by MTE3) -> ``TQue<QuePosition::VECOUT, 2>``; Vector temporaries and gather index
    tiles -> ``TBuf<TPosition::VECCALC>``. The program's MTE2->VECTOR / VECTOR->MTE3 flags are
    the queues' ``EnQue``/``DeQue``; its VECTOR->MTE2 / MTE3->VECTOR hand-backs are
    ``FreeTensor`` (the queue inserts the matching SetFlag/WaitFlag);
  * CopyGmToUb / CopyUbToGm -> ``DataCopyPad`` with ``DataCopyExtParams`` covering only the
    valid rows and columns (selective read / write); a tile that is partly outside the tensor
    is first filled with the pad value (``Duplicate``, then a V->MTE2 flag);
  * CopyGmToUbGather -> one ``DataCopyPad`` per real row, its index read by the scalar unit
    (``GetValue`` after an MTE2->S flag);
  * vector ops -> ``Add/Sub/Mul/Div/Max/Min``, ``Adds/Muls/Maxs/Mins`` for scalar operands,
    per-row calls for row/column broadcasts, ``Exp/Ln/Sqrt/Rsqrt/Reciprocal/Abs/Relu``,
    ``Cast`` (``RoundMode::CAST_RINT`` when narrowing), ``ReduceSum``/``ReduceMax`` per row,
    ``Compare``/``Select``, ``Duplicate``; ``PipeBarrier<PIPE_V>`` between vector ops; a
    division by a scalar becomes ``Muls`` by its reciprocal (may differ from the simulator's
    division in the last bit);
  * tasks (grid points, row-major) -> ``for (task = GetBlockIdx(); task < tasks; task +=
    GetBlockNum())``, as the simulator deals them; ``KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_AIV_ONLY)``.

This source is not compiled here (no CANN): only its text is tested (golden files).
"""
from __future__ import annotations

from .ascendc_source import AscendCSource
from .ascendc_source import camel as _camel
from .program import Ref
from .vector import (AivProgram, Bcast, CopyGmToUb, CopyGmToUbGather, CopyUbToGm, Scalar, SOp,
                     VBinary, VCast, VCompare, VDup, VReduce, VSelect, VUnary, reduce_scratch,
                     ub_slot_bytes)

_CT = {"f16": "half", "bf16": "bfloat16_t", "f32": "float", "i32": "int32_t", "bool": "uint8_t"}
_VV = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min"}
_VS = {"add": "Adds", "mul": "Muls", "max": "Maxs", "min": "Mins"}
_UN = {"exp": "Exp", "ln": "Ln", "sqrt": "Sqrt", "rsqrt": "Rsqrt", "reciprocal": "Reciprocal",
       "abs": "Abs", "relu": "Relu"}
_CMP = {"lt": "LT", "le": "LE", "gt": "GT", "ge": "GE", "eq": "EQ", "ne": "NE"}
_SOP = {"add": "+", "sub": "-", "mul": "*", "floordiv": "/", "div": "/"}


class EmitError(ValueError):
    """An instruction this emitter has no Ascend C form for."""


class _Emit:
    def __init__(self, prog: AivProgram):
        self.p = prog
        self.struct = f"{_camel(prog.kernel)}Tiling"
        self.cls = f"Kernel{_camel(prog.kernel)}"
        dims = []
        for ds in prog.dims.values():
            dims += [d for d in ds if isinstance(d, str) and d not in dims]
        self.dims = dims
        self.floats = {s.dst for s in prog.scalars if s.op in ("f32", "div")}
        self.index_bufs = {i.index.buf for i in prog.body if isinstance(i, CopyGmToUbGather)}
        self.ins = [i.dst.buf for i in prog.body if isinstance(i, (CopyGmToUb, CopyGmToUbGather))
                    and i.dst.buf not in self.index_bufs]
        self.outs = list(dict.fromkeys(i.src.buf for i in prog.body if isinstance(i, CopyUbToGm)))
        self.temps = [b for b in prog.buffers if b not in self.ins and b not in self.outs
                      and b not in self.index_bufs]
        self.stored = list(dict.fromkeys(i.dst.tensor for i in prog.body if isinstance(i, CopyUbToGm)))
        self.scratch = reduce_scratch(prog.body, prog.buffers)    # as the UB check counts it

    # -- expressions ---------------------------------------------------------------------------
    def cx(self, v) -> str:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return repr(v) if isinstance(v, float) else str(v)
        if v in self.dims:
            return f"(int64_t)tl.{v}"
        if v in self.p.params:
            return f"tl.{v}"
        if isinstance(v, str) and v.startswith("pid") and v[3:].isdigit():
            return v
        return f"s_{v}"

    def fx(self, v) -> str:
        """A float operand for Adds/Muls/Duplicate."""
        if isinstance(v, (int, float)):
            return f"{float(v)!r}f".replace("inff", "INFINITY")
        return f"(float){self.cx(v)}"

    def dim(self, d) -> str:
        return str(d) if isinstance(d, int) else f"(int64_t)tl.{d}"

    def ct(self, buf) -> str:
        return _CT[self.p.buffers[buf].dtype]

    def view(self, v, tensor_dims):
        """offset, valid-row and valid-col expressions, GM row stride, tile (R, C)."""
        kept = [(d, off, ext) for d, (off, ext) in enumerate(v.index) if ext is not None]
        last = len(tensor_dims) - 1
        if kept[-1][0] != last:
            raise EmitError(f"{v}: the tile's columns must be the tensor's last dim")

        def stride(d):
            s = [self.dim(x) for x in tensor_dims[d + 1:]]
            return " * ".join(s) if s else "1"
        offset = " + ".join(f"{self.cx(off)} * {stride(d)}" if stride(d) != "1" else self.cx(off)
                            for d, (off, _) in enumerate(v.index))
        conds = [f"{self.cx(off)} < {self.dim(tensor_dims[d])}"
                 for d, (off, ext) in enumerate(v.index) if ext is None]
        cd, coff, C = kept[-1]
        nc = f"Valid({self.dim(tensor_dims[cd])} - {self.cx(coff)}, {C})"
        if len(kept) == 2:
            rd, roff, R = kept[0]
            nr = f"Valid({self.dim(tensor_dims[rd])} - {self.cx(roff)}, {R})"
            rstride = stride(rd)
        else:
            R, nr, rstride = 1, "1", "0"
        if conds:
            nr = f"(({' && '.join(conds)}) ? {nr} : 0)"
        return offset, nr, nc, rstride, R, C

    # -- parts ---------------------------------------------------------------------------------
    def copy_in(self, ins) -> list[str]:
        b, T = ins.dst.buf, self.ct(ins.dst.buf)
        buf = self.p.buffers[b]
        R, C = buf.shape
        L = [f"        {{   // {str(ins).split(None, 1)[1]}"]
        if isinstance(ins, CopyGmToUbGather):
            tdims = self.p.dims[ins.table]
            c0, ext = ins.cols
            L += [f"            int64_t nc = Valid({self.dim(tdims[1])} - {self.cx(c0)}, {ext});",
                  f"            Duplicate({b}, ({T})0, {R * C});   // rows past the real ones stay 0",
                  "            SyncVMte2();",
                  "            SyncMte2S();                        // the index tile has landed",
                  f"            DataCopyExtParams p{{1, (uint32_t)(nc * sizeof({T})), 0, 0, 0}};",
                  f"            DataCopyPadExtParams<{T}> pad{{false, 0, 0, ({T})0}};",
                  f"            for (int64_t r = 0; r < {self.cx(ins.count)} && r < {R}; ++r) {{",
                  f"                int64_t row = {ins.index.buf}.GetValue(r);",
                  f"                if (row >= 0 && row < {self.dim(tdims[0])} && nc > 0) {{",
                  f"                    DataCopyPad({b}[r * {C}], gm_{ins.table}[row * "
                  f"{self.dim(tdims[1])} + {self.cx(c0)}], p, pad);",
                  "                }", "            }", "        }"]
            return L
        off, nr, nc, rs, _, _ = self.view(ins.src, self.p.dims[ins.src.tensor])
        pad = self.fx(ins.pad)
        L += [f"            int64_t nr = {nr};", f"            int64_t nc = {nc};",
              f"            if (nr < {R} || nc < {C}) {{   // virtual padding: the rest of the tile",
              f"                Duplicate({b}, ({T}){pad}, {R * C});",
              "                SyncVMte2();", "            }",
              "            if (nr > 0 && nc > 0) {   // selective read: valid rows/cols only",
              f"                DataCopyExtParams p{{(uint16_t)nr, (uint32_t)(nc * sizeof({T})), "
              f"{gm_stride(rs, T)}, "
              f"(uint32_t)(({C * buf_item(buf)} - RoundUp32(nc * sizeof({T}))) / 32), 0}};",
              f"                DataCopyPadExtParams<{T}> pad{{false, 0, 0, ({T})0}};",
              f"                DataCopyPad({b}, gm_{ins.src.tensor}[{off}], p, pad);",
              "            }", "        }"]
        return L

    def copy_out(self, ins) -> list[str]:
        b, T = ins.src.buf, self.ct(ins.src.buf)
        buf = self.p.buffers[b]
        off, nr, nc, rs, _, C = self.view(ins.dst, self.p.dims[ins.dst.tensor])
        return [f"        {{   // {str(ins).split(None, 1)[1]}",
                f"            int64_t nr = {nr};", f"            int64_t nc = {nc};",
                "            if (nr > 0 && nc > 0) {   // selective write: valid rows/cols only",
                f"                DataCopyExtParams p{{(uint16_t)nr, (uint32_t)(nc * sizeof({T})), "
                f"(uint32_t)(({C * buf_item(buf)} - RoundUp32(nc * sizeof({T}))) / 32), "
                f"{gm_stride(rs, T)}, 0}};",
                f"                DataCopyPad(gm_{ins.dst.tensor}[{off}], {b}, p);",
                "            }", "        }"]

    def operand(self, o):
        if isinstance(o, Ref):
            return o.buf
        raise EmitError(f"operand {o} has no direct Ascend C form here")

    def vec(self, ins) -> list[str]:
        if isinstance(ins, VBinary):
            d = ins.dst.buf
            R, C = self.p.buffers[d].shape
            n = R * C
            a = self.operand(ins.a)
            b = ins.b
            if isinstance(b, Ref):
                return [f"        {_VV[ins.op]}({d}, {a}, {b.buf}, {n});"]
            if isinstance(b, Scalar):
                return [self.scalar_op(ins.op, d, a, self.fx(b.value), n)]
            if isinstance(b, Bcast) and b.axis == "row":
                return [f"        for (int32_t r = 0; r < {R}; ++r) {{",
                        f"            {_VV[ins.op]}({d}[r * {C}], {a}[r * {C}], {b.ref.buf}, {C});",
                        "        }"]
            if isinstance(b, Bcast) and b.axis == "col":
                return ["        SyncVS();                               // per-row scalars from UB",
                        f"        for (int32_t r = 0; r < {R}; ++r) {{",
                        f"            float s = (float){b.ref.buf}.GetValue(r);",
                        "    " + self.scalar_op(ins.op, f"{d}[r * {C}]", f"{a}[r * {C}]", "s", C),
                        "        }"]
        if isinstance(ins, VUnary):
            d, s = ins.dst.buf, ins.src.buf
            n = self.p.buffers[d].shape[0] * self.p.buffers[d].shape[1]
            if ins.op == "neg":
                return [f"        Muls({d}, {s}, -1.0f, {n});"]
            return [f"        {_UN[ins.op]}({d}, {s}, {n});"]
        if isinstance(ins, VCast):
            d, s = ins.dst.buf, ins.src.buf
            n = self.p.buffers[d].shape[0] * self.p.buffers[d].shape[1]
            narrow = self.p.buffers[d].dtype in ("f16", "bf16")
            mode = "RoundMode::CAST_RINT" if narrow else "RoundMode::CAST_NONE"
            return [f"        Cast({d}, {s}, {mode}, {n});"]
        if isinstance(ins, VReduce):
            d, s = ins.dst.buf, ins.src.buf
            R, C = self.p.buffers[s].shape
            fn = "ReduceSum" if ins.kind == "sum" else "ReduceMax"
            return [f"        for (int32_t r = 0; r < {R}; ++r) {{   // one row -> {d}[r]",
                    f"            {fn}<float>(red, {s}[r * {C}], work, {C});",
                    "            SyncVS();",
                    f"            {d}.SetValue(r, red.GetValue(0));",
                    "            SyncSV();", "        }"]
        if isinstance(ins, VDup):
            d = ins.dst.buf
            n = self.p.buffers[d].shape[0] * self.p.buffers[d].shape[1]
            return [f"        Duplicate({d}, ({self.ct(d)}){self.fx(ins.value.value)}, {n});"]
        if isinstance(ins, VCompare) and isinstance(ins.a, Ref) and isinstance(ins.b, (Ref, Scalar)):
            d = ins.dst.buf       # a bit mask, one bit per element, as Select reads it
            n = self.p.buffers[d].shape[0] * self.p.buffers[d].shape[1]
            if isinstance(ins.b, Scalar):
                T = self.ct(ins.a.buf)
                return [f"        CompareScalar({d}, {ins.a.buf}, ({T}){self.fx(ins.b.value)}, "
                        f"CMPMODE::{_CMP[ins.pred]}, {n});"]
            return [f"        Compare({d}, {ins.a.buf}, {ins.b.buf}, CMPMODE::{_CMP[ins.pred]}, {n});"]
        if isinstance(ins, VSelect) and isinstance(ins.mask, Ref) and isinstance(ins.a, Ref) \
                and isinstance(ins.b, (Ref, Scalar)):
            d = ins.dst.buf
            n = self.p.buffers[d].shape[0] * self.p.buffers[d].shape[1]
            if isinstance(ins.b, Scalar):
                return [f"        Select({d}, {ins.mask.buf}, {ins.a.buf}, ({self.ct(d)})"
                        f"{self.fx(ins.b.value)}, SELMODE::VSEL_TENSOR_SCALAR_MODE, {n});"]
            return [f"        Select({d}, {ins.mask.buf}, {ins.a.buf}, {ins.b.buf}, "
                    f"SELMODE::VSEL_TENSOR_TENSOR_MODE, {n});"]
        raise EmitError(f"no Ascend C form for '{ins}'")

    def scalar_op(self, op, d, a, s, n) -> str:
        if op in _VS:
            return f"        {_VS[op]}({d}, {a}, {s}, {n});"
        if op == "sub":
            return f"        Adds({d}, {a}, -({s}), {n});"
        if op == "div":
            return f"        Muls({d}, {a}, 1.0f / ({s}), {n});"
        raise EmitError(f"no scalar form of vector op '{op}'")

    def scalar(self, s: SOp) -> str:
        a, b = self.cx(s.a), (None if s.b is None else self.cx(s.b))
        if s.op == "f32":
            e = f"(float){a}"
        elif s.op in ("min", "max"):
            e = f"({a} {'<' if s.op == 'min' else '>'} {b} ? {a} : {b})"
        elif s.op == "div":
            e = f"(float){a} / (float){b}"
        else:
            e = f"{a} {_SOP[s.op]} {b}"
        return f"        s_{s.dst} = {e};"

    # -- files ---------------------------------------------------------------------------------
    def tiling(self) -> str:
        p, st = self.p, self.struct
        guard = f"TILEC_{p.kernel.upper()}_TILING_H"
        fields = [f"    uint32_t {d};" for d in self.dims] + [f"    float {s};" for s in p.params]
        fields += [f"    uint32_t grid{i};" for i in range(len(p.grid))] + ["    uint32_t tasks;"]
        args = ", ".join([f"uint32_t {d}" for d in self.dims] + [f"float {s}" for s in p.params])
        sets = [f"    t.{x} = {x};" for x in self.dims + list(p.params)]
        sets += [f"    t.grid{i} = {g};" for i, g in enumerate(p.grid)]
        sets.append("    t.tasks = " + " * ".join(f"t.grid{i}" for i in range(len(p.grid))) + ";")
        return "\n".join([
            f"// Generated by tilec (codegen/ascend/emit_ascendc_vector.py): tiling for AIV kernel "
            f"'{p.kernel}'.", f"#ifndef {guard}", f"#define {guard}", "#include <cstdint>", "",
            f"// One task = one grid point ({', '.join(p.grid)}); tasks are dealt to the AIV cores.",
            f"struct {st} {{", *fields, "};", "",
            f"inline {st} Make{st}({args})", "{", f"    {st} t;", *sets, "    return t;", "}",
            f"#endif  // {guard}", ""])

    def kernel(self) -> str:
        p, cls, st = self.p, self.cls, self.struct
        tensors = list(p.tensors)
        L = [f"// Generated by tilec (codegen/ascend/emit_ascendc_vector.py) from the AIV program of "
             f"kernel '{p.kernel}'",
             f"// ({', '.join(f'{k}={v}' for k, v in p.tile.items())}). Per task (the program's "
             "flags are the TQue EnQue/DeQue/FreeTensor):"]
        L += [f"//   {i}" for i in p.scalars + p.body]
        L += ['#include "kernel_operator.h"', f'#include "{p.kernel}_tiling.h"', "",
              "using namespace AscendC;", "",
              "__aicore__ inline int64_t Valid(int64_t left, int64_t ext)",
              "{", "    return left < 0 ? 0 : (left > ext ? ext : left);", "}", "",
              "__aicore__ inline uint32_t RoundUp32(uint32_t bytes)",
              "{", "    return (bytes + 31) / 32 * 32;", "}", ""]
        for name, ev in (("SyncVMte2", "V_MTE2"), ("SyncMte2S", "MTE2_S"), ("SyncVS", "V_S"),
                         ("SyncSV", "S_V")):
            L += [f"__aicore__ inline void {name}()", "{",
                  f"    event_t e = static_cast<event_t>(GetTPipePtr()->FetchEventID(HardEvent::{ev}));",
                  f"    SetFlag<HardEvent::{ev}>(e);", f"    WaitFlag<HardEvent::{ev}>(e);", "}", ""]
        L += [f"class {cls} {{", "public:", f"    __aicore__ inline {cls}() {{}}", ""]
        L.append(f"    __aicore__ inline void Init({', '.join(f'GM_ADDR {t}' for t in tensors)}, "
                 f"const {st} &tiling)")
        L += ["    {", "        tl = tiling;"]
        for t in tensors:
            size = " * ".join(f"(uint64_t){self.dim(d)}" for d in p.dims[t]) or "1"
            L.append(f"        gm_{t}.SetGlobalBuffer((__gm__ {_CT[p.tensors[t]]} *){t}, {size});")
        for b in self.ins:
            L.append(f"        pipe.InitBuffer(q_{b}, 2, {ub_slot_bytes(p.buffers[b])});")
        for b in self.outs:
            L.append(f"        pipe.InitBuffer(q_{b}, 2, {ub_slot_bytes(p.buffers[b])});")
        for b in self.temps + sorted(self.index_bufs):
            L.append(f"        pipe.InitBuffer(b_{b}, {ub_slot_bytes(p.buffers[b])});")
        if self.scratch:
            L += [f"        pipe.InitBuffer(b_work, {self.scratch['work']});",
                  f"        pipe.InitBuffer(b_red, {self.scratch['red']});"]
        L += ["    }", "", "    __aicore__ inline void Process()", "    {",
              "        for (uint32_t task = GetBlockIdx(); task < tl.tasks; task += GetBlockNum()) {",
              "            SetTask(task);", "            CopyIn();", "            Compute();",
              "            CopyOut();", "        }", "    }", "", "private:",
              "    __aicore__ inline void SetTask(uint32_t task)", "    {"]
        n = len(p.grid)
        for i in reversed(range(n)):
            L.append(f"        pid{i} = (int64_t)(task % tl.grid{i});" if i else
                     "        pid0 = (int64_t)task;")
            if i:
                L.append(f"        task /= tl.grid{i};")
        L += [self.scalar(s) for s in p.scalars]
        L += ["    }", "", "    __aicore__ inline void CopyIn()", "    {"]
        for b in sorted(self.index_bufs):
            L.append(f"        LocalTensor<{self.ct(b)}> {b} = b_{b}.Get<{self.ct(b)}>();")
        for b in self.ins:
            L.append(f"        LocalTensor<{self.ct(b)}> {b} = q_{b}.AllocTensor<{self.ct(b)}>();")
        for ins in p.body:
            if isinstance(ins, (CopyGmToUb, CopyGmToUbGather)):
                L += self.copy_in(ins)
        L += [f"        q_{b}.EnQue({b});" for b in self.ins]
        L += ["    }", "", "    __aicore__ inline void Compute()", "    {"]
        L += [f"        LocalTensor<{self.ct(b)}> {b} = q_{b}.DeQue<{self.ct(b)}>();" for b in self.ins]
        L += [f"        LocalTensor<{self.ct(b)}> {b} = q_{b}.AllocTensor<{self.ct(b)}>();"
              for b in self.outs]
        L += [f"        LocalTensor<{self.ct(b)}> {b} = b_{b}.Get<{self.ct(b)}>();" for b in self.temps]
        if self.scratch:
            L += ["        LocalTensor<float> work = b_work.Get<float>();",
                  "        LocalTensor<float> red = b_red.Get<float>();"]
        vec = [i for i in p.body if i.pipe == "VECTOR" and not type(i).__name__.endswith("Flag")]
        for k, ins in enumerate(vec):
            L += self.vec(ins)
            if k + 1 < len(vec):
                L.append("        PipeBarrier<PIPE_V>();")
        L += [f"        q_{b}.EnQue({b});" for b in self.outs]
        L += [f"        q_{b}.FreeTensor({b});" for b in self.ins]
        L += ["    }", "", "    __aicore__ inline void CopyOut()", "    {"]
        L += [f"        LocalTensor<{self.ct(b)}> {b} = q_{b}.DeQue<{self.ct(b)}>();" for b in self.outs]
        for ins in p.body:
            if isinstance(ins, CopyUbToGm):
                L += self.copy_out(ins)
        L += [f"        q_{b}.FreeTensor({b});" for b in self.outs]
        L += ["    }", "", "    TPipe pipe;"]
        L += [f"    TQue<QuePosition::VECIN, 2> q_{b};" for b in self.ins]
        L += [f"    TQue<QuePosition::VECOUT, 2> q_{b};" for b in self.outs]
        L += [f"    TBuf<TPosition::VECCALC> b_{b};" for b in self.temps + sorted(self.index_bufs)]
        if self.scratch:
            L += ["    TBuf<TPosition::VECCALC> b_work;", "    TBuf<TPosition::VECCALC> b_red;"]
        L += [f"    GlobalTensor<{_CT[p.tensors[t]]}> gm_{t};" for t in tensors]
        L += [f"    {st} tl;"] + [f"    int64_t pid{i} = 0;" for i in range(n)]
        L += [f"    {'float' if s in self.floats else 'int64_t'} s_{s} = 0;"
              for s in dict.fromkeys(x.dst for x in p.scalars)]
        L += ["};", "", f"__aicore__ inline void CopyTiling({st} *t, GM_ADDR tiling)", "{",
              "    __gm__ uint32_t *src = reinterpret_cast<__gm__ uint32_t *>(tiling);",
              "    uint32_t *dst = reinterpret_cast<uint32_t *>(t);",
              f"    for (uint32_t i = 0; i < sizeof({st}) / sizeof(uint32_t); ++i) {{",
              "        dst[i] = src[i];", "    }", "}", "",
              f'extern "C" __global__ __aicore__ void {p.kernel}('
              f'{", ".join(f"GM_ADDR {t}" for t in tensors)}, GM_ADDR tiling)', "{",
              "    KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_AIV_ONLY);",
              f"    {st} t;", "    CopyTiling(&t, tiling);", f"    {cls} op;",
              f"    op.Init({', '.join(tensors)}, t);", "    op.Process();", "}", ""]
        return "\n".join(L)

    def launcher(self) -> str:
        p, st = self.p, self.struct
        tensors = list(p.tensors)
        args = self.dims + list(p.params)
        L = [f"// Generated by tilec (codegen/ascend/emit_ascendc_vector.py): host launcher for "
             f"'{p.kernel}'.",
             f"// Usage: main {' '.join(args)}; reads "
             + ", ".join(f"{t}.bin" for t in tensors if t not in self.stored)
             + " (row-major), writes " + ", ".join(f"{t}.bin" for t in self.stored) + ".",
             f"// Built with CANN's ascendc.cmake, which generates aclrtlaunch_{p.kernel}.h.",
             "#include <cstdint>", "#include <cstdio>", "#include <cstdlib>", "#include <vector>",
             '#include "acl/acl.h"', f'#include "aclrtlaunch_{p.kernel}.h"',
             f'#include "{p.kernel}_tiling.h"', "",
             "#define CHECK_ACL(x)                                                                   \\",
             "    do {                                                                               \\",
             "        aclError e_ = (x);                                                             \\",
             "        if (e_ != ACL_SUCCESS) {                                                       \\",
             '            std::fprintf(stderr, "%s:%d: %s failed: %d\\n", __FILE__, __LINE__, #x, e_); \\',
             "            std::exit(1);                                                              \\",
             "        }                                                                              \\",
             "    } while (0)", "",
             "static std::vector<uint8_t> ReadFile(const char *path, size_t bytes)", "{",
             "    std::vector<uint8_t> v(bytes);", '    FILE *f = std::fopen(path, "rb");',
             "    if (f == nullptr || std::fread(v.data(), 1, bytes, f) != bytes) {",
             '        std::fprintf(stderr, "cannot read %zu bytes from %s\\n", bytes, path);',
             "        std::exit(1);", "    }", "    std::fclose(f);", "    return v;", "}", "",
             "int main(int argc, char **argv)", "{",
             f"    if (argc != {len(args) + 1}) {{",
             f'        std::fprintf(stderr, "usage: %s {" ".join(args)}\\n", argv[0]);',
             "        return 2;", "    }"]
        for i, d in enumerate(self.dims):
            L.append(f"    const uint32_t {d} = (uint32_t)std::atol(argv[{i + 1}]);")
        for i, s in enumerate(p.params):
            L.append(f"    const float {s} = (float)std::atof(argv[{len(self.dims) + i + 1}]);")
        L.append(f"    {st} tiling = Make{st}({', '.join(args)});")
        for t in tensors:
            size = " * ".join(f"(size_t){d}" for d in p.dims[t]) or "1"
            host_t = {"half": "uint16_t", "bfloat16_t": "uint16_t"}.get(_CT[p.tensors[t]],
                                                                      _CT[p.tensors[t]])
            item = f"sizeof({host_t})"
            L.append(f"    const size_t {t}Bytes = {size} * {item};")
            if t in self.stored:
                L.append(f"    std::vector<uint8_t> {t}Host({t}Bytes, 0);")
            else:
                L.append(f'    std::vector<uint8_t> {t}Host = ReadFile("{t}.bin", {t}Bytes);')
        L += ["", "    CHECK_ACL(aclInit(nullptr));", "    int32_t deviceId = 0;",
              "    CHECK_ACL(aclrtSetDevice(deviceId));", "    aclrtStream stream = nullptr;",
              "    CHECK_ACL(aclrtCreateStream(&stream));"]
        for t in tensors:
            L += [f"    void *{t}Dev = nullptr;",
                  f"    CHECK_ACL(aclrtMalloc(&{t}Dev, {t}Bytes, ACL_MEM_MALLOC_HUGE_FIRST));",
                  f"    CHECK_ACL(aclrtMemcpy({t}Dev, {t}Bytes, {t}Host.data(), {t}Bytes, "
                  "ACL_MEMCPY_HOST_TO_DEVICE));"]
        L += ["    void *tDev = nullptr;",
              "    CHECK_ACL(aclrtMalloc(&tDev, sizeof(tiling), ACL_MEM_MALLOC_HUGE_FIRST));",
              "    CHECK_ACL(aclrtMemcpy(tDev, sizeof(tiling), &tiling, sizeof(tiling), "
              "ACL_MEMCPY_HOST_TO_DEVICE));", "",
              "    // one block per vector core (capped by the tasks); the kernel loops over tasks",
              "    int64_t cores = 0;",
              "    CHECK_ACL(aclrtGetDeviceInfo(deviceId, ACL_DEV_ATTR_VECTOR_CORE_NUM, &cores));",
              "    uint32_t blockDim = tiling.tasks < (uint32_t)cores ? tiling.tasks : (uint32_t)cores;",
              f"    ACLRT_LAUNCH_KERNEL({p.kernel})(blockDim, stream, "
              f"{', '.join(f'{t}Dev' for t in tensors)}, tDev);",
              "    CHECK_ACL(aclrtSynchronizeStream(stream));"]
        for t in self.stored:
            L += [f"    CHECK_ACL(aclrtMemcpy({t}Host.data(), {t}Bytes, {t}Dev, {t}Bytes, "
                  "ACL_MEMCPY_DEVICE_TO_HOST));",
                  f'    FILE *f{t} = std::fopen("{t}.bin", "wb");',
                  f"    if (f{t} == nullptr || "
                  f"std::fwrite({t}Host.data(), 1, {t}Bytes, f{t}) != {t}Bytes) {{",
                  f'        std::fprintf(stderr, "cannot write {t}.bin\\n");', "        return 1;",
                  "    }", f"    std::fclose(f{t});"]
        L += [f"    CHECK_ACL(aclrtFree({t}Dev));" for t in tensors]
        L += ["    CHECK_ACL(aclrtFree(tDev));", "    CHECK_ACL(aclrtDestroyStream(stream));",
              "    CHECK_ACL(aclrtResetDevice(deviceId));", "    CHECK_ACL(aclFinalize());",
              "    return 0;", "}", ""]
        return "\n".join(L)


def gm_stride(row_stride: str, T: str) -> str:
    """Bytes skipped in GM between the valid parts of two rows (0 for a single-row view)."""
    return "0" if row_stride == "0" else f"(uint32_t)(({row_stride} - nc) * sizeof({T}))"


def buf_item(buf) -> int:
    from tilec.ir import dtypes as D
    return D.itemsize(buf.dtype)


def emit_vector(prog: AivProgram) -> AscendCSource:
    e = _Emit(prog)
    return AscendCSource(prog.kernel, e.kernel(), e.tiling(), e.launcher())
