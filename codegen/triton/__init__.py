"""Triton backend: tile IR -> Triton source (one ``@triton.jit`` function per specialisation).

- ``emit(kernel)`` returns the Triton source.
- ``compile(kernel)`` writes it into a directory private to this process (``triton.jit`` needs
  source it can read back with ``inspect.getsource``), imports it and returns a
  ``TritonKernel``; cached. ``load(source, signature)`` does the same for an artifact entry.
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

from codegen.signature import Signature
from tilec.ir import dtypes as D
from tilec.ir.core import Kernel

from .emit import TritonUnsupported, check_supported, emit_source

__all__ = ["run", "emit", "compile", "entry_files", "launch_options", "load", "num_warps_for",
           "TritonKernel", "TritonUnsupported", "interpreting"]

# a variant this backend cannot build (e.g. a tile extent that is not a power of 2): the
# compile cache skips it with the one-line reason
NOT_APPLICABLE = (TritonUnsupported,)

_CACHE: dict[tuple[int, bool], tuple] = {}   # (id(kernel), interpreting) -> (kernel, TritonKernel)


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


_PRIVATE: list[str] = []   # this process's own directory for generated modules (mode 0700)


def _private_dir() -> str:
    """A directory only this process writes, made once: ``triton.jit`` reads its function back
    from a file, and a shared, predictable path would let anyone who can write there choose
    the code the next launch imports."""
    if not _PRIVATE:
        _PRIVATE.append(tempfile.mkdtemp(prefix="tilec-triton-"))
    return _PRIVATE[0]


def _import_source(src: str, name: str):
    """Import ``src`` (Triton source) from this process's private directory; the module."""
    _check_import_order()
    import triton  # noqa: F401  (after TRITON_INTERPRET is settled)
    digest = hashlib.sha256(src.encode()).hexdigest()[:24]
    modname = f"tilec_triton_{name}_{digest}"
    mod = sys.modules.get(modname)
    if mod is None:
        path = os.path.join(_private_dir(), f"{modname}.py")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(src)
        spec = importlib.util.spec_from_file_location(modname, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[modname] = mod
        spec.loader.exec_module(mod)
    return mod


class TritonKernel:
    """Triton source imported and ready to launch from its launch signature alone."""

    def __init__(self, source: str, signature: Signature):
        self.source = source
        self.signature = signature
        self.fn = getattr(_import_source(source, signature.kernel), signature.kernel)

    def __call__(self, **args) -> None:
        self.launch(args)

    def launch(self, args: dict) -> None:
        launch = self.signature.bind(args)
        if any(g == 0 for g in launch.grid):
            return
        device = "cuda" if _has_cuda() else "cpu"
        call, back = [], []
        for t in self.signature.tensors:
            orig = launch.tensors[t.name]
            x = _to_torch(orig, device)
            call.append(x)
            call.extend(x.stride())
            if t.written and not (orig is x):
                back.append((orig, x))
        dims = launch.dims
        call.extend(dims[n] for n in self.signature.dims)
        for name, dt in self.signature.scalars:
            x = launch.scalars[name]
            call.append(bool(x) if dt == "bool" else int(x) if D.is_int(dt) else float(x))
        g = launch.grid
        # the same warps / stages the entry's ahead-of-time binary and its spill check used
        self.fn[tuple(g) + (1,) * (3 - len(g))](*call, **launch_options(self.signature))
        for orig, x in back:
            _write_back(orig, x)


def load(source: str, signature: Signature) -> TritonKernel:
    """The kernel an artifact entry holds (Triton source + launch signature)."""
    return TritonKernel(source, signature)


def compile(kernel: Kernel) -> TritonKernel:      # noqa: A001 (the backend API's name)
    """Generate and import ``kernel``'s Triton source for how it runs here; cached."""
    interp = interpreting()
    key = (id(kernel), interp)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is kernel:
        return hit[1]
    src, _ = emit_source(kernel, interp)
    tk = TritonKernel(src, Signature.of(kernel))
    _CACHE[key] = (kernel, tk)
    return tk


def launch_options(signature: Signature) -> dict:
    """num_warps / num_stages of a variant, by the stated rule (num_warps_for; Triton's
    default 3 stages) until GPU tuning picks them: what the sm_90 binary of an artifact entry
    is compiled with, what its spill check saw, and what every launch passes."""
    from .aot import DEFAULT_STAGES
    return {"num_warps": num_warps_for(signature), "num_stages": DEFAULT_STAGES}


def num_warps_for(signature: Signature) -> int:
    """The stated rule until GPU tuning picks, from the sm_90 spill check (4 warps spill where
    this gives 8): attention, 8 warps when its BM x D accumulator or BN x D K/V tile has 8192
    elements or more; GEMM, when the f32 accumulator or an operand tile has 8192, or the three
    together 12288 (64x64x64 and up); any other kernel, when its BM x BN tile has 8192; else 4."""
    c = signature.consts
    bm, bn, bk, d = c.get("BM", 0), c.get("BN", 0), c.get("BK", 0), c.get("D", 0)
    if "G" in c:
        return 8 if max(bm * d, bn * d) >= 8192 else 4
    if bk:
        tiles = (bm * bn, bm * bk, bn * bk)
        return 8 if max(tiles) >= 8192 or sum(tiles) >= 12288 else 4
    return 8 if bm * bn >= 8192 else 4


def entry_files(kernel: Kernel, target: str) -> tuple[dict[str, str | bytes], dict]:
    """An artifact entry's backend files: the Triton source a GPU runs (``kernel.py``), the
    interpreter's flavour of it (``kernel_interp.py``, what runs on a machine without CUDA),
    and for a GPU target the sm_XX binary compiled ahead of time, its figures in the info."""
    from tilec import targets
    src, _ = emit_source(kernel, False)
    files: dict[str, str | bytes] = {"kernel.py": src, "kernel_interp.py": emit_source(kernel, True)[0]}
    info: dict = {}
    t = targets.get(target)
    if t.kind == "gpu":
        from .aot import compile_gpu
        sig = Signature.of(kernel)
        arch = int(t.arch.removeprefix("sm_"))
        bins, info["gpu"] = compile_gpu(src, sig, arch, **launch_options(sig))
        files.update(bins)
    return files, info


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
    compile(kernel).launch(args)
