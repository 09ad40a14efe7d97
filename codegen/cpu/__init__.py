"""cpu backend: generated torch code that runs all program instances of the grid at once.

    run(kernel, args)            # numpy arrays or torch tensors, outputs written in place
    ck = compile(kernel)         # CompiledCpuKernel; ck.source is the generated Python
    ck(A=a, B=b, C=c)
    emit(kernel) -> str          # the generated source only
"""
from __future__ import annotations

import builtins

import numpy as np
import torch

from codegen.launch import bind
from tilec.ir.core import Kernel

from . import rt
from .emit import emit_kernel

__all__ = ["run", "compile", "emit", "CompiledCpuKernel"]


class CompiledCpuKernel:
    def __init__(self, kernel: Kernel):
        self.kernel = kernel
        self.source, ns, self.fname = emit_kernel(kernel)
        # the module-level constants were already evaluated by the emitter (into ns);
        # only the function definition is left to run
        body = self.source.split("\n\ndef ", 1)[1]
        exec(builtins.compile("def " + body, f"<tilec-cpu {kernel.name}>", "exec"), ns)
        self.fn = ns[self.fname]
        self.namespace = ns

    def __call__(self, **args) -> None:
        launch = bind(self.kernel, args)
        k = self.kernel
        tensors, writeback = {}, []
        for tp in k.tensors:
            x = launch.tensors[tp.name]
            if isinstance(x, np.ndarray):
                if x.flags.writeable and all(s >= 0 for s in x.strides) and \
                        all(s % x.itemsize == 0 for s in x.strides):
                    t = rt.from_numpy(x)
                else:
                    t = rt.from_numpy(np.ascontiguousarray(x))
                    if x.flags.writeable:
                        writeback.append((x, t))
            else:
                t = x
            tensors[tp.name] = t
        p = 1
        for g in launch.grid:
            p *= g
        if p == 0:
            return
        kw = dict(tensors)
        kw.update(launch.scalars)
        kw.update(launch.dims)
        with torch.inference_mode():
            self.fn(**kw, _grid=launch.grid)
        for x, t in writeback:
            x[...] = t.view(torch.int16).numpy().view(x.dtype) if t.dtype == torch.bfloat16 else t.numpy()


_CACHE: dict = {}


def compile(kernel: Kernel) -> CompiledCpuKernel:      # noqa: A001 (the backend API's name)
    hit = _CACHE.get(id(kernel))
    if hit is not None and hit[0] is kernel:
        return hit[1]
    from tilec.ir.printer import print_kernel
    text = print_kernel(kernel)
    ck = _CACHE.get(text)
    if ck is None:
        ck = CompiledCpuKernel(kernel)
        _CACHE[text] = ck
    _CACHE[id(kernel)] = (kernel, ck)
    return ck


def emit(kernel: Kernel) -> str:
    return compile(kernel).source


def run(kernel: Kernel, args: dict) -> None:
    """Run ``kernel`` on numpy arrays or torch tensors; stores write into them in place."""
    compile(kernel)(**args)
