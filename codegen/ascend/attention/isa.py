"""Attention-specific instructions of the AI-core group (one AIC + two AIVs).

Each instruction is a frozen dataclass with ``pipe``, ``__str__`` and
``execute(m) -> (cycles, bytes)`` run by ``sim.Machine`` (the per-core machine, which checks
every on-chip access against the intra-core flags). GM workspace
accesses go through ``m.group.ws`` (see sim.py), which checks them against the cross-core
flags. Tile rows follow the task ABI: row r of a task is query token Q_START + r // G with
query head KV_HEAD * G + r % G; an AIV owns rows [part * H, part * H + H), H = BM / 2.

Cycle costs (estimates, see targets/ascend.py for the rates): copies cost ``COPY_ISSUE``
per DataCopy (one per gathered row segment / page run) plus bytes / rate; KV and Q reads
from HBM are capped at the core's share of HBM bandwidth (``hbm_rate``); workspace traffic
stays in L2 (MTE2/FixPipe/MTE3 rates).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tilec.ir import dtypes as D
from tilec.ir.semantics import as_type

from ..program import Instr, Ref
from ..sim import from_nz, from_nz_b, from_zz, to_nz
from ..vector import COPY_ISSUE

XCORE_LATENCY = 100        # estimate: cycles from CrossCoreSetFlag to the waiting core seeing it
TASK_SCALAR_CYCLES = 60    # estimate: scalar unit reading a task row and deriving loop bounds

# task-table columns (runtime/plan.py ABI; duplicated so codegen does not import runtime)
_COLS = ("seq", "q_start", "q_rows", "q_pos", "kv_len", "mask", "tree_off", "spec", "kvh",
         "stage")


def task_env(row, W: int) -> dict:
    """Scalars of one task row (the scalar unit's work), including the KV loop bounds."""
    e = {k: int(v) for k, v in zip(_COLS, row)}
    e["is_tree"] = int(e["mask"] == 1)
    e["hi"] = e["kv_len"] if e["is_tree"] else min(e["kv_len"], e["q_pos"] + e["q_rows"])
    e["spec_base"] = e["kv_len"] - e["spec"]
    e["nchunks"] = max(1, -(-e["hi"] // W))
    return e


def hbm_rate(tgt) -> float:
    """Bytes per cycle one core gets from HBM when every AI core streams at once."""
    return min(tgt.mte2_bytes_per_cycle, tgt.hbm_bytes_per_s / tgt.clock_hz / tgt.aic_cores)


def _rows(m, part: int, R: int):
    """(token offset, head index) of tile rows part*R .. part*R+R-1, and their validity."""
    e = m.env
    G = m.p.tile["G"]
    r = part * R + np.arange(R)
    tok = r // G
    ok = tok < e["q_rows"]
    return e["q_start"] + tok, e["kvh"] * G + r % G, ok


def _kv_rows(m, cache: str, j0: int, n: int):
    """Gather n keys/values from j0 through the block table; keys >= hi read nothing (zeros)."""
    e = m.env
    g = m.gm(cache)
    bt = m.gm(m.p.roles["BT"])
    bs = g.shape[1]
    out = np.zeros((n, g.shape[3]), g.dtype)
    j = j0 + np.arange(n)
    ok = j < e["hi"]
    jj = j[ok]
    if jj.size:
        blk = bt[e["seq"], jj // bs]
        out[ok] = g[blk, jj % bs, e["kvh"]]
    runs = len({int(x) // bs for x in jj}) if jj.size else 0    # one DataCopy per page run
    return out, int(ok.sum()) * g.shape[3] * g.dtype.itemsize, max(runs, 1)


@dataclass(frozen=True)
class TaskScalars(Instr):
    """S: read task row ``t`` of the task table and derive the loop bounds (scalar unit)."""
    W: int = 0                      # window of the task's tile class (0: the program's)
    pipe: str = "S"

    def __str__(self):
        return "S       task = TASKS[t] (hi, nchunks of W keys)"

    def execute(self, m):
        m.env.update(task_env(m.gm(m.p.roles["TASKS"])[m.env["t"]], self.W or m.p.tile["W"]))
        return TASK_SCALAR_CYCLES, 40


# --- AIC ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CopyQToL1(Instr):
    """MTE2: the task's Q rows (q_rows tokens x G heads, strided rows of Q) -> L1 NZ (BM x D);
    rows past q_rows are never read (zeros on chip: virtual padding)."""
    dst: Ref = None
    pipe: str = "MTE2"

    def __str__(self):
        return f"MTE2    copy_q_to_l1 Q[q_start+r/G, kvh*G+r%G, :] -> {self.dst} (ND->NZ, valid rows)"

    def execute(self, m):
        buf = m.buffer(self.dst.buf)
        q = m.gm(m.p.roles["Q"])
        tok, head, ok = _rows(m, 0, buf.shape[0])
        tile = np.zeros(buf.shape, q.dtype)
        tile[ok] = q[tok[ok], head[ok]]
        fr, fc = m.t.fractal_shape(buf.dtype)
        m._write("MTE2", self.dst, to_nz(tile, fr, fc), "NZ")
        nb = int(ok.sum()) * buf.shape[1] * q.dtype.itemsize
        return COPY_ISSUE + nb / hbm_rate(m.t), nb


@dataclass(frozen=True)
class CopyKvToL1(Instr):
    """MTE2: BN keys (or values) from ``j0`` (env name) of the paged cache -> L1 NZ (BN x D),
    one DataCopy (Nd2Nz, srcDValue = HKV * D) per page run; keys >= hi are not read."""
    cache: str = "KC"
    dst: Ref = None
    j0: str = "n0"
    pipe: str = "MTE2"

    def __str__(self):
        return f"MTE2    gather_kv_to_l1 {self.cache}[BT[seq, j/BS], j%BS, kvh, :] j={self.j0}.. -> {self.dst}"

    def execute(self, m):
        buf = m.buffer(self.dst.buf)
        tile, nb, runs = _kv_rows(m, m.p.roles[self.cache], int(m.env[self.j0]), buf.shape[0])
        fr, fc = m.t.fractal_shape(buf.dtype)
        m._write("MTE2", self.dst, to_nz(tile, fr, fc), "NZ")
        return COPY_ISSUE * runs + nb / hbm_rate(m.t), nb


@dataclass(frozen=True)
class CopyWsToL1(Instr):
    """MTE2: a (BM x BN) block of workspace ``ws`` slot ``slot`` at column ``col0`` -> L1 NZ."""
    ws: str = None
    slot: int = 0
    col0: str = "b0"
    dst: Ref = None
    pipe: str = "MTE2"

    def __str__(self):
        return f"MTE2    copy_ws_to_l1 {self.ws}[{self.slot}][:, {self.col0}:+BN] -> {self.dst} (ND->NZ)"

    def execute(self, m):
        buf = m.buffer(self.dst.buf)
        c0 = int(m.env[self.col0])
        x = m.group.ws.read(m.core, self.ws, self.slot, None)[:, c0:c0 + buf.shape[1]]
        fr, fc = m.t.fractal_shape(buf.dtype)
        m._write("MTE2", self.dst, to_nz(np.ascontiguousarray(x), fr, fc), "NZ")
        return COPY_ISSUE + x.nbytes / m.t.mte2_bytes_per_cycle, x.nbytes


@dataclass(frozen=True)
class CubeMmad(Instr):
    """CUBE: dst (L0C f32) = a @ b, or += when env[acc_var] > 0 (accumulate over KV blocks)."""
    a: Ref = None
    b: Ref = None
    dst: Ref = None
    acc_var: str | None = None
    pipe: str = "CUBE"

    def __str__(self):
        acc = f" (+= when {self.acc_var} > 0)" if self.acc_var else ""
        return f"CUBE    mmad {self.dst} = {self.a} @ {self.b}{acc}"

    def execute(self, m):
        sa, sb = m._read("CUBE", self.a), m._read("CUBE", self.b)
        assert sa.layout == "zZ" and sb.layout == "nZ"
        a = from_zz(sa.data).astype(np.float32)
        b = from_nz_b(sb.data).astype(np.float32)
        r = (a @ b).astype(np.float32)
        if self.acc_var and int(m.env[self.acc_var]) > 0:
            r = from_nz(m._read("CUBE", self.dst).data) + r
        fr, fc = m.t.l0c_fractal
        m._write("CUBE", self.dst, to_nz(r, fr, fc), "NZ")
        macs = a.shape[0] * a.shape[1] * b.shape[1]
        m.stats.macs += macs
        return macs / m.t.cube_macs_per_cycle[m.p.tile["dtype"]], 0


@dataclass(frozen=True)
class FixPipeToWs(Instr):
    """FIXPIPE: L0C (f32 NZ) -> workspace slot (ND, f32), at column env[col0]."""
    src: Ref = None
    ws: str = None
    slot: int = 0
    col0: str | None = None
    pipe: str = "FIXPIPE"

    def __str__(self):
        at = f"[:, {self.col0}:+{'BN'}]" if self.col0 else ""
        return f"FIXPIPE fixpipe {self.src} -> {self.ws}[{self.slot}]{at} (f32, ND)"

    def execute(self, m):
        x = from_nz(m._read("FIXPIPE", self.src).data)
        c0 = int(m.env[self.col0]) if self.col0 else 0
        m.group.ws.write(m.core, self.ws, self.slot, None, x, c0)
        return x.nbytes / m.t.fixpipe_bytes_per_cycle, x.nbytes


# --- AIV ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CopyWsToUb(Instr):
    """MTE2: this AIV's rows of workspace ``ws`` slot -> UB (f32)."""
    ws: str = None
    slot: int = 0
    part: int = 0
    dst: Ref = None
    pipe: str = "MTE2"

    def __str__(self):
        return f"MTE2    copy_ws_to_ub {self.ws}[{self.slot}] rows of AIV{self.part} -> {self.dst}"

    def execute(self, m):
        buf = m.buffer(self.dst.buf)
        x = m.group.ws.read(m.core, self.ws, self.slot, self.part)
        m.write("MTE2", self.dst, as_type(x[:, :buf.shape[1]], buf.dtype).copy())
        return COPY_ISSUE + x.nbytes / m.t.mte2_bytes_per_cycle, x.nbytes


@dataclass(frozen=True)
class CopyUbToWs(Instr):
    """MTE3: a UB tile -> this AIV's rows of workspace ``ws`` slot."""
    src: Ref = None
    ws: str = None
    slot: int = 0
    part: int = 0
    pipe: str = "MTE3"

    def __str__(self):
        return f"MTE3    copy_ub_to_ws {self.src} -> {self.ws}[{self.slot}] rows of AIV{self.part}"

    def execute(self, m):
        x = m.read("MTE3", self.src)
        m.group.ws.write(m.core, self.ws, self.slot, self.part, x, 0)
        return COPY_ISSUE + x.nbytes / m.t.mte3_bytes_per_cycle, x.nbytes


@dataclass(frozen=True)
class CopyQToUb(Instr):
    """MTE2 (2-stage): this AIV's valid Q rows -> UB (H x D)."""
    dst: Ref = None
    part: int = 0
    pipe: str = "MTE2"

    def __str__(self):
        return f"MTE2    copy_q_to_ub Q rows of AIV{self.part} -> {self.dst} (valid rows)"

    def execute(self, m):
        buf = m.buffer(self.dst.buf)
        q = m.gm(m.p.roles["Q"])
        tok, head, ok = _rows(m, self.part, buf.shape[0])
        tile = np.zeros(buf.shape, q.dtype)
        tile[ok] = q[tok[ok], head[ok]]
        m.write("MTE2", self.dst, tile)
        nb = int(ok.sum()) * buf.shape[1] * q.dtype.itemsize
        return COPY_ISSUE + nb / hbm_rate(m.t), nb


@dataclass(frozen=True)
class CopyKvToUb(Instr):
    """MTE2 (2-stage): W keys from env[j0] of the paged cache -> UB (W x D), keys >= hi zero."""
    cache: str = "KC"
    dst: Ref = None
    j0: str = "c0"
    pipe: str = "MTE2"

    def __str__(self):
        return f"MTE2    gather_kv_to_ub {self.cache}[BT[seq, j/BS], j%BS, kvh, :] j={self.j0}.. -> {self.dst}"

    def execute(self, m):
        buf = m.buffer(self.dst.buf)
        tile, nb, runs = _kv_rows(m, m.p.roles[self.cache], int(m.env[self.j0]), buf.shape[0])
        m.write("MTE2", self.dst, tile)
        return COPY_ISSUE * runs + nb / hbm_rate(m.t), nb


@dataclass(frozen=True)
class MaskVisible(Instr):
    """VECTOR (and, in tree tasks, the scalar unit reading TREE): 1.0 where key j0 + j is
    visible to tile row r, 0.0 elsewhere. Visible: the row holds a query (token < q_rows), the
    key is in the task's range (< hi) and not after the row's position (causal); in a tree task
    a speculative key (>= spec_base) also needs its TREE entry. The emitted code builds it from
    clamped ramps (min(max(pos + 1 - j, 0), 1)), exact while positions stay below 2^24."""
    dst: Ref = None
    part: int = 0
    j0: str = "c0"
    pipe: str = "VECTOR"

    def __str__(self):
        return (f"VECTOR  mask_visible {self.dst}[r, j] = row valid & j < hi & j <= pos[r]"
                f" (& TREE in tree tasks), j = {self.j0} + j")

    def execute(self, m):
        e = m.env
        buf = m.buffer(self.dst.buf)
        H, W = buf.shape
        G = m.p.tile["G"]
        tok = (self.part * H + np.arange(H)) // G
        pos = e["q_pos"] + tok
        j = int(e[self.j0]) + np.arange(W)
        vis = (tok[:, None] < e["q_rows"]) & (j[None, :] < e["hi"]) & (j[None, :] <= pos[:, None])
        nrows = 0
        if e["is_tree"]:
            tree = m.gm(m.p.roles["TREE"])
            tj = j - e["spec_base"]
            col = (tj >= 0) & (j < e["hi"])
            for i in range(H):
                if tok[i] >= e["q_rows"] or not col.any():
                    continue
                qi = pos[i] - e["spec_base"]
                vis[i, col] &= tree[e["tree_off"] + qi * e["spec"] + tj[col]] != 0
                nrows += 1
        m.write("VECTOR", self.dst, vis.astype(np.float32))
        # about eight passes over the tile on the vector unit, plus one scalar read per tree entry
        cyc = 8 * H * W * 4 / m.t.vector_bytes_per_cycle + nrows * int(W) * (1 if e["is_tree"] else 0)
        return cyc, 0


@dataclass(frozen=True)
class StoreORows(Instr):
    """MTE3: this AIV's valid output rows -> O[q_start + r/G, kvh*G + r%G, :] (one DataCopyPad
    with blockCount = tokens, blockLen = G*D elements, dstStride = (HQ - G) * D): selective
    write, rows past q_rows are never written."""
    src: Ref = None
    part: int = 0
    pipe: str = "MTE3"

    def __str__(self):
        return f"MTE3    store_rows {self.src} -> O[q_start+r/G, kvh*G+r%G, :] (valid rows of AIV{self.part})"

    def execute(self, m):
        x = m.read("MTE3", self.src)
        o = m.gm(m.p.roles["O"])
        tok, head, ok = _rows(m, self.part, x.shape[0])
        if D.from_numpy(x.dtype) != D.from_numpy(o.dtype):
            raise ValueError(f"{self}: UB tile is {x.dtype}, O is {o.dtype} (cast first)")
        o[tok[ok], head[ok]] = x[ok]
        nb = int(ok.sum()) * x.shape[1] * o.dtype.itemsize
        return COPY_ISSUE + nb / m.t.mte3_bytes_per_cycle, nb


# --- cross-core flags -----------------------------------------------------------------------
@dataclass(frozen=True)
class CrossCoreSetFlag(Instr):
    """Mode 2 (AIC <-> its two AIVs): on the AIC it bumps flag ``flag`` of both AIVs; on an AIV
    the AIC's counter rises once both AIVs have set it. Issued on ``pipe`` after that pipe's
    earlier work: the workspace accesses it publishes are those the core made before."""
    flag: int = 0
    pipe: str = "FIXPIPE"

    def __str__(self):
        return f"{self.pipe:<7} cross_core_set_flag<2, PIPE_{self.pipe}>({self.flag})"


@dataclass(frozen=True)
class CrossCoreWaitFlag(Instr):
    """Blocks ``pipe`` until flag ``flag`` of this core is > 0, then decrements it."""
    flag: int = 0
    pipe: str = "MTE2"

    def __str__(self):
        return f"{self.pipe:<7} cross_core_wait_flag({self.flag})"


__all__ = ["TaskScalars", "CopyQToL1", "CopyKvToL1", "CopyWsToL1", "CubeMmad", "FixPipeToWs",
           "CopyWsToUb", "CopyUbToWs", "CopyQToUb", "CopyKvToUb", "MaskVisible", "StoreORows",
           "CrossCoreSetFlag", "CrossCoreWaitFlag", "task_env", "hbm_rate", "XCORE_LATENCY"]
