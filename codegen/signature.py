"""A kernel's launch signature: what a caller must pass and how the grid follows from it.

Made from the IR at compile time (``Signature.of(kernel)``) and stored as JSON in every
artifact entry (``to_json`` / ``from_json``), so the runtime binds and checks launch arguments
without the IR, the frontend or any walk of the program::

    sig = Signature.of(kernel)            # memoised on the kernel
    launch = sig.bind({"A": a, "W": w, "C": c})   # LaunchError naming the argument
    launch.grid, launch.dims, launch.tensors, launch.scalars

Tensors may be numpy arrays or torch tensors; all tensors of one launch live on one device.
The grid is a small straight-line program over the dims and scalars (the kernel's ``grid``
block), evaluated with the language's scalar semantics and memoised per (dims, scalars).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tilec.ir import dtypes as D

__all__ = ["FORMAT", "LaunchError", "Launch", "TensorSpec", "Signature"]

FORMAT = "tilec-signature"
VERSION = 1
_GRID_OPS = ("constant", "binary", "cmp", "unary", "cast", "select")
_GRID_CACHE_SIZE = 4096
_I32_MAX = 2**31 - 1


class LaunchError(ValueError):
    """Arguments that do not fit the kernel; the message names the argument."""


@dataclass
class Launch:
    tensors: dict          # name -> array/tensor as given
    scalars: dict          # name -> python scalar
    dims: dict             # symbolic dim -> int
    grid: tuple


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    dims: tuple            # int (static) or str (symbolic dim bound at launch)
    written: bool          # the kernel stores into it


def _torch():
    try:
        import torch
        return torch
    except ImportError:     # pragma: no cover
        return None


def _dev(d) -> str:
    return "cpu" if d == -1 else f"cuda:{d}" if isinstance(d, int) else str(d)


class Signature:
    def __init__(self, kernel: str, consts: dict, tensors: list[TensorSpec], scalars: list[tuple[str, str]],
                 order: list[str], dims: list[str], grid: list, grid_out: list):
        self.kernel = kernel
        self.consts = dict(consts)
        self.tensors = tensors
        self.scalars = scalars            # [(name, dtype)]
        self.order = order
        self.dims = dims
        self.grid = grid                  # [[dst, op, attr, dtype, args...]]
        self.grid_out = grid_out
        self.written = tuple(t.name for t in tensors if t.written)
        self._names = frozenset(order)
        self._grid_cache: dict = {}
        torch = _torch()
        self._tensor_cls = torch.Tensor if torch is not None else None
        # per tensor: (name, torch dtype, [(axis, static size or dim name)], spec)
        self._plan = [(t.name, D.to_torch(t.dtype) if torch is not None else None,
                       list(enumerate(t.dims)), t) for t in tensors]

    # ------------------------------------------------------------------ construction

    @classmethod
    def of(cls, kernel) -> "Signature":
        """The signature of an IR kernel (memoised on it)."""
        hit = kernel.__dict__.get("_signature")
        if hit is None:
            hit = kernel.__dict__["_signature"] = cls._from_kernel(kernel)
        return hit

    @classmethod
    def _from_kernel(cls, k) -> "Signature":
        stored = {op.operands[0] for op in k.walk() if op.name == "store"}
        tensors = [TensorSpec(tp.name, tp.type.dtype, tuple(tp.type.dims), tp.value in stored) for tp in k.tensors]
        scalars = [(v.hint, v.type.dtype) for v in k.scalars]
        names = {v: n for n, v in k.dims.items()}
        names.update({v: v.hint for v in k.scalars})
        prog, out = [], []
        for op in k.grid.ops:
            if op.name == "yield":
                out = [names[v] for v in op.operands]
                break
            if op.name not in _GRID_OPS:
                raise LaunchError(f"{k.name}: grid uses '{op.name}', which a launch cannot evaluate")
            dst = f"%{len(prog)}"
            names[op.result] = dst
            attr = op.attrs.get("value", op.attrs.get("op", op.attrs.get("pred", op.attrs.get("dtype"))))
            prog.append([dst, op.name, attr, op.result.type.dtype] + [names[v] for v in op.operands])
        return cls(k.name, dict(k.consts), tensors, scalars, list(k.param_order), list(k.dims), prog, out)

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "kernel": self.kernel, "consts": self.consts,
                "tensors": [{"name": t.name, "dtype": t.dtype, "dims": list(t.dims), "written": t.written}
                            for t in self.tensors],
                "scalars": [{"name": n, "dtype": dt} for n, dt in self.scalars],
                "order": self.order, "dims": self.dims, "grid": {"ops": self.grid, "out": self.grid_out}}

    @classmethod
    def from_json(cls, d) -> "Signature":
        """A signature from its JSON form; LaunchError (one line) when it is malformed."""
        def need(cond, what):
            if not cond:
                raise LaunchError(f"launch signature: {what}")

        def ident(x):
            return isinstance(x, str) and x.isidentifier()

        need(isinstance(d, dict) and d.get("format") == FORMAT, f"not a {FORMAT} document")
        need(d.get("version") == VERSION, f"version {d.get('version')!r} (this tilec reads {VERSION})")
        need(ident(d.get("kernel")), "bad kernel name")
        need(isinstance(d.get("consts"), dict), "bad consts")
        dims = d.get("dims")
        need(isinstance(dims, list) and all(ident(x) for x in dims), "bad dims")
        tensors = []
        need(isinstance(d.get("tensors"), list) and isinstance(d.get("scalars"), list), "bad parameters")
        for t in d["tensors"]:
            need(isinstance(t, dict) and ident(t.get("name")) and t.get("dtype") in D.ALL
                 and isinstance(t.get("dims"), list) and isinstance(t.get("written"), bool), "bad tensor")
            for x in t["dims"]:
                need((isinstance(x, int) and not isinstance(x, bool) and x >= 0) or x in dims,
                     f"tensor {t['name']} has a bad dim {x!r}")
            tensors.append(TensorSpec(t["name"], t["dtype"], tuple(t["dims"]), t["written"]))
        scalars = []
        for s in d["scalars"]:
            need(isinstance(s, dict) and ident(s.get("name")) and s.get("dtype") in D.ALL, "bad scalar")
            scalars.append((s["name"], s["dtype"]))
        names = [t.name for t in tensors] + [n for n, _ in scalars]
        need(len(set(names)) == len(names), "duplicate parameter names")
        order = d.get("order")
        need(isinstance(order, list) and sorted(order) == sorted(names), "order does not list the parameters")
        g = d.get("grid")
        need(isinstance(g, dict) and isinstance(g.get("ops"), list) and isinstance(g.get("out"), list), "bad grid")
        known = set(dims) | {n for n, _ in scalars}
        for op in g["ops"]:
            need(isinstance(op, list) and len(op) >= 4 and op[1] in _GRID_OPS and op[3] in D.ALL
                 and isinstance(op[0], str) and all(isinstance(a, str) and a in known for a in op[4:]),
                 f"bad grid op {op!r:.60}")
            need(op[1] != "constant" or (isinstance(op[2], (int, float)) and len(op) == 4), "bad grid constant")
            known.add(op[0])
        need(1 <= len(g["out"]) <= 3 and all(x in known for x in g["out"]), "bad grid result")
        return cls(d["kernel"], d["consts"], tensors, scalars, order, dims, g["ops"], g["out"])

    # ------------------------------------------------------------------ binding

    def bind(self, args: dict) -> Launch:
        """Check ``args`` against the signature; the grid and the dims bound from the shapes.
        This runs on every launch, so the common case (torch tensors of the right dtype on one
        device) takes a short path; anything else falls through to the checks that name it."""
        if args.keys() != self._names:
            extra = sorted(set(args) - self._names)
            if extra:
                raise LaunchError(f"{self.kernel}: unexpected argument(s) {', '.join(extra)}; "
                                  f"takes {', '.join(self.order)}")
            missing = [n for n in self.order if n not in args]
            raise LaunchError(f"{self.kernel}: missing argument(s) {', '.join(missing)}")
        dims: dict[str, int] = {}
        tensors = {}
        device = None
        tensor_cls = self._tensor_cls
        for name, tdt, axes, t in self._plan:
            x = args[name]
            if x.__class__ is tensor_cls and x.dtype is tdt:
                dev = x.get_device()              # -1 on the host
            else:
                dev = self._slow_check(t, x)
            if device is None:
                device = dev
            elif dev != device:
                raise LaunchError(f"{self.kernel}: '{name}' is on {_dev(dev)}, the other tensors on {_dev(device)}")
            shape = x.shape
            if len(shape) != len(axes):
                raise LaunchError(f"{self.kernel}: '{name}' has {len(shape)} dims, kernel expects "
                                  f"{len(axes)} ({t.dtype}[{','.join(map(str, t.dims))}])")
            for axis, d in axes:
                n = shape[axis]
                if d.__class__ is int:
                    if d != n:
                        raise LaunchError(f"{self.kernel}: '{name}' dim {axis} is {n}, but this variant "
                                          f"was compiled for {d}")
                else:
                    have = dims.get(d)
                    if have is None:
                        if n > _I32_MAX:
                            raise LaunchError(f"{self.kernel}: '{name}' dim {axis} is {n}; dims are i32 "
                                              f"(at most {_I32_MAX})")
                        dims[d] = int(n)
                    elif have != n:
                        raise LaunchError(f"{self.kernel}: dim '{d}' is {have} from one tensor and {n} "
                                          f"from '{name}' dim {axis}")
            tensors[name] = x
        scalars = {}
        for name, _ in self.scalars:
            x = args[name]
            if not isinstance(x, (int, float, bool, np.generic)):
                raise LaunchError(f"{self.kernel}: scalar '{name}' must be a number, got {type(x).__name__}")
            scalars[name] = x
        return Launch(tensors, scalars, dims, self.eval_grid(dims, scalars))

    def _slow_check(self, t: TensorSpec, x):
        """The device of a tensor argument that is not a plain torch tensor of the expected
        dtype: a numpy array or a torch subclass, checked; or a LaunchError naming it."""
        if isinstance(x, np.ndarray):
            try:
                dt = D.from_numpy(x.dtype)
            except ValueError as e:
                raise LaunchError(f"{self.kernel}: '{t.name}': {e}") from None
            if t.written and not x.flags.writeable:
                raise LaunchError(f"{self.kernel}: '{t.name}' is written by the kernel but the array "
                                  f"is read-only")
            dev = -1
        else:
            torch = _torch()
            if torch is None or not isinstance(x, torch.Tensor):
                raise LaunchError(f"{self.kernel}: '{t.name}' must be an array or tensor, got {type(x).__name__}")
            try:
                dt = D.from_torch(x.dtype)
            except ValueError as e:
                raise LaunchError(f"{self.kernel}: '{t.name}': {e}") from None
            dev = x.get_device() if x.device.type in ("cpu", "cuda") else x.device.type
        if dt != t.dtype:
            raise LaunchError(f"{self.kernel}: '{t.name}' has dtype {dt}, kernel expects {t.dtype}")
        return dev

    def eval_grid(self, dims: dict, scalars: dict) -> tuple:
        """The launch grid (memoised: a server launches the same few shapes over and over)."""
        key = (tuple(dims.items()), tuple(scalars.items()))
        hit = self._grid_cache.get(key)
        if hit is None:
            if len(self._grid_cache) >= _GRID_CACHE_SIZE:
                self._grid_cache.clear()
            hit = self._grid_cache[key] = self._eval_grid(dims, scalars)
        return hit

    def _eval_grid(self, dims: dict, scalars: dict) -> tuple:
        from tilec.ir import semantics as S
        env = {n: (np.int32(v), "i32") for n, v in dims.items()}
        for n, dt in self.scalars:
            env[n] = (S.as_type(scalars[n], dt)[()], dt)
        for dst, op, attr, dt, *a in self.grid:
            vals = [env[x][0] for x in a]
            ops = [S.as_type(env[x][0], env[x][1]) for x in a]
            if op == "constant":
                r = S.as_type(attr, dt)[()]
            elif op == "binary":
                try:
                    r = S.binary(attr, ops[0], ops[1], dt)[()]
                except ZeroDivisionError:
                    raise LaunchError(f"{self.kernel}: the grid divides by zero for dims "
                                      f"{dims}") from None
            elif op == "cmp":
                r = S.cmp(attr, ops[0], ops[1])[()]
            elif op == "unary":
                r = S.unary(attr, ops[0], dt)[()]
            elif op == "cast":
                r = S.as_type(vals[0], dt)[()]
            else:   # select
                r = vals[1] if vals[0] else vals[2]
            env[dst] = (r, dt)
        return tuple(max(0, int(env[n][0])) for n in self.grid_out)
