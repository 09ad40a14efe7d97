"""The AIV (vector core) ISA: UB buffers, GM<->UB copies and Vector-unit ops, with numpy
semantics and a cycle cost per instruction.

API (stable; the attention lowering builds on it)
-------------------------------------------------
Buffers are ``program.Buffer(name, "UB", (rows, cols), dtype, count, layout="ND")``. A UB
tile is a row-major 2-D array; a 1-D value is a (1, n) row or an (n, 1) column. Slots are
addressed with ``program.Ref(buf, slot)``; slot ``"p"`` is the ping-pong slot of the current
iteration (resolved by ``resolve``). Legality (``check_ub``): a tile with more than one column
must have rows of a whole number of 32-byte blocks (DataCopy moves 32 B blocks); every slot is
allocated rounded up to 32 B; all slots of all UB buffers must fit the AIV's UB.

Operands of vector ops (``Operand``):
    Ref(buf, slot)        a whole tile, same shape as the destination
    Bcast(ref, "row")     a (1, C) tile repeated down the rows of a (R, C) destination
    Bcast(ref, "col")     an (R, 1) column repeated across the columns
    Scalar(v)             a number, or the name of a scalar in the task environment (kernel
                          scalars such as ``eps``, tensor dims such as ``N``, ``SOp`` results)

GM addressing: ``GmView(tensor, index)``; index has one ``(offset, extent)`` per tensor dim,
offset an int or an environment name, extent an int, or None for a single (dropped) index.
At most two dims keep an extent; the UB tile is their (rows, cols) ((1, n) if only one).

Instructions (frozen dataclasses: ``pipe``, ``__str__``, and ``execute(m) -> (cycles, bytes)``
on an execution context ``m``, see ``Context``, whose read/write check every slot access):
    SOp(dst, op, a, b)                    S: scalar arithmetic on ints/floats into env[dst]
                                          (add sub mul floordiv div min max f32); free of cost
    CopyGmToUb(src, dst, pad=0)           MTE2: GM (ND) -> UB; only the part of the view
                                          inside the tensor is read, the rest of the tile is
                                          ``pad`` (virtual padding)
    CopyGmToUbGather(table, index, cols, dst, count)
                                          MTE2: row r of dst = table[index[r], cols] for
                                          r < count (an env name or int) with the index inside
                                          the table; other rows are zero. ``index`` is an i32
                                          UB tile (1, R) or (R, 1) written by MTE2 (rope
                                          positions, paged-KV rows)
    CopyUbToGm(src, dst)                  MTE3: UB -> GM, only the part inside the tensor
    VBinary(op, dst, a, b)                V: add sub mul div max min
    VUnary(op, dst, src)                  V: exp ln sqrt rsqrt reciprocal abs neg relu
    VCast(dst, src)                       V: to dst's dtype (f32 <-> f16/bf16, round to nearest)
    VReduce(kind, dst, src)               V: sum | max over each row of src (R, C) -> dst (R, 1)
    VCompare(pred, dst, a, b)             V: lt le gt ge eq ne -> dst of dtype bool
    VSelect(dst, mask, a, b)              V: where(mask, a, b)
    VDup(dst, value)                      V: fill with a Scalar
Pipes: "S" (scalar), "MTE2", "VECTOR", "MTE3"; order them with program.SetFlag/WaitFlag.

Semantics follow tilec/ir/semantics.py: operands are widened to f32, computed, and rounded to
the destination dtype once per instruction.

Cycle model (estimates, see targets/ascend.py for the rates): a copy costs bytes moved (valid
part only) / the pipe's bytes per cycle plus ``COPY_ISSUE``; a vector op costs ``VEC_ISSUE``
plus one cycle per 256-byte repeat of its widest operand dtype, times ``VEC_FACTOR[op]`` for
the multi-pass ops (transcendentals, division).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Protocol, Union

import numpy as np

from tilec.ir import dtypes as D
from tilec.ir import semantics as S

from .errors import AscendLegalityError
from .program import Buffer, Instr, Ref

VECTOR_PIPES = ("S", "MTE2", "VECTOR", "MTE3")
UB_BLOCK = 32                      # DataCopy granularity, bytes
COPY_ISSUE = 20                    # estimate: cycles to issue one DataCopy / DataCopyPad
VEC_ISSUE = 8                      # estimate: cycles to issue one vector instruction
VEC_FACTOR = {"exp": 4, "ln": 4, "sqrt": 2, "rsqrt": 4, "reciprocal": 2, "div": 2}  # estimate

BINARY = ("add", "sub", "mul", "div", "max", "min")
UNARY = ("exp", "ln", "sqrt", "rsqrt", "reciprocal", "abs", "neg", "relu")
COMPARE = ("lt", "le", "gt", "ge", "eq", "ne")


class UbLegalityError(AscendLegalityError):
    """UB buffers that do not fit the AIV or break its alignment rule."""


# --- operands -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bcast:
    ref: Ref
    axis: str                       # "row": (1, C) down the rows; "col": (R, 1) across cols

    def __str__(self):
        return f"{self.ref}[{'None,:' if self.axis == 'row' else ':,None'}]"


@dataclass(frozen=True)
class Scalar:
    value: Union[float, int, str]

    def __str__(self):
        return f"${self.value}" if isinstance(self.value, str) else repr(self.value)


Operand = Union[Ref, Bcast, Scalar]


@dataclass(frozen=True)
class GmView:
    tensor: str
    index: tuple                    # ((offset, extent | None), ...) per tensor dim

    def __str__(self):
        parts = [f"{o}" if e is None else f"{o}:+{e}" for o, e in self.index]
        return f"{self.tensor}[{', '.join(parts)}]"

    @property
    def tile_shape(self) -> tuple[int, int]:
        ext = [e for _, e in self.index if e is not None]
        if len(ext) == 1:
            return (1, ext[0])
        if len(ext) == 2:
            return tuple(ext)
        raise ValueError(f"{self}: a UB tile keeps one or two dims, not {len(ext)}")


# --- execution context ----------------------------------------------------------------------
class Context(Protocol):
    """What an instruction needs from the machine running it (sim.Machine implements it)."""
    target: object

    def read(self, pipe: str, ref: Ref) -> np.ndarray: ...       # sync-checked
    def write(self, pipe: str, ref: Ref, data: np.ndarray) -> None: ...
    def buffer(self, name: str) -> Buffer: ...
    def gm(self, tensor: str) -> np.ndarray: ...
    def value(self, v) -> float | int: ...                        # Scalar / name / number


def _operand(m: Context, pipe: str, o, shape) -> np.ndarray:
    if isinstance(o, Scalar):
        v = m.value(o.value)
        return np.asarray(v) if isinstance(v, (int, np.integer)) else np.float32(v)
    if isinstance(o, Bcast):
        x = m.read(pipe, o.ref)
        want = (1, shape[1]) if o.axis == "row" else (shape[0], 1)
        if x.shape != want:
            raise ValueError(f"broadcast {o}: tile {x.shape}, expected {want}")
        return x
    x = m.read(pipe, o)
    if x.shape != tuple(shape):
        raise ValueError(f"operand {o}: tile {x.shape} does not match destination {shape}")
    return x


def _vec_cycles(op: str, shape, *dtypes) -> int:
    width = max(D.itemsize(d) for d in dtypes)
    repeats = math.ceil(shape[0] * shape[1] * width / 256)
    return VEC_ISSUE + repeats * VEC_FACTOR.get(op, 1)


def _view_bounds(m: Context, v: GmView, g: np.ndarray):
    """numpy index of the valid part of the view and the tile slice it fills."""
    gidx, tidx = [], []
    for (off, ext), n in zip(v.index, g.shape):
        lo = int(m.value(off))
        if ext is None:
            if not 0 <= lo < n:
                return None, None
            gidx.append(lo)
            continue
        hi = max(lo, min(lo + ext, n))
        a = max(lo, 0)
        gidx.append(slice(a, max(a, hi)))
        tidx.append(slice(a - lo, max(a, hi) - lo))
    if len(tidx) == 1:
        tidx = [slice(0, 1)] + tidx
    return tuple(gidx), tuple(tidx)


# --- instructions ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SOp(Instr):
    dst: str = None
    op: str = None
    a: object = None
    b: object = None
    pipe: str = "S"

    def __str__(self):
        return f"S       {self.dst} = {self.op}({self.a}{'' if self.b is None else f', {self.b}'})"

    def execute(self, m):
        x = m.value(self.a)
        y = None if self.b is None else m.value(self.b)
        r = {"add": lambda: x + y, "sub": lambda: x - y, "mul": lambda: x * y,
             "floordiv": lambda: int(x) // int(y), "div": lambda: np.float32(x) / np.float32(y),
             "min": lambda: min(x, y),
             "max": lambda: max(x, y), "f32": lambda: np.float32(x)}[self.op]()
        m.env[self.dst] = r
        return 0, 0


@dataclass(frozen=True)
class CopyGmToUb(Instr):
    src: GmView = None
    dst: Ref = None
    pad: float = 0.0
    pipe: str = "MTE2"

    def __str__(self):
        return f"MTE2    copy_gm_to_ub {self.src} -> {self.dst} (valid part only, pad {self.pad})"

    def execute(self, m):
        g = m.gm(self.src.tensor)
        buf = m.buffer(self.dst.buf)
        tile = np.full(buf.shape, self.pad, dtype=D.to_numpy(buf.dtype))
        if self.src.tile_shape != buf.shape:
            raise ValueError(f"{self}: view {self.src.tile_shape} does not fit {buf.name}{buf.shape}")
        gi, ti = _view_bounds(m, self.src, g)
        nb = 0
        if gi is not None:
            part = np.asarray(g[gi])
            part = part.reshape(tile[ti].shape)
            tile[ti] = part                      # selective read: valid part only
            nb = part.size * g.dtype.itemsize
        m.write("MTE2", self.dst, tile)
        return COPY_ISSUE + nb / m.target.mte2_bytes_per_cycle, nb


@dataclass(frozen=True)
class CopyGmToUbGather(Instr):
    table: str = None
    index: Ref = None
    cols: tuple = None              # (offset, extent) into the table's second dim
    dst: Ref = None
    count: Union[int, str] = None   # rows of dst that are real (the rest stay zero)
    pipe: str = "MTE2"

    def __str__(self):
        c0, nc = self.cols
        return (f"MTE2    gather_gm_to_ub {self.table}[{self.index}, {c0}:+{nc}] -> {self.dst} "
                f"(first {self.count} rows)")

    def execute(self, m):
        g = m.gm(self.table)
        idx = m.read("MTE2", self.index).reshape(-1)
        buf = m.buffer(self.dst.buf)
        tile = np.zeros(buf.shape, dtype=D.to_numpy(buf.dtype))
        c0 = int(m.value(self.cols[0]))
        nc = self.cols[1]
        a, b = max(c0, 0), max(max(c0, 0), min(c0 + nc, g.shape[1]))
        n = min(int(m.value(self.count)), buf.shape[0], idx.size)
        nb = 0
        for r in range(n):                       # one DataCopyPad per row on hardware
            i = int(idx[r])
            if 0 <= i < g.shape[0]:
                tile[r, a - c0:b - c0] = g[i, a:b]
                nb += (b - a) * g.dtype.itemsize
        m.write("MTE2", self.dst, tile)
        return COPY_ISSUE * max(n, 1) + nb / m.target.mte2_bytes_per_cycle, nb


@dataclass(frozen=True)
class CopyUbToGm(Instr):
    src: Ref = None
    dst: GmView = None
    pipe: str = "MTE3"

    def __str__(self):
        return f"MTE3    copy_ub_to_gm {self.src} -> {self.dst} (valid part only)"

    def execute(self, m):
        x = m.read("MTE3", self.src)
        g = m.gm(self.dst.tensor)
        if self.dst.tile_shape != x.shape:
            raise ValueError(f"{self}: tile {x.shape} does not match view {self.dst.tile_shape}")
        if D.from_numpy(x.dtype) != D.from_numpy(g.dtype):
            raise ValueError(f"{self}: UB {D.from_numpy(x.dtype)} tile stored to "
                             f"{D.from_numpy(g.dtype)} tensor (cast first)")
        gi, ti = _view_bounds(m, self.dst, g)
        nb = 0
        if gi is not None:
            part = x[ti]
            g[gi] = part.reshape(g[gi].shape)    # selective write: valid part only
            nb = part.size * g.dtype.itemsize
        return COPY_ISSUE + nb / m.target.mte3_bytes_per_cycle, nb


@dataclass(frozen=True)
class VBinary(Instr):
    op: str = None
    dst: Ref = None
    a: Operand = None
    b: Operand = None
    pipe: str = "VECTOR"

    def __post_init__(self):
        if self.op not in BINARY:
            raise ValueError(f"unknown vector binary op {self.op}")

    def __str__(self):
        return f"VECTOR  {self.op} {self.dst} = {self.a}, {self.b}"

    def execute(self, m):
        buf = m.buffer(self.dst.buf)
        x = _operand(m, "VECTOR", self.a, buf.shape)
        y = _operand(m, "VECTOR", self.b, buf.shape)
        op = {"max": "maximum", "min": "minimum"}.get(self.op, self.op)
        r = np.broadcast_to(S.binary(op, x, y, buf.dtype), buf.shape).copy()
        m.write("VECTOR", self.dst, r)
        return _vec_cycles(self.op, buf.shape, buf.dtype, "f32"), 0


@dataclass(frozen=True)
class VUnary(Instr):
    op: str = None
    dst: Ref = None
    src: Ref = None
    pipe: str = "VECTOR"

    def __post_init__(self):
        if self.op not in UNARY:
            raise ValueError(f"unknown vector unary op {self.op}")

    def __str__(self):
        return f"VECTOR  {self.op} {self.dst} = {self.src}"

    def execute(self, m):
        buf = m.buffer(self.dst.buf)
        x = _operand(m, "VECTOR", self.src, buf.shape)
        if self.op == "ln":
            r = S.unary("log", x, buf.dtype)
        elif self.op == "reciprocal":
            r = S.binary("div", np.float32(1), x, buf.dtype)
        elif self.op == "relu":
            r = S.binary("maximum", x, np.float32(0), buf.dtype)
        else:
            r = S.unary(self.op, x, buf.dtype)
        m.write("VECTOR", self.dst, r)
        return _vec_cycles(self.op, buf.shape, buf.dtype, "f32"), 0


@dataclass(frozen=True)
class VCast(Instr):
    dst: Ref = None
    src: Ref = None
    pipe: str = "VECTOR"

    def __str__(self):
        return f"VECTOR  cast {self.dst} = {self.src}"

    def execute(self, m):
        buf = m.buffer(self.dst.buf)
        x = _operand(m, "VECTOR", self.src, buf.shape)
        m.write("VECTOR", self.dst, S.as_type(x, buf.dtype))
        return _vec_cycles("cast", buf.shape, buf.dtype, D.from_numpy(x.dtype)), 0


@dataclass(frozen=True)
class VReduce(Instr):
    kind: str = None
    dst: Ref = None
    src: Ref = None
    pipe: str = "VECTOR"

    def __str__(self):
        return f"VECTOR  reduce_{self.kind} {self.dst} = rows of {self.src}"

    def execute(self, m):
        buf = m.buffer(self.dst.buf)
        x = m.read("VECTOR", self.src)
        if buf.shape != (x.shape[0], 1):
            raise ValueError(f"{self}: rows of {x.shape} go to an ({x.shape[0]}, 1) tile, "
                             f"not {buf.shape}")
        r = S.reduce(self.kind, x, 1, buf.dtype).reshape(buf.shape)
        m.write("VECTOR", self.dst, r)
        # a reduction pass per row on top of the element-wise repeats
        return _vec_cycles("reduce", x.shape, D.from_numpy(x.dtype), "f32") + x.shape[0], 0


@dataclass(frozen=True)
class VCompare(Instr):
    pred: str = None
    dst: Ref = None
    a: Operand = None
    b: Operand = None
    pipe: str = "VECTOR"

    def __str__(self):
        return f"VECTOR  compare_{self.pred} {self.dst} = {self.a}, {self.b}"

    def execute(self, m):
        buf = m.buffer(self.dst.buf)
        x = _operand(m, "VECTOR", self.a, buf.shape)
        y = _operand(m, "VECTOR", self.b, buf.shape)
        r = np.broadcast_to(S.cmp(self.pred, x, y), buf.shape).copy()
        m.write("VECTOR", self.dst, r)
        return _vec_cycles("cmp", buf.shape, "f32"), 0


@dataclass(frozen=True)
class VSelect(Instr):
    dst: Ref = None
    mask: Operand = None
    a: Operand = None
    b: Operand = None
    pipe: str = "VECTOR"

    def __str__(self):
        return f"VECTOR  select {self.dst} = {self.mask} ? {self.a} : {self.b}"

    def execute(self, m):
        buf = m.buffer(self.dst.buf)
        c = _operand(m, "VECTOR", self.mask, buf.shape)
        x = _operand(m, "VECTOR", self.a, buf.shape)
        y = _operand(m, "VECTOR", self.b, buf.shape)
        r = np.broadcast_to(np.where(c.astype(bool), x, y), buf.shape)
        m.write("VECTOR", self.dst, S.as_type(r, buf.dtype).copy())
        return _vec_cycles("select", buf.shape, buf.dtype, "f32"), 0


@dataclass(frozen=True)
class VDup(Instr):
    dst: Ref = None
    value: Scalar = None
    pipe: str = "VECTOR"

    def __str__(self):
        return f"VECTOR  dup {self.dst} = {self.value}"

    def execute(self, m):
        buf = m.buffer(self.dst.buf)
        v = m.value(self.value.value if isinstance(self.value, Scalar) else self.value)
        m.write("VECTOR", self.dst, S.as_type(np.full(buf.shape, v), buf.dtype))
        return _vec_cycles("dup", buf.shape, buf.dtype), 0


# --- slots and legality ---------------------------------------------------------------------
def resolve(ins: Instr, it: int, buffers: dict) -> Instr:
    """Replace slot "p" (and event "p") by the iteration's ping-pong slot ``it % count``."""
    def fix(v):
        if isinstance(v, Ref) and v.slot == "p":
            return Ref(v.buf, it % buffers[v.buf].count)
        if isinstance(v, Bcast) and v.ref.slot == "p":
            return Bcast(fix(v.ref), v.axis)
        return v
    changes = {}
    for f in fields(ins):
        v = getattr(ins, f.name)
        w = fix(v)
        if w is not v:
            changes[f.name] = w
    if getattr(ins, "event", None) == "p":
        changes["event"] = it % 2
    return replace(ins, **changes) if changes else ins


def ub_slot_bytes(b: Buffer) -> int:
    return -(-b.bytes // UB_BLOCK) * UB_BLOCK


REDUCE_RESULT_BYTES = UB_BLOCK     # the emitted reductions' one-value result tile


def reduce_work_bytes(cols: int, kind: str) -> int:
    """Minimum work buffer of Ascend C's ``ReduceSum`` / ``ReduceMax`` over ``cols`` f32
    elements (count form, no index), per the Ascend C API reference: the first round writes
    one value per 256-byte repeat (ReduceMax also an index), rounded up to a 32-byte block;
    later rounds reuse that space."""
    per_block, per_repeat = UB_BLOCK // 4, 256 // 4
    outs = -(-cols // per_repeat) * (2 if kind == "max" else 1)
    return -(-outs // per_block) * per_block * 4


def reduce_scratch(instrs, buffers: dict) -> dict:
    """The UB the emitted reductions need beside the program's buffers: one work buffer shared
    by every VReduce (sized for the widest) and the result tile; {} without reductions."""
    work = [reduce_work_bytes(buffers[i.src.buf].shape[1], i.kind)
            for i in instrs if isinstance(i, VReduce)]
    return {"work": max(work), "red": REDUCE_RESULT_BYTES} if work else {}


def check_ub(buffers, tgt, kernel: str = "", scratch: dict | None = None) -> int:
    """Alignment and capacity of the UB buffers plus ``scratch`` (name -> bytes of buffers the
    emitted code allocates beside them, e.g. reduce_scratch); returns the UB bytes used."""
    scratch = scratch or {}
    used = sum(scratch.values())
    where = f"{kernel}: " if kernel else ""
    for b in buffers:
        if b.space != "UB":
            continue
        row = b.shape[1] * D.itemsize(b.dtype)
        if b.shape[1] > 1 and row % tgt.ub_align:
            raise UbLegalityError(
                f"{where}UB buffer '{b.name}' {b.dtype}[{b.shape[0]},{b.shape[1]}]: a row is "
                f"{row} bytes, not a multiple of the {tgt.ub_align}-byte UB block")
        used += ub_slot_bytes(b) * b.count
    cap = tgt.capacity("ub")
    if used > cap:
        big = max((b for b in buffers if b.space == "UB"), key=lambda b: ub_slot_bytes(b) * b.count)
        raise UbLegalityError(
            f"{where}UB buffers need {used} bytes but only {cap} bytes are available per AIV on "
            f"{tgt.name}{f' ({tgt.ub_bytes} less {tgt.ub_reserved_bytes} reserved)' if tgt.ub_reserved_bytes else ''} (largest: '{big.name}' {big.dtype}[{big.shape[0]},{big.shape[1]}] "
            f"x{big.count} = {ub_slot_bytes(big) * big.count} bytes"
            + ("; plus " + ", ".join(f"'{n}' {v} bytes" for n, v in scratch.items())
               if scratch else "") + ")")
    return used


# --- an AIV program -------------------------------------------------------------------------
@dataclass
class AivProgram:
    """One vector kernel for the AIV cores. Grid points are tasks dealt round-robin to the
    AIVs; a core runs ``prologue``, then for its j-th task the ``scalars`` (env holds
    ``pid0``, ``pid1``, the tensor dims and the kernel scalars) and ``body`` with ping-pong
    slot/event ``j % 2``, then ``epilogue``."""
    kernel: str
    buffers: dict
    scalars: list
    prologue: list
    body: list
    epilogue: list
    tile: dict
    tensors: dict                   # kernel tensor name -> dtype
    params: tuple = ()              # kernel scalar parameter names
    grid: tuple = ()                # grid extents as C expressions over the tensor dims
    dims: dict = None               # tensor name -> its dims (ints or dim names)

    def iteration(self, j: int) -> list:
        return [resolve(i, j, self.buffers) for i in self.scalars + self.body]

    def dump(self) -> str:
        lines = [f"aiv program {self.kernel}  tile={self.tile}"]
        for b in self.buffers.values():
            lines.append(f"  buffer {b.name:<6} {b.space:<3} {b.dtype}[{b.shape[0]},{b.shape[1]}]"
                         f" x{b.count} = {ub_slot_bytes(b) * b.count} B")
        for title, part in (("prologue", self.prologue), ("per task (scalar)", self.scalars),
                            ("per task", self.body), ("epilogue", self.epilogue)):
            lines.append(f" {title}:")
            lines += [f"    {i}" for i in part]
        return "\n".join(lines)


# --- appended by the attention lowering (codegen/ascend/attention) ---------------------------
@dataclass(frozen=True)
class VArange(Instr):
    """V: dst[i, j] = start + (offset + i * cols + j) // div (CreateVecIndex, then an integer
    divide when div > 1); start/offset are Scalars or env names. Used for key indices (a row)
    and for per-row token positions with GQA (a column, div = G)."""
    dst: Ref = None
    start: object = 0
    offset: object = 0
    div: int = 1
    pipe: str = "VECTOR"

    def __str__(self):
        return f"VECTOR  arange {self.dst} = {self.start} + ({self.offset} + idx) // {self.div}"

    def execute(self, m):
        buf = m.buffer(self.dst.buf)
        n = buf.shape[0] * buf.shape[1]
        idx = (int(m.value(self.offset)) + np.arange(n, dtype=np.int64)) // self.div
        r = (int(m.value(self.start)) + idx).reshape(buf.shape)
        m.write("VECTOR", self.dst, r.astype(D.to_numpy(buf.dtype)))
        return _vec_cycles("arange", buf.shape, buf.dtype) * (2 if self.div > 1 else 1), 0


@dataclass(frozen=True)
class VQKRows(Instr):
    """V: dst (R, N) f32 = q (R, D) @ k (N, D)^T computed on the vector unit (decode's 2-stage
    pipeline: a few query rows do not fill a 16-row Cube fractal). Only the first ``rows``
    rows are computed (the rest are zero); cost: one Mul and one ReduceSum pass over
    rows x N x D f32 elements."""
    dst: Ref = None
    q: Ref = None
    k: Ref = None
    rows: object = None
    pipe: str = "VECTOR"

    def __str__(self):
        return f"VECTOR  qk_rows {self.dst} = {self.q} @ {self.k}^T (first {self.rows} rows)"

    def execute(self, m):
        buf = m.buffer(self.dst.buf)
        q = m.read("VECTOR", self.q).astype(np.float32)
        k = m.read("VECTOR", self.k).astype(np.float32)
        n = buf.shape[0] if self.rows is None else max(0, min(int(m.value(self.rows)), buf.shape[0]))
        r = np.zeros(buf.shape, np.float32)
        r[:n] = q[:n] @ k.T
        m.write("VECTOR", self.dst, S.as_type(r, buf.dtype))
        work = (max(n, 1), k.shape[0] * k.shape[1])
        return 2 * _vec_cycles("mul", work, "f32") + max(n, 1) * k.shape[0], 0
