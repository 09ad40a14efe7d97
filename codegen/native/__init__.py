"""native backend: tile IR -> C++ (codegen/native/emit.py), compiled by the system C++
compiler (g++ with OpenMP) into a shared object, called through ctypes.

    run(kernel, args)                  # compile (cached) and launch; outputs written in place
    nk = compile(kernel)               # NativeKernel; nk.source is the C++
    files, info = entry_files(kernel, "cpu")      # kernel.cpp + kernel.so (+ the ISA level)
    nk = load(files, signature)        # an artifact entry, loaded without the IR

The instruction-set level (``x86-64-v3`` by default on x86-64: AVX2, FMA, F16C; set
``TILEC_NATIVE_ISA``) is compiled in and recorded; loading refuses an entry built for a level
this CPU lacks. Threads: ``set_num_threads(n)`` (default: the CPU count).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from codegen.signature import LaunchError, Signature

from .emit import NativeUnsupported, emit_source

__all__ = ["NativeKernel", "NativeUnavailable", "NativeUnsupported", "NOT_APPLICABLE", "available", "compile",
           "emit", "entry_files", "load", "run", "set_num_threads", "isa", "cpu_supports"]

# a variant this backend cannot build: skipped with the reason, not failed
NOT_APPLICABLE = (NativeUnsupported,)
_THREADS = [0]
_LEVEL_FLAGS = {"x86-64": set(), "x86-64-v2": {"sse4_2", "popcnt"},
                "x86-64-v3": {"sse4_2", "popcnt", "avx2", "fma", "f16c", "bmi2"},
                "x86-64-v4": {"sse4_2", "popcnt", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512bw", "avx512vl"}}


class NativeUnavailable(RuntimeError):
    """No C++ compiler, or a binary built for an instruction set this CPU lacks; one line."""


def compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++"))


def available() -> tuple[bool, str]:
    """(True, "") when a C++ compiler with OpenMP is here, else (False, why)."""
    cxx = compiler()
    if cxx is None:
        return False, f"no C++ compiler ({os.environ.get('CXX', 'g++')} is not on PATH)"
    return True, ""


def isa() -> str:
    """The instruction-set level native kernels are built for on this machine."""
    env = os.environ.get("TILEC_NATIVE_ISA")
    if env:
        return env
    return "x86-64-v3" if platform.machine() in ("x86_64", "AMD64") else "native"


def _cpu_flags() -> set:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_supports(level: str) -> tuple[bool, str]:
    need = _LEVEL_FLAGS.get(level)
    if need is None:                  # "native" or another -march: trust the machine that built it
        return True, ""
    missing = sorted(need - _cpu_flags())
    return (not missing), ", ".join(missing)


def set_num_threads(n: int) -> None:
    """Threads every native launch uses (0: the CPU count)."""
    _THREADS[0] = max(0, int(n))


# ------------------------------------------------------------------ building

_BUILT: dict[str, bytes] = {}


def build(source: str, level: str | None = None) -> bytes:
    """The shared object for ``source`` (cached per process by the source's hash)."""
    level = level or isa()
    key = hashlib.sha256((level + "\0" + source).encode()).hexdigest()
    hit = _BUILT.get(key)
    if hit is not None:
        return hit
    cxx = compiler()
    if cxx is None:
        raise NativeUnavailable(available()[1])
    with tempfile.TemporaryDirectory(prefix="tilec-native-") as d:
        src, so = Path(d) / "k.cpp", Path(d) / "k.so"
        src.write_text(source)
        # gnu++17: GCC contracts a * b + c into FMA there (ISO mode would not)
        cmd = [cxx, "-O3", f"-march={level}", "-fopenmp", "-fPIC", "-shared", "-std=gnu++17",
               "-ffp-contract=fast", "-fno-math-errno", "-o", str(so), str(src)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            first = next((ln for ln in r.stderr.splitlines() if "error" in ln), r.stderr.strip()[:300])
            raise NativeUnsupported(f"native backend: the C++ compiler rejected the generated code: {first}")
        data = so.read_bytes()
    _BUILT[key] = data
    return data


def _compiler_version() -> str:
    cxx = compiler()
    if cxx is None:
        return ""
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return cxx


# ------------------------------------------------------------------ running

_PRIVATE: list[str] = []


def _private_dir() -> str:
    if not _PRIVATE:
        _PRIVATE.append(tempfile.mkdtemp(prefix="tilec-native-"))
    return _PRIVATE[0]


_DT_NP = {"f16": np.float16, "f32": np.float32, "i32": np.int32, "i64": np.int64, "bool": np.bool_}


class NativeKernel:
    """A loaded shared object for one kernel, with its launch signature."""

    def __init__(self, so: bytes, signature: Signature, level: str, source: str = ""):
        ok, missing = cpu_supports(level)
        if not ok:
            raise NativeUnavailable(f"{signature.kernel}: built for {level}, which this CPU lacks ({missing}); "
                                    f"rebuild the artifacts here (TILEC_NATIVE_ISA picks another level)")
        digest = hashlib.sha256(so).hexdigest()[:24]
        path = os.path.join(_private_dir(), f"{signature.kernel}_{digest}.so")
        if not os.path.exists(path):
            fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(so)
            os.replace(path + ".tmp", path)
        self.lib = ctypes.CDLL(path)
        self.fn = self.lib.tilec_launch
        self.fn.restype = ctypes.c_int
        self.fn.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int64]
        self.maxrank = int(self.lib.tilec_maxrank())
        self.signature = signature
        self.source = source
        self.level = level
        # every launch argument in one buffer, filled by one struct.pack_into (a ctypes item
        # assignment per value would cost more than the rest of the launch)
        nt = max(len(signature.tensors), 1)
        mr = self.maxrank
        nd = max(len(signature.dims), 1)
        ns = max(len(signature.scalars), 1)
        self._layout = (nt, nt * mr, nd, 3)
        n64 = sum(self._layout)
        self._buf = bytearray(8 * (n64 + ns))
        base = ctypes.addressof(ctypes.c_char.from_buffer(self._buf))
        offs = [0, nt, nt + nt * mr, nt + nt * mr + nd, n64]
        self._args = [base + 8 * o for o in offs]
        self._fmt = struct.Struct(f"<{nt}q{nt * mr}q{nd}q3q{ns}d")
        self._pad = (nt - len(signature.tensors), nd - len(signature.dims), ns - len(signature.scalars))

    def __call__(self, **args) -> None:
        self.launch(args)

    def launch(self, args: dict) -> None:
        sig = self.signature
        launch = sig.bind(args)
        g = launch.grid
        if 0 in g:
            return
        mr = self.maxrank
        ptrs, strides = [], []
        for t in sig.tensors:
            x = launch.tensors[t.name]
            if isinstance(x, np.ndarray):
                ptrs.append(x.ctypes.data)
                st = [s // x.itemsize for s in x.strides]
            else:
                if x.is_cuda or x.device.type != "cpu":
                    raise LaunchError(f"{sig.kernel}: '{t.name}' is on {x.device}; the native backend runs on the host")
                ptrs.append(x.data_ptr())
                st = x.stride()
            strides.extend(st)
            strides.extend((0,) * (mr - len(st)))
        pt, pd, ps = self._pad
        dims = launch.dims
        vals = [*ptrs, *((0,) * pt), *strides, *((0,) * (pt * mr)), *(dims[n] for n in sig.dims), *((0,) * pd),
                g[0], g[1] if len(g) > 1 else 1, g[2] if len(g) > 2 else 1,
                *(float(launch.scalars[n]) for n, _ in sig.scalars), *((0.0,) * ps)]
        self._fmt.pack_into(self._buf, 0, *vals)
        a = self._args
        if self.fn(a[0], a[1], a[2], a[4], a[3], _THREADS[0]):
            raise ZeroDivisionError(f"{sig.kernel}: integer division by zero")


def load(files: dict, signature: Signature) -> NativeKernel:
    """The kernel an artifact entry holds (``kernel.so``, ``native.json``)."""
    import json
    try:
        meta = json.loads(files["native.json"])
        so = files["kernel.so"]
    except KeyError as e:
        raise NativeUnavailable(f"{signature.kernel}: the entry has no {e.args[0]}") from None
    return NativeKernel(so, signature, meta.get("isa", ""), files.get("kernel.cpp", b"").decode())


_CACHE: dict = {}


def compile(kernel) -> NativeKernel:      # noqa: A001 (the backend API's name)
    hit = _CACHE.get(id(kernel))
    if hit is not None and hit[0] is kernel:
        return hit[1]
    src = emit_source(kernel)
    nk = NativeKernel(build(src), Signature.of(kernel), isa(), src)
    _CACHE[id(kernel)] = (kernel, nk)
    return nk


def emit(kernel) -> str:
    return emit_source(kernel)


def entry_files(kernel, target: str = "cpu") -> tuple[dict, dict]:
    """An artifact entry's backend files: the C++ source, the shared object, and the ISA level
    it was built for (checked at load); the same facts go into the manifest's info."""
    import json
    ok, why = available()
    if not ok:
        raise NativeUnavailable(why)
    src = emit_source(kernel)
    level = isa()
    info = {"isa": level, "compiler": _compiler_version(), "machine": platform.machine()}
    return {"kernel.cpp": src, "kernel.so": build(src, level),
            "native.json": json.dumps(info, indent=1) + "\n"}, {"native": info}


def run(kernel, args: dict) -> None:
    """Run ``kernel`` on numpy arrays or CPU torch tensors; stores write into them in place."""
    compile(kernel).launch(args)
