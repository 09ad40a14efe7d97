"""Deterministic text form of tile IR. The compile cache hashes this text, so it must depend on
nothing but the IR itself (no ids, no addresses)."""
from __future__ import annotations

from .core import Block, Kernel, Op, Value


class _Namer:
    def __init__(self) -> None:
        self.names: dict[Value, str] = {}
        self.used: set[str] = set()
        self.counter = 0

    def define(self, v: Value) -> str:
        base = v.hint or ""
        name = f"%{base}" if base and f"%{base}" not in self.used else f"%{base}{self.counter}" if base else f"%{self.counter}"
        while name in self.used:
            self.counter += 1
            name = f"%{base}{self.counter}"
        self.counter += 1
        self.used.add(name)
        self.names[v] = name
        return name

    def __getitem__(self, v: Value) -> str:
        return self.names.get(v, "%<undefined>")


def _attr(v) -> str:
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_attr(x) for x in v) + "]"
    if isinstance(v, str):
        return v
    return str(v)


def print_kernel(k: Kernel) -> str:
    n = _Namer()
    lines: list[str] = []
    params = []
    for tp in k.tensors:
        params.append(f"{n.define(tp.value)}: {tp.type}")
    sigs = ", ".join(params + [f"{n.define(s)}: {s.type}" for s in k.scalars])
    dims = ", ".join(f"{n.define(v)}: {v.type}" for v in k.dims.values())
    consts = ", ".join(f"{key}={val}" for key, val in k.consts.items())
    lines.append(f"kernel @{k.name}({sigs})")
    lines.append(f"  dims({dims}) consts({consts})")
    lines.append("grid {")
    _block(k.grid, n, lines, 1)
    lines.append("}")
    lines.append("body {")
    _block(k.body, n, lines, 1)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _block(b: Block, n: _Namer, lines: list[str], depth: int) -> None:
    for op in b.ops:
        _op(op, n, lines, depth)


def _op(op: Op, n: _Namer, lines: list[str], depth: int) -> None:
    ind = "  " * depth
    operands = ", ".join(n[v] for v in op.operands)
    attrs = {k: v for k, v in op.attrs.items()}
    astr = (" {" + ", ".join(f"{k}={_attr(v)}" for k, v in attrs.items()) + "}") if attrs else ""
    if op.name in ("for", "if"):
        res = ", ".join(n.define(r) for r in op.results)
        head = f"{ind}{res + ' = ' if res else ''}{op.name} ({operands}){astr}"
        types = ", ".join(str(r.type) for r in op.results)
        lines.append(head + (f" -> ({types})" if types else "") + " {")
        for i, region in enumerate(op.regions):
            if i:
                lines.append(f"{ind}}} else {{")
            args = ", ".join(f"{n.define(a)}: {a.type}" for a in region.args)
            if args:
                lines.append(f"{ind}^({args}):")
            _block(region, n, lines, depth + 1)
        lines.append(f"{ind}}}")
        return
    res = ", ".join(n.define(r) for r in op.results)
    types = ", ".join(str(r.type) for r in op.results)
    lines.append(f"{ind}{res + ' = ' if res else ''}{op.name}({operands}){astr}"
                 + (f" : {types}" if types else ""))
