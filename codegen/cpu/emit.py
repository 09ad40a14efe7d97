"""Generate the torch source of one specialised kernel, vectorised over its grid.

Every IR value gets a leading instance axis (see rt.py): P for values that vary between
program instances ("varying"), 1 for values that do not ("uniform"). A static analysis
decides which is which; it matters for control flow:

- ``for`` with uniform bounds is a plain Python loop over [1]-shaped induction values;
  with varying bounds it runs max(trip count) iterations with a per-instance ``active`` mask,
  and carried values update with ``torch.where(active, new, old)``.
- ``if`` on a uniform condition is a Python ``if``; on a varying one both branches run (stores
  masked by the branch's condition) and the results merge with ``torch.where``.

Loads and stores compute per-element linear indices (sum of index * stride over a flat view of
the tensor), validity = in-bounds on the dims the bounds analysis marked ``masked`` & the
explicit mask; gathers clamp each index so even unchecked or inactive lanes stay inside the
tensor. Loads are not masked by the active mask: an inactive instance's values are never
stored nor merged, so they may be anything. Stores scatter only valid & active elements.
Integer division checks for zero only in active instances (the other branch of a varying
``if`` may divide by zero harmlessly).

Ops whose operands are all compile-time values (constants, aranges, fulls, ...) are hoisted to
module level and evaluated once when the kernel is compiled; pure ops of a loop body that do
not depend on the loop are emitted before the loop.
"""
from __future__ import annotations

import builtins
import keyword
import re

import numpy as np
import torch

from tilec.ir import dtypes as D
from tilec.ir.core import Block, Kernel, Op, Value

from . import rt

_TD = {"f16": "_f16", "bf16": "_bf16", "f32": "_f32", "i32": "_i32", "i64": "_i64", "bool": "_bool"}
_HALF = ("f16", "bf16")
_BIN = {"add": "+", "sub": "-", "mul": "*", "and": "&", "or": "|", "xor": "^"}
_CMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
_PURE_NO_OPERANDS = ("constant", "arange", "full")
_NOT_HOISTABLE = ("load", "store", "program_id", "num_programs", "for", "if", "yield")


def base_namespace() -> dict:
    ns = {"torch": torch, "rt": rt}
    for dt, name in _TD.items():
        ns[name] = rt.DTYPES[dt]
    return ns


def varying_values(kernel: Kernel) -> set:
    """Values that may differ between program instances."""
    var: set = set()

    def block(b: Block) -> None:
        for op in b.ops:
            if op.name == "program_id":
                var.update(op.results)
            elif op.name == "for":
                lo, hi, *init = op.operands
                body = op.regions[0]
                loop_var = lo in var or hi in var
                if lo in var:
                    var.add(body.args[0])
                for arg, v in zip(body.args[1:], init):
                    if loop_var or v in var:
                        var.add(arg)
                while True:
                    block(body)
                    changed = False
                    for arg, y in zip(body.args[1:], body.terminator.operands):
                        if y in var and arg not in var:
                            var.add(arg)
                            changed = True
                    if not changed:
                        break
                for res, arg in zip(op.results, body.args[1:]):
                    if arg in var:
                        var.add(res)
            elif op.name == "if":
                then, els = op.regions
                block(then)
                block(els)
                cv = op.operands[0] in var
                for i, res in enumerate(op.results):
                    if cv or then.terminator.operands[i] in var or els.terminator.operands[i] in var:
                        var.add(res)
            elif op.name in ("yield", "store"):
                pass
            elif any(v in var for v in op.operands):
                var.update(op.results)

    block(kernel.body)
    return var


class Emitter:
    def __init__(self, kernel: Kernel):
        self.k = kernel
        self.var = varying_values(kernel)
        self.ns = base_namespace()
        self.names: dict = {}
        self.used = set(keyword.kwlist) | set(dir(builtins)) | set(self.ns) | {"_grid", "_pids", "_v"}
        self.hoisted: set = set()        # values bound at module level (known at compile time)
        self.head: list[str] = []        # module-level lines
        self.lines: list[str] = []
        self.depth = 1
        self.act = None                  # name of the current active mask ([P] bool) or None
        self.done: set = set()           # ops already emitted (hoisted out of a loop)

    # ---- naming -------------------------------------------------------------------------
    def fresh(self, hint: str | None) -> str:
        base = re.sub(r"\W", "_", hint or "") or "v"
        if base[0].isdigit():
            base = "v" + base
        name, i = base, 1
        while name in self.used:
            name = f"{base}_{i}"
            i += 1
        self.used.add(name)
        return name

    def n(self, v: Value) -> str:
        return self.names[v]

    def bind(self, v: Value, hint=None) -> str:
        name = self.fresh(hint or v.hint)
        self.names[v] = name
        return name

    def emit(self, line: str) -> None:
        self.lines.append("    " * self.depth + line)

    def hoist(self, name: str, expr: str, comment: str = "") -> None:
        line = f"{name} = {expr}" + (f"  # {comment}" if comment else "")
        self.head.append(line)
        exec(line, self.ns)      # evaluate now: later hoisting decisions may inspect it

    def try_hoist(self, name: str, expr: str, comment: str) -> bool:
        """Hoist a compile-time value; if evaluating it fails (say an integer division by a
        zero constant in a branch that may never run), it stays in the function instead."""
        try:
            self.hoist(name, expr, comment)
        except Exception:           # noqa: BLE001 - any failure: compute it at run time
            self.head.pop()
            return False
        return True

    # ---- whole kernel ---------------------------------------------------------------------
    def run(self) -> str:
        k = self.k
        tensor_params = [tp.name for tp in k.tensors]
        params = list(k.param_order) + [d for d in k.dims if d not in k.param_order]
        for p in params:
            self.used.add(p)
        for tp in k.tensors:           # per-tensor names of the prologue
            self.used.update({f"{tp.name}_f", f"{tp.name}_hi"})
            for i in range(tp.type.rank):
                self.used.update({f"{tp.name}_{c}{i}" for c in "snm"})
        fname = self.fresh(k.name)
        consts = ", ".join(f"{a}={b}" for a, b in k.consts.items())
        self.lines.append(f"def {fname}({', '.join(params)}, _grid):")
        self.emit(f'"""{k.name} [{consts}]: all program instances of the grid at once."""')
        self.emit("_pids = rt.program_ids(_grid)")
        for tp in k.tensors:
            t = tp.name
            self.names[tp.value] = t
            rank = tp.type.rank
            self.emit(f"{t}_f, {t}_hi, _ = rt.flat({t})   # {tp.type}")
            if rank:
                sl = ", ".join(f"{t}_s{i}" for i in range(rank))
                nl = ", ".join(f"{t}_n{i}" for i in range(rank))
                self.emit(f"{sl}, = {t}.stride()")
                self.emit(f"{nl}, = {t}.shape")
                ml = ", ".join(f"max({t}_n{i} - 1, 0)" for i in range(rank))
                self.emit(f"{', '.join(f'{t}_m{i}' for i in range(rank))}, = {ml},")
        for name, v in k.dims.items():
            self.names[v] = name
            self.emit(f"{name} = rt.const({name}, 'i32')   # dim")
        for v in k.scalars:
            self.names[v] = v.hint
            self.emit(f"{v.hint} = rt.const({v.hint}, '{v.type.dtype}')   # scalar {v.type}")
        self.block(k.body)
        head = [f"# generated by tilec's cpu backend from kernel '{k.name}' ({consts})",
                "# every value has a leading instance axis: P (varies per program) or 1 (uniform)", ""]
        return "\n".join(head + self.head + ["", ""] + self.lines) + "\n"

    # ---- blocks and ops --------------------------------------------------------------------
    def block(self, b: Block):
        for op in b.ops:
            if op.name == "yield":
                return [self.n(v) for v in op.operands]
            if op in self.done:
                continue
            self.op(op)
        return []

    def hoist_invariants(self, body: Block) -> None:
        """Loop-invariant code motion: pure ops of a loop body whose operands all come from
        outside the loop run once, before it (integer division stays: it may raise)."""
        inside = set(body.args)
        for op in body.ops:
            for o in op.walk():
                inside.update(o.results)
        for op in body.ops:
            if op.name in _NOT_HOISTABLE or op.regions or not op.results:
                continue
            if op.name == "binary" and op.attrs["op"] in ("div", "floordiv", "mod") and \
                    D.is_int(op.results[0].type.dtype) and not self._nonzero_const(op.operands[1]):
                continue
            if any(v in inside for v in op.operands):
                continue
            self.op(op)
            self.done.add(op)
            inside.difference_update(op.results)

    def is_hoistable(self, op: Op) -> bool:
        if op.name in _NOT_HOISTABLE or op.regions:
            return False
        if op.name in _PURE_NO_OPERANDS:
            return True
        return bool(op.operands) and all(v in self.hoisted for v in op.operands)

    def op(self, op: Op) -> None:
        if op.name == "for":
            return self.for_op(op)
        if op.name == "if":
            return self.if_op(op)
        if op.name == "store":
            return self.store_op(op)
        if op.name == "load":
            return self.load_op(op)
        expr = self.expr(op)
        r = op.results[0]
        name = self.bind(r)
        comment = f"{op.name} {self._attrs(op)}-> {r.type}".replace("  ", " ")
        if self.is_hoistable(op) and self.try_hoist(name, expr, comment):
            self.hoisted.add(r)
        else:
            self.emit(f"{name} = {expr}  # {comment}")

    @staticmethod
    def _attrs(op: Op) -> str:
        keep = {k: v for k, v in op.attrs.items() if k not in ("index", "masked")}
        return (str(keep) + " ") if keep else ""

    def expr(self, op: Op) -> str:
        name = op.name
        a = [self.n(v) for v in op.operands]
        rt_ = op.results[0].type if op.results else None
        dt = rt_.dtype if rt_ else None
        if name == "constant":
            return f"rt.const({op.attrs['value']!r}, '{dt}')"
        if name == "program_id":
            return f"_pids[{op.attrs['axis']}]"
        if name == "num_programs":
            return f"rt.const(_grid[{op.attrs['axis']}], 'i32')"
        if name == "arange":
            return f"torch.arange({op.attrs['start']}, {op.attrs['end']}, dtype=_i32)[None]"
        if name == "full":
            return f"rt.const({op.attrs['value']!r}, '{op.attrs['dtype']}', {tuple(op.attrs['shape'])!r})"
        if name == "binary":
            return self.binary(op, a, dt)
        if name == "cmp":
            return f"({a[0]} {_CMP[op.attrs['pred']]} {a[1]})"
        if name == "unary":
            return self.unary(op.attrs["op"], a[0], dt)
        if name == "select":
            c = self._aligned(op.operands[0], len(rt_.shape))
            return f"torch.where({c}, {a[1]}, {a[2]})"
        if name == "cast":
            src = op.operands[0].type.dtype
            if src == dt:
                return a[0]
            if dt == "bool":
                return f"({a[0]} != 0)"
            return f"{a[0]}.to({_TD[dt]})"
        if name == "splat":
            shape = tuple(op.attrs["shape"])
            return f"{a[0]}[:{', None' * len(shape)}].expand(-1, {', '.join(map(str, shape))})"
        if name == "broadcast":
            return f"{a[0]}.expand(-1, {', '.join(map(str, op.attrs['shape']))})"
        if name == "expand_dims":
            return f"{a[0]}.unsqueeze({op.attrs['axis'] + 1})"
        if name == "trans":
            return f"{a[0]}.transpose(1, 2)"
        if name == "reshape":
            return f"{a[0]}.reshape(-1, {', '.join(map(str, op.attrs['shape']))})"
        if name == "reduce":
            ax = op.attrs["axis"] + 1
            kind = op.attrs["kind"]
            src = op.operands[0].type.dtype
            if kind == "sum":
                if src in _HALF:
                    return f"{a[0]}.float().sum({ax}).to({_TD[dt]})"
                if src == dt and src == "f32":
                    return f"{a[0]}.sum({ax})"
                return f"{a[0]}.sum({ax}).to({_TD[dt]})"
            fn = "amax" if kind == "max" else "amin"
            return f"{a[0]}.{fn}({ax})" + ("" if src == dt else f".to({_TD[dt]})")
        if name == "dot":
            x, y = a
            if op.operands[0].type.dtype != "f32":
                x = f"{x}.float()"
            if op.operands[1].type.dtype != "f32":
                y = f"{y}.float()"
            return f"torch.matmul({x}, {y})"
        raise ValueError(f"cpu backend: unknown op {name}")

    def _nonzero_const(self, v: Value) -> bool:
        if v not in self.hoisted:
            return False
        t = self.ns[self.n(v)]
        return not bool((t == 0).any())

    def binary(self, op: Op, a, dt: str) -> str:
        kind = op.attrs["op"]
        x, y = a
        if dt in _HALF:
            x, y = f"{x}.float()", f"{y}.float()"
        act = self.act or "None"
        if D.is_int(dt) and kind in ("div", "floordiv", "mod"):
            if self._nonzero_const(op.operands[1]):
                if kind == "mod":
                    return f"torch.fmod({x}, {y})"
                return f"torch.div({x}, {y}, rounding_mode='trunc')"
            fn = "imod" if kind == "mod" else "idiv"
            return f"rt.{fn}({x}, {y}, {act})"
        if kind in _BIN:
            e = f"({x} {_BIN[kind]} {y})"
        elif kind == "div":
            e = f"({x} / {y})"
        elif kind == "floordiv":
            e = f"torch.trunc({x} / {y})"
        elif kind == "mod":
            e = f"torch.fmod({x}, {y})"
        elif kind == "maximum":
            e = f"torch.maximum({x}, {y})"
        elif kind == "minimum":
            e = f"torch.minimum({x}, {y})"
        else:
            raise ValueError(f"cpu backend: binary op {kind}")
        if dt in _HALF:
            e = f"{e}.to({_TD[dt]})"
        return e

    def unary(self, kind: str, x: str, dt: str) -> str:
        half = dt in _HALF
        if half:
            x = f"{x}.float()"
        if kind == "neg":
            e = f"(-{x})"
        elif kind == "not":
            e = f"torch.logical_not({x})" if dt == "bool" else f"torch.bitwise_not({x})"
        elif kind in ("exp", "exp2", "log", "sqrt", "abs"):
            e = f"torch.{kind}({x})"
        elif kind == "rsqrt":
            e = f"(1.0 / torch.sqrt({x}))"
        elif kind == "sigmoid":
            e = f"(1.0 / (1.0 + torch.exp(-{x})))"
        else:
            raise ValueError(f"cpu backend: unary op {kind}")
        if half:
            e = f"{e}.to({_TD[dt]})"
        return e

    # ---- memory --------------------------------------------------------------------------
    def _size(self, v: Value, slice_len=None) -> tuple:
        """Sort key of an index/mask operand when combining them: values that vary per
        instance first (they tend to share an [P, BM, 1]-like shape), then by element count."""
        n = slice_len or int(np.prod(self.peel(v).type.shape or (1,)))
        return (0 if v in self.var else 1, n)

    @staticmethod
    def _index_rank(op: Op) -> int:
        kinds = op.attrs["index"]
        nsl = sum(1 for k in kinds if k[0] == "slice")
        ranks = [nsl if nsl else 0] + [len(v.type.shape) for k, v in zip(kinds, op.operands[1:])
                                        if k[0] == "tile"]
        return max(ranks)

    def _access(self, op: Op, extra=()):
        """Emit linear-index and validity code of a load/store; returns (lin, ok|None, rank, rest)."""
        tensor = op.operands[0]
        t = self.n(tensor)
        kinds = op.attrs["index"]
        nidx = len(kinds)
        idx_vals = op.operands[1:1 + nidx]
        nsl = sum(1 for k in kinds if k[0] == "slice")
        shapes = []
        pos = 0
        for kd, v in zip(kinds, idx_vals):
            if kd[0] == "slice":
                s = [1] * nsl
                s[pos] = kd[1]
                pos += 1
                shapes.append(tuple(s))
            elif kd[0] == "scalar":
                shapes.append(())
            else:
                shapes.append(tuple(v.type.shape))
        bshape = tuple(np.broadcast_shapes(*shapes)) if shapes else ()
        R = len(bshape)
        pos = 0
        terms, checks, idx = [], [], []
        full_tile = any(kd[0] == "tile" and tuple(self.peel(v).type.shape) == bshape and R > 0
                        for kd, v in zip(kinds, idx_vals))
        for d, (kd, v) in enumerate(zip(kinds, idx_vals)):
            if kd[0] == "tile":
                v = self.peel(v)
            src = self.n(v)
            if kd[0] == "slice":
                s = [1] * R
                s[R - nsl + pos] = kd[1]
                pos += 1
                ar = self.fresh(f"_ar{kd[1]}")
                self.hoist(ar, f"torch.arange({kd[1]}, dtype=_i64).reshape(1, {', '.join(map(str, s))})")
                e = f"({src}.long()[:{', None' * R}] + {ar})"
            else:
                r0 = len(v.type.shape)
                e = f"{src}.long()" + (f"[:{', None' * (R - r0)}]" if R > r0 else "")
            lo_ok = False
            if v in self.hoisted:        # the index is known now: bind it at module level
                nm = self.fresh(f"_ix_{t}{d}")
                self.hoist(nm, e)
                e = nm
                lo_ok = bool((self.ns[nm] >= 0).all())
            else:
                nm = self.fresh(f"_ix{d}")
                self.emit(f"{nm} = {e}")
                e = nm
            size = self._size(v, kd[1] if kd[0] == "slice" else None)
            idx.append((size, d, e))
            if op.attrs["masked"][d]:
                checks.append((size, f"({e} < {t}_n{d})" if lo_ok else f"(({e} >= 0) & ({e} < {t}_n{d}))"))
        # per-dim validity first (small broadcastable tensors), then one combination;
        # indices are clamped per dim (cheap) unless a full-size gather index makes one final
        # clamp of the linear index cheaper
        # small operands first, so only the last add / and makes a full-size tensor
        checks = [c for _, c in sorted(checks + list(extra), key=lambda x: x[0])]
        for _, d, e in sorted(idx, key=lambda x: x[0]):
            c = e if full_tile else f"{e}.clamp(0, {t}_m{d})"
            terms.append(f"{c} * {t}_s{d}")
        lin = self.fresh("_lin")
        body = ' + '.join(terms) if terms else 'torch.zeros(1, dtype=_i64)'
        if full_tile:
            body = f"({body}).clamp_(0, {t}_hi)"
        self.emit(f"{lin} = {body}")
        ok = None
        if checks:
            ok = self.fresh("_ok")
            self.emit(f"{ok} = {' & '.join(checks)}")
        return lin, ok, R, op.operands[1 + nidx:]

    def load_op(self, op: Op) -> None:
        t = self.n(op.operands[0])
        r = op.results[0]
        self.emit(f"# {self.bind(r)} = load {t}[{', '.join(k[0] for k in op.attrs['index'])}]"
                  f" masked={op.attrs['masked']} -> {r.type}")
        nidx = len(op.attrs["index"])
        rest = list(op.operands[1 + nidx:])
        extra = []
        if op.attrs["has_mask"]:
            m = rest.pop(0)
            extra.append((self._size(m), self._aligned(m, self._index_rank(op))))
        lin, ok, R, _ = self._access(op, extra)
        name = self.n(r)
        self.emit(f"{name} = {t}_f[{lin}]")
        if ok is not None:
            if op.attrs["has_other"]:
                other = f"{self._aligned(rest[0], R)}.to({t}_f.dtype)"
            else:
                other = f"{t}_f.new_zeros(())"
            self.emit(f"{name} = torch.where({ok}, {name}, {other})")
        if R:
            self.emit(f"{name} = {name}.expand(-1, {', '.join(map(str, r.type.shape))})")

    @staticmethod
    def peel(v: Value) -> Value:
        """Loads and stores broadcast their operands themselves: look through broadcast/splat
        so index, mask and value tensors stay small (size-1 dims) until the gather."""
        while isinstance(v.owner, Op) and v.owner.name in ("broadcast", "splat"):
            v = v.owner.operands[0]
        return v

    def _aligned(self, v: Value, R: int) -> str:
        v = self.peel(v)
        r0 = len(v.type.shape)
        return self.n(v) + (f"[:{', None' * (R - r0)}]" if R > r0 else "")

    def store_op(self, op: Op) -> None:
        t = self.n(op.operands[0])
        self.emit(f"# store {t}[{', '.join(k[0] for k in op.attrs['index'])}] masked={op.attrs['masked']}")
        nidx = len(op.attrs["index"])
        value = op.operands[1 + nidx]
        Rv = self._index_rank(op)
        extra = []
        if op.attrs["has_mask"]:
            m = op.operands[2 + nidx]
            extra.append((self._size(m), self._aligned(m, Rv)))
        if self.act:
            extra.append(((0, 1), f"{self.act}[:{', None' * Rv}]"))
        lin, ok, R, rest = self._access(op, extra)
        val = self._aligned(value, R)
        conds = [ok] if ok else []
        if conds:
            c = ok
            self.emit(f"{lin}, _v, {c} = torch.broadcast_tensors({lin}, {val}, {c})")
            self.emit(f"{t}_f[{lin}[{c}]] = _v[{c}].to({t}_f.dtype)")
        else:
            self.emit(f"{lin}, _v = torch.broadcast_tensors({lin}, {val})")
            self.emit(f"{t}_f[{lin}.reshape(-1)] = _v.reshape(-1).to({t}_f.dtype)")

    # ---- control flow ------------------------------------------------------------------------
    def for_op(self, op: Op) -> None:
        lo, hi, *init = op.operands
        body = op.regions[0]
        step = op.attrs["step"]
        iv = self.bind(body.args[0])
        args = [self.bind(a) for a in body.args[1:]]
        for a_, i_ in zip(args, init):
            self.emit(f"{a_} = {self.n(i_)}   # carried")
        self.hoist_invariants(body)
        uniform = lo not in self.var and hi not in self.var
        saved = self.act
        if uniform:
            self.emit(f"for {iv} in rt.iv_range({self.n(lo)}, {self.n(hi)}, {step}):"
                      f"   # for {iv} in range(lo, hi, {step}) (bounds uniform)")
            self.depth += 1
            ys = self.block(body)
            if args:
                self.emit(f"{', '.join(args)}, = {', '.join(ys)},")
            self.depth -= 1
        else:
            trips, k, act = self.fresh("_trips"), self.fresh("_k"), self.fresh("_act")
            self.used.add(f"{trips}_max")
            self.emit(f"{trips}, {trips}_max = rt.trips({self.n(lo)}, {self.n(hi)}, {step}, {saved or 'None'})"
                      f"   # for {iv} in range(lo, hi, {step}) (bounds vary per instance)")
            self.emit(f"for {k} in range({trips}_max):")
            self.depth += 1
            self.emit(f"{iv} = {self.n(lo)} + {k} * {step}")
            self.emit(f"{act} = {trips} > {k}")
            self.act = act
            ys = self.block(body)
            for a_, y, bv in zip(args, ys, body.args[1:]):
                rank = len(bv.type.shape)
                self.emit(f"{a_} = torch.where({act}[:{', None' * rank}], {y}, {a_})")
            self.depth -= 1
            self.act = saved
        for res, a_ in zip(op.results, args):
            self.emit(f"{self.bind(res)} = {a_}")

    def if_op(self, op: Op) -> None:
        cond = op.operands[0]
        c = self.n(cond)
        then, els = op.regions
        res = [self.bind(r) for r in op.results]
        saved = self.act
        if cond not in self.var:
            self.emit(f"if bool({c}):   # if (condition uniform)")
            for blk, tag in ((then, "then"), (els, "else")):
                if tag == "else":
                    self.emit("else:")
                self.depth += 1
                n0 = len(self.lines)
                ys = self.block(blk)
                if res:
                    self.emit(f"{', '.join(res)}, = {', '.join(ys)},")
                elif len(self.lines) == n0:
                    self.emit("pass")
                self.depth -= 1
            return
        self.emit(f"# if {c} (condition varies per instance): both branches run, masked")
        ta, ea = self.fresh("_then"), self.fresh("_else")
        self.emit(f"{ta} = {c}" if saved is None else f"{ta} = {saved} & {c}")
        self.act = ta
        yt = self.block(then)
        self.emit(f"{ea} = ~{c}" if saved is None else f"{ea} = {saved} & ~{c}")
        self.act = ea
        ye = self.block(els)
        self.act = saved
        for r, a_, b_, v in zip(res, yt, ye, op.results):
            rank = len(v.type.shape)
            self.emit(f"{r} = torch.where({c}[:{', None' * rank}], {a_}, {b_})")


def emit_kernel(kernel: Kernel):
    """(source, namespace with the module-level constants already evaluated, function name)."""
    e = Emitter(kernel)
    src = e.run()
    fname = e.lines[0].split("(")[0][4:]
    return src, e.ns, fname
