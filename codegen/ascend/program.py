"""An explicit Ascend (910B AI core) program: buffers in GM/L1/L0A/L0B/L0C/UB and instructions
on the MTE2, MTE1, CUBE and FIXPIPE pipes (AIC; the AIV's UB/Vector ISA is in vector.py),
ordered by SetFlag/WaitFlag events.

A program describes one AI core's tile task. It is structured as ``prologue``, a K-loop
``body`` run ``trips`` times (a runtime count) and an ``epilogue``. Body instructions name
buffer slot ``"p"`` for the ping-pong slot of the iteration (``i % count``) and ``"k"`` for the
iteration's K offset; ``expand`` unrolls it into a flat instruction list for the simulator.

GM tile coordinates are symbolic: ("m0" | "n0" | "k", size) per dimension.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from tilec.ir import dtypes as D

SPACES = ("GM", "L1", "L0A", "L0B", "L0C", "UB")
PIPES = ("MTE2", "MTE1", "CUBE", "FIXPIPE", "VECTOR", "MTE3", "S")   # VECTOR/MTE3/S: vector.py


@dataclass(frozen=True)
class Buffer:
    name: str
    space: str                      # one of SPACES (not GM: GM tensors are kernel arguments)
    shape: tuple[int, int]          # logical (rows, cols) of one slot
    dtype: str
    count: int = 1                  # ping-pong slots
    layout: str = "NZ"              # NZ (L1, L0C), zZ (L0A), nZ (L0B)

    @property
    def bytes(self) -> int:         # one slot
        return self.shape[0] * self.shape[1] * D.itemsize(self.dtype)

    @property
    def total_bytes(self) -> int:
        return self.bytes * self.count


@dataclass(frozen=True)
class Ref:
    """A buffer slot: slot is an int or "p" (the body iteration's ping-pong slot)."""
    buf: str
    slot: int | str = 0

    def __str__(self) -> str:
        return f"{self.buf}[{self.slot}]"


@dataclass(frozen=True)
class GmTile:
    tensor: str
    rows: tuple[str, int]           # (offset symbol, extent)
    cols: tuple[str, int]

    def __str__(self) -> str:
        (r, nr), (c, nc) = self.rows, self.cols
        return f"{self.tensor}[{r}:{r}+{nr}, {c}:{c}+{nc}]"


@dataclass(frozen=True)
class Instr:
    pipe: str


@dataclass(frozen=True)
class CopyGmToL1(Instr):
    """MTE2: GM (ND) -> L1 (NZ). Reads only rows/cols inside the tensor; the rest of the
    on-chip tile is zero (virtual padding)."""
    src: GmTile = None
    dst: Ref = None
    pipe: str = "MTE2"

    def __str__(self):
        return f"MTE2    copy_gm_to_l1 {self.src} -> {self.dst} (ND->NZ, valid rows only)"


@dataclass(frozen=True)
class LoadL0(Instr):
    """MTE1: L1 (NZ) -> L0A (zZ) or L0B (nZ); ``transpose`` moves the transposed tile."""
    src: Ref = None
    dst: Ref = None
    transpose: bool = False
    pipe: str = "MTE1"

    def __str__(self):
        return f"MTE1    load_l0 {self.src} -> {self.dst}{' (transpose)' if self.transpose else ''}"


@dataclass(frozen=True)
class Mmad(Instr):
    """CUBE: dst(f32, L0C) = a @ b (+ dst when accumulating)."""
    a: Ref = None
    b: Ref = None
    dst: Ref = None
    init: str = "first"             # "first": overwrite on iteration 0, accumulate after
    pipe: str = "CUBE"

    def __str__(self):
        return f"CUBE    mmad {self.dst} (+)= {self.a} @ {self.b} (init={self.init})"


@dataclass(frozen=True)
class FixPipe(Instr):
    """FIXPIPE: L0C (f32, NZ) -> GM (ND) with a cast to ``dtype``; writes only valid rows."""
    src: Ref = None
    dst: GmTile = None
    dtype: str = "f16"
    pipe: str = "FIXPIPE"

    def __str__(self):
        return f"FIXPIPE fixpipe {self.src} -> {self.dst} (cast {self.dtype}, valid rows only)"


@dataclass(frozen=True)
class SetFlag(Instr):
    """Issued on ``src`` pipe: everything ``src`` did before is visible to ``dst`` after the
    matching WaitFlag. ``event`` may be "p" (the iteration's slot)."""
    src: str = None
    dst: str = None
    event: int | str = 0
    pipe: str = ""

    def __post_init__(self):
        object.__setattr__(self, "pipe", self.src)

    def __str__(self):
        return f"{self.src:<7} set_flag {self.src}->{self.dst} ev{self.event}"


@dataclass(frozen=True)
class WaitFlag(Instr):
    src: str = None
    dst: str = None
    event: int | str = 0
    pipe: str = ""

    def __post_init__(self):
        object.__setattr__(self, "pipe", self.dst)

    def __str__(self):
        return f"{self.dst:<7} wait_flag {self.src}->{self.dst} ev{self.event}"


@dataclass
class Program:
    kernel: str
    buffers: dict[str, Buffer]
    prologue: list[Instr]
    body: list[Instr]
    epilogue: list[Instr]
    tile: dict                          # BM, BN, BK, dtype, out dtype
    k_extent: tuple                     # ("dim", name) or ("const", value): the K loop bound
    tensors: dict = field(default_factory=dict)   # role (A, B, C) -> kernel tensor name
    transpose_b: bool = False
    grid_axes: tuple = ("M", "N")

    def expand(self, trips: int) -> list[tuple[Instr, dict]]:
        """Unroll the K loop: a flat list of (instruction, env) with slots/events resolved."""
        out = [(i, {"i": 0}) for i in self.prologue]
        for it in range(trips):
            env = {"i": it, "k": it * self.tile["BK"]}
            for ins in self.body:
                out.append((_resolve(ins, it, self.buffers), env))
        out += [(i, {"i": max(trips - 1, 0)}) for i in self.epilogue]
        return out

    def dump(self) -> str:
        lines = [f"ascend program {self.kernel}  tile={self.tile}"]
        for b in self.buffers.values():
            lines.append(f"  buffer {b.name:<5} {b.space:<4} {b.dtype}[{b.shape[0]},{b.shape[1]}]"
                         f" x{b.count} = {b.total_bytes} B ({b.layout})")
        for title, part in (("prologue", self.prologue), ("body (per K step)", self.body),
                            ("epilogue", self.epilogue)):
            lines.append(f" {title}:")
            lines += [f"    {i}" for i in part]
        return "\n".join(lines)


def _resolve(ins: Instr, it: int, buffers: dict) -> Instr:
    changes = {}
    for f in ("src", "dst", "a", "b"):
        r = getattr(ins, f, None)
        if isinstance(r, Ref) and r.slot == "p":
            changes[f] = Ref(r.buf, it % buffers[r.buf].count)
    if isinstance(ins, (SetFlag, WaitFlag)) and ins.event == "p":
        changes["event"] = it % 2
    return replace(ins, **changes) if changes else ins
