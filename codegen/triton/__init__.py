"""Triton backend: tile IR -> Triton source (one ``@triton.jit`` function per specialisation).

- ``emit(kernel)`` returns the Triton source.
- ``compile(kernel)`` writes it to ``<tmp>/tilec-triton/<hash>.py``, imports it (``triton.jit``
  needs source it can read back with ``inspect.getsource``) and returns the jit function; cached.
- ``run(kernel, args)`` runs it. Tensors may be numpy arrays (written in place, as the
  reference backend does; bf16 travels as a uint16 view) or torch tensors (written in place).
  With a CUDA GPU tensors are moved to it and results copied back; without one the source runs
  under Triton's interpreter (``TRITON_INTERPRET=1``, set when this package is imported:
  import it before ``triton`` itself, whose library functions are built at import time).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile

import numpy as np

from codegen.launch import bind
from tilec.ir import dtypes as D
from tilec.ir.core import Kernel

from .emit import TritonUnsupported, check_supported, emit_source

__all__ = ["run", "emit", "compile", "TritonUnsupported", "interpreting"]

_CACHE: dict[tuple[int, bool], tuple] = {}


def _has_cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:      # pragma: no cover
        return False


def interpreting() -> bool:
    """True when generated kernels run under Triton's interpreter (no CUDA GPU here)."""
    if not _has_cuda():
        os.environ["TRITON_INTERPRET"] = "1"
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


# triton imported before TRITON_INTERPRET was set has built its library (tl.sum, ...) for the
# compiler, and the interpreter then fails inside them: detect that and say so.
_LATE = "triton" in sys.modules and os.environ.get("TRITON_INTERPRET", "0") != "1"
interpreting()     # settle TRITON_INTERPRET before anything imports triton


def _check_import_order() -> None:
    if _LATE and os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("codegen.triton: 'triton' was imported before TRITON_INTERPRET=1 was set, so "
                           "Triton's interpreter cannot run here (no CUDA GPU); import codegen.triton "
                           "(or set TRITON_INTERPRET=1) before importing triton")


def emit(kernel: Kernel, interpret: bool | None = None) -> str:
    """The Triton source for ``kernel`` (``interpret`` defaults to how it would run here)."""
    if interpret is None:
        interpret = interpreting()
    return emit_source(kernel, interpret)[0]


def compile(kernel: Kernel):
    """Compile (import) ``kernel``'s Triton source; returns (jit function, parameter names)."""
    interp = interpreting()
    key = (id(kernel), interp)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is kernel:
        return hit[1], hit[2]
    src, params = emit_source(kernel, interp)
    _check_import_order()
    import triton  # noqa: F401  (after TRITON_INTERPRET is settled)
    digest = hashlib.sha256(src.encode()).hexdigest()[:20]
    d = os.path.join(tempfile.gettempdir(), "tilec-triton")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, f"k_{digest}.py")
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(src)
        os.replace(tmp, path)
    modname = f"tilec_triton_{digest}"
    mod = sys.modules.get(modname)
    if mod is None:
        spec = importlib.util.spec_from_file_location(modname, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[modname] = mod
        spec.loader.exec_module(mod)
    fn = getattr(mod, kernel.name)
    _CACHE[key] = (kernel, fn, params)
    return fn, params


def _to_torch(a, device):
    import torch
    if isinstance(a, torch.Tensor):
        return a if a.device.type == device else a.to(device)
    arr = a
    if not (arr.flags.writeable and all(s >= 0 for s in arr.strides)):
        arr = np.ascontiguousarray(arr)
    if arr.dtype == D.to_numpy("bf16"):
        t = torch.from_numpy(arr.view(np.uint16)).view(torch.bfloat16)
    else:
        t = torch.from_numpy(arr)
    return t.to(device) if device != "cpu" else t


def _write_back(orig, t) -> None:
    import torch
    if isinstance(orig, torch.Tensor):
        if orig.data_ptr() != t.data_ptr():
            orig.copy_(t.to(orig.device))
        return
    src = t.detach().cpu()
    if src.dtype == torch.bfloat16:
        out = src.view(torch.uint16).numpy().view(D.to_numpy("bf16"))
    else:
        out = src.numpy()
    if out.ctypes.data != orig.ctypes.data or out.strides != orig.strides:
        orig[...] = out


def run(kernel: Kernel, args: dict) -> None:
    """Run ``kernel`` on numpy arrays or torch tensors, writing stores in place."""
    launch = bind(kernel, args)
    fn, _ = compile(kernel)
    if any(g == 0 for g in launch.grid):
        return
    device = "cuda" if _has_cuda() else "cpu"
    stored = {op.operands[0] for op in kernel.walk() if op.name == "store"}
    call, back = [], []
    for tp in kernel.tensors:
        orig = launch.tensors[tp.name]
        t = _to_torch(orig, device)
        call.append(t)
        call.extend(int(s) for s in t.stride())
        if tp.value in stored:
            back.append((orig, t))
    call.extend(int(launch.dims[n]) for n in kernel.dims)
    for v in kernel.scalars:
        x = launch.scalars[v.hint]
        call.append(bool(x) if v.type.dtype == "bool" else
                    int(x) if D.is_int(v.type.dtype) else float(x))
    grid = tuple(launch.grid) + (1,) * (3 - len(launch.grid)) if len(launch.grid) < 3 else tuple(launch.grid)
    fn[grid](*call)
    for orig, t in back:
        _write_back(orig, t)
