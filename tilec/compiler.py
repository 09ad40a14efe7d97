"""Compiler driver API: source text -> checked tile IR specialisations.

    kernels = compile_source(text, "f.tile", binding={"BM": 64})   # name -> Kernel
"""
from __future__ import annotations

from pathlib import Path

from frontend.diagnostics import CompileError, Diagnostic, DiagnosticSink, Loc, Source
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
        seen.setdefault(k.name, k.loc.line)
    sink.raise_if_any()         # which definition is meant is unclear: lower nothing (a file of
    #                             many copies would otherwise lower every copy before saying so)
    if binding and kernel is None:          # a -D name no kernel of the file declares is a typo
        declared_all = {p.name for k in module.kernels for p in k.params} | {
            d for k in module.kernels for p in k.params for d in p.dims if isinstance(d, str)}
        for n in sorted(set(binding) - declared_all):
            sink.error(None, f"-D {n}: no kernel in this file has a const or dim named '{n}'")
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


def read_source(path: str | Path) -> str:
    """A source file's text; CompileError (one located line) when it cannot be read, is not
    UTF-8, or is over the size limit."""
    from frontend.parser import MAX_SOURCE_BYTES
    p = Path(path)
    try:
        if p.is_file() and p.stat().st_size > MAX_SOURCE_BYTES:
            raise CompileError(Source("", str(path)), [Diagnostic(
                None, f"file is {p.stat().st_size} bytes; the limit is {MAX_SOURCE_BYTES} (128 KiB)")])
        data = p.read_bytes()
    except OSError as e:
        raise CompileError(Source("", str(path)), [Diagnostic(None, f"cannot read file: {e.strerror}")]) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise CompileError(Source(data.decode("utf-8", "replace"), str(path)), [Diagnostic(
            Loc(line, col), f"file is not UTF-8: byte 0x{data[e.start]:02x} at offset {e.start}")]) from None


def compile_file(path: str | Path, kernel: str | None = None, binding: dict | None = None,
                 probe: bool = False) -> dict:
    return compile_source(read_source(path), str(path), kernel, binding, probe=probe)
