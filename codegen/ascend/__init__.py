"""Ascend 910B backend: lowering to explicit AIC (Cube) and AIV (vector) programs, a CPU
simulator of them, and Ascend C emission. See program.py / vector.py (the ISAs), lower.py
(GEMM), lower_vector.py (vector kernels), dispatch.py (``lower``: pick by pattern), sim.py.

Note: ``codegen.ascend.lower`` is the dispatch *function*; the GEMM lowering module is
reached with ``from codegen.ascend.lower import lower_gemm``."""
from .lower import AscendLegalityError, AscendLoweringError, check_legality, lower_gemm
from .lower_vector import lower_vector
from .program import Program
from .sim import Stats, SyncError, run, simulate, simulate_aiv
from .vector import AivProgram, UbLegalityError
from .dispatch import lower  # noqa: E402  (after the submodule import it shadows)

__all__ = ["AivProgram", "AscendLegalityError", "AscendLoweringError", "SyncError", "Program",
           "Stats", "UbLegalityError", "check_legality", "lower", "lower_gemm", "lower_vector",
           "run", "simulate", "simulate_aiv"]
