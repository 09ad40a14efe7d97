"""Syntax tree of the tile language: small dataclasses, each carrying its source location."""
from __future__ import annotations

from dataclasses import dataclass, field

from .diagnostics import Loc


@dataclass
class Node:
    loc: Loc = field(default=None, repr=False, compare=False, kw_only=True)


# ---- expressions -------------------------------------------------------------------------
@dataclass
class Name(Node):
    id: str


@dataclass
class Int(Node):
    value: int


@dataclass
class Float(Node):
    value: float


@dataclass
class Str(Node):
    value: str


@dataclass
class Bool(Node):
    value: bool


@dataclass
class NoneLit(Node):
    pass


@dataclass
class BinOp(Node):
    op: str          # + - * / // % & | ^ and or < <= > >= == !=
    left: Node
    right: Node


@dataclass
class UnaryOp(Node):
    op: str          # - ~ not
    operand: Node


@dataclass
class Call(Node):
    func: str
    args: list[Node]
    kwargs: dict[str, Node]
    func_loc: Loc = None


@dataclass
class Slice(Node):
    lower: Node | None
    upper: Node | None


@dataclass
class Subscript(Node):
    value: Node
    items: list[Node]     # expressions, Slice or NoneLit


@dataclass
class Tuple(Node):
    items: list[Node]


# ---- statements --------------------------------------------------------------------------
@dataclass
class Assign(Node):
    target: str
    value: Node


@dataclass
class AugAssign(Node):
    target: str
    op: str
    value: Node


@dataclass
class ExprStmt(Node):
    value: Node


@dataclass
class Pass(Node):
    pass


@dataclass
class For(Node):
    var: str
    iter: Node
    body: list[Node]


@dataclass
class If(Node):
    cond: Node
    body: list[Node]
    orelse: list[Node]


# ---- kernels -----------------------------------------------------------------------------
@dataclass
class Param(Node):
    name: str
    kind: str                      # "tensor" | "const" | "dtype" | "scalar"
    dtype: str | None = None       # element dtype (or a dtype-param name) for tensors and scalars
    dims: list[str | int] = field(default_factory=list)
    dim_locs: list[Loc] = field(default_factory=list)
    default: int | str | None = None


@dataclass
class Kernel(Node):
    name: str
    params: list[Param]
    body: list[Node]


@dataclass
class Module(Node):
    kernels: list[Kernel]
