"""Launchers: backend name -> a callable that runs a loaded kernel on its arguments.

    launch = get("cpu")                  # or "reference", "triton", "ascend-sim", "npu"
    launch(kernel, {"A": a, "W": w, "C": c})

A launcher writes the kernel's outputs in place and returns whatever its backend reports
(the simulator's Stats for ascend-sim, None otherwise). Artifacts (runtime/artifacts.py) stay
backend-agnostic: they pick a variant and hand it to the launcher of their backend.

A launcher that cannot run here raises ``LauncherUnavailable`` with one line that says why:
ascend-sim for a kernel the Ascend lowering does not cover yet, npu without CANN/torch_npu,
triton without Triton. Nothing is silently replaced by another backend.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from typing import Callable

__all__ = ["LauncherUnavailable", "get", "names", "for_artifacts", "npu_available"]


class LauncherUnavailable(RuntimeError):
    """This launcher cannot run this kernel on this machine; the message is one line."""


def _cpu(target: str) -> Callable:
    from codegen.cpu import run

    def launch(kernel, args):
        run(kernel, args)
    return launch


def _reference(target: str) -> Callable:
    from codegen.reference import run

    def launch(kernel, args):
        run(kernel, args)
    return launch


def _triton(target: str) -> Callable:
    if importlib.util.find_spec("triton") is None:
        raise LauncherUnavailable("triton launcher: Triton is not installed")
    from codegen.triton import run   # settles TRITON_INTERPRET (interpreter without CUDA)

    def launch(kernel, args):
        run(kernel, args)
    return launch


def _ascend_sim(target: str) -> Callable:
    """The Ascend tile-machine simulator (numpy data, modelled cycles). ``sim.run`` picks the
    lowering (codegen/ascend/dispatch.py where present); a kernel no lowering covers yet is
    reported as such, not run elsewhere."""
    tgt = target if target.startswith("ascend") else "ascend910b2"
    from codegen.ascend import sim
    lower_mod = importlib.import_module("codegen.ascend.errors")
    not_lowered = getattr(lower_mod, "AscendLoweringError", ())
    dispatch = importlib.util.find_spec("codegen.ascend.dispatch") is not None

    def launch(kernel, args):
        if not dispatch and not kernel.name.startswith("smooth_gemm"):   # GEMM-only builds
            raise LauncherUnavailable(f"{kernel.name} is not lowered for ascend-sim yet "
                                      f"(this build of codegen/ascend lowers GEMM only)")
        try:
            return sim.run(kernel, args, tgt)
        except not_lowered as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise LauncherUnavailable(f"{kernel.name} is not lowered for ascend-sim yet: {first}") from None
    return launch


def npu_available() -> tuple[bool, str]:
    """(True, "") where CANN and torch_npu are both present, else (False, what is missing)."""
    missing = []
    if importlib.util.find_spec("torch_npu") is None:
        missing.append("torch_npu is not installed")
    cann = os.environ.get("ASCEND_HOME_PATH") or os.environ.get("ASCEND_TOOLKIT_HOME")
    if not cann and shutil.which("ccec") is None:
        missing.append("CANN is not installed (no ASCEND_HOME_PATH, no ccec on PATH)")
    return (not missing), "; ".join(missing)


def _npu(target: str) -> Callable:
    ok, why = npu_available()
    if not ok:
        raise LauncherUnavailable(f"npu launcher needs an Ascend NPU with CANN and torch_npu: {why}; "
                                  f"use the ascend-sim launcher to run the simulator instead")
    raise LauncherUnavailable("npu launcher: CANN and torch_npu are present, but launching built "
                              "Ascend C kernels is not implemented yet (codegen/ascend emits the "
                              "sources; build() compiles them)")


_LAUNCHERS = {"cpu": _cpu, "reference": _reference, "triton": _triton,
              "ascend-sim": _ascend_sim, "npu": _npu}


def names() -> tuple[str, ...]:
    return tuple(_LAUNCHERS)


def get(name: str, target: str = "") -> Callable:
    """The launcher called ``name`` (for ``target``); LauncherUnavailable if it cannot run here."""
    try:
        make = _LAUNCHERS[name]
    except KeyError:
        raise LauncherUnavailable(f"unknown launcher {name!r}; known: {', '.join(_LAUNCHERS)}") from None
    return make(target or name)


def for_artifacts(backend: str, target: str) -> str:
    """The launcher name for an artifact directory's (backend, target): the ascend backend
    runs on the simulator here (the npu launcher is asked for explicitly)."""
    return "ascend-sim" if backend == "ascend" else backend
