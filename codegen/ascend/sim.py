"""Simulate an Ascend program (program.py) over the whole launch grid on CPU.

Data: numpy semantics per instruction. L1 holds NZ fractals, L0A zZ, L0B nZ, L0C NZ f32; each
layout is a real reshape/transpose of the data, tagged, so the conversions are exercised.
MTE2 reads only the rows/cols inside the GM tensor (the rest of the on-chip tile is zeros);
FixPipe casts and writes only the rows/cols inside the output.

Synchronisation: every buffer access is checked against flag state. A pipe may read a slot
another pipe wrote only after a WaitFlag whose SetFlag the writer issued after that write
(RAW), and may overwrite a slot another pipe read or wrote only after such a hand-over (WAR,
WAW). As on the hardware (pipes are in-order queues), a WaitFlag covers everything the source
pipe did before the matching SetFlag, whatever event earlier accesses were released under.
Violations and WaitFlags with no SetFlag raise SyncError.

Timing: each pipe is an in-order queue. An instruction costs bytes / pipe rate (MTE2, MTE1,
FIXPIPE) or MACs / Cube rate (full on-chip tiles: virtual padding still computes whole
tiles); a WaitFlag stalls its pipe until the SetFlag time. A task takes the latest pipe finish
plus a fixed startup; tasks go round-robin over the target's AI cores. Per-core rates let
all cores together move more than HBM can, so Stats also carries an HBM floor (every GM byte
of the launch once, at the target's HBM bandwidth) and ``bound_cycles`` = the larger of the
two. Ignored: L2 hit/miss behaviour, bank conflicts, scalar-unit time, launch latency.

AIV programs (vector.py) run through ``simulate_aiv``: the same sync checks and pipe clocks
for MTE2 / VECTOR / MTE3, tasks dealt round-robin to the AIV cores, one startup per core (the
kernel loops over its tasks). ``model_gemm`` is the GEMM cycle model without data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from codegen.launch import bind
from tilec import targets as T
from tilec.ir import dtypes as D

from .gemm import check_legality
from .program import (PIPES, CopyGmToL1, FixPipe, LoadL0, Mmad, Program, Ref, SetFlag,
                      WaitFlag)

STARTUP_CYCLES = 1000     # estimate: per-task launch/scalar setup on an AI core


class SyncError(RuntimeError):
    """A buffer access not ordered by flags, or a WaitFlag no SetFlag matches."""


@dataclass
class Stats:
    target: str
    tasks: int
    cores_used: int
    busy_cycles: dict = field(default_factory=lambda: {p: 0 for p in PIPES})   # summed
    bytes: dict = field(default_factory=lambda: {p: 0 for p in PIPES})
    macs: int = 0
    cycles: int = 0                 # critical core's modelled cycles (per-core pipe model)
    seconds: float = 0.0
    hbm_cycles: int = 0             # chip-wide HBM floor: each GM byte moved once at HBM rate

    @property
    def bound_cycles(self) -> int:
        """The modelled time: the pipe model, or the HBM floor where that is higher (the
        per-core MTE2 rate alone would let all cores together exceed HBM bandwidth)."""
        return max(self.cycles, self.hbm_cycles)


# --- layouts --------------------------------------------------------------------------------
def to_nz(x, fr, fc):            # (R, C) -> (C/fc, R/fr, fr, fc): column blocks, rows Z inside
    r, c = x.shape
    return x.reshape(r // fr, fr, c // fc, fc).transpose(2, 0, 1, 3).copy()


def from_nz(x):
    c1, r1, fr, fc = x.shape
    return x.transpose(1, 2, 0, 3).reshape(r1 * fr, c1 * fc)


def to_zz(x, fr, fc):            # (R, C) -> (R/fr, C/fc, fr, fc): row blocks, rows Z inside
    r, c = x.shape
    return x.reshape(r // fr, fr, c // fc, fc).transpose(0, 2, 1, 3).copy()


def from_zz(x):
    r1, c1, fr, fc = x.shape
    return x.transpose(0, 2, 1, 3).reshape(r1 * fr, c1 * fc)


def to_nz_b(x, fr, fc):          # L0B nZ: (K, N) -> (K/fr, N/fc, fc, fr): fractals stored n-major
    k, n = x.shape
    return x.reshape(k // fr, fr, n // fc, fc).transpose(0, 2, 3, 1).copy()


def from_nz_b(x):
    k1, n1, fc, fr = x.shape
    return x.transpose(0, 3, 1, 2).reshape(k1 * fr, n1 * fc)


class _Slot:
    __slots__ = ("data", "layout", "writer", "wseq", "can_read", "can_write", "readers")

    def __init__(self):
        self.data = None
        self.layout = None
        self.writer = None
        self.wseq = 0                 # Machine.seq of the write
        self.can_read: set = set()
        self.can_write: set = set(PIPES)
        self.readers: set = set()


class Machine:
    """One AI core executing one tile task."""

    def __init__(self, prog: Program, tgt, tensors: dict, env: dict, stats: Stats):
        self.p, self.t, self.tensors, self.env, self.stats = prog, tgt, tensors, env, stats
        self.slots = {(b.name, i): _Slot() for b in prog.buffers.values() for i in range(b.count)}
        self.flags: dict = {}                       # (src, dst, ev) -> list of (time, seq)
        self.seq = 0                                # access counter: orders accesses and sets
        self.acc: dict = {}                         # (buf, slot) -> {pipe: seq of last access}
        self.clock = {p: 0 for p in PIPES}

    # -- sync ----------------------------------------------------------------------------------
    def _slot(self, ref: Ref):
        try:
            return self.slots[(ref.buf, ref.slot)]
        except KeyError:
            raise SyncError(f"no buffer slot {ref}") from None

    def _read(self, pipe, ref):
        s = self._slot(ref)
        if s.writer is None:
            raise SyncError(f"{pipe} reads {ref} before anything was written to it")
        if pipe != s.writer and pipe not in s.can_read:
            raise SyncError(f"{pipe} reads {ref} written by {s.writer} without a "
                            f"WaitFlag({s.writer}->{pipe}) after the write")
        s.readers.add(pipe)
        # WAR: once another pipe reads, nobody else may overwrite without a hand-over
        s.can_write &= {pipe}
        self.seq += 1
        self.acc.setdefault((ref.buf, ref.slot), {})[pipe] = self.seq
        return s

    def _write(self, pipe, ref, data, layout):
        s = self._slot(ref)
        others = (s.readers | ({s.writer} if s.writer else set())) - {pipe}
        if others and pipe not in s.can_write:
            raise SyncError(f"{pipe} overwrites {ref} used by {', '.join(sorted(others))} "
                            f"without a WaitFlag handing it over")
        s.data, s.layout, s.writer = data, layout, pipe
        s.can_read, s.can_write, s.readers = set(), {pipe}, set()
        self.seq += 1
        s.wseq = self.seq
        self.acc[(ref.buf, ref.slot)] = {pipe: self.seq}     # a write ends earlier uses

    def set_flag(self, ins: SetFlag):
        self.flags.setdefault((ins.src, ins.dst, ins.event), []).append(
            (self.clock[ins.src], self.seq))

    def wait_flag(self, ins: WaitFlag):
        q = self.flags.get((ins.src, ins.dst, ins.event))
        if not q:
            raise SyncError(f"WaitFlag({ins.src}->{ins.dst}, ev{ins.event}) has no SetFlag "
                            f"before it (the {ins.dst} pipe would hang)")
        t, upto = q.pop(0)
        self.clock[ins.dst] = max(self.clock[ins.dst], t)
        # publish the source pipe's writes made before the SetFlag, and hand back every slot
        # whose last access by the source pipe precedes it
        for key, acc in self.acc.items():
            k = acc.get(ins.src)
            if k is None:
                continue
            s = self.slots[key]
            if s.writer == ins.src and s.wseq <= upto:
                s.can_read.add(ins.dst)
            if k <= upto:
                s.can_write.add(ins.dst)

    # -- timing --------------------------------------------------------------------------------
    def _cost(self, pipe, cycles, nbytes=0):
        cycles = int(math.ceil(cycles))
        self.clock[pipe] += cycles
        self.stats.busy_cycles[pipe] += cycles
        self.stats.bytes[pipe] += nbytes

    # -- instructions ----------------------------------------------------------------------
    def _range(self, spec, limit):
        sym, size = spec
        lo = int(self.env[sym])
        return lo, max(0, min(lo + size, limit) - lo), size

    def exec(self, ins, ienv):
        self.env.update(ienv)
        t = self.t
        if isinstance(ins, SetFlag):
            self.set_flag(ins)
        elif isinstance(ins, WaitFlag):
            self.wait_flag(ins)
        elif isinstance(ins, CopyGmToL1):
            g = self.tensors[ins.src.tensor]
            r0, nr, R = self._range(ins.src.rows, g.shape[0])
            c0, nc, C = self._range(ins.src.cols, g.shape[1])
            buf = self.p.buffers[ins.dst.buf]
            tile = np.zeros((R, C), dtype=D.to_numpy(buf.dtype))
            tile[:nr, :nc] = g[r0:r0 + nr, c0:c0 + nc]       # selective read: valid rows only
            fr, fc = t.fractal_shape(buf.dtype)
            self._write("MTE2", ins.dst, to_nz(tile, fr, fc), "NZ")
            nb = nr * nc * g.dtype.itemsize
            self._cost("MTE2", nb / t.mte2_bytes_per_cycle, nb)
        elif isinstance(ins, LoadL0):
            s = self._read("MTE1", ins.src)
            assert s.layout == "NZ"
            x = from_nz(s.data)
            if ins.transpose:
                x = x.T
            dst = self.p.buffers[ins.dst.buf]
            if x.shape != dst.shape:
                raise ValueError(f"{ins}: tile {x.shape} does not fit {dst.name}{dst.shape}")
            fr, fc = t.fractal_shape(dst.dtype)
            if dst.space == "L0A":
                self._write("MTE1", ins.dst, to_zz(x, fr, fc), "zZ")
            else:
                self._write("MTE1", ins.dst, to_nz_b(x, fr, fc), "nZ")
            self._cost("MTE1", x.nbytes / t.mte1_bytes_per_cycle, x.nbytes)
        elif isinstance(ins, Mmad):
            sa, sb = self._read("CUBE", ins.a), self._read("CUBE", ins.b)
            assert sa.layout == "zZ" and sb.layout == "nZ"
            a = from_zz(sa.data).astype(np.float32)
            b = from_nz_b(sb.data).astype(np.float32)
            r = np.matmul(a, b).astype(np.float32)
            first = ins.init == "first" and self.env["i"] == 0
            if not first:
                r = from_nz(self._read("CUBE", ins.dst).data) + r
            fr, fc = t.l0c_fractal
            self._write("CUBE", ins.dst, to_nz(r, fr, fc), "NZ")
            m, k = a.shape
            n = b.shape[1]
            macs = m * n * k
            self.stats.macs += macs
            self._cost("CUBE", macs / t.cube_macs_per_cycle[self.p.tile["dtype"]])
        elif isinstance(ins, FixPipe):
            s = self._read("FIXPIPE", ins.src)
            x = from_nz(s.data)
            g = self.tensors[ins.dst.tensor]
            r0, nr, _ = self._range(ins.dst.rows, g.shape[0])
            c0, nc, _ = self._range(ins.dst.cols, g.shape[1])
            from tilec.ir.semantics import as_type
            g[r0:r0 + nr, c0:c0 + nc] = as_type(x[:nr, :nc], ins.dtype)   # selective write
            nb = nr * nc * D.itemsize(ins.dtype)
            self._cost("FIXPIPE", nb / t.fixpipe_bytes_per_cycle, nb)
        elif hasattr(ins, "execute"):                 # vector.py instructions
            cycles, nbytes = ins.execute(self)
            self._cost(ins.pipe, cycles, nbytes)
        else:
            raise TypeError(f"unknown instruction {ins!r}")

    # -- vector.Context ------------------------------------------------------------------------
    @property
    def target(self):
        return self.t

    def read(self, pipe, ref):
        return self._read(pipe, ref).data

    def write(self, pipe, ref, data):
        self._write(pipe, ref, data, "ND")

    def buffer(self, name):
        return self.p.buffers[name]

    def gm(self, tensor):
        return self.tensors[tensor]

    def value(self, v):
        if isinstance(v, str):
            try:
                return self.env[v]
            except KeyError:
                raise ValueError(f"no scalar '{v}' in the task environment") from None
        return v


def _trips(prog: Program, dims: dict) -> int:
    kind, v = prog.k_extent
    k = v if kind == "const" else dims[v]
    return -(-k // prog.tile["BK"]) if k > 0 else 0


def simulate(prog: Program, tensors: dict, dims: dict, grid: tuple, target="ascend910b2") -> Stats:
    tgt = T.get(target) if isinstance(target, str) else target
    check_legality(prog, tgt)
    trips = _trips(prog, dims)
    if trips == 0:
        raise ValueError(f"{prog.kernel}: K = 0 (empty K loop) is not lowered yet: the "
                                  "program has no Mmad to initialise L0C before FixPipe")
    flat = prog.expand(trips)
    ntasks = grid[0] * grid[1]
    st = Stats(tgt.name, ntasks, min(ntasks, tgt.aic_cores))
    core_cycles = [0] * tgt.aic_cores
    task = 0
    for p0 in range(grid[0]):
        for p1 in range(grid[1]):
            env = {"m0": p0 * prog.tile["BM"], "n0": p1 * prog.tile["BN"], "k": 0}
            m = Machine(prog, tgt, tensors, env, st)
            for ins, ienv in flat:
                m.exec(ins, ienv)
            leftover = {k: len(v) for k, v in m.flags.items() if v}
            if leftover:
                raise SyncError(f"flags set but never waited at the end of the task: {leftover}")
            core_cycles[task % tgt.aic_cores] += max(m.clock.values()) + STARTUP_CYCLES
            task += 1
    st.cycles = max(core_cycles) if ntasks else 0
    st.seconds = st.cycles / tgt.clock_hz
    st.hbm_cycles = _hbm_cycles(sum(np.asarray(a).nbytes for a in tensors.values()), tgt)
    return st


def _hbm_cycles(nbytes: int, tgt) -> int:
    return int(math.ceil(nbytes / tgt.hbm_bytes_per_s * tgt.clock_hz))


def run(kernel, args: dict, target="ascend910b2") -> Stats:
    """Run a specialised kernel on numpy arrays, in place, through its Ascend lowering
    (dispatch.lower) and the simulator; returns the modelled Stats."""
    launch = bind(kernel, args)
    for name, a in launch.tensors.items():
        if not isinstance(a, np.ndarray):
            raise TypeError(f"ascend simulator takes numpy arrays; '{name}' is {type(a).__name__}")
    from .dispatch import attention_module, lower
    from .vector import AivProgram
    prog = lower(kernel, target)
    if isinstance(prog, Program):
        return simulate(prog, launch.tensors, launch.dims, launch.grid, target)
    if isinstance(prog, AivProgram):
        return simulate_aiv(prog, launch.tensors, launch.dims, launch.scalars, launch.grid, target)
    # an attention program: its package runs it (cross-core flags, GM workspace)
    return attention_module().run(kernel, args, target)


# --- AIV (vector) programs --------------------------------------------------------------------
def simulate_aiv(prog, tensors: dict, dims: dict, scalars: dict, grid: tuple,
                 target="ascend910b2") -> Stats:
    """Run a vector.AivProgram over ``grid``: tasks (grid points, row-major) are dealt
    round-robin to the target's AIV cores; each core runs its tasks back to back with
    ping-pong slots, so MTE2 of task j+1 overlaps Vector of task j in the timing."""
    from itertools import product

    from .vector import check_ub, reduce_scratch
    tgt = T.get(target) if isinstance(target, str) else target
    check_ub(prog.buffers.values(), tgt, prog.kernel, reduce_scratch(prog.body, prog.buffers))
    tasks = list(product(*(range(g) for g in grid)))
    st = Stats(tgt.name, len(tasks), min(len(tasks), tgt.aiv_cores))
    base = {**dims, **scalars}
    worst = 0
    for core in range(min(len(tasks), tgt.aiv_cores)):
        mine = tasks[core::tgt.aiv_cores]
        m = Machine(prog, tgt, tensors, dict(base), st)
        for ins in prog.prologue:
            m.exec(ins, {})
        for j, pid in enumerate(mine):
            env = {f"pid{a}": p for a, p in enumerate(pid)}
            for ins in prog.iteration(j):
                m.exec(ins, env)
        for ins in prog.epilogue:
            m.exec(ins, {})
        leftover = {k: len(v) for k, v in m.flags.items() if v}
        if leftover:
            raise SyncError(f"flags set but never waited at the end of core {core}: {leftover}")
        worst = max(worst, max(m.clock.values()) + STARTUP_CYCLES)
    st.cycles = worst
    st.seconds = st.cycles / tgt.clock_hz
    st.hbm_cycles = _hbm_cycles(st.bytes["MTE2"] + st.bytes["MTE3"], tgt)
    return st


class _Bare:
    """Just enough of a program for ``run_instrs``."""

    def __init__(self, buffers):
        self.buffers = {b.name: b for b in buffers}


def run_instrs(buffers, instrs, tensors: dict, env: dict | None = None,
               target="ascend910b2") -> tuple["Machine", Stats]:
    """Execute a flat instruction list on one core (sync-checked); for tests and tools."""
    tgt = T.get(target) if isinstance(target, str) else target
    st = Stats(tgt.name, 1, 1)
    m = Machine(_Bare(buffers), tgt, tensors, dict(env or {}), st)
    for ins in instrs:
        m.exec(ins, {})
    st.cycles = max(m.clock.values())
    return m, st


# --- timing only (tile-size search) -----------------------------------------------------------
class _GmShape:
    """Stands in for a GM tensor when only the cycle model is wanted."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), np.dtype(D.to_numpy(dtype))


class TimingMachine(Machine):
    """The Machine's cycle model without data or sync checks: same per-instruction costs,
    same in-order pipes and flag waits, so a task's cycles equal ``simulate``'s."""

    def exec(self, ins, ienv):
        self.env.update(ienv)
        t = self.t
        if isinstance(ins, SetFlag):
            self.flags.setdefault((ins.src, ins.dst, ins.event), []).append((self.clock[ins.src], []))
        elif isinstance(ins, WaitFlag):
            q = self.flags.get((ins.src, ins.dst, ins.event))
            if not q:
                raise SyncError(f"WaitFlag({ins.src}->{ins.dst}, ev{ins.event}) has no SetFlag")
            self.clock[ins.dst] = max(self.clock[ins.dst], q.pop(0)[0])
        elif isinstance(ins, CopyGmToL1):
            g = self.tensors[ins.src.tensor]
            nr = self._range(ins.src.rows, g.shape[0])[1]
            nc = self._range(ins.src.cols, g.shape[1])[1]
            nb = nr * nc * g.dtype.itemsize
            self._cost("MTE2", nb / t.mte2_bytes_per_cycle, nb)
        elif isinstance(ins, LoadL0):
            nb = self.p.buffers[ins.dst.buf].bytes
            self._cost("MTE1", nb / t.mte1_bytes_per_cycle, nb)
        elif isinstance(ins, Mmad):
            (m, k), (_, n) = self.p.buffers[ins.a.buf].shape, self.p.buffers[ins.b.buf].shape
            self.stats.macs += m * n * k
            self._cost("CUBE", m * n * k / t.cube_macs_per_cycle[self.p.tile["dtype"]])
        elif isinstance(ins, FixPipe):
            g = self.tensors[ins.dst.tensor]
            nr = self._range(ins.dst.rows, g.shape[0])[1]
            nc = self._range(ins.dst.cols, g.shape[1])[1]
            nb = nr * nc * D.itemsize(ins.dtype)
            self._cost("FIXPIPE", nb / t.fixpipe_bytes_per_cycle, nb)
        else:
            raise TypeError(f"timing model has no cost for {ins!r}")


def model_gemm(prog: Program, M: int, N: int, K: int, target="ascend910b2") -> Stats:
    """``simulate``'s Stats for a GEMM program over (M, N, K) without computing any data: one
    timed task per kind (full tile / M tail / N tail / both), dealt to cores as simulate does."""
    tgt = T.get(target) if isinstance(target, str) else target
    check_legality(prog, tgt)
    BM, BN = prog.tile["BM"], prog.tile["BN"]
    dt = prog.tile["dtype"]
    roles = prog.tensors
    shapes = {roles["A"]: _GmShape((M, K), dt),
              roles["B"]: _GmShape((N, K) if prog.transpose_b else (K, N), dt),
              roles["C"]: _GmShape((M, N), prog.tile["out_dtype"])}
    trips = _trips(prog, {"K": K, "M": M, "N": N})
    flat = prog.expand(trips)
    gm, gn = -(-M // BM), -(-N // BN)
    st = Stats(tgt.name, gm * gn, min(gm * gn, tgt.aic_cores))
    p0 = np.repeat(np.arange(gm), gn)                 # task = p0 * gn + p1, as simulate
    p1 = np.tile(np.arange(gn), gm)
    last_m, last_n = p0 == gm - 1, p1 == gn - 1
    cyc = np.zeros(gm * gn)
    for lm in (False, True):
        for ln in (False, True):
            sel = (last_m == lm) & (last_n == ln)
            k = int(sel.sum())
            if not k:
                continue
            one = Stats(tgt.name, 1, 1)             # a representative task of this kind
            env = {"m0": (gm - 1 if lm else 0) * BM, "n0": (gn - 1 if ln else 0) * BN, "k": 0}
            m = TimingMachine(prog, tgt, shapes, env, one)
            for ins, ienv in flat:
                m.exec(ins, ienv)
            cyc[sel] = max(m.clock.values()) + STARTUP_CYCLES
            for p in PIPES:
                st.busy_cycles[p] += one.busy_cycles[p] * k
                st.bytes[p] += one.bytes[p] * k
            st.macs += one.macs * k
    per_core = np.bincount(np.arange(gm * gn) % tgt.aic_cores, weights=cyc,
                           minlength=tgt.aic_cores)
    st.cycles = int(per_core.max())
    st.seconds = st.cycles / tgt.clock_hz
    st.hbm_cycles = _hbm_cycles(sum(math.prod(g.shape) * g.dtype.itemsize for g in shapes.values()), tgt)
    return st
