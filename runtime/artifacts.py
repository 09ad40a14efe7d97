"""Opening an artifact directory written by ``tilec compile`` (DESIGN.md "Runtime").

    arts = open_artifacts("artifacts/", backend="cpu", target="cpu")
    k = arts.kernel("smooth_gemm_t", BM=32, BN=32, BK=32, DT="f16")   # a loaded specialisation
    kernel, binding = arts.gemm(M=33, N=64, K=64, dtype="f16")         # table lookup
    c = arts.linear(x, w)                                              # C = x @ w^T (cpu backend)

``open_artifacts`` refuses (``ArtifactError``, one line naming the ``tilec compile`` command
that rebuilds the directory) a missing directory, a missing or corrupted manifest, entries
whose files do not hash to the manifest (``tilec.cache.verify``), and a directory built by
another compiler version.

The IR text stored in an entry is not parseable back, so a specialisation is loaded by
re-compiling the library kernel with the entry's binding and checking that the printed IR
hashes (``tilec.cache.cache_key``) to the entry's key: the artifact really is this kernel.

GEMM selection: a *default* table, computed at open time from the available variants, until
``tilec tune`` writes measured ones. Per (kernel, dtype) and per M bucket (M rounded up to a
power of two, capped at 128): the smallest available BM >= the bucket (else the largest BM).
BN / BK: the largest available value dividing N / K, else the largest available value.
Lookups are dict accesses (the (N, K) part is memoised).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tilec import cache as _cache

__all__ = ["ArtifactError", "Artifacts", "open_artifacts", "M_BUCKETS"]

M_CAP = 128
M_BUCKETS = tuple(1 << i for i in range(8))  # 1, 2, ..., 128


class ArtifactError(Exception):
    """An artifact directory the runtime cannot use; the message is one line."""


def _cmd(target: str, out, kernel: str | None = None) -> str:
    k = f" --kernel {kernel}" if kernel else ""
    return f"tilec compile --target {target} --out {out}{k}"


def _bucket(m: int) -> int:
    m = max(1, min(int(m), M_CAP))
    return 1 << (m - 1).bit_length()


def _bkey(binding: dict) -> tuple:
    return tuple(sorted(binding.items()))


def _fmt(binding: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(binding.items()))


_NP_DT = {np.dtype(np.float16): "f16", np.dtype(np.float32): "f32"}


@dataclass
class _Entry:
    key: str
    kernel: str
    binding: dict


class Artifacts:
    """A verified artifact directory for one (backend, target)."""

    def __init__(self, path: Path, backend: str, target: str, manifest: dict):
        self.path = path
        self.backend = backend
        self.target = target
        self.version = _cache.compiler_version()
        self._entries: dict[tuple, _Entry] = {}
        for key, e in manifest["entries"].items():
            if e.get("backend") != backend or e.get("target") != target:
                continue
            b = e.get("binding") or {}
            self._entries[(e.get("kernel"), _bkey(b))] = _Entry(key, e.get("kernel"), dict(b))
        self._loaded: dict[tuple, object] = {}
        self._nk: dict[tuple, tuple] = {}
        # default selection table: (kernel, dtype) -> {bucket: BM}, plus available BN/BK
        self._avail: dict[tuple, tuple] = {}
        self._table: dict[tuple, dict] = {}
        for kname in ("smooth_gemm_t", "smooth_gemm"):
            by_dt: dict[str, list] = {}
            for (kn, _), ent in self._entries.items():
                if kn == kname and {"BM", "BN", "BK", "DT"} <= set(ent.binding):
                    by_dt.setdefault(ent.binding["DT"], []).append(ent.binding)
            for dt, bs in by_dt.items():
                bms = sorted({b["BM"] for b in bs})
                self._avail[(kname, dt)] = (bs, sorted({b["BN"] for b in bs}), sorted({b["BK"] for b in bs}))
                self._table[(kname, dt)] = {
                    q: next((bm for bm in bms if bm >= q), bms[-1]) for q in M_BUCKETS}

    def __repr__(self) -> str:
        return f"Artifacts({str(self.path)!r}, backend={self.backend!r}, target={self.target!r}, {len(self._entries)} entries)"

    def variants(self, kernel: str) -> list[dict]:
        return [dict(e.binding) for (k, _), e in self._entries.items() if k == kernel]

    # ------------------------------------------------------------------ loading

    def kernel(self, name: str, **binding):
        """The specialisation of library kernel ``name`` for ``binding`` (a tilec IR Kernel),
        re-compiled and checked against the entry's key; cached."""
        bk = _bkey(binding)
        hit = self._loaded.get((name, bk))
        if hit is not None:
            return hit
        ent = self._entries.get((name, bk))
        if ent is None:
            raise ArtifactError(
                f"{self.path}: no {self.backend}/{self.target} variant of {name} with {_fmt(binding) or 'no binding'}; "
                f"add it to the variant space and run: {_cmd(self.target, self.path, name)}")
        from frontend.diagnostics import CompileError
        from tilec.compiler import compile_file
        from tilec.ir.printer import print_kernel
        from tilec.kernels import find_kernel
        try:
            k = compile_file(find_kernel(name), name, dict(binding))[name]
        except (KeyError, CompileError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ArtifactError(f"{self.path}: cannot re-compile {name} {_fmt(binding)}: {msg}") from None
        if _cache.cache_key(print_kernel(k), self.backend, self.target, self.version) != ent.key:
            raise ArtifactError(
                f"{self.path}: entry {ent.key[:16]} ({name} {_fmt(binding)}) does not match the library "
                f"source; rebuild with: {_cmd(self.target, self.path)}")
        self._loaded[(name, bk)] = k
        return k

    # ------------------------------------------------------------------ GEMM selection

    def gemm(self, M: int, N: int, K: int, dtype: str, trans_b: bool = True):
        """``(kernel, binding)`` of the GEMM variant the selection table picks."""
        kname = "smooth_gemm_t" if trans_b else "smooth_gemm"
        table = self._table.get((kname, dtype))
        if table is None:
            raise ArtifactError(f"{self.path}: no {self.backend}/{self.target} variant of {kname} with DT={dtype}; "
                                f"run: {_cmd(self.target, self.path, kname)}")
        bm = table[_bucket(M)]
        nk = self._nk.get((kname, dtype, N, K))
        if nk is None:
            _, bns, bks = self._avail[(kname, dtype)]
            bn = max((v for v in bns if N % v == 0), default=bns[-1])
            bk = max((v for v in bks if K % v == 0), default=bks[-1])
            nk = self._nk[(kname, dtype, N, K)] = (bn, bk)
        binding = {"BM": bm, "BN": nk[0], "BK": nk[1], "DT": dtype}
        if (kname, _bkey(binding)) not in self._entries:  # a sparse space: the closest variant with this BM
            bs = self._avail[(kname, dtype)][0]
            cands = [b for b in bs if b["BM"] == bm] or bs
            binding = dict(max(cands, key=lambda b: (N % b["BN"] == 0, K % b["BK"] == 0, b["BN"], b["BK"])))
        return self.kernel(kname, **binding), binding

    def linear(self, x, w, out=None):
        """``C = x @ w^T`` (x: [M, K], w: [N, K], numpy f16) through the selected variant on the
        cpu backend; rows past M are virtual padding (nothing is copied)."""
        x = np.asarray(x)
        w = np.asarray(w)
        if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
            raise ValueError(f"linear: expected x [M, K] and w [N, K], got {x.shape} and {w.shape}")
        if x.dtype != w.dtype or x.dtype not in _NP_DT:
            raise ValueError(f"linear: x and w must share a dtype among {sorted(map(str, _NP_DT))}")
        M, K = x.shape
        N = w.shape[0]
        kernel, _ = self.gemm(M, N, K, _NP_DT[x.dtype], trans_b=True)
        c = np.empty((M, N), dtype=x.dtype) if out is None else out
        from codegen.cpu import run
        run(kernel, {"A": x, "W": w, "C": c})
        return c


def open_artifacts(path, backend: str = "cpu", target: str = "cpu") -> Artifacts:
    """Open and verify an artifact directory; ``ArtifactError`` on anything wrong."""
    d = Path(path)
    cmd = _cmd(target, d)
    if not d.is_dir():
        raise ArtifactError(f"{d}: no artifact directory; build it with: {cmd}")
    try:
        m = _cache.read_manifest(d)
    except _cache.CacheError as e:
        raise ArtifactError(f"{e}; rebuild with: {cmd}") from None
    version = _cache.compiler_version()
    other = sorted({str(e.get("compiler_version")) for e in m["entries"].values()
                    if e.get("compiler_version") != version})
    if other:
        raise ArtifactError(f"{d}: built by tilec {', '.join(other)}, this is tilec {version}; "
                            f"rebuild with: {cmd}")
    try:
        problems = _cache.verify(d)
    except _cache.CacheError as e:
        raise ArtifactError(f"{e}; rebuild with: {cmd}") from None
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ArtifactError(f"{d}: {problems[0]}{more}; rebuild with: {cmd}")
    if not any(e.get("backend") == backend and e.get("target") == target for e in m["entries"].values()):
        raise ArtifactError(f"{d}: no {backend}/{target} entries; build them with: {cmd}")
    return Artifacts(d, backend, target, m)
