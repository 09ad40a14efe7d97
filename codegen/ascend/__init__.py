"""Ascend 910B backend (first slice): GEMM lowering to an explicit Ascend program and a CPU
simulator of it. See program.py, lower.py, sim.py."""
from .lower import AscendLegalityError, AscendLoweringError, check_legality, lower_gemm
from .program import Program
from .sim import Stats, SyncError, run, simulate

__all__ = ["AscendLegalityError", "AscendLoweringError", "SyncError", "Program", "Stats",
           "check_legality", "lower_gemm", "run", "simulate"]
