"""Ahead-of-time compilation of generated Triton source for a GPU target, on any machine.

``triton.compile`` with an explicit ``GPUTarget("cuda", 90, 32)`` needs no GPU, so
``tilec compile -t h100`` stores the sm_90 binary of every variant beside its source, with the
figures a reviewer checks first: registers per thread, spill bytes, shared memory. The binary
is compiled for the launch the runtime makes: tensors 16-byte aligned with a unit innermost
stride, the other strides, the dims and the scalars as plain 32-bit values (the generated
``@triton.jit`` never specialises on dims and scalars, so no step shape recompiles).

    files, stats = compile_gpu(source, signature, arch=90)
    stats == {"arch": "sm_90", "regs": 128, "spill_stores": 0, "shared": 32768, ...}

Each compile runs in its own Python process (``_aot_worker.py``): a process that has run
kernels under Triton's interpreter cannot also compile for a GPU.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from codegen.signature import Signature

__all__ = ["GpuCompileError", "compile_gpu", "arg_types", "DEFAULT_WARPS", "DEFAULT_STAGES", "spills"]

# A stated rule until tuning on a GPU picks per variant: 4 warps, and 3 software-pipeline
# stages for the K / KV loops (the common choice of Triton's matmul tutorial configs).
DEFAULT_WARPS = 4
DEFAULT_STAGES = 3
TIMEOUT_S = 600

_PTR = {"f16": "*fp16", "bf16": "*bf16", "f32": "*fp32", "i32": "*i32", "i64": "*i64", "bool": "*i1"}
_SCALAR = {"f16": "fp32", "bf16": "fp32", "f32": "fp32", "i32": "i32", "i64": "i64", "bool": "i1"}
_WORKER = Path(__file__).with_name("_aot_worker.py")


class GpuCompileError(RuntimeError):
    """Triton could not compile a variant for the GPU target; one line."""


def arg_types(signature: Signature) -> tuple[list[str], list[tuple[int, int]], list[int]]:
    """(Triton type per parameter, [(index, constexpr value)], aligned pointer indices) for the
    parameter list the emitter writes: each tensor then its strides, the dims, the scalars."""
    types, constexprs, aligned = [], [], []
    for t in signature.tensors:
        aligned.append(len(types))
        types.append(_PTR[t.dtype])
        for ax in range(len(t.dims)):
            if ax == len(t.dims) - 1:      # unit innermost stride, as Triton's JIT specialises it
                constexprs.append((len(types), 1))
                types.append("constexpr")
            else:
                types.append("i32")
    types += ["i32"] * len(signature.dims)
    types += [_SCALAR[dt] for _, dt in signature.scalars]
    return types, constexprs, aligned


def spills(stats: dict) -> int:
    """Spilled bytes (stores) of a compiled variant, from ptxas or else the cubin's local memory."""
    return int(stats.get("spill_stores", stats.get("local_bytes", 0)) or 0)


def compile_gpu(source: str, signature: Signature, arch: int = 90, num_warps: int = DEFAULT_WARPS,
                num_stages: int = DEFAULT_STAGES) -> tuple[dict[str, bytes], dict]:
    """``({"kernel.cubin": ..., "kernel.ptx": ...}, stats)`` for ``source`` on sm_<arch>."""
    types, constexprs, aligned = arg_types(signature)
    with tempfile.TemporaryDirectory(prefix="tilec-aot-") as out:
        job = {"source": source, "name": signature.kernel, "types": types, "constexprs": constexprs,
               "aligned": aligned, "arch": arch, "num_warps": num_warps, "num_stages": num_stages,
               "out": out}
        env = dict(os.environ, TRITON_INTERPRET="0")
        try:
            r = subprocess.run([sys.executable, str(_WORKER)], input=json.dumps(job), capture_output=True,
                               text=True, env=env, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise GpuCompileError(f"{signature.kernel}: triton.compile for sm_{arch} took over "
                                  f"{TIMEOUT_S}s") from None
        if r.returncode != 0:
            why = (r.stderr.strip().splitlines() or ["no message"])[-1]
            raise GpuCompileError(f"{signature.kernel}: triton.compile for sm_{arch} failed: {why}")
        stats = json.loads(r.stdout)
        files = {n: (Path(out) / n).read_bytes() for n in ("kernel.cubin", "kernel.ptx")}
    stats = {"arch": f"sm_{arch}", "num_warps": num_warps, "num_stages": num_stages, **stats}
    return files, stats
