"""``lower(kernel, target)``: pick the Ascend lowering for a specialised kernel by its pattern.

- a ``dot`` together with ``exp`` (GEMM-softmax-GEMM) -> Meta-Attention, delegated to
  ``codegen.ascend.attention.lower_attention`` when that package is present;
- any other ``dot`` -> the Cube GEMM lowering (gemm.py, an AIC ``Program``);
- no ``dot`` -> the AIV vector lowering (vector_kernels.py, an ``AivProgram``).
Whatever a lowering cannot express raises AscendLoweringError with file:line:col of the op.
"""
from __future__ import annotations

import importlib

from tilec.ir.core import Kernel

from .errors import AscendLoweringError, fail, with_target
from .gemm import lower_gemm
from .vector_kernels import lower_vector


def _walk(ops):
    for op in ops:
        yield op
        for r in op.regions:
            yield from _walk(r.ops)


def attention_module():
    """codegen.ascend.attention, or None where it is not part of this build."""
    try:
        return importlib.import_module("codegen.ascend.attention")
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("codegen.ascend.attention"):
            return None
        raise


def attention_missing() -> str | None:
    """Why Meta-Attention cannot be lowered and simulated in this build, or None if it can
    (the attention package must provide ``lower_attention`` and ``run``)."""
    mod = attention_module()
    if mod is None:
        return "not lowered yet: codegen/ascend/attention is not in this build"
    lacking = [f for f in ("lower_attention", "run") if not hasattr(mod, f)]
    if lacking:
        return f"not lowered yet: codegen.ascend.attention has no {' / '.join(lacking)}"
    return None


def classify(kernel: Kernel) -> str:
    ops = list(_walk(kernel.body.ops))
    has_dot = any(o.name == "dot" for o in ops)
    has_exp = any(o.name == "unary" and o.attrs.get("op") in ("exp", "exp2") for o in ops)
    if has_dot and has_exp:
        return "attention"
    return "gemm" if has_dot else "vector"


def lower(kernel: Kernel, target="ascend910b2"):
    try:
        return _lower(kernel, target)
    except AscendLoweringError as e:
        raise with_target(e, target) from None


def _lower(kernel: Kernel, target):
    kind = classify(kernel)
    if kind == "gemm":
        return lower_gemm(kernel, target)
    if kind == "vector":
        return lower_vector(kernel, target)
    why = attention_missing()
    if why:
        dot = next(o for o in _walk(kernel.body.ops) if o.name == "dot")
        fail(kernel, dot, f"GEMM-softmax-GEMM (attention): {why}")
    return attention_module().lower_attention(kernel, target)


def emit(kernel: Kernel, target="ascend910b2"):
    """Lower ``kernel`` and emit its Ascend C (an ``emit_ascendc.AscendCSource``)."""
    try:
        return _emit(kernel, target)
    except AscendLoweringError as e:
        raise with_target(e, target) from None


def _emit(kernel: Kernel, target):
    from .emit_ascendc import emit_ascendc
    from .program import Program
    from .vector import AivProgram
    from .emit_ascendc_vector import EmitError
    prog = lower(kernel, target)
    if isinstance(prog, (Program, AivProgram)):
        try:
            return emit_ascendc(prog)
        except EmitError as e:      # lowered and simulated, but not yet expressible in Ascend C
            fail(kernel, None, f"lowered and simulated, but not expressible in Ascend C yet: {e}")
    mod = attention_module()
    fn = getattr(mod, "emit_attention", None) or getattr(mod, "emit_ascendc", None)
    if fn is None:
        fail(kernel, None, "no Ascend C emitter for the attention program yet")
    try:
        return fn(prog)
    except ModuleNotFoundError as e:        # the attention emitter is not in this build yet
        if not (e.name or "").startswith("codegen.ascend.attention"):
            raise
        fail(kernel, None, f"no Ascend C emitter for the attention program in this build "
                           f"({e.name} is missing)")
