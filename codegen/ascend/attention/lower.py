"""Lower Meta-Attention to an explicit program for one AI-core group: an AIC (Cube) and its
two AIVs (Vector), handing data over through a GM workspace guarded by cross-core flags.

Pipelines (XY-Serve's Meta-Attention; the program records which one it uses):

* ``3-stage``  QK^T on the Cube -> softmax on the Vector -> SV on the Cube. The whole visible
  KV of a tile fits one window of W keys, so the softmax is exact (one max, one sum).
* ``4-stage``  the same with KV split into windows of W keys and a fourth stage, the online
  update: per window the Vector rescales (m, l) and combines the Cube's partial P V into
  its accumulator (acc = acc * alpha + O_c). The AIC runs QK of window c+1 while the AIV
  does the softmax of window c (software pipelining through two workspace slots).
* ``2-stage``  decode-only batches: QK^T on the Vector fused with the softmax (a few query
  rows do not fill the Cube's 16-row fractal, and S never makes the GM round trip), SV on
  the Cube; windows and the online update as in 4-stage when KV is long.

Per window and AIV (rows [part*H, part*H + H), H = BM/2) the Vector builds the mask from
key indices (causal with the task's offset, keys < hi, valid rows, and for tree tasks the
TREE rows), applies it, and does the (online) softmax in f32. ``choose_pipeline`` picks
the pipeline from the batch's stage kinds and KV lengths; callers may override it.

Tile classes (``classes=``): one program may hold several tile sizes (e.g. 16 rows for
decode, 32 for verify, 64 for prefill tasks); every task runs on the smallest class that
holds its rows, so one launch serves a hybrid batch without padding decodes to prefill tiles.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tilec import targets as T
from tilec.ir import dtypes as D

from ..errors import AscendLegalityError, AscendLoweringError, targeted
from ..gemm import check_legality
from ..program import Buffer, LoadL0, Ref, SetFlag, WaitFlag
from ..vector import (Bcast, Scalar, UbLegalityError, VBinary, VCast, VCompare, VDup,
                      VQKRows, VReduce, VSelect, VUnary, check_ub, reduce_work_bytes)
from .isa import (CopyKvToL1, CopyKvToUb, CopyQToL1, CopyQToUb, MaskVisible, CopyUbToWs,
                  CopyWsToL1, CopyWsToUb, CrossCoreSetFlag, CrossCoreWaitFlag, CubeMmad,
                  FixPipeToWs, StoreORows, TaskScalars)
from .recognise import recognise

PIPELINES = ("2-stage", "3-stage", "4-stage")
NEG = -1.0e30
# cross-core flag ids (mode 2; 0..10 exist on 910B)
S_READY, S_FREE, P_READY, P_FREE, O_READY, O_FREE = range(6)
FLAG_NAMES = {S_READY: "S_READY", S_FREE: "S_FREE", P_READY: "P_READY", P_FREE: "P_FREE",
              O_READY: "O_READY", O_FREE: "O_FREE"}
MAX_WINDOW = 1024


@dataclass
class TileClass:
    """One tile size of a multi-class program: tasks of up to ``rows`` query rows use it."""
    rows: int
    W: int
    aic: dict
    aiv: list


@dataclass
class AttentionProgram:
    kernel: str
    pipeline: str
    tile: dict                      # BM, BN, W, D, G, H, dtype
    roles: dict                     # Q KC VC O BT TASKS TREE -> kernel tensor names
    scale: str
    aic_buffers: dict
    aiv_buffers: dict
    workspace: dict                 # name -> (rows, cols, dtype); two slots each
    aic: dict = field(default_factory=dict)      # phase -> instructions
    aiv: list = field(default_factory=list)      # per AIV part: phase -> instructions
    source: str = ""
    classes: list = field(default_factory=list)  # TileClass per tile size (one launch, several
                                                 # tile sizes); empty: one class, the program's

    def tile_classes(self) -> list:
        return self.classes or [TileClass(self.tile["BM"], self.tile["W"], self.aic, self.aiv)]

    @property
    def buffers(self) -> dict:
        return {**self.aic_buffers, **self.aiv_buffers}

    def workspace_bytes(self) -> int:
        """GM workspace of one AI-core group (two slots per buffer)."""
        return sum(2 * r * c * D.itemsize(dt) for r, c, dt in self.workspace.values())

    def dump(self) -> str:
        t = self.tile
        lines = [f"ascend attention program {self.kernel}  pipeline={self.pipeline}  "
                 f"BM={t['BM']} BN={t['BN']} W={t['W']} D={t['D']} G={t['G']} {t['dtype']}"]
        if self.classes:
            lines.append("  tile classes (rows): " + ", ".join(str(c.rows) for c in self.classes))
        for b in self.buffers.values():
            lines.append(f"  buffer {b.name:<7} {b.space:<4} {b.dtype}[{b.shape[0]},{b.shape[1]}]"
                         f" x{b.count} = {b.total_bytes} B")
        for n, (r, c, dt) in self.workspace.items():
            lines.append(f"  workspace {n:<5} GM   {dt}[{r},{c}] x2")
        for title, phases in [("AIC", self.aic)] + [(f"AIV{i}", p) for i, p in enumerate(self.aiv[:1])]:
            for ph, ins in phases.items():
                lines.append(f" {title} {ph}:")
                lines += [f"    {i}" for i in ins]
        return "\n".join(lines)


def _ev(name, base):
    """Event resolved per iteration: base + (counter[name] % 2)."""
    return f"@{name}:{base}"


# --- AIC ------------------------------------------------------------------------------------
def _aic_buffers(t, pipeline):
    BM, BN, D_, dt = t["BM"], t["BN"], t["D"], t["dtype"]
    b = {
        "L1P": Buffer("L1P", "L1", (BM, BN), dt, 2), "L1V": Buffer("L1V", "L1", (BN, D_), dt, 2),
        "L0AP": Buffer("L0AP", "L0A", (BM, BN), dt, 2, "zZ"),
        "L0BV": Buffer("L0BV", "L0B", (BN, D_), dt, 2, "nZ"),
        "L0CO": Buffer("L0CO", "L0C", (BM, D_), "f32", 1),
    }
    if pipeline != "2-stage":
        b.update({
            "L1Q": Buffer("L1Q", "L1", (BM, D_), dt, 1), "L1K": Buffer("L1K", "L1", (BN, D_), dt, 2),
            "L0AQ": Buffer("L0AQ", "L0A", (BM, D_), dt, 1, "zZ"),
            "L0BK": Buffer("L0BK", "L0B", (D_, BN), dt, 2, "nZ"),
            "L0CS": Buffer("L0CS", "L0C", (BM, BN), "f32", 2),
        })
    return b


def _drain(prologue) -> list:
    """The epilogue's WaitFlags: one per SetFlag the prologue pre-issues (a pipe starts out
    owning the slots it is handed this way), in the same order, so every set is consumed."""
    return [WaitFlag(src=i.src, dst=i.dst, event=i.event) for i in prologue
            if isinstance(i, SetFlag)]


def _aic_phases(pipeline):
    qk = pipeline != "2-stage"
    pro = [SetFlag(src="MTE1", dst="MTE2", event=e) for e in (2, 3)]
    pro += [SetFlag(src="CUBE", dst="MTE1", event=e) for e in (2, 3)]
    pro += [SetFlag(src="FIXPIPE", dst="CUBE", event=5)]
    pro += [CrossCoreSetFlag(flag=P_FREE, pipe="MTE2")] * 2
    if qk:
        pro += [SetFlag(src="MTE1", dst="MTE2", event=e) for e in (0, 1, 4)]
        pro += [SetFlag(src="CUBE", dst="MTE1", event=e) for e in (0, 1, 4)]
        pro += [SetFlag(src="FIXPIPE", dst="CUBE", event=e) for e in (0, 1)]
    ph = {"prologue": pro, "task": [TaskScalars()]}
    if qk:
        ph["q_load"] = [
            WaitFlag(src="MTE1", dst="MTE2", event=4),
            CopyQToL1(dst=Ref("L1Q", 0)),
            SetFlag(src="MTE2", dst="MTE1", event=4), WaitFlag(src="MTE2", dst="MTE1", event=4),
            WaitFlag(src="CUBE", dst="MTE1", event=4),
            LoadL0(src=Ref("L1Q", 0), dst=Ref("L0AQ", 0)),
            SetFlag(src="MTE1", dst="MTE2", event=4), SetFlag(src="MTE1", dst="CUBE", event=4),
            WaitFlag(src="MTE1", dst="CUBE", event=4),
        ]
        ph["qk_begin"] = [CrossCoreWaitFlag(flag=S_FREE, pipe="FIXPIPE")]
        p = _ev("qk", 0)
        ph["qk_block"] = [
            WaitFlag(src="MTE1", dst="MTE2", event=p),
            CopyKvToL1(cache="KC", dst=Ref("L1K", "@qk"), j0="n0"),
            SetFlag(src="MTE2", dst="MTE1", event=p), WaitFlag(src="MTE2", dst="MTE1", event=p),
            WaitFlag(src="CUBE", dst="MTE1", event=p),
            LoadL0(src=Ref("L1K", "@qk"), dst=Ref("L0BK", "@qk"), transpose=True),
            SetFlag(src="MTE1", dst="MTE2", event=p), SetFlag(src="MTE1", dst="CUBE", event=p),
            WaitFlag(src="MTE1", dst="CUBE", event=p),
            WaitFlag(src="FIXPIPE", dst="CUBE", event=p),
            CubeMmad(a=Ref("L0AQ", 0), b=Ref("L0BK", "@qk"), dst=Ref("L0CS", "@qk")),
            SetFlag(src="CUBE", dst="MTE1", event=p), SetFlag(src="CUBE", dst="FIXPIPE", event=p),
            WaitFlag(src="CUBE", dst="FIXPIPE", event=p),
            FixPipeToWs(src=Ref("L0CS", "@qk"), ws="WS_S", slot="@ch", col0="b0"),
            SetFlag(src="FIXPIPE", dst="CUBE", event=p),
        ]
        ph["qk_end"] = [CrossCoreSetFlag(flag=S_READY, pipe="FIXPIPE")]
        ph["q_release"] = [SetFlag(src="CUBE", dst="MTE1", event=4)]
    p = _ev("sv", 2)
    ph["sv_begin"] = [CrossCoreWaitFlag(flag=P_READY, pipe="MTE2")]
    ph["sv_block"] = [
        WaitFlag(src="MTE1", dst="MTE2", event=p),
        CopyWsToL1(ws="WS_P", slot="@sv_ch", col0="b0", dst=Ref("L1P", "@sv")),
        CopyKvToL1(cache="VC", dst=Ref("L1V", "@sv"), j0="n0"),
        SetFlag(src="MTE2", dst="MTE1", event=p), WaitFlag(src="MTE2", dst="MTE1", event=p),
        WaitFlag(src="CUBE", dst="MTE1", event=p),
        LoadL0(src=Ref("L1P", "@sv"), dst=Ref("L0AP", "@sv")),
        LoadL0(src=Ref("L1V", "@sv"), dst=Ref("L0BV", "@sv")),
        SetFlag(src="MTE1", dst="MTE2", event=p), SetFlag(src="MTE1", dst="CUBE", event=p),
        WaitFlag(src="MTE1", dst="CUBE", event=p),
    ]
    ph["sv_first"] = [WaitFlag(src="FIXPIPE", dst="CUBE", event=5)]     # L0CO free
    ph["sv_mmad"] = [
        CubeMmad(a=Ref("L0AP", "@sv"), b=Ref("L0BV", "@sv"), dst=Ref("L0CO", 0), acc_var="b"),
        SetFlag(src="CUBE", dst="MTE1", event=p),
    ]
    ph["sv_end"] = [
        CrossCoreSetFlag(flag=P_FREE, pipe="MTE2"),
        SetFlag(src="CUBE", dst="FIXPIPE", event=5), WaitFlag(src="CUBE", dst="FIXPIPE", event=5),
        CrossCoreWaitFlag(flag=O_FREE, pipe="FIXPIPE"),
        FixPipeToWs(src=Ref("L0CO", 0), ws="WS_O", slot="@sv_ch"),
        SetFlag(src="FIXPIPE", dst="CUBE", event=5),
        CrossCoreSetFlag(flag=O_READY, pipe="FIXPIPE"),
    ]
    epi = _drain(pro) + [CrossCoreWaitFlag(flag=O_FREE, pipe="FIXPIPE")] * 2
    if qk:
        epi += [CrossCoreWaitFlag(flag=S_FREE, pipe="FIXPIPE")] * 2
    ph["epilogue"] = epi
    return ph


# --- AIV ------------------------------------------------------------------------------------
def _aiv_buffers(t, pipeline):
    H, W, D_, dt = t["H"], t["W"], t["D"], t["dtype"]
    f32 = "f32"
    # VIS: 0/1 visibility; CMP: its bit mask for Select (the program keeps one byte per element,
    # the emitted code one bit); JI / NJ / KV: the emitted MaskVisible's key ramps
    b = [Buffer("S", "UB", (H, W), f32, 2, "ND"),
         Buffer("VIS", "UB", (H, W), f32, 1, "ND"), Buffer("CMP", "UB", (H, W), "bool", 1, "ND"),
         Buffer("P16", "UB", (H, W), dt, 2, "ND"),
         Buffer("JI", "UB", (1, W), "i32", 1, "ND"), Buffer("NJ", "UB", (1, W), f32, 1, "ND"),
         Buffer("KV", "UB", (1, W), f32, 1, "ND"),
         Buffer("M", "UB", (H, 1), f32, 1, "ND"), Buffer("MX", "UB", (H, 1), f32, 1, "ND"),
         Buffer("MNEW", "UB", (H, 1), f32, 1, "ND"), Buffer("L", "UB", (H, 1), f32, 1, "ND"),
         Buffer("RS", "UB", (H, 1), f32, 1, "ND"), Buffer("ALPHA", "UB", (H, 1), f32, 2, "ND"),
         Buffer("ACC", "UB", (H, D_), f32, 1, "ND"), Buffer("OC", "UB", (H, D_), f32, 1, "ND"),
         Buffer("OUT", "UB", (H, D_), dt, 1, "ND")]
    if pipeline == "2-stage":
        b += [Buffer("QU", "UB", (H, D_), dt, 1, "ND"), Buffer("KU", "UB", (W, D_), dt, 2, "ND")]
    return {x.name: x for x in b}


def _aiv_phases(pipeline, part, G, H):
    online = pipeline != "3-stage"
    two = pipeline == "2-stage"
    s = Ref("S", "@ch")
    p = _ev("ch", 0)
    pro = [SetFlag(src="VECTOR", dst="MTE2", event=e) for e in (0, 1, 2, 3)]
    pro += [SetFlag(src="MTE3", dst="VECTOR", event=e) for e in (0, 1, 2)]
    pro += [CrossCoreSetFlag(flag=O_FREE, pipe="MTE2")] * 2
    if not two:
        pro += [CrossCoreSetFlag(flag=S_FREE, pipe="MTE2")] * 2
    ph = {"prologue": pro, "task": [
        TaskScalars(),
        VDup(dst=Ref("M", 0), value=Scalar(NEG)), VDup(dst=Ref("L", 0), value=Scalar(0.0)),
        VDup(dst=Ref("ACC", 0), value=Scalar(0.0)),
    ]}
    if two:
        ph["q_load"] = [WaitFlag(src="VECTOR", dst="MTE2", event=2),   # QU free
                        CopyQToUb(dst=Ref("QU", 0), part=part),
                        SetFlag(src="MTE2", dst="VECTOR", event=2),
                        WaitFlag(src="MTE2", dst="VECTOR", event=2)]
        ph["q_release"] = [SetFlag(src="VECTOR", dst="MTE2", event=2)]
        load = [WaitFlag(src="VECTOR", dst="MTE2", event=p),
                CopyKvToUb(cache="KC", dst=Ref("KU", "@ch"), j0="c0"),
                SetFlag(src="MTE2", dst="VECTOR", event=p),
                WaitFlag(src="MTE2", dst="VECTOR", event=p),
                VQKRows(dst=s, q=Ref("QU", 0), k=Ref("KU", "@ch"), rows="rows_valid")]
        # an AIV whose half-tile holds no valid query row (a decode tile's upper half) loads no
        # K: the masks zero its P anyway; the wait keeps the slot's flag pairing balanced
        ph["sm_skip"] = [WaitFlag(src="VECTOR", dst="MTE2", event=p),
                         VDup(dst=s, value=Scalar(0.0))]
    else:
        load = [CrossCoreWaitFlag(flag=S_READY, pipe="MTE2"),
                WaitFlag(src="VECTOR", dst="MTE2", event=p),
                CopyWsToUb(ws="WS_S", slot="@ch", part=part, dst=s),
                SetFlag(src="MTE2", dst="VECTOR", event=p),
                CrossCoreSetFlag(flag=S_FREE, pipe="MTE2"),
                WaitFlag(src="MTE2", dst="VECTOR", event=p)]
    ph["sm_load"] = load
    # visibility by arithmetic, then one compare into the bit mask both Selects use: a Select
    # (not a multiply) so that stale or NaN scores of invisible keys never reach the sums
    ph["mask"] = [
        MaskVisible(dst=Ref("VIS", 0), part=part, j0="c0"),
        VCompare(pred="ne", dst=Ref("CMP", 0), a=Ref("VIS", 0), b=Scalar(0.0)),
    ]
    alpha = Ref("ALPHA", "@ch")
    sm = [VBinary(op="mul", dst=s, a=s, b=Scalar("scale")),
          VSelect(dst=s, mask=Ref("CMP", 0), a=s, b=Scalar(NEG)),
          VReduce(kind="max", dst=Ref("MX", 0), src=s)]
    if online:
        sm += [VBinary(op="max", dst=Ref("MNEW", 0), a=Ref("M", 0), b=Ref("MX", 0)),
               VBinary(op="sub", dst=s, a=s, b=Bcast(Ref("MNEW", 0), "col"))]
    else:
        sm += [VBinary(op="sub", dst=s, a=s, b=Bcast(Ref("MX", 0), "col"))]
    sm += [VUnary(op="exp", dst=s, src=s),
           VSelect(dst=s, mask=Ref("CMP", 0), a=s, b=Scalar(0.0)),
           VReduce(kind="sum", dst=Ref("RS", 0), src=s)]
    if online:
        sm += [VBinary(op="sub", dst=alpha, a=Ref("M", 0), b=Ref("MNEW", 0)),
               VUnary(op="exp", dst=alpha, src=alpha),
               VBinary(op="mul", dst=Ref("L", 0), a=Ref("L", 0), b=alpha),
               VBinary(op="add", dst=Ref("L", 0), a=Ref("L", 0), b=Ref("RS", 0)),
               VBinary(op="add", dst=Ref("M", 0), a=Ref("MNEW", 0), b=Scalar(0.0))]
    else:
        sm += [VBinary(op="add", dst=Ref("L", 0), a=Ref("RS", 0), b=Scalar(0.0))]
    sm += [WaitFlag(src="MTE3", dst="VECTOR", event=p),
           VCast(dst=Ref("P16", "@ch"), src=s),
           SetFlag(src="VECTOR", dst="MTE2", event=p),
           SetFlag(src="VECTOR", dst="MTE3", event=p), WaitFlag(src="VECTOR", dst="MTE3", event=p),
           CrossCoreWaitFlag(flag=P_FREE, pipe="MTE3"),
           CopyUbToWs(src=Ref("P16", "@ch"), ws="WS_P", slot="@ch", part=part),
           SetFlag(src="MTE3", dst="VECTOR", event=p),
           CrossCoreSetFlag(flag=P_READY, pipe="MTE3")]
    ph["softmax"] = sm
    cb = [CrossCoreWaitFlag(flag=O_READY, pipe="MTE2"),
          WaitFlag(src="VECTOR", dst="MTE2", event=3),
          CopyWsToUb(ws="WS_O", slot="@cb_ch", part=part, dst=Ref("OC", 0)),
          SetFlag(src="MTE2", dst="VECTOR", event=3),
          CrossCoreSetFlag(flag=O_FREE, pipe="MTE2"),
          WaitFlag(src="MTE2", dst="VECTOR", event=3)]
    if online:
        cb += [VBinary(op="mul", dst=Ref("ACC", 0), a=Ref("ACC", 0), b=Bcast(Ref("ALPHA", "@cb_ch"), "col")),
               VBinary(op="add", dst=Ref("ACC", 0), a=Ref("ACC", 0), b=Ref("OC", 0))]
    else:
        cb += [VBinary(op="add", dst=Ref("ACC", 0), a=Ref("OC", 0), b=Scalar(0.0))]
    cb += [SetFlag(src="VECTOR", dst="MTE2", event=3)]
    ph["combine"] = cb
    ph["final"] = [
        VBinary(op="max", dst=Ref("L", 0), a=Ref("L", 0), b=Scalar(1.0e-30)),
        VBinary(op="div", dst=Ref("ACC", 0), a=Ref("ACC", 0), b=Bcast(Ref("L", 0), "col")),
        WaitFlag(src="MTE3", dst="VECTOR", event=2),
        VCast(dst=Ref("OUT", 0), src=Ref("ACC", 0)),
        SetFlag(src="VECTOR", dst="MTE3", event=2), WaitFlag(src="VECTOR", dst="MTE3", event=2),
        StoreORows(src=Ref("OUT", 0), part=part),
        SetFlag(src="MTE3", dst="VECTOR", event=2),
    ]
    ph["epilogue"] = _drain(pro) + [CrossCoreWaitFlag(flag=P_FREE, pipe="MTE3")] * 2
    return ph


# --- sizing, legality, choice -----------------------------------------------------------------
def _tile(BM, BN, D_, G, dt, W):
    return dict(BM=BM, BN=BN, W=W, D=D_, G=G, H=BM // 2, dtype=dt)


REDUCE_WORK_FLOATS = 256     # the emitted workBuf's head: ReduceMax/ReduceSum work area
STAT_STRIDE = 8              # f32 per row of a per-row statistic in the emitted code (32 B)


def aiv_work_bytes(prog: AttentionProgram) -> int:
    """UB of the emitted AIV ``workBuf`` beside the program's buffers: the reductions' work
    area, and in the 2-stage pipeline two f32 rows of D and a 32-byte dot scratch after it."""
    d = prog.tile["D"]
    return 4 * (REDUCE_WORK_FLOATS + (2 * d + 8 if prog.pipeline == "2-stage" else 0))


def aiv_stat_pad_bytes(prog: AttentionProgram) -> int:
    """UB the emitted AIV adds by keeping each per-row statistic in its own 32-byte block."""
    return sum(b.total_bytes * (STAT_STRIDE - 1) for b in prog.aiv_buffers.values()
               if b.shape[1] == 1 and b.dtype == "f32")


def _check_reduce_work(prog: AttentionProgram) -> None:
    # every VReduce of a tile class must fit the work area the emitted code reserves for it
    for c in prog.tile_classes():
        for ph in c.aiv:
            for ins in (i for lst in ph.values() for i in lst if isinstance(i, VReduce)):
                cols = prog.aiv_buffers[ins.src.buf].shape[1]
                need = reduce_work_bytes(cols, ins.kind)
                if need > 4 * REDUCE_WORK_FLOATS:
                    raise AscendLegalityError(
                        f"Reduce{ins.kind.capitalize()} over {cols} columns needs {need} bytes "
                        f"of work buffer but the AIV reserves {4 * REDUCE_WORK_FLOATS}")


def check_attention_legality(prog: AttentionProgram, tgt) -> None:
    """Capacity/alignment of L1/L0A/L0B/L0C (AIC), UB (per AIV) and the GM workspace (which
    must stay L2-resident for every group at once). Messages name buffer, bytes, capacity."""
    t = prog.tile
    where = f"{prog.source}: " if prog.source else ""
    if t["BM"] % 16:
        raise AscendLegalityError(f"{where}BM={t['BM']} must be a multiple of 16: the Cube works on "
                                  f"16-row fractals (each of the two AIVs takes BM/2 rows)")
    if t["W"] % t["BN"]:
        raise AscendLegalityError(f"{where}KV window W={t['W']} must be a multiple of BN={t['BN']}")

    class _Aic:
        buffers = prog.aic_buffers
    try:
        check_legality(_Aic, tgt)
        _check_reduce_work(prog)
        check_ub(list(prog.aiv_buffers.values()), tgt, prog.kernel,
                 {"workBuf": aiv_work_bytes(prog), "row-statistic padding": aiv_stat_pad_bytes(prog)})
    except (AscendLegalityError, UbLegalityError) as e:
        raise AscendLegalityError(f"{where}{prog.pipeline} BM={t['BM']} BN={t['BN']} "
                                  f"W={t['W']}: {e}") from None
    ws = prog.workspace_bytes() * tgt.aic_cores
    if ws > tgt.l2_bytes:
        raise AscendLegalityError(
            f"{where}GM workspace needs {ws} bytes for {tgt.aic_cores} AI-core groups but the "
            f"L2 that keeps the Cube->Vector hand-off on chip holds {tgt.l2_bytes} bytes")


def _build(spec, tgt, pipeline, W) -> AttentionProgram:
    t = _tile(spec.BM, spec.BN, spec.D, spec.G, spec.dtype, W)
    ws = {"WS_P": (t["BM"], W, spec.dtype), "WS_O": (t["BM"], spec.D, "f32")}
    if pipeline != "2-stage":
        ws["WS_S"] = (t["BM"], W, "f32")
    prog = AttentionProgram(spec.kernel, pipeline, t, dict(spec.tensors), spec.scale,
                            _aic_buffers(t, pipeline), _aiv_buffers(t, pipeline), ws,
                            _aic_phases(pipeline),
                            [_aiv_phases(pipeline, k, spec.G, t["H"]) for k in (0, 1)],
                            spec.source)
    return prog


def _rename(ins, bufs: dict, ws: dict, W: int):
    from dataclasses import fields, replace
    from ..vector import Bcast
    ch = {}
    for f in fields(ins):
        v = getattr(ins, f.name)
        if isinstance(v, Ref) and v.buf in bufs:
            ch[f.name] = Ref(bufs[v.buf], v.slot)
        elif isinstance(v, Bcast) and v.ref.buf in bufs:
            ch[f.name] = Bcast(Ref(bufs[v.ref.buf], v.ref.slot), v.axis)
        elif f.name == "ws" and v in ws:
            ch[f.name] = ws[v]
    if isinstance(ins, TaskScalars):
        ch["W"] = W
    return replace(ins, **ch) if ch else ins


def _build_classes(spec, tgt, pipeline, rows: tuple, W: int) -> AttentionProgram:
    """One program holding a tile class per entry of ``rows`` (each task uses the smallest
    class that holds its query rows): buffers and workspaces whose shape depends on the class
    get a per-class copy (suffix _<rows>), the rest are shared. One launch, several tiles."""
    from dataclasses import replace
    progs = [_build(replace(spec, BM=r), tgt, pipeline, W) for r in rows]
    shapes, wshapes = {}, {}
    for p in progs:
        for b in p.buffers.values():
            shapes.setdefault(b.name, set()).add(b.shape)
        for n, v in p.workspace.items():
            wshapes.setdefault(n, set()).add(v)
    aic, aiv, ws, classes = {}, {}, {}, []
    for r, p in zip(rows, progs):
        bmap = {n: f"{n}_{r}" for n, sh in shapes.items() if len(sh) > 1}
        wmap = {n: f"{n}_{r}" for n, sh in wshapes.items() if len(sh) > 1}
        for b in p.aic_buffers.values():
            aic[bmap.get(b.name, b.name)] = replace(b, name=bmap.get(b.name, b.name))
        for b in p.aiv_buffers.values():
            aiv[bmap.get(b.name, b.name)] = replace(b, name=bmap.get(b.name, b.name))
        for n, v in p.workspace.items():
            ws[wmap.get(n, n)] = v
        classes.append(TileClass(
            r, W, {k: [_rename(i, bmap, wmap, W) for i in v] for k, v in p.aic.items()},
            [{k: [_rename(i, bmap, wmap, W) for i in v] for k, v in ph.items()} for ph in p.aiv]))
    big = progs[-1]
    return AttentionProgram(spec.kernel, pipeline, big.tile, big.roles, big.scale, aic, aiv, ws,
                            classes[-1].aic, classes[-1].aiv, big.source, classes)


def max_window(spec, tgt, pipeline, rows: tuple | None = None) -> int:
    """Largest KV window W (BN * 2^k, <= MAX_WINDOW) whose buffers are legal on ``tgt``."""
    tgt = T.get(tgt) if isinstance(tgt, str) else tgt
    best, w = None, spec.BN
    while w < 32:           # bool mask rows of W bytes must fill 32-byte UB blocks
        w *= 2
    while w <= MAX_WINDOW:
        try:
            check_attention_legality(_build_classes(spec, tgt, pipeline, rows, w) if rows
                                     else _build(spec, tgt, pipeline, w), tgt)
        except AscendLegalityError:
            break
        best, w = w, w * 2
    return best


def fit_window(spec, tgt, tasks, pipeline: str = "3-stage", rows: tuple | None = None
               ) -> int | None:
    """Smallest legal window (BN * 2^k, >= 32) that holds every task's visible KV, else the
    largest legal one: the Vector's static-shape ops then waste the least work on keys past
    hi, and long KV takes the fewest windows."""
    from .isa import task_env
    cap = max_window(spec, tgt, pipeline, rows)
    if cap is None:
        return None
    need = max((task_env(r, cap)["hi"] for r in tasks), default=1)
    w = spec.BN
    while w < 32 or w < need:
        w *= 2
    return min(w, cap)


def choose_pipeline(tasks, window: int, kinds=None) -> str:
    """2-stage when every stage is a decode; else 3-stage when every task's visible KV fits
    one window (exact softmax); else 4-stage (windows + online update).

    This is the paper's rule. The cycle model disagrees on decode (QK^T on the Vector is far
    slower than on the Cube there; see BENCHMARKS.md), so callers may pass any pipeline."""
    from .isa import task_env
    envs = [task_env(r, window) for r in tasks]
    if kinds is not None:
        decode_only = all(k == "decode" for k in kinds)
    else:   # from the table: one query token per task and causal
        decode_only = all(e["q_rows"] == 1 and not e["is_tree"] for e in envs)
    if decode_only and envs:
        return "2-stage"
    return "3-stage" if all(e["hi"] <= window for e in envs) else "4-stage"


@targeted
def lower_attention(kernel, target="ascend910b2", pipeline: str = "4-stage",
                    window: int | None = None, classes: tuple | None = None) -> AttentionProgram:
    """Lower a specialised meta_attention kernel to an AI-core-group program.

    ``pipeline`` is one of PIPELINES (the batch-dependent rule is ``choose_pipeline``);
    ``window`` is the KV window W (default: the largest legal one); ``classes`` (tile rows,
    e.g. (16, 64)) makes one program with a tile size per class, each task running on the
    smallest class that holds its rows (Meta-Attention's per-stage-type tiles in one launch);
    the largest class must be the kernel's BM."""
    tgt = T.get(target) if isinstance(target, str) else target
    if pipeline not in PIPELINES:
        raise AscendLoweringError(f"unknown attention pipeline {pipeline!r}; expected one of "
                                  f"{', '.join(PIPELINES)}")
    spec = recognise(kernel)
    if spec.BN % 16 or spec.D % 16:
        raise AscendLegalityError(f"{spec.source}: BN={spec.BN} and D={spec.D} must be multiples "
                                  f"of the 16-element Cube fractal")
    if classes:
        classes = tuple(sorted(set(int(c) for c in classes)))
        if classes[-1] != spec.BM or any(c % 16 or c % spec.G for c in classes):
            raise AscendLegalityError(
                f"{spec.source}: tile classes {classes} must be multiples of 16 and of G={spec.G}"
                f", the largest equal to BM={spec.BM}")
    build = (lambda w: _build_classes(spec, tgt, pipeline, classes, w)) if classes else \
        (lambda w: _build(spec, tgt, pipeline, w))
    if window is None:
        window = max_window(spec, tgt, pipeline, classes)
        if window is None:      # build the smallest window to get the precise message
            check_attention_legality(build(max(spec.BN, 32)), tgt)
    prog = build(window)
    check_attention_legality(prog, tgt)
    return prog
