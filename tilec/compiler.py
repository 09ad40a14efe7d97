"""Compiler driver API: source text -> checked tile IR specialisations.

    kernels = compile_source(text, "f.tile", binding={"BM": 64})   # name -> Kernel
"""
from __future__ import annotations

from pathlib import Path

from frontend.diagnostics import CompileError, Diagnostic, DiagnosticSink, Source
from frontend.parser import parse
from frontend.sema import lower_kernel

from .ir.verifier import verify
from .passes import run_default_passes


def compile_source(text: str, filename: str = "<string>", kernel: str | None = None,
                   binding: dict | None = None, passes: bool = True, probe: bool = False) -> dict:
    """Parse and lower every kernel (or only ``kernel``) with ``binding``; raise CompileError
    listing every error of the file."""
    module = parse(text, filename)
    src = Source(text if text.endswith("\n") else text + "\n", filename)
    sink = DiagnosticSink(src)
    names = [k.name for k in module.kernels]
    if kernel is not None and kernel not in names:
        sink.error(None, f"no kernel named '{kernel}'", "kernels here: " + (", ".join(names) or "none"))
        sink.raise_if_any()
    seen = {}
    for k in module.kernels:
        if k.name in seen:
            sink.error(k.loc, f"kernel '{k.name}' is defined twice (first at line {seen[k.name]})")
        seen[k.name] = k.loc.line
    out = {}
    for k in module.kernels:
        if kernel is not None and k.name != kernel:
            continue
        # a -D binding applies to the kernels that declare the name
        declared = {p.name for p in k.params} | {d for p in k.params for d in p.dims if isinstance(d, str)}
        b = {n: v for n, v in (binding or {}).items() if kernel is not None or n in declared}
        ir = lower_kernel(k, b, sink, filename, probe)
        if ir is not None:
            if passes:
                run_default_passes(ir)
            verify(ir)
            out[k.name] = ir
    sink.raise_if_any()
    return out


def compile_file(path: str | Path, kernel: str | None = None, binding: dict | None = None,
                 probe: bool = False) -> dict:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise CompileError(Source("", str(path)), [Diagnostic(None, f"cannot read file: {e.strerror}")]) from None
    return compile_source(text, str(path), kernel, binding, probe=probe)
