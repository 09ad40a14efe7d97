"""Tile IR <-> JSON, so an artifact entry can hand its kernel to a backend that runs IR (the
reference interpreter, the Ascend simulator) without the frontend.

    doc = to_json(kernel)          # plain JSON types only
    k = from_json(doc)             # raises IRFormatError on anything malformed
    print_kernel(from_json(to_json(k))) == print_kernel(k)     # the round trip is exact

Values are numbered in definition order; ops refer to them by number. Ordered mappings (op
attributes, dims, consts) are lists of pairs, so a writer that sorts keys changes nothing. ``from_json`` checks
every reference and type it reads and then runs the IR verifier, so a hand-edited document
cannot produce a kernel the backends would trip over.
"""
from __future__ import annotations

import math

from . import dtypes as D
from .core import Block, Kernel, Loc, Op, TensorParam, TensorType, Type, Value

__all__ = ["FORMAT", "IRFormatError", "to_json", "from_json"]

FORMAT = "tilec-ir"
VERSION = 1


class IRFormatError(ValueError):
    """A JSON document that is not a well-formed serialised kernel; one line."""


# --------------------------------------------------------------------------- writing

def _type(t) -> dict:
    if isinstance(t, TensorType):
        return {"tensor": t.dtype, "dims": list(t.dims)}
    return {"dtype": t.dtype, "shape": list(t.shape)}


def _attr(v):
    if isinstance(v, bool) or v is None or isinstance(v, (int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else {"float": repr(v)}
    if isinstance(v, (list, tuple)):
        return {"tuple": [_attr(x) for x in v]} if isinstance(v, tuple) else [_attr(x) for x in v]
    if hasattr(v, "item"):          # a numpy scalar
        return _attr(v.item())
    raise IRFormatError(f"attribute value {v!r} ({type(v).__name__}) has no JSON form")


class _Writer:
    def __init__(self) -> None:
        self.ids: dict[Value, int] = {}
        self.values: list[dict] = []

    def define(self, v: Value) -> int:
        self.ids[v] = len(self.values)
        self.values.append({"type": _type(v.type), "hint": v.hint})
        return self.ids[v]

    def ref(self, v: Value) -> int:
        try:
            return self.ids[v]
        except KeyError:
            raise IRFormatError(f"value {v!r} is used before it is defined") from None

    def block(self, b: Block) -> dict:
        return {"args": [self.define(a) for a in b.args], "ops": [self.op(o) for o in b.ops]}

    def op(self, o: Op) -> dict:
        d = {"name": o.name, "operands": [self.ref(v) for v in o.operands],
             "attrs": [[k, _attr(v)] for k, v in o.attrs.items()]}   # pairs: order is printed
        if o.loc is not None:
            d["loc"] = [o.loc.line, o.loc.col, o.loc.end_col]
        if o.regions:   # region arguments and ops are defined before the op's results
            d["regions"] = [self.block(r) for r in o.regions]
        d["results"] = [self.define(r) for r in o.results]
        return d


def to_json(k: Kernel) -> dict:
    w = _Writer()
    tensors = [{"name": tp.name, "value": w.define(tp.value)} for tp in k.tensors]
    scalars = [w.define(s) for s in k.scalars]
    dims = [[name, w.define(v)] for name, v in k.dims.items()]
    grid = w.block(k.grid)
    body = w.block(k.body)
    return {"format": FORMAT, "version": VERSION, "name": k.name, "values": w.values,
            "tensors": tensors, "scalars": scalars, "dims": dims,
            "consts": [[n, _attr(v)] for n, v in k.consts.items()],
            "param_order": list(k.param_order),
            "dim_sources": [[n, t, a] for n, (t, a) in k.dim_sources.items()],
            "source_file": k.source_file, "grid": grid, "body": body}


# --------------------------------------------------------------------------- reading

def _fail(msg: str):
    raise IRFormatError(f"serialised IR: {msg}")


def _need(cond, msg: str) -> None:
    if not cond:
        _fail(msg)


def _pairs(x, n: int) -> bool:
    """A list of n-element lists whose first element is a name."""
    return isinstance(x, list) and all(isinstance(p, list) and len(p) == n and isinstance(p[0], str) for p in x)


def _read_type(d):
    _need(isinstance(d, dict), "a type is not an object")
    if "tensor" in d:
        dt, dims = d.get("tensor"), d.get("dims")
        _need(dt in D.ALL and isinstance(dims, list) and all(
            (isinstance(x, int) and not isinstance(x, bool) and x >= 0) or
            (isinstance(x, str) and x.isidentifier()) for x in dims), f"bad tensor type {d!r:.80}")
        return TensorType(dt, tuple(dims))
    dt, shape = d.get("dtype"), d.get("shape")
    _need(dt in D.ALL and isinstance(shape, list) and all(
        isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in shape), f"bad type {d!r:.80}")
    return Type(dt, tuple(shape))


def _read_attr(v, depth: int = 0):
    _need(depth < 16, "attributes nest too deeply")
    if isinstance(v, bool) or v is None or isinstance(v, (int, float, str)):
        return v
    if isinstance(v, list):
        return [_read_attr(x, depth + 1) for x in v]
    if isinstance(v, dict) and set(v) == {"tuple"} and isinstance(v["tuple"], list):
        return tuple(_read_attr(x, depth + 1) for x in v["tuple"])
    if isinstance(v, dict) and set(v) == {"float"} and v["float"] in ("inf", "-inf", "nan"):
        return float(v["float"])
    _fail(f"bad attribute value {v!r:.80}")


class _Reader:
    def __init__(self, values) -> None:
        _need(isinstance(values, list), "'values' is not a list")
        self.specs = values
        self.values: list[Value | None] = [None] * len(values)

    def define(self, i, owner=None) -> Value:
        _need(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(self.specs),
              f"value number {i!r} out of range")
        _need(self.values[i] is None, f"value {i} is defined twice")
        spec = self.specs[i]
        _need(isinstance(spec, dict), f"value {i} is not an object")
        hint = spec.get("hint")
        _need(hint is None or isinstance(hint, str), f"value {i} has a bad hint")
        v = self.values[i] = Value(_read_type(spec.get("type")), hint, owner)
        return v

    def ref(self, i) -> Value:
        _need(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(self.values)
              and self.values[i] is not None, f"operand {i!r} is not a defined value")
        return self.values[i]

    def block(self, d, depth: int) -> Block:
        _need(depth < 64, "regions nest too deeply")
        _need(isinstance(d, dict) and isinstance(d.get("args"), list) and isinstance(d.get("ops"), list),
              "a block needs 'args' and 'ops' lists")
        b = Block()
        b.args = [self.define(i, b) for i in d["args"]]
        b.ops = [self.op(o, depth) for o in d["ops"]]
        return b

    def op(self, d, depth: int) -> Op:
        _need(isinstance(d, dict) and isinstance(d.get("name"), str), "an op needs a 'name'")
        _need(isinstance(d.get("operands"), list) and _pairs(d.get("attrs", []), 2)
              and isinstance(d.get("results"), list) and isinstance(d.get("regions", []), list),
              f"op {d['name']!r}: malformed")
        operands = [self.ref(i) for i in d["operands"]]
        attrs = {str(k): _read_attr(v) for k, v in d.get("attrs", [])}
        loc = d.get("loc")
        if loc is not None:
            _need(isinstance(loc, list) and len(loc) == 3 and all(
                x is None or (isinstance(x, int) and not isinstance(x, bool)) for x in loc), "bad loc")
            loc = Loc(*loc)
        regions = [self.block(r, depth + 1) for r in d.get("regions", [])]
        op = Op(d["name"], operands, [], attrs, regions, loc, results=[])
        op.results = [self.define(i, op) for i in d["results"]]
        op.result_types = [r.type for r in op.results]
        return op


def from_json(doc) -> Kernel:
    """The kernel a ``to_json`` document describes; ``IRFormatError`` if it is malformed."""
    from .verifier import IRVerifyError, verify
    _need(isinstance(doc, dict) and doc.get("format") == FORMAT, f"not a {FORMAT} document")
    _need(doc.get("version") == VERSION, f"version {doc.get('version')!r} (this tilec reads {VERSION})")
    r = _Reader(doc.get("values"))
    name = doc.get("name")
    _need(isinstance(name, str) and name.isidentifier(), "bad kernel name")
    tensors = []
    _need(isinstance(doc.get("tensors"), list) and isinstance(doc.get("scalars"), list)
          and _pairs(doc.get("dims"), 2), "'tensors', 'scalars' and 'dims' are required")
    for t in doc["tensors"]:
        _need(isinstance(t, dict) and isinstance(t.get("name"), str), "bad tensor parameter")
        v = r.define(t.get("value"))
        _need(isinstance(v.type, TensorType), f"tensor parameter {t['name']} has a tile type")
        tensors.append(TensorParam(t["name"], v))
    scalars = [r.define(i) for i in doc["scalars"]]
    dims = {str(n): r.define(i) for n, i in doc["dims"]}
    consts = doc.get("consts", [])
    _need(_pairs(consts, 2) and all(isinstance(v, (int, str)) for _, v in consts), "bad consts")
    consts = {str(n): v for n, v in consts}
    order = doc.get("param_order", [])
    _need(isinstance(order, list) and all(isinstance(x, str) for x in order), "bad param_order")
    ds = doc.get("dim_sources", [])
    _need(_pairs(ds, 3), "bad dim_sources")
    src = doc.get("source_file")
    _need(src is None or isinstance(src, str), "bad source_file")
    grid = r.block(doc.get("grid"), 0)
    body = r.block(doc.get("body"), 0)
    k = Kernel(name, tensors, scalars, dims, consts, grid, body, list(order),
               {str(n): (str(t), int(a)) for n, t, a in ds}, src)
    for tp in tensors:
        tp.value.owner = k
    for s in scalars:
        s.owner = k
    for v in dims.values():
        v.owner = k
    try:
        verify(k)
    except (IRVerifyError, AssertionError, KeyError, IndexError, TypeError, ValueError) as e:
        _fail(f"does not verify: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    return k
