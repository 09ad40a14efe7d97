"""Tile IR: typed SSA values, generic ops with attributes, and structured control flow.

Design (see README.md, "Tile IR"):
- A ``Type`` is a dtype plus a static shape; shape ``()`` is a scalar. Tensor parameters live in
  global memory and have a ``TensorType`` (dims static ints or symbolic names).
- Every op is an ``Op`` with a name, operands, results and attributes; ``for`` and ``if`` own
  regions (``Block``s) that end in ``yield``. Loop-carried values are explicit block arguments,
  as in MLIR's scf.for. Elementwise ops require equal operand shapes and dtypes: the frontend
  inserts ``splat``/``broadcast``/``cast`` explicitly, so backends never guess.
- A ``Kernel`` is a specialisation: all consts bound, all tile shapes static.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator


@dataclass(frozen=True)
class Loc:
    """A 1-based source position (the frontend's diagnostics draw a caret under it)."""
    line: int
    col: int
    end_col: int | None = None   # exclusive; used to draw ~~~ under a whole token when known

    def __str__(self) -> str:
        return f"{self.line}:{self.col}"


def render_diagnostic(filename: str, loc: Loc | None, message: str, line_text: str | None = None,
                      severity: str = "error", hint: str | None = None) -> str:
    """``FILE:LINE:COL: error: MESSAGE``, the source line and a caret under the position: the
    one format of every located error (frontend and backends alike). ``line_text`` None: the
    source is not at hand, so the position is printed without the line."""
    if loc is None:
        head = f"{filename}: {severity}: {message}"
        return head + (f"\n  hint: {hint}" if hint else "")
    text = (line_text or "").rstrip("\n")
    col = max(1, loc.col)
    width = loc.end_col - col if loc.end_col is not None and loc.end_col > col else 1
    # keep tabs in the caret line so the caret lands under the right character
    pad = "".join("\t" if ch == "\t" else " " for ch in text[: col - 1])
    out = [f"{filename}:{loc.line}:{col}: {severity}: {message}"]
    if line_text is not None:
        out += [f"    {text}", f"    {pad}^" + "~" * (width - 1)]
    if hint:
        out.append(f"  hint: {hint}")
    return "\n".join(out)


@dataclass(frozen=True)
class Type:
    dtype: str
    shape: tuple[int, ...] = ()

    @property
    def is_scalar(self) -> bool:
        return self.shape == ()

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def with_dtype(self, dtype: str) -> "Type":
        return Type(dtype, self.shape)

    def __str__(self) -> str:
        if not self.shape:
            return self.dtype
        return f"{self.dtype}[{','.join(map(str, self.shape))}]"


@dataclass(frozen=True)
class TensorType:
    dtype: str
    dims: tuple[int | str, ...]     # static size or a symbolic dim name bound at launch

    @property
    def rank(self) -> int:
        return len(self.dims)

    def __str__(self) -> str:
        return f"tensor<{self.dtype}[{','.join(map(str, self.dims))}]>"


class Value:
    """An SSA value. ``hint`` is the source variable name, kept for readable IR and codegen."""
    __slots__ = ("type", "hint", "owner")

    def __init__(self, type: Type | TensorType, hint: str | None = None, owner: Any = None):
        self.type = type
        self.hint = hint
        self.owner = owner     # the Op producing it, or the Block/Kernel for arguments

    def __repr__(self) -> str:
        return f"Value({self.hint or '?'}: {self.type})"


@dataclass(eq=False)
class Block:
    args: list[Value] = field(default_factory=list)
    ops: list["Op"] = field(default_factory=list)

    @property
    def terminator(self) -> "Op":
        return self.ops[-1]


@dataclass(eq=False)
class Op:
    name: str
    operands: list[Value]
    result_types: list[Type] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    regions: list[Block] = field(default_factory=list)
    loc: Any = None
    results: list[Value] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.results:
            self.results = [Value(t, owner=self) for t in self.result_types]

    @property
    def result(self) -> Value:
        assert len(self.results) == 1, self.name
        return self.results[0]

    def walk(self) -> Iterator["Op"]:
        yield self
        for r in self.regions:
            for op in r.ops:
                yield from op.walk()


@dataclass(eq=False)
class TensorParam:
    name: str
    value: Value               # of TensorType

    @property
    def type(self) -> TensorType:
        return self.value.type


@dataclass(eq=False)
class Kernel:
    """One specialisation of a source kernel."""
    name: str
    tensors: list[TensorParam]
    scalars: list[Value]                  # runtime scalar parameters, in source order
    dims: dict[str, Value]                # symbolic dim name -> i32 scalar bound at launch
    consts: dict[str, int | str]          # the binding this specialisation was made with
    grid: Block                           # computes the launch grid from dims and scalars
    body: Block
    param_order: list[str] = field(default_factory=list)   # tensors+scalars in source order
    dim_sources: dict[str, tuple[str, int]] = field(default_factory=dict)  # dim -> (tensor, axis)
    source_file: str | None = None

    def walk(self) -> Iterator[Op]:
        for op in self.body.ops:
            yield from op.walk()

    @property
    def grid_rank(self) -> int:
        return len(self.grid.terminator.operands)


# Ops and their operand/attribute conventions (the verifier checks these):
#   constant            ()                       {value}               -> scalar
#   program_id          ()                       {axis}                -> i32
#   num_programs        ()                       {axis}                -> i32
#   binary              (a, b)                   {op: add sub mul div floordiv mod maximum
#                                                     minimum and or xor}  -> same type
#   cmp                 (a, b)                   {pred: lt le gt ge eq ne} -> bool, same shape
#   unary               (a)                      {op: neg exp exp2 log sqrt rsqrt abs not
#                                                     sigmoid}     -> same type
#   select              (cond, a, b)                                   -> type of a
#   cast                (a)                      {dtype}               -> a's shape
#   splat               (scalar)                 {shape}               -> tile
#   broadcast           (tile)                   {shape}               -> tile (size-1 dims grow)
#   expand_dims         (tile|scalar)            {axis}                -> rank + 1
#   trans               (tile2d)                                       -> reversed shape
#   reshape             (tile)                   {shape}               -> same numel
#   reduce              (tile)                   {kind: sum max min, axis} -> rank - 1
#   dot                 (a[M,K], b[K,N])                               -> f32[M,N]
#   arange              ()                       {start, end}          -> i32[end-start]
#   full                ()                       {value, shape, dtype} -> tile
#   load                (tensor, idx..., [mask], [other])
#                        {index: list of ("scalar",) | ("slice", size) | ("tile",),
#                         masked: list[bool] per index, has_mask, has_other}
#   store               (tensor, idx..., value, [mask])  {index, masked, has_mask}
#   for                 (lo, hi, init...)        {step}  region(iv, carried...) -> carried
#   if                  (cond)                   regions(then, else)   -> results
#   yield               (values...)
#   static_assert is resolved by the frontend and never reaches the IR.
