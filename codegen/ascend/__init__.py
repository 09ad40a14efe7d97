"""Ascend 910B backend: lowering to explicit AIC (Cube) and AIV (vector) programs, a CPU
simulator of them, and Ascend C emission. See program.py / vector.py (the ISAs), gemm.py
(GEMM lowering), vector_kernels.py (vector-kernel lowering), dispatch.py (``lower``: pick by
pattern), errors.py, sim.py. No module shares its name with a function the package exports."""
from .dispatch import lower
from .errors import AscendLegalityError, AscendLoweringError
from .gemm import check_legality, lower_gemm
from .program import Program
from .sim import Stats, SyncError, run, simulate, simulate_aiv
from .vector import AivProgram, UbLegalityError
from .vector_kernels import lower_vector

__all__ = ["AivProgram", "AscendLegalityError", "AscendLoweringError", "SyncError", "Program",
           "Stats", "UbLegalityError", "check_legality", "lower", "lower_gemm", "lower_vector",
           "run", "simulate", "simulate_aiv"]


def emit(kernel, target="ascend910b2") -> dict[str, str]:
    """The files of an artifact entry (``tilec compile``, backend "ascend"): the Ascend C
    kernel .cpp, tiling .h and launcher .cpp of ``kernel`` lowered for ``target``, plus the
    lowered program's dump (``program.txt``). Raises one of ``NOT_APPLICABLE`` for a kernel
    this target cannot take (not lowerable, over capacity, misaligned, no Ascend C form)."""
    from .dispatch import attention_module
    from .emit_ascendc import emit_ascendc
    prog = lower(kernel, target)
    if isinstance(prog, (Program, AivProgram)):
        src = emit_ascendc(prog)
    else:   # a Meta-Attention pipeline program
        src = attention_module().emit_attention(prog)
    return {**src.files(), "program.txt": prog.dump()}


def entry_files(kernel, target="ascend910b2") -> tuple[dict[str, str], dict]:
    """An artifact entry's backend files (see ``emit``); the runtime's ascend-sim launcher
    re-lowers the entry's IR and runs only a program whose dump equals ``program.txt``."""
    return emit(kernel, target), {}


def _not_applicable() -> tuple:
    from .emit_ascendc_vector import EmitError
    return (AscendLoweringError, AscendLegalityError, EmitError)


# errors that mean "this variant does not exist on this target" (the cache skips it with the
# one-line reason) rather than a compiler bug
NOT_APPLICABLE = _not_applicable()
