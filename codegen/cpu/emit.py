"""Generate the torch source of one specialised kernel, vectorised over its grid.

Every IR value gets a leading instance axis (see rt.py): P for values that vary between
program instances ("varying"), 1 for values that do not ("uniform"). A static analysis
decides which is which; it matters for control flow:

- ``for`` with uniform bounds is a plain Python loop over [1]-shaped induction values;
  with varying bounds it runs max(trip count) iterations with a per-instance ``active`` mask,
  and carried values update with ``rt.select(active, new, old)``.
- ``if`` on a uniform condition is a Python ``if``; on a varying one both branches run (stores
  masked by the branch's condition) and the results merge with ``rt.select``.

Loads and stores compute per-element linear indices (sum of index * stride over a flat view of
the tensor), validity = in-bounds on the dims the bounds analysis marked ``masked`` & the
explicit mask; gathers clamp each index so even unchecked or inactive lanes stay inside the
tensor. Loads are not masked by the active mask: an inactive instance's values are never
stored nor merged, so they may be anything. Stores scatter only valid & active elements.
Integer division checks for zero only in active instances (the other branch of a varying
``if`` may divide by zero harmlessly).

Ops whose operands are all compile-time values (constants, aranges, fulls, ...) are hoisted to
module level and evaluated once when the kernel is compiled; pure ops of a loop body that do
not depend on the loop are emitted before the loop, and so are the loop-invariant pieces of
its accesses' indices (conversion, clamp, bounds check).

Work the vectorised form would otherwise waste:
- row classes (rows.py): when a kernel's tile rows are independent and only rows under a
  per-row flag are stored, instances run in classes by live row count, on tiles cut to it
  (a decode tile of Meta-Attention computes its G rows, not BM);
- unobserved lanes (lanes.py): a masked gather whose masked-off lanes every use replaces
  skips blanking them;
- value numbering: a pure op equal to one already computed in an enclosing block reuses it,
  and an access with the same indices and mask as an earlier one (paged V after K) reuses
  its validity, and its linear index when the strides agree at run time;
- guards: a masked gather whose mask is off in every lane is skipped; one whose mask has a
  per-instance flag (is_tree) runs its index and mask arithmetic only when some instance
  sets the flag.
"""
from __future__ import annotations

import builtins
import keyword
import re

import numpy as np
import torch

from tilec.ir import dtypes as D
from tilec.ir.core import Block, Kernel, Op, Value

from . import lanes, rows, rt

_TD = {"f16": "_f16", "bf16": "_bf16", "f32": "_f32", "i32": "_i32", "i64": "_i64", "bool": "_bool"}
_HALF = ("f16", "bf16")
_BIN = {"add": "+", "sub": "-", "mul": "*", "and": "&", "or": "|", "xor": "^"}
_CMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
_PURE_NO_OPERANDS = ("constant", "arange", "full")
_NOT_HOISTABLE = ("load", "store", "program_id", "num_programs", "for", "if", "yield")
_CSE_OPS = ("binary", "cmp", "unary", "select", "cast", "splat", "broadcast", "expand_dims", "trans",
            "reshape", "arange", "full", "constant")


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
        self.pure: list = []             # (line index, names bound) of pure assignments
        self.blocked_loads: dict = {}    # load result -> (tensor value, rt.tile_load dims)
        self.stored_params = {op.operands[0] for op in kernel.walk() if op.name == "store"}
        self.G = kernel.grid_rank        # leading instance axes, one per grid axis
        self.ones = ", ".join(["1"] * self.G)
        self.lead = ", ".join([":"] * self.G)      # index prefix keeping the instance axes
        self.keep = ", ".join(["-1"] * self.G)     # expand() sizes keeping them
        dims_uf = rows.unify(kernel)     # which tile dims line up (rows.py, lanes.py)
        self.rowplan, self.rowplan_why = rows.analyse(kernel, dims_uf)
        self.lanes = lanes.Lanes(kernel, dims_uf, self._uses())
        self.R = None                    # inside the row-class loop: the name of its row count
        self._vk: dict = {}              # value numbers (vkey)
        self._cse: dict = {}             # access key -> names of an emitted access
        self._named: dict = {}           # (kind, key) -> (name, scope): see _named_get
        self.blocks: list = []           # ids of the Python blocks enclosing the current line
        self.block_ids = 0
        self.guard = None                # inside a load's guard: (mask key, scope outside it)
        self.guards: dict = {}           # masked load -> (per-instance mask factor, ops it owns)
        self._zeros: dict = {}           # dtype -> module-level zero (a load's default other)
        self.pre_idx: dict = {}          # (access op, dim) -> index pieces hoisted out of a loop
        self.deferred: dict = {}         # op -> the load whose guard computes it
        self._plan_guards()
        self.pids = "_pids"

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
        self._scope()
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
        # a parameter keeps its name in Python unless that name is a keyword, a builtin, a
        # name of the runtime namespace or one the prologue derives from another parameter;
        # then it gets an alias, and _PYNAMES tells the launcher (which passes keywords)
        derived = {f"{tp.name}_{sfx}" for tp in k.tensors for sfx in ("f", "hi", "ne")} | \
            {f"{tp.name}_{c}{i}" for tp in k.tensors for i in range(tp.type.rank) for c in "snm"} | \
            {f"{d}_int" for d in k.dims}
        unsafe = {p for p in params if not p.isidentifier() or keyword.iskeyword(p) or p in self.used
                  or p.startswith("_") or p in derived}
        for p in params:
            if p not in unsafe:
                self.used.add(p)
        self.py = {p: (self.fresh("p_" + p) if p in unsafe else p) for p in params}
        for tp in k.tensors:           # per-tensor names of the prologue
            t = self.py[tp.name]
            self.used.update({f"{t}_f", f"{t}_hi", f"{t}_ne"})
            for i in range(tp.type.rank):
                self.used.update({f"{t}_{c}{i}" for c in "snm"})
        for d in k.dims:
            self.used.add(f"{self.py[d]}_int")
        fname = self.fresh(k.name)
        consts = ", ".join(f"{a}={b}" for a, b in k.consts.items())
        self.lines.append(f"def {fname}({', '.join(self.py[p] for p in params)}, _grid):")
        self.emit(f'"""{k.name} [{consts}]: all program instances of the grid at once."""')
        n_head = len(self.lines)       # the signature and docstring read no names
        self.emit_pure("_pids = rt.program_ids(_grid)", "_pids")
        for tp in k.tensors:
            t = self.py[tp.name]
            self.names[tp.value] = t
            rank = tp.type.rank
            self.emit_pure(f"{t}_f, {t}_hi, {t}_ne = rt.flat({t})   # {tp.type}", f"{t}_f", f"{t}_hi", f"{t}_ne")
            if rank:
                for c, rhs in (("s", f"{t}.stride()"), ("n", f"{t}.shape")):
                    names = [f"{t}_{c}{i}" for i in range(rank)]
                    self.emit_pure(f"{', '.join(names)}, = {rhs}", *names)
                names = [f"{t}_m{i}" for i in range(rank)]
                ml = ", ".join(f"max({t}_n{i} - 1, 0)" for i in range(rank))
                self.emit_pure(f"{', '.join(names)}, = {ml},", *names)
        for name, v in k.dims.items():
            name = self.py[name]
            self.names[v] = name
            self.emit_pure(f"{name}_int = {name}", f"{name}_int")     # the Python int (divisors)
            self.emit_pure(f"{name} = rt.const({name}, 'i32', (), {self.G})   # dim", name)
        for v in k.scalars:
            h = self.py.get(v.hint, v.hint)
            self.names[v] = h
            self.emit_pure(f"{h} = rt.const({h}, '{v.type.dtype}', (), {self.G})   # scalar {v.type}", h)
        self.kernel_body(k.body)
        self._drop_dead(n_head)
        head = [f"# generated by tilec's cpu backend from kernel '{k.name}' ({consts})",
                f"# every value has {self.G} leading instance axes, one per grid axis: size g (varies"
                " along that axis) or 1 (the same for all its programs)", ""]
        alias = {p: a for p, a in self.py.items() if p != a}
        if alias:
            head.append(f"_PYNAMES = {alias!r}   # parameter -> its name in Python")
        return "\n".join(head + self.head + ["", ""] + self.lines) + "\n"

    def emit_pure(self, line: str, *names: str) -> None:
        """Emit an assignment with no side effects: _drop_dead removes it if nothing reads it."""
        self.pure.append((len(self.lines), names))
        self.emit(line)

    def _drop_dead(self, n_head: int) -> None:
        """Remove pure assignments whose names no other line reads, to a fixpoint: index
        arithmetic a blocked access no longer needs, and prologue views, strides and dim
        constants a kernel whose accesses are all blocked never uses."""
        from collections import Counter
        code = [Counter() if i < n_head else Counter(re.findall(r"\b\w+\b", ln.split("#", 1)[0]))
                for i, ln in enumerate(self.lines)]
        total = sum(code, Counter())
        dead: set = set()
        changed = True
        while changed:
            changed = False
            for i, names in self.pure:
                if i in dead:
                    continue
                if all(total[n] - code[i][n] == 0 for n in names):
                    dead.add(i)
                    total -= code[i]
                    changed = True
        self.lines = [ln for i, ln in enumerate(self.lines) if i not in dead]

    # ---- row classes (rows.py) ------------------------------------------------------------
    def kernel_body(self, b: Block) -> None:
        plan = self.rowplan
        if plan is None:
            self.block(b)
            return
        for op in b.ops[:plan.split]:
            if op not in self.done:
                self.op(op)
        rest = b.ops[plan.split:]
        self.row_class_loop(plan, rest)
        for op in rest:
            if op.name != "yield" and op not in self.done:
                self.op(op)
        self.depth -= 1

    def row_class_loop(self, plan, rest: list) -> None:
        """Open ``for _sel, _R in rt.row_classes(..)``: the rest of the kernel runs once per
        class of instances, on rows [0, _R) of every row-axis value."""
        live, sel, R = self.fresh("_live"), self.fresh("_sel"), self.fresh("_R")
        flag = self.n(plan.flag)
        self.emit(f"# rows past the last set flag of {flag} are never stored, and rows are independent:")
        self.emit("# instances run in classes by live row count, each on its tiles cut to that count")
        self.emit(f"{live} = rt.live_rows({flag}, _grid[0])")
        self.emit(f"for {sel}, {R} in rt.row_classes({live}, {plan.rows}):")
        self.depth += 1
        defined, used = set(), {}          # (a dict keeps first-use order)
        for op in rest:
            for o in op.walk():
                defined.update(o.results)
                for r in o.regions:
                    defined.update(r.args)
                used.update(dict.fromkeys(o.operands))
        for v in used:
            if v in defined or v not in self.names:
                continue
            axes = plan.row_axes(v)
            if v not in self.var and not axes:
                continue
            shape = v.type.shape if hasattr(v.type, "shape") else ()
            src = f"rt.instances({self.n(v)}, {sel})" if v in self.var else self.n(v)
            ix = [":"] + [f":{R}" if i in axes else ":" for i in range(len(shape))]
            while ix and ix[-1] == ":":
                ix.pop()
            new = self.fresh(f"{self.n(v)}_c")
            self.emit_pure(f"{new} = {src}" + (f"[{', '.join(ix)}]" if ix else ""), new)
            self.names[v] = new
            self.hoisted.discard(v)
        self._named.clear()              # values before the split have whole-tile shapes
        self._cse.clear()
        self.pids = self.fresh("_pids_c")
        self.emit_pure(f"{self.pids} = (_pids[0][{sel}],)", self.pids)
        self.R = R

    def shape_src(self, v: Value) -> list:
        """v's tile shape as source: row-axis dims are the class' row count in the class loop."""
        axes = self.rowplan.row_axes(v) if self.R else ()
        return [self.R if i in axes else str(n) for i, n in enumerate(v.type.shape)]

    # ---- blocks and ops --------------------------------------------------------------------
    def block(self, b: Block):
        for op in b.ops:
            if op.name == "yield":
                return [self.n(v) for v in op.operands]
            if op in self.done:
                continue
            self.op(op)
        return []

    def _plan_guards(self) -> None:
        """A masked load whose mask has an AND-factor that is one flag per instance (say
        ``is_tree``) gets a first guard on that flag, and the pure ops that only compute its
        index and mask move under it: a batch without tree stages then skips the tree mask's
        full-tile index arithmetic entirely, not just its gather."""
        uses = self._uses()


        def visit(b: Block) -> None:
            for i, op in enumerate(b.ops):
                for r in op.regions:
                    visit(r)
                if op.name != "load" or not op.attrs["has_mask"]:
                    continue
                m = op.operands[1 + len(op.attrs["index"])]
                owned: list = []
                mine = {op}
                # ops before the row-class split stay there (they run on whole tiles)
                first = self.rowplan.split if (b is self.k.body and self.rowplan is not None
                                               and i >= self.rowplan.split) else 0
                for o in reversed(b.ops[first:i]):
                    if o.name in _NOT_HOISTABLE or o.regions or not o.results or o in self.deferred:
                        continue
                    if o.name == "binary" and o.attrs["op"] in ("div", "floordiv", "mod") and \
                            D.is_int(o.results[0].type.dtype):
                        continue             # may raise: keeps its place
                    if all(u in mine for r in o.results for u, _ in uses.get(r, [])):
                        owned.append(o)
                        mine.add(o)
                flags = [f for f in map(self.peel, rows.and_factors(m)) if not f.type.shape and
                         not (isinstance(f.owner, Op) and f.owner in mine)]
                if flags and owned:
                    self.guards[op] = (flags[0], owned[::-1])
                    for o in owned:
                        self.deferred[o] = op

        visit(self.k.body)

    def hoist_invariants(self, body: Block) -> None:
        """Loop-invariant code motion: pure ops of a loop body whose operands all come from
        outside the loop run once, before it (integer division stays: it may raise)."""
        inside = set(body.args)
        for op in body.ops:
            for o in op.walk():
                inside.update(o.results)
        for op in body.ops:
            if op.name in _NOT_HOISTABLE or op.regions or not op.results or op in self.deferred:
                continue
            if op.name == "binary" and op.attrs["op"] in ("div", "floordiv", "mod") and \
                    D.is_int(op.results[0].type.dtype) and not self._nonzero_const(op.operands[1]):
                continue
            if any(v in inside for v in op.operands):
                continue
            self.op(op)
            self.done.add(op)
            inside.difference_update(op.results)
        self.invariant_indices(body, inside)

    def is_hoistable(self, op: Op) -> bool:
        if op.name in _NOT_HOISTABLE or op.regions:
            return False
        if self.R and any(self.rowplan.row_axes(r) for r in op.results):
            return False             # its shape depends on the row class
        if op.name in _PURE_NO_OPERANDS:
            return True
        return bool(op.operands) and all(v in self.hoisted for v in op.operands)

    def op(self, op: Op) -> None:
        if op in self.deferred:
            return                       # emitted under its load's guard (load_op)
        if op.name == "for":
            return self.for_op(op)
        if op.name == "if":
            return self.if_op(op)
        if op.name == "store":
            return self.store_op(op)
        if op.name == "load":
            return self.load_op(op)
        r = op.results[0]
        if op.name in _CSE_OPS and not self.is_hoistable(op):
            hit = self._named_get("pure", self.ckey(r))
            if hit is not None:
                self.names[r] = hit      # the same value, computed earlier in this block
                return
        expr = self.expr(op)
        name = self.bind(r)
        comment = f"{op.name} {self._attrs(op)}-> {r.type}".replace("  ", " ")
        if self.is_hoistable(op) and self.try_hoist(name, expr, comment):
            self.hoisted.add(r)
        else:
            if op.name in _CSE_OPS:
                self._named_put("pure", self.ckey(r), name)
            if op.name != "binary" or not D.is_int(r.type.dtype) or \
                    op.attrs["op"] not in ("div", "floordiv", "mod"):
                self.emit_pure(f"{name} = {expr}  # {comment}", name)
            else:                                              # may raise: never dropped
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
            return f"rt.const({op.attrs['value']!r}, '{dt}', (), {self.G})"
        if name == "program_id":
            return f"{self.pids}[{op.attrs['axis']}]"
        if name == "num_programs":
            return f"rt.const(_grid[{op.attrs['axis']}], 'i32', (), {self.G})"
        if name == "arange":
            end = op.attrs['end']
            if self.R and self.rowplan.row_axes(op.results[0]):
                end = f"{op.attrs['start']} + {self.R}"
            return f"torch.arange({op.attrs['start']}, {end}, dtype=_i32).reshape({self.ones}, -1)"
        if name == "full":
            shape = "(" + "".join(f"{x}, " for x in self.shape_src(op.results[0])) + ")"
            return f"rt.const({op.attrs['value']!r}, '{op.attrs['dtype']}', {shape}, {self.G})"
        if name == "binary":
            return self.binary(op, a, dt)
        if name == "cmp":
            return f"({a[0]} {_CMP[op.attrs['pred']]} {a[1]})"
        if name == "unary":
            return self.unary(op.attrs["op"], a[0], dt)
        if name == "select":
            c = self._aligned(op.operands[0], len(rt_.shape))
            return f"rt.select({c}, {a[1]}, {a[2]})"
        if name == "cast":
            src = op.operands[0].type.dtype
            if src == dt:
                return a[0]
            if dt == "bool":
                return f"({a[0]} != 0)"
            return f"{a[0]}.to({_TD[dt]})"
        if name == "splat":
            shape = self.shape_src(op.results[0])
            return f"{a[0]}[...{', None' * len(shape)}].expand({self.keep}, {', '.join(shape)})"
        if name == "broadcast":
            return f"{a[0]}.expand({self.keep}, {', '.join(self.shape_src(op.results[0]))})"
        if name == "expand_dims":
            return f"{a[0]}.unsqueeze({op.attrs['axis'] + self.G})"
        if name == "trans":
            return f"{a[0]}.transpose(-2, -1)"
        if name == "reshape":
            return f"{a[0]}.reshape(*{a[0]}.shape[:{self.G}], {', '.join(map(str, op.attrs['shape']))})"
        if name == "reduce":
            ax = op.attrs["axis"] + self.G
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
            yv, ty = op.operands[1], False
            tro = yv.owner
            if isinstance(tro, Op) and tro.name == "trans" and tro.operands[0] in self.names:
                y, ty = self.n(tro.operands[0]), True     # fold the transpose into the GEMM
            dead = ", rows_dead=True" if self._padding_rows_dead(op) else ""
            return f"rt.dot({x}, {y}, {self.G}{', True' if ty else ''}{dead})"
        raise ValueError(f"cpu backend: unknown op {name}")

    def _nonzero_const(self, v: Value) -> bool:
        v = self.peel(v)
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
            # a dim divides as a Python int (no tensor op to check it for zero); any other
            # divisor unbroadcast, so a splatted one is checked as one element
            dv = self.peel(op.operands[1])
            if dv in self.k.dims.values() and dt == "i32":
                y = f"{self.n(dv)}_int"
            else:
                y = self._aligned(op.operands[1], len(op.results[0].type.shape))
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
        elif kind == "exp":
            e = f"rt.exp({x})"
        elif kind in ("exp2", "log", "sqrt", "abs"):
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

    def _row_last(self, op: Op) -> int | None:
        """For a gather whose last index is the whole last dim (arange(0, n), n static, along
        the last tile axis only) and whose other indices are constant along that axis (say paged
        K/V rows: KC[blk[:, None], off[:, None], h, d[None, :]]): n, so the gather can fetch
        whole rows, computing indices per row rather than per element. Else None."""
        kinds = op.attrs["index"]
        vals = op.operands[1:1 + len(kinds)]
        n = op.operands[0].type.dims[-1]
        if not kinds or kinds[-1][0] != "tile" or not isinstance(n, int):
            return None
        last = self.peel(vals[-1])
        shp = tuple(last.type.shape)
        if last not in self.hoisted or len(shp) < 2 or shp[-1] != n or any(x != 1 for x in shp[:-1]):
            return None
        if not torch.equal(self.ns[self.n(last)].reshape(-1).long(), torch.arange(n)):
            return None
        for kd, v in zip(kinds[:-1], vals[:-1]):
            if kd[0] == "slice":
                return None
            if kd[0] == "tile":
                s_ = tuple(self.peel(v).type.shape)
                if s_ and s_[-1] != 1:
                    return None
        return n

    def _row_level_mask(self, op: Op) -> bool:
        """Whether a whole-row gather's explicit mask and ``other`` are constant along the row
        (so validity is one flag per row)."""
        nidx = len(op.attrs["index"])
        rest = list(op.operands[1 + nidx:])
        if op.attrs["has_mask"]:
            shp = tuple(self.peel(rest.pop(0)).type.shape)
            if shp and shp[-1] != 1:
                return False
        if op.attrs["has_other"]:
            ov = rest[0]
            if ov not in self.hoisted or self.ns[self.n(ov)].numel() != 1:
                return False
        return True

    def vkey(self, v: Value):
        """Value number: equal keys mean equal values (pure ops over the same operands), so an
        access with the same index/mask keys as an earlier one can reuse its validity and
        linear index (paged V read with K's indices)."""
        k = self._vk.get(v)
        if k is None:
            o = v.owner
            if isinstance(o, Op) and o.name in _CSE_OPS and not o.regions:
                k = (o.name, repr(sorted(o.attrs.items())), tuple(self.vkey(x) for x in o.operands))
            else:
                k = ("value", id(v))
            self._vk[v] = k
        return k

    def _named_get(self, kind: str, key):
        """A name bound earlier to the same thing (a pure value, a table row, a guard flag)
        in this Python block or an enclosing one, else None."""
        hit = self._named.get((kind, key))
        if hit is not None and self._scope()[:len(hit[1])] == hit[1]:
            return hit[0]
        return None

    def _named_put(self, kind: str, key, name: str) -> None:
        self._named[(kind, key)] = (name, self._scope())

    def ckey(self, v: Value):
        """vkey plus the value's row-class axes: in the row-class loop two equal values may
        differ in shape (one cut to the class' rows, one not)."""
        return self.vkey(v), (self.rowplan.row_axes(v) if self.rowplan is not None else ())

    def _scope(self) -> tuple:
        """Identity of the Python block the next line at the current depth goes into."""
        b = self.blocks
        del b[self.depth:]
        while len(b) < self.depth:
            self.block_ids += 1
            b.append(self.block_ids)
        return tuple(b)

    def _access(self, op: Op, extra=(), row: int | None = None, key_extra=None):
        """Emit validity and linear-index code of a load/store; returns (lin, ok|None, rank,
        rest). ``row``: the last dim is read whole (see _row_last) and left out of the index.
        ``key_extra``: hashable identity of ``extra`` (None: never reuse an earlier access)."""
        tensor = op.operands[0]
        t = self.n(tensor)
        kinds = op.attrs["index"]
        nidx = len(kinds)
        idx_vals = op.operands[1:1 + nidx]
        nsl = sum(1 for k in kinds if k[0] == "slice")
        bshape = self._index_shape(op)
        R = len(bshape)
        # an earlier access of a same-shaped tensor with the same indices, mask and scope
        # (guarded by the same condition): reuse its validity, and its linear index when the
        # strides agree at run time
        ckey = None
        if key_extra is not None and nsl == 0:
            ckey = (tuple(tensor.type.dims), tuple(map(tuple, kinds)), tuple(op.attrs["masked"]),
                    tuple(self.ckey(self.peel(v) if kd[0] == "tile" else v)
                          for kd, v in zip(kinds, idx_vals)), key_extra, row)
            hit = self._cse_hit(ckey)
            if hit is not None:
                lin0, ok0, t0, cs, full0 = hit
                if t0 == t:
                    return lin0, ok0, R, op.operands[1 + nidx:]
                # another tensor of the same shape (paged V read with K's indices): the same
                # clamped indices; the same linear index when the strides agree
                rank = tensor.type.rank
                same = (f"({', '.join(f'{t}_s{d}' for d in range(rank))},) == "
                        f"({', '.join(f'{t0}_s{d}' for d in range(rank))},)")
                body = " + ".join(f"{c} * {t}_s{d}" for c, d in cs) or "torch.zeros(1, dtype=_i64)"
                if full0:
                    body = f"({body}).clamp_(0, {t}_hi)"
                lin = self.fresh("_lin")
                self.emit(f"{lin} = {lin0} if {same} else {body}")
                return lin, ok0, R, op.operands[1 + nidx:]
        pos = 0
        checks, idx = [], []
        full_tile = self._full_tile(op, row)
        clamped_check = False
        for d, (kd, v) in enumerate(zip(kinds, idx_vals)):
            if row is not None and d == nidx - 1:
                break                    # whole rows: always inside (checked by _row_last)
            pre = self.pre_idx.get((op, d))
            if pre is not None:          # loop-invariant: computed before the loop
                size, c, check, clamped = pre
                if check:
                    checks.append((size, check))
                clamped_check |= clamped
                idx.append((size, d, c))
                continue
            if kd[0] == "tile":
                v = self.peel(v)
            size = self._size(v, kd[1] if kd[0] == "slice" else None)
            if kd[0] != "slice" and v not in self.hoisted:      # a run-time index
                _, c, check, clamped = self._dim_pieces(op, d, v, R, full_tile, t)
                if check is not None:
                    checks.append((size, check))
                clamped_check |= clamped
                idx.append((size, d, c))
                continue
            src = self.n(v)
            if kd[0] == "slice":
                s = [1] * R
                s[R - nsl + pos] = kd[1]
                pos += 1
                ar = self.fresh(f"_ar{kd[1]}")
                self.hoist(ar, f"torch.arange({kd[1]}, dtype=_i64).reshape({self.ones}, {', '.join(map(str, s))})")
                e = f"({src}.long()[...{', None' * R}] + {ar})"
            else:
                r0 = len(v.type.shape)
                e = f"{src}.long()" + (f"[{self.lead}{', None' * (R - r0)}]" if R > r0 else "")
            if v in self.hoisted:        # the index is known now: bind it at module level
                nm = self.fresh(f"_ix_{t}{d}")
                self.hoist(nm, e)
                e = nm
                lo_ok = bool((self.ns[nm] >= 0).all())
            else:
                nm = self.fresh(f"_ix{d}")
                self.emit(f"{nm} = {e}")
                e, lo_ok = nm, False
            c = e if full_tile else f"{e}.clamp(0, {t}_m{d})"
            if op.attrs["masked"][d]:
                checks.append((size, f"({e} < {t}_n{d})" if lo_ok else f"(({e} >= 0) & ({e} < {t}_n{d}))"))
            idx.append((size, d, c))
        # per-dim validity first (small broadcastable tensors), then one combination;
        # indices are clamped per dim (cheap) unless a full-size gather index makes one final
        # clamp of the linear index cheaper
        # small operands first, so only the last add / and makes a full-size tensor
        checks = [c for _, c in sorted(checks + list(extra), key=lambda x: x[0])]
        cs = [(c, d) for _, d, c in sorted(idx, key=lambda x: x[0])]
        terms = [f"{c} * {t}_s{d}" for c, d in cs]
        ok = None
        if checks:
            ok = self.fresh("_ok")
            cond = " & ".join(checks)
            self.emit(f"{ok} = ({cond}) if {t}_ne else rt.NONE" if clamped_check else f"{ok} = {cond}")
        lin = self.fresh("_lin")
        body = ' + '.join(terms) if terms else 'torch.zeros(1, dtype=_i64)'
        if full_tile:
            body = f"({body}).clamp_(0, {t}_hi)"
        self.emit(f"{lin} = {body}")
        if ckey is not None:
            self._cse[ckey] = (lin, ok, t, cs, full_tile, self._scope(), self.guard)
        return lin, ok, R, op.operands[1 + nidx:]

    def _index_shape(self, op: Op) -> tuple:
        kinds = op.attrs["index"]
        nsl = sum(1 for k in kinds if k[0] == "slice")
        shapes, pos = [], 0
        for kd, v in zip(kinds, op.operands[1:1 + len(kinds)]):
            if kd[0] == "slice":
                s = [1] * nsl
                s[pos] = kd[1]
                pos += 1
                shapes.append(tuple(s))
            elif kd[0] == "scalar":
                shapes.append(())
            else:
                shapes.append(tuple(v.type.shape))
        return tuple(np.broadcast_shapes(*shapes)) if shapes else ()

    def _full_tile(self, op: Op, row) -> bool:
        """Some index is a full-size tile: one final clamp of the linear index is cheaper
        than clamping every index."""
        bshape = self._index_shape(op)
        kinds = op.attrs["index"]
        return row is None and len(bshape) > 0 and any(
            kd[0] == "tile" and tuple(self.peel(v).type.shape) == bshape
            for kd, v in zip(kinds, op.operands[1:1 + len(kinds)]))

    def _dim_pieces(self, op: Op, d: int, v: Value, R: int, full_tile: bool, t: str, pure=False):
        """One tile/scalar index dim of an access, computed at run time: (index name, clamped
        index, validity expression or None, whether validity uses the clamp). Masked dims
        are inside iff clamping leaves the index alone: the clamp the index needs anyway plus
        one compare (an empty dim is caught by {t}_ne in _access); with a full-size index
        the linear index is clamped once instead, so the check is two compares."""
        def bind(hint, expr):
            name = self.fresh(hint)
            (self.emit_pure(f"{name} = {expr}", name) if pure else self.emit(f"{name} = {expr}"))
            return name
        r0 = len(v.type.shape)
        e = bind(f"_ix{d}", f"{self.n(v)}.long()" + (f"[{self.lead}{', None' * (R - r0)}]" if R > r0 else ""))
        if full_tile:
            check = f"(({e} >= 0) & ({e} < {t}_n{d}))" if op.attrs["masked"][d] else None
            return e, e, check, False
        c = f"{e}.clamp(0, {t}_m{d})"
        if not op.attrs["masked"][d]:
            return e, c, None, False
        c = bind(f"_c{d}", c)
        return e, c, f"({c} == {e})", True

    def invariant_indices(self, body: Block, inside: set) -> None:
        """Index pieces of the loop body's loads and stores that do not change between
        iterations (the KV head, the sequence's block-table row): converted, clamped and
        checked once, before the loop (_access picks them up)."""
        for op in body.ops:
            if op in self.guards and self.guards[op][0] not in inside:
                flag = self.guards[op][0]
                self._any(flag, self.n(flag))        # a per-instance flag: test it once
            if op.name not in ("load", "store") or op in self.deferred:
                continue
            kinds = op.attrs["index"]
            nidx = len(kinds)
            t = self.n(op.operands[0])
            R = len(self._index_shape(op))
            row = self._row_last(op)
            full_tile = self._full_tile(op, row)
            for d, (kd, v) in enumerate(zip(kinds, op.operands[1:1 + nidx])):
                if kd[0] == "slice" or (row is not None and d == nidx - 1):
                    continue
                v = self.peel(v) if kd[0] == "tile" else v
                if v in inside or v in self.hoisted or v not in self.names:
                    continue
                size = self._size(v)
                e, c, check, clamped = self._dim_pieces(op, d, v, R, full_tile, t, pure=True)
                if check is not None:
                    name = self.fresh(f"_in{d}")
                    self.emit_pure(f"{name} = {check}", name)
                    check = name
                self.pre_idx[(op, d)] = (size, c, check, clamped)

    def _cse_hit(self, ckey):
        """An earlier access with this key whose names are defined here: emitted in this block
        or an enclosing one, and (if it was inside a load's all-masked-off guard) under a guard
        with the same condition as the current one."""
        hit = self._cse.get(ckey)
        if hit is None:
            return None
        lin, ok, t, cs, full, scope, guard = hit
        here = self._scope()
        if guard is None:
            if here[:len(scope)] != scope:
                return None
        else:
            if self.guard is None or self.guard[0] != guard[0]:
                return None
            outer = self.guard[1]
            if outer[:len(guard[1])] != guard[1]:
                return None
        return lin, ok, t, cs, full

    # ---- fast path: blocked tiles -----------------------------------------------------------
    def _affine(self, v: Value):
        """A start index as program_id(axis) * coeff + uniform: (axis | None, coeff, python
        expression of the uniform part), or None when it is not of that form."""
        if v not in self.var:
            return None, 0, f"int({self.n(v)})"
        o = v.owner
        if not isinstance(o, Op):
            return None
        if o.name == "program_id":
            return o.attrs["axis"], 1, "0"
        if o.name == "binary" and o.attrs["op"] == "mul":
            for p_, c in (o.operands, o.operands[::-1]):
                if isinstance(p_.owner, Op) and p_.owner.name == "program_id" and c in self.hoisted:
                    cv = self.ns[self.n(c)]
                    if cv.numel() == 1 and not cv.dtype.is_floating_point:
                        return p_.owner.attrs["axis"], int(cv), "0"
            return None
        if o.name == "binary" and o.attrs["op"] == "add":
            x, y = self._affine(o.operands[0]), self._affine(o.operands[1])
            if x is None or y is None or (x[0] is not None and y[0] is not None):
                return None
            ax, c = (x[0], x[1]) if x[0] is not None else (y[0], y[1])
            return ax, c, f"{x[2]} + {y[2]}"
        return None

    def _blocked(self, op: Op, override=None):
        """rt.tile_load/tile_store dims for an access whose every index is a slice (or a scalar)
        starting at program_id(a) * extent + uniform, each grid axis blocking at most one tensor
        dim; None when the access needs the general gather/scatter. ``override`` maps a start
        value to (start expression, extent expression) (the raised K loop)."""
        override = override or {}
        if op.attrs["has_mask"] or self.R:      # (a row class holds a subset of the instances)
            return None
        dims, axes = [], []
        for kd, v in zip(op.attrs["index"], op.operands[1:1 + len(op.attrs["index"])]):
            if kd[0] == "tile":
                return None
            if kd[0] == "slice" and v in override:
                dims.append((override[v][0], override[v][1], None, True))
                continue
            aff = self._affine(v)
            if aff is None:
                return None
            ax, c, u = aff
            extent = kd[1] if kd[0] == "slice" else 1
            if ax is not None:
                if c != extent or ax in axes:
                    return None
                axes.append(ax)
            dims.append((u, str(extent), ax, kd[0] == "slice"))
        return dims, axes

    @staticmethod
    def _dims_src(dims) -> str:
        return "[" + ", ".join(f"({u}, {e}, {ax}, {keep})" for u, e, ax, keep in dims) + "]"

    def _uses(self) -> dict:
        """value -> [(op, parent op of the op's block or None)], built once."""
        if getattr(self, "_use_map", None) is None:
            uses: dict = {}

            def walk(b: Block, parent):
                for o in b.ops:
                    for v in o.operands:
                        uses.setdefault(v, []).append((o, parent))
                    for r in o.regions:
                        walk(r, o)
            walk(self.k.body, None)
            self._use_map = uses
        return self._use_map

    def _padding_rows_dead(self, dot: Op) -> bool:
        """Whether the rows of dot(x, y) that come from x's virtual padding (rows of a blocked
        tile past the end of its tensor) can never be observed: the result reaches nothing but
        element-wise ops, loop-carried values and a blocked store that writes the same rows of
        a tensor whose dim is the same size (so exactly those rows fall outside it). Then the
        dot may skip them (rt.dot rows_dead)."""
        x = dot.operands[0]
        spec = self.blocked_loads.get(x)
        if spec is None:
            return False
        kept = [d for d in spec[1] if d[3]]
        if len(kept) != 2 or kept[0][2] is None:
            return False
        rd = spec[1].index(kept[0])                          # tensor dim of the rows
        u, e, ax, _ = kept[0]
        src_dim = spec[0].type.dims[rd]
        uses = self._uses()
        seen, work = set(), [dot.results[0]]
        while work:
            v = work.pop()
            if v in seen:
                continue
            seen.add(v)
            for o, parent in uses.get(v, []):
                if o.name in ("binary", "unary", "cast", "select", "cmp"):
                    if len(o.results[0].type.shape) != 2:
                        return False
                    work.append(o.results[0])
                elif o.name == "yield" and parent is not None and parent.name in ("for", "if"):
                    i = o.operands.index(v)
                    work.append(parent.results[i])
                    if parent.name == "for":
                        work.append(parent.regions[0].args[1 + i])
                elif o.name == "for" and v in o.operands[2:]:
                    i = o.operands.index(v) - 2
                    work += [o.results[i], o.regions[0].args[1 + i]]
                elif o.name == "store" and not o.attrs["has_mask"]:
                    nidx = len(o.attrs["index"])
                    if o.operands[1 + nidx] is not v:
                        return False
                    st = self._blocked(o)
                    if st is None or sorted(st[1]) != list(range(self.G)):
                        return False
                    skept = [d for d in st[0] if d[3]]
                    sd = st[0].index(skept[0])
                    if skept[0][:3] != (u, e, ax) or o.operands[0].type.dims[sd] != src_dim:
                        return False
                else:
                    return False
        return True

    def _blocked_load(self, op: Op, override=None) -> bool:
        spec = self._blocked(op, override)
        if spec is None:
            return False
        self.blocked_loads[op.results[0]] = (op.operands[0], spec[0])
        other = "0"
        if op.attrs["has_other"]:
            ov = op.operands[1 + len(op.attrs["index"])]
            if ov not in self.hoisted or self.ns[self.n(ov)].numel() != 1:
                return False
            other = f"{self.n(ov)}.item()"
        t, r = self.n(op.operands[0]), op.results[0]
        self.emit(f"# {self.bind(r)} = load {t}[{', '.join(k[0] for k in op.attrs['index'])}]"
                  f" -> {r.type}: blocked tiles, a view where inside {t}")
        row = self._table_row(op, spec[0], other)
        if row is not None:
            self.emit(f"{self.n(r)} = {row}")
            return True
        # a view of a tensor this kernel also stores into would see those stores: a copy
        fresh = ", fresh=True" if op.operands[0] in self.stored_params else ""
        self.emit(f"{self.n(r)} = rt.tile_load({t}, {self.G}, _grid, {self._dims_src(spec[0])}, {other}{fresh})")
        return True

    def _table_row(self, op: Op, dims, other: str):
        """A scalar read of a table at a constant column (TASKS[t, 3]): the program's whole row
        is loaded once and each such read is a column of it (one launch reads 9 columns)."""
        if op.results[0].type.shape:
            return None
        tensor = op.operands[0]
        cols = [d for d, (u, e, ax, keep) in enumerate(dims) if ax is None and not keep and e == "1"]
        if len(cols) != 1:
            return None
        d = cols[0]
        m = re.fullmatch(r"int\((\w+)\)", dims[d][0])
        n = tensor.type.dims[d]
        if m is None or not isinstance(n, int) or m.group(1) not in self.ns:
            return None
        c = int(self.ns[m.group(1)])
        if not 0 <= c < n:
            return None                  # outside the table: the general path pads it
        whole = list(dims)
        whole[d] = ("0", str(n), None, True)
        key = (tensor, tuple(whole[:d] + whole[d + 1:]), d, other)
        name = self._named_get("row", key)
        if name is None:
            name = self.fresh(f"_{self.n(tensor)}_row")
            self.emit(f"{name} = rt.tile_load({self.n(tensor)}, {self.G}, _grid, {self._dims_src(whole)}, {other})")
            self._named_put("row", key, name)
        pos = sum(1 for x in dims[:d] if x[3])
        return f"{name}[{self.lead}, {':, ' * pos}{c}]"

    def _blocked_store(self, op: Op) -> bool:
        if self.act is not None:
            return False             # masked by control flow: scatter
        spec = self._blocked(op)
        if spec is None or sorted(spec[1]) != list(range(self.G)):
            return False             # an axis that blocks nothing: its programs overlap
        nidx = len(op.attrs["index"])
        t = self.n(op.operands[0])
        val = self._aligned(op.operands[1 + nidx], sum(1 for d in spec[0] if d[3]))
        self.emit(f"# store {t}[{', '.join(k[0] for k in op.attrs['index'])}]: blocked tiles, "
                  f"one copy of the part inside {t}")
        self.emit(f"rt.tile_store({t}, {val}, {self.G}, _grid, {self._dims_src(spec[0])})")
        return True

    def load_op(self, op: Op) -> None:
        if op in self.guards:
            flag, owned = self.guards[op]
            r = op.results[0]
            name = self.bind(r)
            self.emit(f"if {self._any(flag, self.n(flag))}:   # else every lane of {name}'s mask is off")
            self.depth += 1
            for o in owned:
                del self.deferred[o]
                if o not in self.done:
                    self.op(o)
            del self.guards[op]
            self.names.pop(r)
            self.used.discard(name)
            self.load_op(op)
            self.depth -= 1
            self.emit("else:")
            self.emit(f"    {self.n(r)} = {self._lanes_off(op)}")
            if r.type.shape:
                self.emit(f"{self.n(r)} = {self.n(r)}.expand({self.keep}, {', '.join(self.shape_src(r))})")
            return
        if self._blocked_load(op):
            return
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
        row = self._row_last(op)
        guard = op.attrs["has_mask"]
        mkey = self.ckey(self.peel(m)) if guard else None
        depth = self.depth
        saved_guard = self.guard
        if guard:            # an explicit mask may switch every lane off (say, tree masks in a
            # batch without tree stages): then skip the index arithmetic and the gather
            outer = self._scope()
            self.emit(f"if {self._any(self.peel(m), extra[0][1])}:")
            self.depth += 1
            self.guard = (mkey, outer)
        lin, ok, R, _ = self._access(op, extra, row, key_extra=(mkey, self.act))
        self.guard = saved_guard
        name = self.n(r)
        if row is not None:
            dl = nidx - 1
            self.emit(f"{name} = rt.gather_rows({t}_f, {t}_hi, {row}, {t}_s{dl}, {lin})   # whole rows")
        else:
            self.emit(f"{name} = {t}_f[{lin}]")
        if ok is not None:
            other = self._other(op)
            if self.lanes.unobserved(op):
                self.emit(f"# masked-off lanes of {name} left as fetched: every use replaces them (lanes.py)")
            elif row is not None and self._row_level_mask(op):
                # validity is per row: blank the few invalid rows in place (a select over
                # the whole tile costs ~10x an add on CPU)
                self.emit(f"rt.blank_rows({name}, {ok}, {other})")
            else:
                self.emit(f"{name} = rt.select({ok}, {name}, {other})")
            if guard:
                self.depth = depth
                self.emit("else:")
                self.emit(f"    {name} = {self._lanes_off(op)}")
                if R and self._gather_covers(op, row):
                    self.emit(f"    {name} = {name}.expand({self.keep}, {', '.join(self.shape_src(r))})")
        if R and not (guard and self._gather_covers(op, row)):
            self.emit(f"{name} = {name}.expand({self.keep}, {', '.join(self.shape_src(r))})")

    def _gather_covers(self, op: Op, row) -> bool:
        """Whether the gathered tile already has the load's full tile shape (its indices span
        every dim), so only the all-lanes-off value needs expanding."""
        shape = tuple(op.results[0].type.shape)
        kinds = op.attrs["index"]
        if any(k[0] == "slice" for k in kinds):
            return False
        span = [1] * len(shape)
        if row is not None and shape:
            span[-1] = shape[-1]
        for kd, v in zip(kinds, op.operands[1:1 + len(kinds)]):
            if kd[0] == "tile":
                for i, n in enumerate(self.peel(v).type.shape):
                    if i < len(span):
                        span[i] = max(span[i], n)
        return tuple(span) == shape

    def _any(self, v: Value, src: str) -> str:
        """Name of a bool: does any lane of ``v`` (source ``src``) hold? Evaluated once per
        block: K and V gathers share their guard, a per-instance flag is tested before the
        loop (invariant_indices)."""
        g = self._named_get("any", self.ckey(v))
        if g is None:
            g = self.fresh("_some")
            self.emit(f"{g} = rt.any_({src})")
            self._named_put("any", self.ckey(v), g)
        return g

    def _other(self, op: Op) -> str:
        """A load's ``other`` (0 when absent), aligned to its index rank."""
        t = self.n(op.operands[0])
        dt = op.operands[0].type.dtype
        if not op.attrs["has_other"]:
            if dt not in self._zeros:
                self._zeros[dt] = self.fresh(f"_zero_{dt}")
                self.hoist(self._zeros[dt], f"torch.zeros((), dtype={_TD[dt]})")
            return self._zeros[dt]
        ov = op.operands[-1]
        if self.peel(ov) in self.hoisted:         # a constant: converted once, at module level
            name = self.fresh("_other")
            self.hoist(name, f"{self._aligned(ov, self._index_rank(op))}.to({_TD[dt]})")
            return name
        return f"{self._aligned(ov, self._index_rank(op))}.to({t}_f.dtype)"

    def _lanes_off(self, op: Op) -> str:
        """The value of a load whose mask is off in every lane: ``other``, with all its dims
        (instance axes + tile) so the load's final expand applies; a module-level constant
        when ``other`` is one."""
        rank = self.G + self._index_rank(op)
        dt = _TD[op.operands[0].type.dtype]
        if not op.attrs["has_other"]:
            expr = f"torch.zeros({', '.join(['1'] * rank)}, dtype={dt})"
        elif self.peel(op.operands[-1]) in self.hoisted:
            expr = f"rt.full_rank({self._aligned(op.operands[-1], self._index_rank(op))}.to({dt}), {rank})"
        else:
            return f"rt.full_rank({self._other(op)}, {rank})"
        name = self.fresh("_off")
        self.hoist(name, expr)
        return name

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
        return self.n(v) + (f"[{self.lead}{', None' * (R - r0)}]" if R > r0 else "")

    def store_op(self, op: Op) -> None:
        if self._blocked_store(op):
            return
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
            extra.append(((0, 1), f"{self.act}[...{', None' * Rv}]"))
        row = self._row_last(op)
        mkey = self.ckey(self.peel(op.operands[2 + nidx])) if op.attrs["has_mask"] else None
        if row is not None and (not op.attrs["has_mask"] or
                                tuple(self.peel(op.operands[2 + nidx]).type.shape)[-1:] in ((), (1,))):
            # whole rows with one validity flag per row: scatter only the valid rows
            lin, ok, R, rest = self._access(op, extra, row, key_extra=(mkey, self.act))
            self.emit(f"rt.store_rows({t}, {t}_f, {lin}, {ok}, {self._aligned(value, R)}, {row}, {t}_s{nidx - 1})"
                      "   # whole rows")
            return
        lin, ok, R, rest = self._access(op, extra, key_extra=(mkey, self.act))
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
        if uniform and self._raised_contraction(op, args):
            return
        saved = self.act
        if uniform:
            self.emit(f"for {iv} in rt.iv_range({self.n(lo)}, {self.n(hi)}, {step}):"
                      f"   # for {iv} in range(lo, hi, {step}) (bounds uniform)")
            self.depth += 1
            ys = self.block(body)
            if args:
                self.emit(f"{', '.join(args)}, = {', '.join(ys)},")
            else:           # a body whose every op was dead (or comments only) still needs a statement
                self.emit("pass")
            self.depth -= 1
        else:
            trips, k, act = self.fresh("_trips"), self.fresh("_k"), self.fresh("_act")
            self.used.add(f"{trips}_max")
            self.emit(f"{trips}, {trips}_max = rt.trips({self.n(lo)}, {self.n(hi)}, {step}, {saved or 'None'})"
                      f"   # for {iv} in range(lo, hi, {step}) (bounds vary per instance)")
            if args:
                self.used.add(f"{trips}_min")
                self.emit(f"{trips}_min = rt.trips_min({trips})")
            self.emit(f"for {k} in range({trips}_max):")
            self.depth += 1
            self.emit(f"{iv} = {self.n(lo)} + {k} * {step}")
            self.emit(f"{act} = {trips} > {k}")
            self.act = act
            ys = self.block(body)
            if args:       # merge only in the steps where some instance has already finished
                self.emit(f"if {k} < {trips}_min:")
                self.emit(f"    {', '.join(args)}, = {', '.join(ys)},")
                self.emit("else:")
                for a_, y, bv in zip(args, ys, body.args[1:]):
                    rank = len(bv.type.shape)
                    self.emit(f"    {a_} = rt.select({act}[...{', None' * rank}], {y}, {a_})")
            self.depth -= 1
            self.act = saved
        for res, a_ in zip(op.results, args):
            self.emit(f"{self.bind(res)} = {a_}")

    def _raised_contraction(self, op: Op, args: list) -> bool:
        """``for k in range(lo, hi, S): acc += dot(load(X[.., k:k+S]), load(Y[k:k+S, ..]))``
        (Y may be trans(load(W[.., k:k+S]))) becomes ONE dot over the whole range: the loads
        read every K step's tile at once and the f32 sum is reassociated (within the dot's
        stated tolerance). Anything else in the body keeps the loop."""
        body = op.regions[0]
        step = op.attrs["step"]
        if step <= 0 or len(body.args) != 2:
            return False
        iv, acc = body.args
        rest = [o for o in body.ops if o not in self.done and o.name != "yield"]
        (y,) = body.terminator.operands
        add = y.owner
        if not (isinstance(add, Op) and add.name == "binary" and add.attrs["op"] == "add"
                and acc in add.operands and y.type.dtype == "f32"):
            return False
        d = add.operands[1] if add.operands[0] is acc else add.operands[0]
        dot = d.owner
        if not (isinstance(dot, Op) and dot.name == "dot") or d is acc:
            return False
        xl = dot.operands[0].owner
        yo = dot.operands[1].owner
        tr = yo if isinstance(yo, Op) and yo.name == "trans" else None
        yl = tr.operands[0].owner if tr is not None else yo
        loads = [xl, yl]
        if not all(isinstance(o, Op) and o.name == "load" for o in loads):
            return False
        if set(rest) != {xl, yl, dot, add} | ({tr} if tr else set()):
            return False
        if any(iv in o.operands for o in (dot, add) + ((tr,) if tr else ())):
            return False
        # iv must start exactly one slice of each load, in the contraction position
        for ld, want_last in ((xl, True), (yl, tr is not None)):
            kinds = ld.attrs["index"]
            idx = list(ld.operands[1:1 + len(kinds)])
            if idx.count(iv) != 1 or iv in ld.operands[1 + len(kinds):]:
                return False
            pos = idx.index(iv)
            kept = [i for i, kd in enumerate(kinds) if kd[0] != "scalar"]
            if kinds[pos] != ("slice", step) and tuple(kinds[pos]) != ("slice", step):
                return False
            if pos != (kept[-1] if want_last else kept[0]):
                return False
        lo, hi = op.operands[0], op.operands[1]
        k0, kn = self.fresh("_k0"), self.fresh("_kn")
        over = {iv: (k0, kn)}
        if self._blocked(xl, over) is None or self._blocked(yl, over) is None:
            return False
        self.emit(f"# for {self.n(iv)} in range(lo, hi, {step}): {args[0]} += dot(..) -- raised to "
                  f"one dot over the whole range (f32 sum reassociated)")
        self.emit(f"{k0}, {kn} = rt.span({self.n(lo)}, {self.n(hi)}, {step})")
        for ld in loads:
            if not self._blocked_load(ld, over):
                raise AssertionError("checked above")
        if tr is not None:
            self.op(tr)
        self.op(dot)
        self.op(add)
        self.emit(f"{self.bind(op.results[0])} = {self.n(y)}")
        return True

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
                ys = self.block(blk)
                if res:
                    self.emit(f"{', '.join(res)}, = {', '.join(ys)},")
                else:       # comment lines alone are not a block
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
            self.emit(f"{r} = rt.select({c}[...{', None' * rank}], {a_}, {b_})")


def emit_kernel(kernel: Kernel):
    """(source, namespace with the module-level constants already evaluated, function name)."""
    e = Emitter(kernel)
    src = e.run()
    fname = e.lines[0].split("(")[0][4:]
    return src, e.ns, fname
