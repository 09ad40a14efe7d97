"""Launchers: how each backend runs a kernel.

    lk = open_artifacts(DIR).kernel("rmsnorm", ...)    # an entry loaded by loader(name, target)
    # launchers: cpu (generated torch), native (C++ shared objects), reference, triton,
    # ascend-sim, npu
    lk(args)                                           # run it

    launch = get("cpu")                  # or "reference", "triton", "ascend-sim", "npu"
    launch(kernel, {"A": a, "W": w, "C": c})   # kernel: a loaded entry or an IR Kernel

``loader(name, target)(lk)`` builds, from a loaded entry's verified files, the callable that
runs it: ``cpu`` executes the generated module, ``native`` loads the shared object from a
private copy (after checking the CPU has the instruction-set level it was built for),
``triton`` imports the Triton source (the
interpreter's flavour where there is no CUDA GPU) from a private directory, ``reference`` and
``ascend-sim`` run the entry's serialised IR (ascend-sim only after checking that lowering it
gives exactly the program recorded in the entry). ``get(name, target)`` runs IR kernels made
by the compiler (tuning, selftests) on the same backends.

A launcher writes the kernel's outputs in place and returns whatever its backend reports
(the simulator's Stats for ascend-sim, None otherwise). A launcher that cannot run here raises
``LauncherUnavailable`` with one line that says why: ascend-sim for a kernel the Ascend
lowering does not cover yet, npu without CANN/torch_npu, triton without Triton. Nothing is
silently replaced by another backend.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from typing import Callable

__all__ = ["LauncherUnavailable", "get", "loader", "names", "for_artifacts", "npu_available",
           "DEFAULT_ASCEND_TARGET"]

DEFAULT_ASCEND_TARGET = "ascend910b2"


class LauncherUnavailable(RuntimeError):
    """This launcher cannot run this kernel on this machine; the message is one line."""


def _is_loaded(kernel) -> bool:
    return hasattr(kernel, "signature") and hasattr(kernel, "files")


def _ir(kernel):
    """The IR of an IR kernel or of a loaded entry."""
    return kernel.ir if _is_loaded(kernel) else kernel


def _numpy_args(args: dict) -> dict:
    """Launch arguments for the numpy-based launchers (reference, ascend-sim): CPU torch
    tensors become numpy views of the same memory, so outputs land in place."""
    import torch
    out = {}
    for k, v in args.items():
        if isinstance(v, torch.Tensor):
            if v.device.type != "cpu":
                raise LauncherUnavailable(f"'{k}' is on {v.device}; this launcher runs on the host")
            if v.dtype == torch.bfloat16:
                from tilec.ir import dtypes as D
                v = v.detach().view(torch.int16).numpy().view(D.to_numpy("bf16"))
            else:
                v = v.detach().numpy()
        out[k] = v
    return out


def _source(lk, name: str) -> str:
    try:
        return lk.files[name].decode()
    except KeyError:
        raise LauncherUnavailable(f"entry {lk.key[:16]} ({lk.name}) has no {name}; "
                                  f"it was not compiled for this backend") from None


# ----------------------------------------------------------------------------- backends

def _cpu(target: str):
    from codegen import cpu

    def load(lk):
        return cpu.load(_source(lk, "kernel.py"), lk.signature).launch

    def launch(kernel, args):
        if _is_loaded(kernel) and kernel.launcher == "cpu":
            return kernel(args)
        cpu.run(_ir(kernel), args)
    return load, launch


def _native(target: str):
    import codegen.native as N
    ok, why = N.available()
    if not ok:
        raise LauncherUnavailable(f"native launcher: {why}")

    def load(lk):
        try:
            return N.load(lk.files, lk.signature).launch
        except N.NativeUnavailable as e:
            raise LauncherUnavailable(str(e)) from None

    def launch(kernel, args):
        if _is_loaded(kernel) and kernel.launcher == "native":
            return kernel(args)
        N.run(_ir(kernel), args)
    return load, launch


def _reference(target: str):
    from codegen import reference

    def load(lk):
        ir = lk.ir

        def run(args):
            reference.run(ir, _numpy_args(args))
        return run

    def launch(kernel, args):
        reference.run(_ir(kernel), _numpy_args(args))
    return load, launch


def _triton(target: str):
    if importlib.util.find_spec("triton") is None:
        raise LauncherUnavailable("triton launcher: Triton is not installed")
    import codegen.triton as T   # settles TRITON_INTERPRET (interpreter without CUDA)

    def load(lk):
        # the GPU's source where there is one, else the flavour Triton's interpreter runs
        name = "kernel_interp.py" if T.interpreting() else "kernel.py"
        return T.load(_source(lk, name), lk.signature).launch

    def launch(kernel, args):
        if _is_loaded(kernel) and kernel.launcher == "triton":
            return kernel(args)
        T.run(_ir(kernel), args)
    return load, launch


def _ascend_sim(target: str):
    """The Ascend tile-machine simulator (numpy data, modelled cycles). ``sim.run`` picks the
    lowering (codegen/ascend/dispatch.py); a kernel no lowering covers yet is reported as
    such, not run elsewhere."""
    tgt = target or DEFAULT_ASCEND_TARGET
    if not tgt.startswith("ascend"):
        raise LauncherUnavailable(f"ascend-sim launcher: {tgt!r} is not an Ascend target "
                                  f"(ascend910b2, ascend910b4)")
    from codegen.ascend import sim
    from codegen.ascend.errors import AscendLoweringError

    def run_ir(ir, args):
        try:
            return sim.run(ir, _numpy_args(args), tgt)
        except AscendLoweringError as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise LauncherUnavailable(f"{ir.name} is not lowered for ascend-sim yet: {first}") from None

    def load(lk):
        from codegen.ascend import lower
        ir = lk.ir
        recorded = lk.files.get("program.txt")
        if recorded is not None and lower(ir, tgt).dump().encode() != recorded:
            raise LauncherUnavailable(f"entry {lk.key[:16]} ({lk.name}): lowering its IR for {tgt} does not "
                                      f"give the program recorded in program.txt; rebuild the directory")

        def run(args):
            return run_ir(ir, args)
        return run

    def launch(kernel, args):
        return run_ir(_ir(kernel), args)
    return load, launch


def npu_available() -> tuple[bool, str]:
    """(True, "") where CANN and torch_npu are both present, else (False, what is missing)."""
    missing = []
    if importlib.util.find_spec("torch_npu") is None:
        missing.append("torch_npu is not installed")
    cann = os.environ.get("ASCEND_HOME_PATH") or os.environ.get("ASCEND_TOOLKIT_HOME")
    if not cann and shutil.which("ccec") is None:
        missing.append("CANN is not installed (no ASCEND_HOME_PATH, no ccec on PATH)")
    return (not missing), "; ".join(missing)


def _npu(target: str):
    ok, why = npu_available()
    if not ok:
        raise LauncherUnavailable(f"npu launcher needs an Ascend NPU with CANN and torch_npu: {why}; "
                                  f"use the ascend-sim launcher to run the simulator instead")
    raise LauncherUnavailable("npu launcher: CANN and torch_npu are present, but launching built "
                              "Ascend C kernels is not implemented yet (codegen/ascend emits the "
                              "sources; build() compiles them)")


_LAUNCHERS = {"cpu": _cpu, "native": _native, "reference": _reference, "triton": _triton,
              "ascend-sim": _ascend_sim, "npu": _npu}


def names() -> tuple[str, ...]:
    return tuple(_LAUNCHERS)


def _make(name: str, target: str):
    try:
        make = _LAUNCHERS[name]
    except KeyError:
        raise LauncherUnavailable(f"unknown launcher {name!r}; known: {', '.join(_LAUNCHERS)}") from None
    return make(target)


def get(name: str, target: str = "") -> Callable:
    """``launch(kernel, args)`` for launcher ``name`` (on ``target``; each launcher has a
    default); LauncherUnavailable if it cannot run here."""
    return _make(name, target)[1]


def loader(name: str, target: str = "") -> Callable:
    """``load(loaded_entry) -> run(args)`` for launcher ``name``."""
    return _make(name, target)[0]


def for_artifacts(backend: str, target: str) -> str:
    """The launcher name for an artifact directory's (backend, target): the ascend backend
    runs on the simulator here (the npu launcher is asked for explicitly)."""
    return "ascend-sim" if backend == "ascend" else backend
