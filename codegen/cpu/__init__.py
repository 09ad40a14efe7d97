"""cpu backend: generated torch code that runs all program instances of the grid at once.

    run(kernel, args)            # numpy arrays or torch tensors, outputs written in place
    ck = compile(kernel)         # CpuKernel; ck.source is the generated Python
    ck(A=a, B=b, C=c)
    emit(kernel) -> str          # the generated source only
    ck = load(source, signature) # what an artifact entry holds, ready to launch (no IR needed)
"""
from __future__ import annotations

import builtins
import re

import numpy as np
import torch

from codegen.signature import Signature

from . import rt
from .emit import base_namespace

__all__ = ["run", "compile", "emit", "entry_files", "load", "CpuKernel"]

_DEF = re.compile(r"^def (\w+)\(", re.M)


class CpuKernel:
    """A generated module, executed once, ready to launch: ``ck(**args)`` or ``ck.launch(args)``."""

    def __init__(self, source: str, signature: Signature):
        m = _DEF.search(source)
        if m is None:
            raise ValueError(f"{signature.kernel}: the cpu source defines no function")
        self.source = source
        self.signature = signature
        self.namespace = ns = base_namespace()
        exec(builtins.compile(source, f"<tilec-cpu {signature.kernel}>", "exec"), ns)
        self.fn = ns[m.group(1)]
        self.pynames = ns.get("_PYNAMES") or {}     # parameters renamed in Python (keywords, ...)

    def __call__(self, **args) -> None:
        self.launch(args)

    def launch(self, args: dict) -> None:
        launch = self.signature.bind(args)
        tensors, writeback = {}, []
        for name, x in launch.tensors.items():
            if isinstance(x, np.ndarray):
                if x.flags.writeable and all(s >= 0 for s in x.strides) and \
                        all(s % x.itemsize == 0 for s in x.strides):
                    t = rt.from_numpy(x)
                else:
                    t = rt.from_numpy(np.ascontiguousarray(x))
                    if x.flags.writeable:
                        writeback.append((x, t))
                x = t
            tensors[name] = x
        for g in launch.grid:
            if g == 0:
                return
        self._unalias(tensors)
        kw = tensors
        kw.update(launch.scalars)
        kw.update(launch.dims)
        if self.pynames:
            kw = {self.pynames.get(n, n): x for n, x in kw.items()}
        if torch.is_grad_enabled():      # entering a mode costs ~2 µs: only when needed
            with torch.no_grad():
                self.fn(**kw, _grid=launch.grid)
        else:
            self.fn(**kw, _grid=launch.grid)
        for x, t in writeback:
            x[...] = t.view(torch.int16).numpy().view(x.dtype) if t.dtype == torch.bfloat16 else t.numpy()


    def _unalias(self, tensors: dict) -> None:
        """Launch semantics: each program reads its tiles before it stores. The generated code
        loads all programs' tiles as views where it can, so an input that shares memory with
        an output (rope in place: X and Y are one tensor) is read from a snapshot instead."""
        written = [tensors[n] for n in self.signature.written]
        if not written:
            return
        ptrs = {w.untyped_storage().data_ptr() for w in written}
        for t in self.signature.tensors:
            if not t.written:
                x = tensors[t.name]
                if x.untyped_storage().data_ptr() in ptrs:
                    tensors[t.name] = x.clone()


def load(source: str, signature: Signature) -> CpuKernel:
    """The kernel an artifact entry holds (its ``kernel.py`` and ``signature.json``)."""
    return CpuKernel(source, signature)


_CACHE: dict = {}


def compile(kernel) -> CpuKernel:      # noqa: A001 (the backend API's name)
    hit = _CACHE.get(id(kernel))
    if hit is not None and hit[0] is kernel:
        return hit[1]
    from tilec.ir.printer import print_kernel

    from .emit import emit_kernel
    text = print_kernel(kernel)
    ck = _CACHE.get(text)
    if ck is None:
        source, _, _ = emit_kernel(kernel)
        ck = _CACHE[text] = CpuKernel(source, Signature.of(kernel))
        ck.kernel = kernel
    _CACHE[id(kernel)] = (kernel, ck)
    return ck


def emit(kernel) -> str:
    return compile(kernel).source


def entry_files(kernel, target: str = "cpu") -> tuple[dict[str, str], dict]:
    """An artifact entry's backend files (the runtime adds nothing: ``load`` runs them)."""
    return {"kernel.py": emit(kernel)}, {}


def run(kernel, args: dict) -> None:
    """Run ``kernel`` on numpy arrays or torch tensors; stores write into them in place."""
    compile(kernel).launch(args)
