"""Run an attention program (lower.py) over a task table on CPU, one AI-core group at a time.

Each group is three ``sim.Machine`` instances (numpy semantics per instruction, intra-core
SetFlag/WaitFlag checks on every on-chip slot with the hardware's flag rule, per-pipe clocks):
the AIC and its two AIVs. They share a GM workspace (two slots per buffer) whose accesses are
checked against the cross-core flags: a core may read a workspace region another core wrote
only after a CrossCoreWaitFlag whose CrossCoreSetFlag the writer issued, on the writing pipe,
after the write; and may overwrite a region another core used only after such a hand-back.
Violations raise SyncError, as does a wait no set can ever satisfy (a deadlock) and a flag
counter set more than 15 times ahead (the 910B counter holds 16).

The three instruction streams are interleaved cooperatively: a core runs until a
CrossCoreWaitFlag finds its counter at 0, then the next core runs. Timing: per-pipe in-order
clocks per core; a cross-core wait moves every pipe clock of the waiting sub-core to at least
the set's time plus ``XCORE_LATENCY`` (on A2 the wait holds back all pipes, not only its own). A group's time is its latest pipe clock; the launch's time is the slowest
group's plus ``LAUNCH_CYCLES``. Tasks run back to back on a group, so loads of one task
overlap compute of the previous one where the flags allow.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, fields, replace

import numpy as np

from tilec import targets as T
from tilec.ir import dtypes as D

from ..program import Ref
from ..sim import Machine, Stats, SyncError
from ..vector import Bcast
from .isa import XCORE_LATENCY, CrossCoreSetFlag, CrossCoreWaitFlag, task_env
from .lower import FLAG_NAMES

LAUNCH_CYCLES = 2000        # estimate: kernel start (block dispatch, scalar init) per launch
MAX_PENDING = 15            # a flag counter holds 16 sets (CANN: at most 16)
CORES = ("AIC", "AIV0", "AIV1")


@dataclass
class AttentionStats:
    target: str
    pipeline: str
    tasks: int
    groups_used: int
    cycles: int = 0                     # launch: slowest group + LAUNCH_CYCLES
    seconds: float = 0.0
    group_cycles: list = field(default_factory=list)
    busy: dict = field(default_factory=dict)     # "AIC.CUBE" ... -> summed busy cycles
    bytes: dict = field(default_factory=dict)
    macs: int = 0

    def utilisation(self, key: str) -> float:
        """Busy fraction of a pipe over all groups' time (e.g. "AIC.CUBE")."""
        total = sum(self.group_cycles)
        return self.busy.get(key, 0) / total if total else 0.0


class _CoreProg:
    def __init__(self, prog, buffers):
        self.buffers = buffers
        self.tile = prog.tile
        self.roles = prog.roles
        self.kernel = prog.kernel


class Workspace:
    """The group's GM workspace with cross-core access tracking per (buffer, slot, AIV part)."""

    def __init__(self, prog):
        self.rows = {n: r for n, (r, c, dt) in prog.workspace.items()}
        self.data = {n: [np.zeros((r, c), D.to_numpy(dt)) for _ in range(2)]
                     for n, (r, c, dt) in prog.workspace.items()}
        self.state: dict = {}
        self.log = {(c, p): [] for c in CORES for p in ("MTE2", "MTE3", "FIXPIPE", "VECTOR")}
        self.mark: dict = {}

    def _keys(self, name, slot, part):
        return [(name, slot, p) for p in ((0, 1) if part is None else (part,))]

    @staticmethod
    def _desc(key):
        n, s, p = key
        return f"workspace {n}[{s}] (rows of AIV{p})"

    def read(self, core, name, slot, part, pipe="MTE2"):
        for key in self._keys(name, slot, part):
            st = self.state.get(key)
            if st is None or st["writer"] is None:
                raise SyncError(f"{core} reads {self._desc(key)} before anything was written to it")
            if st["writer"] != core and core not in st["readable"]:
                raise SyncError(f"{core} reads {self._desc(key)} written by {st['writer']} without "
                                f"a CrossCoreWaitFlag on the flag that publishes the write")
            st["readers"].add(core)
            st["writable"] &= {core}
            self.log[(core, pipe)].append((key, "r"))
        x = self.data[name][slot]
        if part is None:
            return x
        h = self.rows[name] // 2
        return x[part * h:(part + 1) * h]

    def write(self, core, name, slot, part, x, col0, pipe=None):
        pipe = pipe or ("FIXPIPE" if core == "AIC" else "MTE3")
        for key in self._keys(name, slot, part):
            st = self.state.setdefault(key, {"writer": None, "readable": set(),
                                             "writable": set(), "readers": set()})
            others = (st["readers"] | {st["writer"]}) - {core, None}
            if others and core not in st["writable"]:
                raise SyncError(f"{core} overwrites {self._desc(key)} still used by "
                                f"{', '.join(sorted(others))} without a CrossCoreWaitFlag "
                                f"handing it back")
            st.update(writer=core, readable=set(), writable={core}, readers=set())
            self.log[(core, pipe)].append((key, "w"))
        buf = self.data[name][slot]
        r0 = 0 if part is None else part * (self.rows[name] // 2)
        buf[r0:r0 + x.shape[0], col0:col0 + x.shape[1]] = x.astype(buf.dtype, copy=False)

    def publish(self, core, pipe, flag):
        lg = self.log.get((core, pipe), [])
        k = (core, pipe, flag)
        start = self.mark.get(k, 0)
        self.mark[k] = len(lg)
        return [(key, kind, core) for key, kind in lg[start:]]

    def grant(self, core, grants):
        for key, kind, setter in grants:
            st = self.state[key]
            if kind == "w" and st["writer"] == setter:
                st["readable"].add(core)
            st["writable"].add(core)


# --- instruction streams ----------------------------------------------------------------------
class _Counters(dict):
    def __missing__(self, k):
        return 0


def _resolve(ins, cnt, buffers):
    """Slots "@name" -> counter % slots, events "@name:base" -> base + counter % 2."""
    changes = {}
    for f in fields(ins):
        v = getattr(ins, f.name)
        if isinstance(v, Ref) and isinstance(v.slot, str) and v.slot.startswith("@"):
            changes[f.name] = Ref(v.buf, cnt[v.slot[1:]] % buffers[v.buf].count)
        elif isinstance(v, Bcast) and isinstance(v.ref.slot, str) and v.ref.slot.startswith("@"):
            r = v.ref
            changes[f.name] = Bcast(Ref(r.buf, cnt[r.slot[1:]] % buffers[r.buf].count), v.axis)
        elif isinstance(v, str) and v.startswith("@"):
            if ":" in v:
                name, base = v[1:].split(":")
                changes[f.name] = int(base) + cnt[name] % 2
            else:
                changes[f.name] = cnt[v[1:]] % 2
    return replace(ins, **changes) if changes else ins


class _Phases:
    """Phase instruction lists, resolved against the counters (memoised by parity)."""

    def __init__(self, phases, buffers):
        self.phases, self.buffers, self.memo = phases, buffers, {}

    def __call__(self, name, cnt, env=None):
        key = (name, tuple(sorted((k, v % 2) for k, v in cnt.items())))
        out = self.memo.get(key)
        if out is None:
            out = self.memo[key] = [_resolve(i, cnt, self.buffers) for i in self.phases[name]]
        return [(i, env or {}) for i in out]


def _blocks(e, c, W, BN):
    n = min(W, e["hi"] - c * W)
    return -(-n // BN)


def _classes(prog, side, part=0):
    """(rows, W, phases) per tile class, and a picker: the smallest class holding a task."""
    out = []
    for c in prog.tile_classes():
        phases = c.aic if side == "aic" else c.aiv[part]
        bufs = prog.aic_buffers if side == "aic" else prog.aiv_buffers
        out.append((c.rows, c.W, _Phases(phases, bufs)))
    G = prog.tile["G"]

    def pick(row):
        need = int(row[2]) * G
        return next((c for c in out if c[0] >= need), out[-1])
    return out, pick


def aic_stream(prog, tasks, mine):
    BN = prog.tile["BN"]
    classes, pick = _classes(prog, "aic")
    cnt = _Counters()
    qk = prog.pipeline != "2-stage"
    yield from classes[-1][2]("prologue", cnt)
    for ti in mine:
        _, W, ph = pick(tasks[ti])
        e = task_env(tasks[ti], W)
        yield from ph("task", cnt, {"t": ti})
        if qk:
            yield from ph("q_load", cnt)

        def qk_chunk(c):
            yield from ph("qk_begin", cnt)
            for b in range(_blocks(e, c, W, BN)):
                yield from ph("qk_block", cnt, {"n0": c * W + b * BN, "b0": b * BN, "b": b})
                cnt["qk"] += 1
            yield from ph("qk_end", cnt)
            cnt["ch"] += 1

        def sv_chunk(c):
            yield from ph("sv_begin", cnt)
            for b in range(_blocks(e, c, W, BN)):
                env = {"n0": c * W + b * BN, "b0": b * BN, "b": b}
                yield from ph("sv_block", cnt, env)
                if b == 0:
                    yield from ph("sv_first", cnt, env)
                yield from ph("sv_mmad", cnt, env)
                cnt["sv"] += 1
            yield from ph("sv_end", cnt)
            cnt["sv_ch"] += 1

        n = e["nchunks"]
        if qk:     # skewed: QK of window c+1 runs on the Cube while the AIVs do softmax c
            for c in range(n):
                yield from qk_chunk(c)
                if c == n - 1:
                    yield from ph("q_release", cnt)
                if c >= 1:
                    yield from sv_chunk(c - 1)
            yield from sv_chunk(n - 1)
        else:
            for c in range(n):
                yield from sv_chunk(c)
    yield from classes[-1][2]("epilogue", cnt)


def aiv_stream(prog, part, tasks, mine):
    G = prog.tile["G"]
    classes, pick = _classes(prog, "aiv", part)
    cnt = _Counters()
    two = prog.pipeline == "2-stage"
    yield from classes[-1][2]("prologue", cnt)
    for ti in mine:
        bm, W, ph = pick(tasks[ti])
        e = task_env(tasks[ti], W)
        H = bm // 2
        rows = max(0, min(e["q_rows"] * G - part * H, H))
        yield from ph("task", cnt, {"t": ti, "rows_valid": rows})
        if two:
            yield from ph("q_load", cnt)

        def sm(c):
            env = {"c0": c * W}
            yield from ph("sm_skip" if two and not rows else "sm_load", cnt, env)
            yield from ph("mask", cnt, env)
            yield from ph("softmax", cnt, env)
            cnt["ch"] += 1

        def cb(c):
            yield from ph("combine", cnt)
            cnt["cb_ch"] += 1

        n = e["nchunks"]
        for c in range(n):
            yield from sm(c)
            if two and c == n - 1:
                yield from ph("q_release", cnt)
            if c >= 1:
                yield from cb(c - 1)
        yield from cb(n - 1)
        yield from ph("final", cnt)
    yield from classes[-1][2]("epilogue", cnt)


# --- the group --------------------------------------------------------------------------------
class _Core:
    def __init__(self, name, machine, stream):
        self.name, self.m, self.stream = name, machine, stream
        self.pending = None
        self.done = False


def run_group(prog, tgt, tensors, scalars, tasks, mine, streams=None):
    """Run one AI-core group over task indices ``mine``; returns (cycles, machines).
    ``streams`` (core name -> iterable of (instr, env)) replaces the lowered streams (tests)."""
    ws = Workspace(prog)
    env0 = {"scale": np.float32(scalars.get(prog.scale, scalars.get("scale", 1.0)))}
    cores = []
    for name in CORES:
        bufs = prog.aic_buffers if name == "AIC" else prog.aiv_buffers
        st = Stats(tgt.name, len(mine), 1)
        m = Machine(_CoreProg(prog, bufs), tgt, tensors, dict(env0), st)
        m.group, m.core = _Group(ws), name
        if streams is not None:
            s = iter(streams[name])
        elif name == "AIC":
            s = aic_stream(prog, tasks, mine)
        else:
            s = aiv_stream(prog, int(name[-1]), tasks, mine)
        cores.append(_Core(name, m, s))
    counters = {c: {} for c in CORES}          # receiving core -> flag -> deque[(time, grants)]
    aiv_sets = {0: {}, 1: {}}                  # AIV part -> flag -> deque of its sets for the AIC

    def setflag(core, ins):
        time = core.m.clock[ins.pipe]
        grants = ws.publish(core.name, ins.pipe, ins.flag)
        if core.name == "AIC":
            targets = ("AIV0", "AIV1")
            for c in targets:
                _push(counters[c], ins.flag, (time, grants), c)
        else:
            q = aiv_sets[int(core.name[-1])].setdefault(ins.flag, deque())
            q.append((time, grants))
            a = aiv_sets[0].get(ins.flag)
            b = aiv_sets[1].get(ins.flag)
            if a and b:
                (t0, g0), (t1, g1) = a.popleft(), b.popleft()
                _push(counters["AIC"], ins.flag, (max(t0, t1), g0 + g1), "AIC")

    while True:
        progress = False
        for core in cores:
            while not core.done:
                item = core.pending
                if item is None:
                    item = next(core.stream, None)
                    if item is None:
                        core.done = True
                        break
                ins, ienv = item
                if isinstance(ins, CrossCoreWaitFlag):
                    q = counters[core.name].get(ins.flag)
                    if not q:
                        core.pending = item
                        break
                    time, grants = q.popleft()
                    ws.grant(core.name, grants)
                    # on A2 a cross-core wait holds back every pipe of the sub-core, not only
                    # the one it is issued on: nothing after it starts before the release
                    release = max(core.m.clock[ins.pipe], time + XCORE_LATENCY)
                    for p in core.m.clock:
                        core.m.clock[p] = max(core.m.clock[p], release)
                elif isinstance(ins, CrossCoreSetFlag):
                    setflag(core, ins)
                else:
                    core.m.exec(ins, ienv)
                core.pending = None
                progress = True
        if all(c.done for c in cores):
            break
        if not progress:
            stuck = ", ".join(f"{c.name} at CrossCoreWaitFlag({FLAG_NAMES.get(c.pending[0].flag, c.pending[0].flag)})"
                              for c in cores if not c.done)
            raise SyncError(f"cross-core deadlock: {stuck} never set")
    for c in cores:
        left = {k: len(v) for k, v in c.m.flags.items() if v}
        if left:
            raise SyncError(f"{c.name}: flags set but never waited at the end: {left}")
        left = {FLAG_NAMES.get(f, f): len(q) for f, q in counters[c.name].items() if q}
        if left:
            raise SyncError(f"{c.name}: cross-core flags set but never waited at the end: {left}")
    cycles = max(max(c.m.clock.values()) for c in cores)
    return cycles, {c.name: c.m for c in cores}


class _Group:
    def __init__(self, ws):
        self.ws = ws


def _push(table, flag, entry, core):
    q = table.setdefault(flag, deque())
    if len(q) >= MAX_PENDING + 1:
        raise SyncError(f"cross-core flag {FLAG_NAMES.get(flag, flag)} of {core} set more than "
                        f"{MAX_PENDING + 1} times without a wait (the hardware counter overflows)")
    q.append(entry)


def simulate_attention(prog, tensors: dict, scalars: dict, target="ascend910b2",
                       assignment=None) -> AttentionStats:
    """Run ``prog`` over the task table in ``tensors`` (writes O in place). Tasks go to AI-core
    groups by ``assignment`` (e.g. runtime.plan's symmetric round-robin), else round-robin."""
    tgt = T.get(target) if isinstance(target, str) else target
    tasks = np.asarray(tensors[prog.roles["TASKS"]])
    n = tasks.shape[0]
    ngroups = tgt.aic_cores
    if assignment is None:
        assignment = np.arange(n) % ngroups
    assignment = np.asarray(assignment)
    if assignment.shape != (n,) or (n and (assignment.min() < 0 or assignment.max() >= ngroups)):
        raise ValueError(f"assignment must give each of the {n} tasks a group in 0..{ngroups - 1}")
    if prog.pipeline == "3-stage":
        W = min(c.W for c in prog.tile_classes())
        for r in tasks:
            e = task_env(r, W)
            if e["hi"] > W:
                raise ValueError(f"3-stage pipeline holds {W} keys per tile but task "
                                 f"{r.tolist()} sees {e['hi']}: use the 4-stage pipeline")
    st = AttentionStats(tgt.name, prog.pipeline, n, 0)
    for g in range(ngroups):
        mine = np.flatnonzero(assignment == g).tolist()
        if not mine:
            continue
        st.groups_used += 1
        cyc, ms = run_group(prog, tgt, tensors, scalars, tasks, mine)
        st.group_cycles.append(cyc)
        for name, m in ms.items():
            kind = "AIC" if name == "AIC" else "AIV"
            for p, v in m.stats.busy_cycles.items():
                if v:
                    st.busy[f"{kind}.{p}"] = st.busy.get(f"{kind}.{p}", 0) + v
            for p, v in m.stats.bytes.items():
                if v:
                    st.bytes[f"{kind}.{p}"] = st.bytes.get(f"{kind}.{p}", 0) + v
            st.macs += m.stats.macs
    st.cycles = (max(st.group_cycles) if st.group_cycles else 0) + LAUNCH_CYCLES
    st.seconds = st.cycles / tgt.clock_hz
    return st
