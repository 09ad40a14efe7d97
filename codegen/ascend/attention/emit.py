"""Ascend C for an attention program (lower.py): one mixed kernel (KERNEL_TYPE_MIX_AIC_1_2)
whose AIC branch (ASCEND_IS_AIC) and AIV branch (ASCEND_IS_AIV) run the program's phases,
plus the host tiling struct and a launcher.

Every phase of the program becomes a member function whose statements are generated from
its instructions, one to one: SetFlag/WaitFlag -> ``SetFlag<HardEvent::X_Y>``/``WaitFlag``,
cross-core flags -> ``CrossCoreSetFlag<0x2, PIPE_*>``/``CrossCoreWaitFlag``, Cube work ->
``DataCopy`` (Nd2NzParams) / ``LoadData`` / ``Mmad`` / ``Fixpipe``, vector work -> ``DataCopyPad``,
``Muls``/``Adds``/``Sub``/``Exp``/``ReduceMax``/``ReduceSum``/``CompareScalar``/``Select``/
``Cast``/``Duplicate``/``CreateVecIndex``. The task and window loops (with the pipeline's
skew) mirror ``sim.aic_stream``/``sim.aiv_stream``. Ping-pong slots and events named after a
counter ("@qk") become ``(qk & 1)``. Building needs CANN: use emit_ascendc.build, which raises
CannUnavailable where it is absent.
"""
from __future__ import annotations

import os

from ..ascendc_source import AscendCSource
from ..ascendc_source import camel as _camel
from ..program import LoadL0, SetFlag, WaitFlag
from ..vector import (Bcast, Scalar, VBinary, VCast, VCompare, VDup, VQKRows, VReduce,
                      VSelect, VUnary)
from .isa import (CopyKvToL1, CopyKvToUb, CopyQToL1, CopyQToUb, CopyUbToWs, MaskVisible,
                  CopyWsToL1, CopyWsToUb, CrossCoreSetFlag, CrossCoreWaitFlag, CubeMmad,
                  FixPipeToWs, StoreORows, TaskScalars)
from .lower import FLAG_NAMES, REDUCE_WORK_FLOATS, STAT_STRIDE, aiv_work_bytes

_CT = {"f16": "half", "bf16": "bfloat16_t", "f32": "float", "i32": "int32_t", "bool": "uint8_t"}
_PIPE = {"MTE2": "MTE2", "MTE1": "MTE1", "CUBE": "M", "FIXPIPE": "FIX", "VECTOR": "V",
         "MTE3": "MTE3"}
_CMP = {"lt": "LT", "le": "LE", "gt": "GT", "ge": "GE", "eq": "EQ", "ne": "NE"}
_TPOS = {"L1": "A1", "L0A": "A2", "L0B": "B2", "L0C": "CO1", "UB": "VECCALC"}


_CNT = {"qk": "qk", "ch": "ch", "sv": "sv", "sv_ch": "svCh", "cb_ch": "cbCh"}   # C++ counters
_VS = "SetFlag<HardEvent::V_S>(0);\nWaitFlag<HardEvent::V_S>(0);   // scalar reads of UB below"


def _ev(e) -> str:
    if isinstance(e, str) and e.startswith("@"):
        name, base = e[1:].split(":")
        return f"{base} + ({_CNT[name]} & 1)"
    return str(e)


def _stride(b) -> int:
    """Per-row statistics (f32 column buffers) keep one value per 32-byte block: a vector
    instruction's operand (a reduction's destination included) must start 32-byte aligned."""
    return STAT_STRIDE if b.space == "UB" and b.shape[1] == 1 and b.dtype == "f32" else 1


def _slot(s) -> str:
    return f"({_CNT[s[1:]]} & 1)" if isinstance(s, str) and s.startswith("@") else str(s)


class _Emitter:
    def __init__(self, prog):
        self.p = prog
        self.t = prog.tile
        self.bufs = prog.buffers

    def ref(self, r) -> str:
        b = self.bufs[r.buf]
        n = b.shape[0] * b.shape[1]
        return f"{r.buf}({_slot(r.slot)})" if b.count > 1 else f"{r.buf}(0)" if n else r.buf

    def row(self, r) -> str:
        """Element offset of row ``r`` of a per-row statistic (a column buffer)."""
        return f"r * {_stride(self.bufs[r.buf])}" if _stride(self.bufs[r.buf]) > 1 else "r"

    def val(self, v) -> str:
        if isinstance(v, Scalar):
            v = v.value
        if isinstance(v, str):
            return {"scale": "scale", "q_rows": "qRows", "q_pos": "qPos", "hi": "hi",
                    "c0": "c0"}.get(v, v)
        if isinstance(v, float):
            return f"{v!r}f" if "e" not in repr(v) else f"{v:.1e}f".replace("e+", "e")
        return str(v)

    def count(self, r) -> str:
        b = self.bufs[r.buf]
        return str(b.shape[0] * b.shape[1] * _stride(b))

    def stmt(self, ins, aiv: bool) -> list[str]:
        e = self
        if isinstance(ins, SetFlag):
            return [f"SetFlag<HardEvent::{_PIPE[ins.src]}_{_PIPE[ins.dst]}>({_ev(ins.event)});"]
        if isinstance(ins, WaitFlag):
            return [f"WaitFlag<HardEvent::{_PIPE[ins.src]}_{_PIPE[ins.dst]}>({_ev(ins.event)});"]
        if isinstance(ins, CrossCoreSetFlag):
            return [f"CrossCoreSetFlag<0x2, PIPE_{_PIPE[ins.pipe]}>(FLAG_{FLAG_NAMES[ins.flag]});"]
        if isinstance(ins, CrossCoreWaitFlag):
            return [f"CrossCoreWaitFlag(FLAG_{FLAG_NAMES[ins.flag]});"]
        if isinstance(ins, TaskScalars):
            return ["LoadTask(t);"]
        if isinstance(ins, CopyQToL1):
            return [f"CopyQToL1({e.ref(ins.dst)});"]
        if isinstance(ins, CopyKvToL1):
            return [f"GatherKvToL1({ins.cache.lower()}Gm, {e.ref(ins.dst)}, n0);"]
        if isinstance(ins, CopyWsToL1):
            return [f"CopyWsToL1(ws{ins.ws[3:]}, {_slot(ins.slot)}, b0, {e.ref(ins.dst)});"]
        if isinstance(ins, LoadL0):
            src, dst = self.bufs[ins.src.buf], self.bufs[ins.dst.buf]
            fn = "LoadL1ToL0A" if dst.space == "L0A" else "LoadL1ToL0B"
            tr = ", true" if ins.transpose else ", false"
            return [f"{fn}({e.ref(ins.dst)}, {e.ref(ins.src)}, {src.shape[0]}, {src.shape[1]}{tr});"]
        if isinstance(ins, CubeMmad):
            a, b = self.bufs[ins.a.buf], self.bufs[ins.b.buf]
            init = "blk == 0" if ins.acc_var else "true"
            return [f"MmadTile({e.ref(ins.dst)}, {e.ref(ins.a)}, {e.ref(ins.b)}, {a.shape[0]}, "
                    f"{a.shape[1]}, {b.shape[1]}, {init});"]
        if isinstance(ins, FixPipeToWs):
            b = self.bufs[ins.src.buf]
            col = ins.col0 or "0"
            ld = self.p.workspace[ins.ws][1]
            return [f"FixpipeToWs(ws{ins.ws[3:]}, {_slot(ins.slot)}, {col}, {e.ref(ins.src)}, "
                    f"{b.shape[0]}, {b.shape[1]}, {ld});"]
        if isinstance(ins, CopyWsToUb):
            b = self.bufs[ins.dst.buf]
            ld = self.p.workspace[ins.ws][1]
            return [f"CopyWsToUb({e.ref(ins.dst)}, ws{ins.ws[3:]}, {_slot(ins.slot)}, part, {b.shape[1]}, {ld});"]
        if isinstance(ins, CopyUbToWs):
            b = self.bufs[ins.src.buf]
            return [f"CopyUbToWs(ws{ins.ws[3:]}, {_slot(ins.slot)}, part, {e.ref(ins.src)}, {b.shape[1]});"]
        if isinstance(ins, CopyQToUb):
            return [f"CopyQToUb({e.ref(ins.dst)});"]
        if isinstance(ins, CopyKvToUb):
            return [f"GatherKvToUb({ins.cache.lower()}Gm, {e.ref(ins.dst)}, c0);"]
        if isinstance(ins, MaskVisible):
            return [f"MaskVisible({e.ref(ins.dst)}, c0);"]
        if isinstance(ins, StoreORows):
            return [f"StoreORows({e.ref(ins.src)});"]
        if isinstance(ins, VDup):
            return [f"Duplicate({e.ref(ins.dst)}, ({_CT[self.bufs[ins.dst.buf].dtype]}){e.val(ins.value)}, {e.count(ins.dst)});"]
        if isinstance(ins, VCast):
            return [f"Cast({e.ref(ins.dst)}, {e.ref(ins.src)}, RoundMode::CAST_RINT, {e.count(ins.dst)});"]
        if isinstance(ins, VUnary):
            assert ins.op == "exp"
            return [f"Exp({e.ref(ins.dst)}, {e.ref(ins.src)}, {e.count(ins.dst)});"]
        if isinstance(ins, VReduce):
            src = self.bufs[ins.src.buf]
            fn = "ReduceMax" if ins.kind == "max" else "ReduceSum"
            return [f"for (uint32_t r = 0; r < {src.shape[0]}; ++r) {{   // one row at a time",
                    f"    {fn}<float>({e.ref(ins.dst)}[{e.row(ins.dst)}], {e.ref(ins.src)}[r * {src.shape[1]}], work, {src.shape[1]});",
                    "}"]
        if isinstance(ins, VQKRows):
            return [f"QkRowsOnVector({e.ref(ins.dst)}, {e.ref(ins.q)}, {e.ref(ins.k)}, rowsValid);"]
        if isinstance(ins, VCompare):
            return self._compare(ins)
        if isinstance(ins, VSelect):
            return self._select(ins)
        if isinstance(ins, VBinary):
            return self._binary(ins)
        raise TypeError(f"no Ascend C for {ins}")

    def _compare(self, ins):
        d = self.ref(ins.dst)
        mode = f"CMPMODE::{_CMP[ins.pred]}"
        if isinstance(ins.a, Bcast) and isinstance(ins.b, Bcast):      # row vs column
            rows, cols = self.bufs[ins.dst.buf].shape
            return _VS.split("\n") + [f"for (uint32_t r = 0; r < {rows}; ++r) {{   // {ins.a.ref.buf}[j] vs {ins.b.ref.buf}[r]",
                    f"    CompareScalar({d}[r * {cols}], {self.ref(ins.a.ref)}, {self.ref(ins.b.ref)}.GetValue(r), {mode}, {cols});",
                    "}"]
        if isinstance(ins.b, Scalar):
            return [f"CompareScalar({d}, {self.ref(ins.a)}, {self.val(ins.b)}, {mode}, {self.count(ins.dst)});"]
        return [f"Compare({d}, {self.ref(ins.a)}, {self.ref(ins.b)}, {mode}, {self.count(ins.dst)});"]

    def _select(self, ins):
        d = self.ref(ins.dst)
        rows, cols = self.bufs[ins.dst.buf].shape
        a = self.val(ins.a) if isinstance(ins.a, Scalar) else self.ref(ins.a)
        b = self.val(ins.b)
        if isinstance(ins.mask, Bcast):
            m = self.ref(ins.mask.ref)
            if ins.mask.axis == "row":
                return [f"for (uint32_t r = 0; r < {rows}; ++r) {{   // key mask down the rows",
                        f"    Select({d}[r * {cols}], {m}, {a}[r * {cols}], {b}, SELMODE::VSEL_TENSOR_SCALAR_MODE, {cols});",
                        "}"]
            return _VS.split("\n") + [f"for (uint32_t r = 0; r < {rows}; ++r) {{   // row mask: whole row or nothing",
                    f"    if ({m}.GetValue(r) == 0) {{ Duplicate({d}[r * {cols}], {b}, {cols}); }}",
                    "}"]
        if isinstance(ins.a, Scalar):
            return [f"Duplicate({d}, {b}, {self.count(ins.dst)});",
                    f"Select({d}, {self.ref(ins.mask)}, {d}, {a}, SELMODE::VSEL_TENSOR_SCALAR_MODE, {self.count(ins.dst)});   // {a} where set"]
        return [f"Select({d}, {self.ref(ins.mask)}, {a}, {b}, SELMODE::VSEL_TENSOR_SCALAR_MODE, {self.count(ins.dst)});"]

    def _binary(self, ins):
        d = self.ref(ins.dst)
        n = self.count(ins.dst)
        rows, cols = self.bufs[ins.dst.buf].shape
        api = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min"}[ins.op]
        a = self.ref(ins.a)
        if isinstance(ins.b, Scalar):
            v = self.val(ins.b)
            if ins.op == "add" and v in ("0.0f", "0.0"):
                return [f"DataCopy({d}, {a}, {n});   // copy"]
            sapi = {"add": "Adds", "mul": "Muls", "max": "Maxs", "min": "Mins"}[ins.op]
            return [f"{sapi}({d}, {a}, (float){v}, {n});"]
        if isinstance(ins.b, Bcast):
            col = f"{self.ref(ins.b.ref)}.GetValue({self.row(ins.b.ref)})"
            if ins.op == "sub":
                body = f"Adds({d}[r * {cols}], {a}[r * {cols}], -{col}, {cols});"
            elif ins.op == "div":
                body = f"Muls({d}[r * {cols}], {a}[r * {cols}], 1.0f / {col}, {cols});"
            else:
                body = f"Muls({d}[r * {cols}], {a}[r * {cols}], {col}, {cols});"
            return _VS.split("\n") + [f"for (uint32_t r = 0; r < {rows}; ++r) {{   // per-row {ins.op} by {ins.b.ref.buf}[r]",
                    f"    {body}", "}"]
        return [f"{api}({d}, {a}, {self.ref(ins.b)}, {n});"]

    def phase(self, name, instrs, aiv, sfx="") -> str:
        fn = ("Aiv" if aiv else "Aic") + _camel(name) + sfx
        out = [f"    __aicore__ inline void {fn}()", "    {"]
        for ins in instrs:
            out.append(f"        // {ins}")
            out += [f"        {s}" for s in self.stmt(ins, aiv)]
            if ins.pipe == "VECTOR":    # the vector unit does not order dependent instructions
                out.append("        PipeBarrier<PIPE_V>();")
        out.append("    }")
        return "\n".join(out)


def _buffers(em, bufs, dt) -> tuple[str, str, str]:
    decls, inits, getters = [], [], []
    for b in bufs.values():
        ct = _CT[b.dtype]
        n = b.shape[0] * b.shape[1]
        decls.append(f"    TBuf<TPosition::{_TPOS[b.space]}> {b.name.lower()}Buf;   "
                     f"// {b.space} {b.dtype}[{b.shape[0]},{b.shape[1]}] x{b.count} ({b.layout})")
        inits.append(f"        pipe.InitBuffer({b.name.lower()}Buf, {b.total_bytes * _stride(b)});")
        getters.append(f"    __aicore__ inline LocalTensor<{ct}> {b.name}(uint32_t slot) "
                       f"{{ return {b.name.lower()}Buf.Get<{ct}>()[slot * {n * _stride(b)}]; }}")
    return "\n".join(decls), "\n".join(inits), "\n".join(getters)


def _aic_task(qk: bool, x: str, ind: str) -> str:
    if qk:
        body = f"""\
AicTask{x}();
AicQLoad{x}();
for (uint32_t c = 0; c < nChunks; ++c) {{  // skewed: QK(c) overlaps the AIVs' softmax(c-1)
    QkWindow{x}(c);
    if (c + 1 == nChunks) {{ AicQRelease{x}(); }}
    if (c >= 1) {{ SvWindow{x}(c - 1); }}
}}
SvWindow{x}(nChunks - 1);"""
    else:
        body = f"""\
AicTask{x}();
for (uint32_t c = 0; c < nChunks; ++c) {{ SvWindow{x}(c); }}"""
    return "\n".join(ind + line for line in body.splitlines())


def _aiv_task(two: bool, x: str, ind: str) -> str:
    body = f"""\
AivTask{x}();   // loads the task row: rowsValid below needs its qRows
rowsValid = Min(curH, qRows * G > part * curH ? qRows * G - part * curH : 0u);{chr(10) + f'AivQLoad{x}();' if two else ''}
for (uint32_t c = 0; c < nChunks; ++c) {{  // softmax(c), then combine(c-1) while the Cube does SV(c)
    c0 = c * W;
    {f'if (rowsValid > 0) {{ AivSmLoad{x}(); }} else {{ AivSmSkip{x}(); }}' if two else f'AivSmLoad{x}();'}
    AivMask{x}();
    AivSoftmax{x}();
    ++ch;{chr(10) + f'    if (c + 1 == nChunks) {{ AivQRelease{x}(); }}' if two else ''}
    if (c >= 1) {{ AivCombine{x}(); ++cbCh; }}
}}
AivCombine{x}();
++cbCh;
AivFinal{x}();"""
    return "\n".join(ind + line for line in body.splitlines())


def _task_loop(classes, fn) -> str:
    """The task loop; with several tile classes each task runs the smallest that fits."""
    head = """\
        for (uint32_t i = 0; i < ntask; ++i) {
            if (CoreOf(i) != group) { continue; }     // runtime/plan.py: symmetric round-robin
            t = i;"""
    if len(classes) == 1:
        return f"{head}\n            curBM = BM;\n            curH = H;\n{fn('', ' ' * 12)}\n        }}"
    out = [head, "            uint32_t rows = taskGm.GetValue(i * 10 + 2) * G;   // tile class by rows"]
    for k, c in enumerate(classes):
        cond = "} else {" if k == len(classes) - 1 else \
            (f"if (rows <= {c.rows}) {{" if k == 0 else f"}} else if (rows <= {c.rows}) {{")
        out.append(f"            {cond}")
        out.append(f"                curBM = {c.rows};")
        out.append(f"                curH = {c.rows // 2};")
        out.append(fn(str(c.rows), " " * 16))
    out.append("            }")
    out.append("        }")
    return "\n".join(out)


def _windows(qk: bool, x: str) -> str:
    """The AIC's window loops over BN-key blocks (QK for 3/4-stage, SV always)."""
    out = ""
    if qk:
        out += f"""\
    __aicore__ inline void QkWindow{x}(uint32_t c)
    {{
        AicQkBegin{x}();
        uint32_t nblk = (Min(W, hi - c * W) + BN - 1) / BN;
        for (blk = 0; blk < nblk; ++blk, ++qk) {{
            n0 = c * W + blk * BN;
            b0 = blk * BN;
            AicQkBlock{x}();
        }}
        AicQkEnd{x}();
        ++ch;
    }}

"""
    return out + f"""\
    __aicore__ inline void SvWindow{x}(uint32_t c)
    {{
        AicSvBegin{x}();
        uint32_t nblk = (Min(W, hi - c * W) + BN - 1) / BN;
        for (blk = 0; blk < nblk; ++blk, ++sv) {{
            n0 = c * W + blk * BN;
            b0 = blk * BN;
            AicSvBlock{x}();
            if (blk == 0) {{ AicSvFirst{x}(); }}
            AicSvMmad{x}();
        }}
        AicSvEnd{x}();
        ++svCh;
    }}"""


def _kernel(prog, struct) -> str:
    t = prog.tile
    em = _Emitter(prog)
    T = _CT[t["dtype"]]
    qk = prog.pipeline != "2-stage"
    two = not qk
    aic_decl, aic_init, aic_get = _buffers(em, prog.aic_buffers, t["dtype"])
    aiv_decl, aiv_init, aiv_get = _buffers(em, prog.aiv_buffers, t["dtype"])
    classes = prog.tile_classes()
    multi = len(classes) > 1
    once = ("prologue", "epilogue")
    blk_ph = ("qk_block", "sv_block", "sv_first", "sv_mmad")
    aic_ph = "\n\n".join(em.phase(n, i, False) for n, i in prog.aic.items() if n in once)
    aiv_ph = "\n\n".join(em.phase(n, i, True) for n, i in prog.aiv[0].items() if n in once)
    per_class = []
    for c in classes:
        x = str(c.rows) if multi else ""
        parts = [em.phase(n, i, False, x) for n, i in c.aic.items() if n not in once + blk_ph]
        parts += [em.phase(n, c.aic[n], False, x) for n in blk_ph if n in c.aic]
        parts += [_windows(qk, x)]
        parts += [em.phase(n, i, True, x) for n, i in c.aiv[0].items() if n not in once]
        per_class.append(f"    // ---- tile class: {c.rows} rows " + "-" * 60 + "\n" + "\n\n".join(parts))
    phases = "\n\n".join(per_class)
    ws_decl = "\n".join(f"    GlobalTensor<{_CT[dt]}> ws{n[3:]};   // {n}: {dt}[{r},{c}] x2 per group"
                        for n, (r, c, dt) in prog.workspace.items())
    ws_off, ws_init = 0, []
    for n, (r, c, dt) in prog.workspace.items():
        ws_init.append(f"        ws{n[3:]}.SetGlobalBuffer((__gm__ {_CT[dt]} *)(ws + groupWs + {ws_off}), {2 * r * c});")
        ws_off += 2 * r * c * (2 if dt in ("f16", "bf16") else 4)
    flags = "\n".join(f"constexpr uint16_t FLAG_{n} = {i};" for i, n in FLAG_NAMES.items())
    aic_loop = _task_loop(classes, lambda x, ind: _aic_task(qk, x, ind))
    aiv_loop = _task_loop(classes, lambda x, ind: _aiv_task(two, x, ind))
    return f"""\
// Generated by tilec (codegen/ascend/attention/emit.py) from the Ascend attention program of
// kernel '{prog.kernel}' ({os.path.basename(prog.source)}).
// Pipeline: {prog.pipeline}. BM={t['BM']} rows (BM/2 per AIV), BN={t['BN']} keys per Cube block,
// W={t['W']} keys per window, D={t['D']}, G={t['G']} (GQA), {t['dtype']} in, f32 softmax/accumulate.
// One launch serves a whole hybrid batch: each task row (runtime/plan.py ABI) is one
// (tile, KV head); the AIC and its two AIVs hand S, P and partial O over through a per-group
// GM workspace (L2-resident) guarded by cross-core flags (mode 2).
#include "kernel_operator.h"
#include "{prog.kernel}_tiling.h"

using namespace AscendC;

{flags}

class Kernel{_camel(prog.kernel)} {{
public:
    static constexpr uint32_t BM = {t['BM']};
    static constexpr uint32_t BN = {t['BN']};
    static constexpr uint32_t W = {t['W']};
    static constexpr uint32_t D = {t['D']};
    static constexpr uint32_t G = {t['G']};
    static constexpr uint32_t H = BM / 2;

    __aicore__ inline Kernel{_camel(prog.kernel)}() {{}}

    __aicore__ inline void Init(GM_ADDR q, GM_ADDR kc, GM_ADDR vc, GM_ADDR o, GM_ADDR bt,
                                GM_ADDR tasks, GM_ADDR tree, GM_ADDR ws, const {struct} &tiling)
    {{
        ntask = tiling.NTASK;
        HQ = tiling.HQ;
        HKV = tiling.HKV;
        BS = tiling.BS;
        MAXB = tiling.MAXB;
        scale = tiling.scale;
        // 1 AIC : 2 AIV (KERNEL_TYPE_MIX_AIC_1_2): on an AIV GetBlockIdx() runs over 2 * blocks
        group = GetBlockIdx();
        part = 0;
        if ASCEND_IS_AIV {{
            group = GetBlockIdx() / 2;
            part = GetBlockIdx() % 2;
        }}
        groups = GetBlockNum();
        qGm.SetGlobalBuffer((__gm__ {T} *)q, (uint64_t)tiling.T * HQ * D);
        kcGm.SetGlobalBuffer((__gm__ {T} *)kc, (uint64_t)tiling.NB * BS * HKV * D);
        vcGm.SetGlobalBuffer((__gm__ {T} *)vc, (uint64_t)tiling.NB * BS * HKV * D);
        oGm.SetGlobalBuffer((__gm__ {T} *)o, (uint64_t)tiling.T * HQ * D);
        btGm.SetGlobalBuffer((__gm__ int32_t *)bt, (uint64_t)tiling.NSEQ * MAXB);
        taskGm.SetGlobalBuffer((__gm__ int32_t *)tasks, (uint64_t)ntask * 10);
        treeGm.SetGlobalBuffer((__gm__ int32_t *)tree, tiling.NTREE);
        uint64_t groupWs = (uint64_t)group * tiling.wsBytesPerGroup;
{chr(10).join(ws_init)}
        if ASCEND_IS_AIC {{
{aic_init}
        }}
        if ASCEND_IS_AIV {{
{aiv_init}
            pipe.InitBuffer(workBuf, {aiv_work_bytes(prog)});
        }}
    }}

    __aicore__ inline void Process()
    {{
        if ASCEND_IS_AIC {{
            AicPrologue();
{aic_loop}
            AicEpilogue();
        }}
        if ASCEND_IS_AIV {{
            work = workBuf.Get<float>();
            AivPrologue();
{aiv_loop}
            AivEpilogue();
        }}
    }}

private:
    __aicore__ inline uint32_t CoreOf(uint32_t i) const
    {{
        uint32_t r = i % groups;
        return ((i / groups) & 1) ? groups - 1 - r : r;
    }}

    __aicore__ inline uint32_t Min(uint32_t a, uint32_t b) const {{ return a < b ? a : b; }}

    __aicore__ inline void LoadTask(uint32_t task)
    {{
        // scalar unit: one task row (seq, q_start, q_rows, q_pos, kv_len, mask, tree_off, spec, kv_head)
        seq = taskGm.GetValue(task * 10 + 0);
        qStart = taskGm.GetValue(task * 10 + 1);
        qRows = taskGm.GetValue(task * 10 + 2);
        qPos = taskGm.GetValue(task * 10 + 3);
        kvLen = taskGm.GetValue(task * 10 + 4);
        isTree = taskGm.GetValue(task * 10 + 5) == 1;
        treeOff = taskGm.GetValue(task * 10 + 6);
        spec = taskGm.GetValue(task * 10 + 7);
        kvh = taskGm.GetValue(task * 10 + 8);
        hi = isTree ? kvLen : Min(kvLen, qPos + qRows);   // causal tiles stop at their last query
        specBase = kvLen - spec;
        nChunks = (hi + W - 1) / W;
    }}

    // ---- AIC helpers --------------------------------------------------------------------
    __aicore__ inline void CopyQToL1(const LocalTensor<{T}> &dst)
    {{
        // Q rows of the tile: token qStart + r / G, heads kvh * G .. + G: G contiguous rows per
        // token, tokens HQ * D apart. Only qRows tokens are read (virtual padding); the rows
        // past them are zeroed so the scores of padding rows stay finite
        if (qRows * G < curBM) {{
            InitConstValue(dst, InitConstValueParams<{T}>(1, curBM * D * sizeof({T}) / 32, 0, ({T})0));
            PipeBarrier<PIPE_ALL>();       // zeros land before the copy over them
        }}
        Nd2NzParams p;
        p.ndNum = qRows;
        p.nValue = G;
        p.dValue = D;
        p.srcNdMatrixStride = HQ * D;
        p.srcDValue = D;
        p.dstNzC0Stride = curBM;
        p.dstNzNStride = 1;
        p.dstNzMatrixStride = G * 16;
        DataCopy(dst, qGm[((uint64_t)qStart * HQ + kvh * G) * D], p);
    }}

    __aicore__ inline void GatherKvToL1(GlobalTensor<{T}> &cache, const LocalTensor<{T}> &dst, uint32_t j0)
    {{
        // keys j0 .. j0 + BN of the sequence through the block table: one Nd2Nz copy per page
        // run (rows HKV * D apart); keys >= hi are never read, and their rows are zeroed first:
        // a masked P entry is 0, and 0 x a stale NaN in V would still be NaN
        uint32_t end = Min(j0 + BN, hi);
        if (end - j0 < BN) {{
            InitConstValue(dst, InitConstValueParams<{T}>(1, BN * D * sizeof({T}) / 32, 0, ({T})0));
            PipeBarrier<PIPE_ALL>();       // zeros land before the copy over them
        }}
        for (uint32_t j = j0; j < end;) {{
            uint32_t blk = btGm.GetValue(seq * MAXB + j / BS);
            uint32_t n = Min(end - j, BS - j % BS);
            Nd2NzParams p;
            p.ndNum = 1;
            p.nValue = n;
            p.dValue = D;
            p.srcNdMatrixStride = 0;
            p.srcDValue = HKV * D;
            p.dstNzC0Stride = BN;
            p.dstNzNStride = 1;
            p.dstNzMatrixStride = 0;
            DataCopy(dst[(j - j0) * 16], cache[(((uint64_t)blk * BS + j % BS) * HKV + kvh) * D], p);
            j += n;
        }}
    }}

    __aicore__ inline void CopyWsToL1(GlobalTensor<{T}> &ws, uint32_t slot, uint32_t col0, const LocalTensor<{T}> &dst)
    {{
        Nd2NzParams p;
        p.ndNum = 1;
        p.nValue = curBM;
        p.dValue = BN;
        p.srcNdMatrixStride = 0;
        p.srcDValue = W;
        p.dstNzC0Stride = curBM;
        p.dstNzNStride = 1;
        p.dstNzMatrixStride = 0;
        DataCopy(dst, ws[(uint64_t)slot * curBM * W + col0], p);
    }}

    __aicore__ inline void LoadL1ToL0A(const LocalTensor<{T}> &dst, const LocalTensor<{T}> &src,
                                       uint32_t rows, uint32_t cols, bool transpose)
    {{
        LoadData2DParams p;                // L1 NZ -> L0A zZ, one row of fractals per call
        p.repeatTimes = cols / 16;
        p.srcStride = rows / 16;
        p.ifTranspose = transpose;
        for (uint32_t i = 0; i < rows / 16; ++i) {{
            p.startIndex = i;
            LoadData(dst[i * 16 * cols], src, p);
        }}
    }}

    __aicore__ inline void LoadL1ToL0B(const LocalTensor<{T}> &dst, const LocalTensor<{T}> &src,
                                       uint32_t rows, uint32_t cols, bool transpose)
    {{
        // L1 NZ (rows x cols) -> L0B nZ; K^T (transpose) reads each K fractal as is
        LoadData2DParams p;
        p.repeatTimes = transpose ? rows / 16 : cols / 16;
        p.srcStride = transpose ? 1 : rows / 16;
        p.ifTranspose = !transpose;
        uint32_t outer = transpose ? cols / 16 : rows / 16;
        for (uint32_t i = 0; i < outer; ++i) {{
            p.startIndex = transpose ? i * (rows / 16) : i;
            LoadData(dst[i * 16 * (transpose ? rows : cols)], src, p);
        }}
    }}

    __aicore__ inline void MmadTile(const LocalTensor<float> &c, const LocalTensor<{T}> &a,
                                    const LocalTensor<{T}> &b, uint32_t m, uint32_t k, uint32_t n, bool init)
    {{
        MmadParams p;
        p.m = m;                           // whole tiles: padding rows/keys are zeros, never stored
        p.k = k;
        p.n = n;
        p.cmatrixInitVal = init;
        Mmad(c, a, b, p);
    }}

    __aicore__ inline void FixpipeToWs(GlobalTensor<float> &ws, uint32_t slot, uint32_t col0,
                                       const LocalTensor<float> &c, uint32_t rows, uint32_t cols, uint32_t ld)
    {{
        FixpipeParamsV220 p;               // L0C (f32 NZ) -> workspace (f32 ND, ld columns)
        p.nSize = cols;
        p.mSize = rows;
        p.srcStride = rows;
        p.dstStride = ld;
        p.quantPre = QuantMode_t::NoQuant;
        p.ndNum = 1;
        p.srcNdStride = 0;
        p.dstNdStride = 0;
        Fixpipe<float, float, CFG_ROW_MAJOR>(ws[(uint64_t)slot * rows * ld + col0], c, p);
    }}

    // ---- AIV helpers --------------------------------------------------------------------
    __aicore__ inline void CopyWsToUb(const LocalTensor<float> &dst, GlobalTensor<float> &ws,
                                      uint32_t slot, uint32_t hp, uint32_t cols, uint32_t ld)
    {{
        DataCopyExtParams p{{(uint16_t)curH, (uint32_t)(cols * sizeof(float)), (uint32_t)((ld - cols) * sizeof(float)), 0, 0}};
        DataCopyPadExtParams<float> pad{{false, 0, 0, 0.0f}};
        DataCopyPad(dst, ws[(uint64_t)slot * curBM * ld + (uint64_t)hp * curH * ld], p, pad);
    }}

    __aicore__ inline void CopyUbToWs(GlobalTensor<{T}> &ws, uint32_t slot, uint32_t hp,
                                      const LocalTensor<{T}> &src, uint32_t cols)
    {{
        DataCopyExtParams p{{(uint16_t)curH, (uint32_t)(cols * sizeof({T})), 0, 0, 0}};
        DataCopyPad(ws[(uint64_t)slot * curBM * W + (uint64_t)hp * curH * W], src, p);
    }}

    __aicore__ inline void CopyQToUb(const LocalTensor<{T}> &dst)
    {{
        for (uint32_t r = 0; r < rowsValid; ++r) {{      // valid rows only
            uint32_t row = part * curH + r;
            DataCopyExtParams p{{1, (uint32_t)(D * sizeof({T})), 0, 0, 0}};
            DataCopyPadExtParams<{T}> pad{{false, 0, 0, 0}};
            DataCopyPad(dst[r * D], qGm[((uint64_t)(qStart + row / G) * HQ + kvh * G + row % G) * D], p, pad);
        }}
    }}

    __aicore__ inline void GatherKvToUb(GlobalTensor<{T}> &cache, const LocalTensor<{T}> &dst, uint32_t j0)
    {{
        uint32_t end = Min(j0 + W, hi);
        for (uint32_t j = j0; j < end;) {{        // one strided DataCopyPad per page run
            uint32_t blk = btGm.GetValue(seq * MAXB + j / BS);
            uint32_t n = Min(end - j, BS - j % BS);
            DataCopyExtParams p{{(uint16_t)n, (uint32_t)(D * sizeof({T})), (uint32_t)((HKV - 1) * D * sizeof({T})), 0, 0}};
            DataCopyPadExtParams<{T}> pad{{false, 0, 0, 0}};
            DataCopyPad(dst[(j - j0) * D], cache[(((uint64_t)blk * BS + j % BS) * HKV + kvh) * D], p, pad);
            j += n;
        }}
    }}

    __aicore__ inline void StoreORows(const LocalTensor<{T}> &src)
    {{
        // selective write: valid rows only; G heads of a token are contiguous in O
        for (uint32_t r = 0; r < rowsValid; ++r) {{
            uint32_t row = part * curH + r;
            DataCopyExtParams p{{1, (uint32_t)(D * sizeof({T})), 0, 0, 0}};
            DataCopyPad(oGm[((uint64_t)(qStart + row / G) * HQ + kvh * G + row % G) * D], src[r * D], p);
        }}
    }}

    __aicore__ inline void MaskVisible(const LocalTensor<float> &vis, uint32_t j0)
    {{
        // vis[r, j] = 1 where key j0 + j is visible to row r, else 0, from clamped ramps:
        // min(max(pos + 1 - key, 0), 1) (causal) times min(max(hi - key, 0), 1) (task range);
        // keys and positions are exact in f32 below 2^24
        LocalTensor<int32_t> ji = JI(0);
        LocalTensor<float> nj = NJ(0), kv = KV(0);
        CreateVecIndex(ji, (int32_t)j0, W);
        PipeBarrier<PIPE_V>();
        Cast(nj, ji, RoundMode::CAST_NONE, W);
        PipeBarrier<PIPE_V>();
        Muls(nj, nj, -1.0f, W);                    // -key
        PipeBarrier<PIPE_V>();
        Adds(kv, nj, (float)hi, W);
        PipeBarrier<PIPE_V>();
        Mins(kv, kv, 1.0f, W);
        PipeBarrier<PIPE_V>();
        Maxs(kv, kv, 0.0f, W);
        for (uint32_t r = 0; r < curH; ++r) {{   // rows without a query see nothing
            uint32_t tok = (part * curH + r) / G;
            if (tok < qRows) {{
                Adds(vis[r * W], nj, (float)(qPos + tok + 1), W);
            }} else {{
                Duplicate(vis[r * W], 0.0f, W);
            }}
        }}
        PipeBarrier<PIPE_V>();
        Mins(vis, vis, 1.0f, curH * W);
        PipeBarrier<PIPE_V>();
        Maxs(vis, vis, 0.0f, curH * W);
        PipeBarrier<PIPE_V>();
        for (uint32_t r = 0; r < curH; ++r) {{
            Mul(vis[r * W], vis[r * W], kv, W);
        }}
        if (!isTree) {{
            return;
        }}
        // tree tasks: a speculative key also needs its TREE entry (scalar reads of GM)
        uint32_t first = j0 > specBase ? j0 : specBase;
        uint32_t end = Min(j0 + W, hi);
        SetFlag<HardEvent::V_S>(0);
        WaitFlag<HardEvent::V_S>(0);
        for (uint32_t r = 0; r < rowsValid && first < end; ++r) {{
            uint32_t qi = qPos + (part * curH + r) / G - specBase;
            for (uint32_t j = first; j < end; ++j) {{
                if (treeGm.GetValue(treeOff + qi * spec + j - specBase) == 0) {{
                    vis.SetValue(r * W + j - j0, 0.0f);
                }}
            }}
        }}
        SetFlag<HardEvent::S_V>(0);
        WaitFlag<HardEvent::S_V>(0);
    }}

    __aicore__ inline void QkRowsOnVector(const LocalTensor<float> &s, const LocalTensor<{T}> &q,
                                          const LocalTensor<{T}> &k, uint32_t rows)
    {{
        // 2-stage: S[r, j] = sum_d q[r, d] * k[j, d] on the vector unit, valid rows only; each
        // dot lands in an aligned scratch (a reduction's destination must be 32-byte aligned)
        // and the scalar unit moves it into S
        LocalTensor<float> qf = work[{REDUCE_WORK_FLOATS}];
        LocalTensor<float> kf = work[{REDUCE_WORK_FLOATS} + D];
        LocalTensor<float> dot = work[{REDUCE_WORK_FLOATS} + 2 * D];
        for (uint32_t r = 0; r < rows; ++r) {{
            Cast(qf, q[r * D], RoundMode::CAST_NONE, D);
            for (uint32_t j = 0; j < W; ++j) {{
                Cast(kf, k[j * D], RoundMode::CAST_NONE, D);
                PipeBarrier<PIPE_V>();
                Mul(kf, kf, qf, D);
                PipeBarrier<PIPE_V>();
                ReduceSum<float>(dot, kf, work, D);
                SetFlag<HardEvent::V_S>(0);
                WaitFlag<HardEvent::V_S>(0);
                s.SetValue(r * W + j, dot.GetValue(0));
                SetFlag<HardEvent::S_V>(0);
                WaitFlag<HardEvent::S_V>(0);
            }}
        }}
    }}

    // ---- phases (generated from the program) ------------------------------------------
{aic_ph}

{aiv_ph}

{phases}

    TPipe pipe;
{aic_decl}
{aiv_decl}
    TBuf<TPosition::VECCALC> workBuf;
    LocalTensor<float> work;
{aic_get}
{aiv_get}
    GlobalTensor<{T}> qGm, kcGm, vcGm, oGm;
    GlobalTensor<int32_t> btGm, taskGm, treeGm;
{ws_decl}
    uint32_t ntask = 0, HQ = 0, HKV = 0, BS = 0, MAXB = 0, group = 0, part = 0, groups = 1;
    float scale = 1.0f;
    uint32_t t = 0, seq = 0, qStart = 0, qRows = 0, qPos = 0, kvLen = 0, treeOff = 0, spec = 0;
    uint32_t kvh = 0, hi = 0, specBase = 0, nChunks = 0, rowsValid = 0;
    uint32_t curBM = BM, curH = H;   // the task's tile class
    bool isTree = false;
    uint32_t n0 = 0, b0 = 0, c0 = 0, blk = 0;
    uint32_t qk = 0, ch = 0, sv = 0, svCh = 0, cbCh = 0;   // ping-pong counters (slot = counter & 1)
}};

__aicore__ inline void CopyTiling({struct} *t, GM_ADDR tiling)
{{
    __gm__ uint32_t *src = reinterpret_cast<__gm__ uint32_t *>(tiling);
    uint32_t *dst = reinterpret_cast<uint32_t *>(t);
    for (uint32_t i = 0; i < sizeof({struct}) / sizeof(uint32_t); ++i) {{
        dst[i] = src[i];
    }}
}}

extern "C" __global__ __aicore__ void {prog.kernel}(GM_ADDR q, GM_ADDR kc, GM_ADDR vc, GM_ADDR o,
                                                    GM_ADDR bt, GM_ADDR tasks, GM_ADDR tree,
                                                    GM_ADDR workspace, GM_ADDR tiling)
{{
    KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_MIX_AIC_1_2);
    {struct} t;
    CopyTiling(&t, tiling);
    Kernel{_camel(prog.kernel)} op;
    op.Init(q, kc, vc, o, bt, tasks, tree, workspace, t);
    op.Process();
}}
"""


def _tiling(prog, struct) -> str:
    t = prog.tile
    guard = f"TILEC_{prog.kernel.upper()}_ATTN_TILING_H"
    return f"""\
// Generated by tilec (codegen/ascend/attention/emit.py): tiling for '{prog.kernel}'
// ({prog.pipeline} pipeline, BM={t['BM']} BN={t['BN']} W={t['W']} D={t['D']} G={t['G']}).
#ifndef {guard}
#define {guard}
#include <cstdint>

struct {struct} {{
    uint32_t T;          // query tokens of the batch
    uint32_t HQ;
    uint32_t HKV;
    uint32_t NB;         // physical KV blocks
    uint32_t BS;         // tokens per KV block
    uint32_t NSEQ;
    uint32_t MAXB;       // block-table columns
    uint32_t NTASK;      // task-table rows (runtime/plan.py)
    uint32_t NTREE;
    uint32_t wsBytesPerGroup;
    float scale;
}};

inline {struct} Make{struct}(uint32_t T, uint32_t HQ, uint32_t HKV, uint32_t NB, uint32_t BS,
                             uint32_t NSEQ, uint32_t MAXB, uint32_t NTASK, uint32_t NTREE, float scale)
{{
    {struct} t;
    t.T = T;
    t.HQ = HQ;
    t.HKV = HKV;
    t.NB = NB;
    t.BS = BS;
    t.NSEQ = NSEQ;
    t.MAXB = MAXB;
    t.NTASK = NTASK;
    t.NTREE = NTREE;
    t.wsBytesPerGroup = {prog.workspace_bytes()};   // {', '.join(prog.workspace)} (two slots each)
    t.scale = scale;
    return t;
}}
#endif  // {guard}
"""


def _launcher(prog, struct) -> str:
    k = prog.kernel
    return f"""\
// Generated by tilec (codegen/ascend/attention/emit.py): host launcher for '{k}'
// ({prog.pipeline}). Usage: main T HQ HKV NB BS NSEQ MAXB NTASK NTREE; reads q.bin kc.bin vc.bin
// (16-bit), bt.bin tasks.bin tree.bin (int32; tasks from runtime/plan.py), writes o.bin.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "acl/acl.h"
#include "aclrtlaunch_{k}.h"
#include "{k}_tiling.h"

#define CHECK_ACL(x)                                                                   \\
    do {{                                                                               \\
        aclError e_ = (x);                                                             \\
        if (e_ != ACL_SUCCESS) {{                                                       \\
            std::fprintf(stderr, "%s:%d: %s failed: %d\\n", __FILE__, __LINE__, #x, e_); \\
            std::exit(1);                                                              \\
        }}                                                                              \\
    }} while (0)

template <typename E>
static std::vector<E> ReadFile(const char *path, size_t elems)
{{
    std::vector<E> v(elems);
    FILE *f = std::fopen(path, "rb");
    if (f == nullptr || std::fread(v.data(), sizeof(E), elems, f) != elems) {{
        std::fprintf(stderr, "cannot read %zu elements from %s\\n", elems, path);
        std::exit(1);
    }}
    std::fclose(f);
    return v;
}}

template <typename E>
static void *ToDevice(const std::vector<E> &h)
{{
    void *d = nullptr;
    size_t n = h.size() * sizeof(E);
    CHECK_ACL(aclrtMalloc(&d, n, ACL_MEM_MALLOC_HUGE_FIRST));
    CHECK_ACL(aclrtMemcpy(d, n, h.data(), n, ACL_MEMCPY_HOST_TO_DEVICE));
    return d;
}}

int main(int argc, char **argv)
{{
    if (argc < 10) {{
        std::fprintf(stderr, "usage: %s T HQ HKV NB BS NSEQ MAXB NTASK NTREE\\n", argv[0]);
        return 2;
    }}
    uint32_t a[9];
    for (int i = 0; i < 9; ++i) {{
        a[i] = (uint32_t)std::atoi(argv[i + 1]);
    }}
    const uint32_t D = {prog.tile['D']};
    {struct} tiling = Make{struct}(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8],
                                   1.0f / std::sqrt((float)D));
    auto q = ReadFile<uint16_t>("q.bin", (size_t)a[0] * a[1] * D);
    auto kc = ReadFile<uint16_t>("kc.bin", (size_t)a[3] * a[4] * a[2] * D);
    auto vc = ReadFile<uint16_t>("vc.bin", (size_t)a[3] * a[4] * a[2] * D);
    auto bt = ReadFile<int32_t>("bt.bin", (size_t)a[5] * a[6]);
    auto tasks = ReadFile<int32_t>("tasks.bin", (size_t)a[7] * 10);
    auto tree = ReadFile<int32_t>("tree.bin", a[8]);
    std::vector<uint16_t> o(q.size(), 0);

    CHECK_ACL(aclInit(nullptr));
    int32_t deviceId = 0;
    CHECK_ACL(aclrtSetDevice(deviceId));
    aclrtStream stream = nullptr;
    CHECK_ACL(aclrtCreateStream(&stream));
    int64_t cores = 0;     // one block per AI-core group (1 AIC + 2 AIV)
    // AICORE_CORE_NUM counts A2's AI Cores by their Cube core and exists before CANN 8.5
    CHECK_ACL(aclrtGetDeviceInfo(deviceId, ACL_DEV_ATTR_AICORE_CORE_NUM, &cores));
    uint32_t blockDim = (uint32_t)cores;

    void *qDev = ToDevice(q), *kcDev = ToDevice(kc), *vcDev = ToDevice(vc), *oDev = ToDevice(o);
    void *btDev = ToDevice(bt), *taskDev = ToDevice(tasks), *treeDev = ToDevice(tree);
    void *tDev = nullptr, *wsDev = nullptr;
    CHECK_ACL(aclrtMalloc(&tDev, sizeof(tiling), ACL_MEM_MALLOC_HUGE_FIRST));
    CHECK_ACL(aclrtMemcpy(tDev, sizeof(tiling), &tiling, sizeof(tiling), ACL_MEMCPY_HOST_TO_DEVICE));
    CHECK_ACL(aclrtMalloc(&wsDev, (size_t)tiling.wsBytesPerGroup * blockDim, ACL_MEM_MALLOC_HUGE_FIRST));

    ACLRT_LAUNCH_KERNEL({k})(blockDim, stream, qDev, kcDev, vcDev, oDev, btDev, taskDev, treeDev,
                             wsDev, tDev);
    CHECK_ACL(aclrtSynchronizeStream(stream));
    CHECK_ACL(aclrtMemcpy(o.data(), o.size() * sizeof(uint16_t), oDev, o.size() * sizeof(uint16_t),
                          ACL_MEMCPY_DEVICE_TO_HOST));
    FILE *f = std::fopen("o.bin", "wb");
    if (f == nullptr || std::fwrite(o.data(), sizeof(uint16_t), o.size(), f) != o.size()) {{
        std::fprintf(stderr, "cannot write o.bin\\n");
        return 1;
    }}
    std::fclose(f);
    for (void *p : {{qDev, kcDev, vcDev, oDev, btDev, taskDev, treeDev, tDev, wsDev}}) {{
        CHECK_ACL(aclrtFree(p));
    }}
    CHECK_ACL(aclrtDestroyStream(stream));
    CHECK_ACL(aclrtResetDevice(deviceId));
    CHECK_ACL(aclFinalize());
    return 0;
}}
"""


def emit_attention(prog) -> AscendCSource:
    """Ascend C kernel, tiling header and launcher for an attention program."""
    struct = f"{_camel(prog.kernel)}Tiling"
    return AscendCSource(prog.kernel, _kernel(prog, struct), _tiling(prog, struct),
                         _launcher(prog, struct))
