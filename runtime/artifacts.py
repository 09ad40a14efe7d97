"""Opening an artifact directory written by ``tilec compile`` (DESIGN.md "Runtime").

    arts = open_artifacts("artifacts/", backend="cpu", target="cpu")
    k = arts.kernel("smooth_gemm_t", BM=32, BN=32, BK=32, DT="f16")   # a loaded specialisation
    kernel, binding = arts.gemm(M=33, N=64, K=64, dtype="f16")         # table lookup
    c = arts.linear(x, w)                                              # C = x @ w^T
    p = arts.plan(stages, num_kv_heads=8, group=4, head_dim=128)       # once per step
    arts.run(p, q, k_cache, v_cache, block_table, out)                 # every layer, one launch

``open_artifacts`` refuses (``ArtifactError``, one line naming the ``tilec compile`` command
that rebuilds the directory) a missing directory, a missing or corrupted manifest, entries
whose files do not hash to the manifest (``tilec.cache.verify``), and a directory built by
another compiler version.

The IR text stored in an entry is not parseable back, so a specialisation is loaded by
re-compiling the library kernel with the entry's binding and checking that the printed IR
hashes (``tilec.cache.cache_key``) to the entry's key: the artifact really is this kernel.

GEMM selection: the *tuned* table ``tilec tune`` wrote for this (backend, target)
(``DIR/tuning/<backend>-<target>.json``, recorded in the manifest) for the (N, K) shapes and
M buckets it covers; everything else uses the *default* table, computed at open time from the
available variants. Default, per (kernel, dtype) and per M bucket (M rounded up to a power of
two, capped at 128): the smallest available BM >= the bucket (else the largest BM). BN / BK:
the largest available value dividing N / K, else the largest available value. A lookup that
was answered once is one dict access.

Attention: ``plan()`` picks a tile (BM rows) per stage kind, from the tuned table or by
default the available BM closest below the paper's (prefill 128, verify 64, decode 16) for the
model's (G, D, dtype); the launch variant's BM is the largest tile of the kinds present.
``run()`` launches ONE meta_attention kernel for the whole batch from the plan's task table;
the same plan serves every layer of a step. Kernels run through ``runtime.launchers`` (cpu,
triton, ascend-sim), so this module stays backend-agnostic.

Ascend: ``tilec compile --target ascend910b2`` writes entries of backend "ascend" (Ascend C
sources). ``open_artifacts(DIR, backend="ascend-sim", target="ascend910b2")`` opens those
entries and runs them on the tile-machine simulator (numpy results, MODELLED cycles: each launch
returns the simulator's Stats); ``backend="npu"`` opens them for a real NPU, whose launcher
says plainly that CANN / torch_npu are absent. ``backend="ascend"`` means ascend-sim.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime import launchers as _launchers
from runtime import plan as _plan
from tilec import cache as _cache

__all__ = ["ArtifactError", "Artifacts", "open_artifacts", "M_BUCKETS", "tuning_name"]

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
try:
    import ml_dtypes
    _NP_DT[np.dtype(ml_dtypes.bfloat16)] = "bf16"
except ImportError:     # pragma: no cover
    pass

# launcher name -> the backend of the entries it runs (the rest run entries of their own name)
LAUNCHER_ENTRIES = {"ascend-sim": "ascend", "npu": "ascend"}

TUNING_FORMAT = "tilec-tuning"
TUNING_FORMAT_VERSION = 1


def tuning_name(backend: str, target: str) -> str:
    """File name (under DIR/tuning/) of the selection tables for (backend, target)."""
    return f"{backend}-{target}.json"


def _tune_cmd(target: str, out) -> str:
    return f"tilec tune {out} --target {target}"


def _dtype_name(x) -> str:
    dt = getattr(x, "dtype", None)
    try:
        return _NP_DT[np.dtype(dt)]
    except (KeyError, TypeError):
        pass
    name = str(dt).replace("torch.", "")
    return {"float16": "f16", "bfloat16": "bf16", "float32": "f32"}.get(name, name)


@dataclass
class _Entry:
    key: str
    kernel: str
    binding: dict


class Artifacts:
    """A verified artifact directory for one (backend, target)."""

    def __init__(self, path: Path, backend: str, target: str, manifest: dict, launcher: str = ""):
        self.path = path
        self.backend = backend          # the entries' backend ("ascend" for ascend-sim / npu)
        self.launcher = launcher or _launchers.for_artifacts(backend, target)
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
        self._fast: dict[tuple, tuple] = {}     # (kname, dtype, N, K, bucket) -> (kernel, binding)
        self._attn_memo: dict[tuple, dict] = {}
        self._launch = None
        tuned = manifest.get("tuning", {})
        self.tuning_file = tuning_name(backend, target) if tuning_name(backend, target) in tuned else None
        self.tuning: dict | None = None
        self._tuned_gemm: dict[tuple, dict] = {}   # (kname, dtype, N, K) -> {bucket: binding}
        self._tuned_attn: dict[tuple, dict] = {}   # (G, D, dtype) -> {kind: {"BM", "BN"}}
        if self.tuning_file:
            self._read_tuning()

    # ------------------------------------------------------------------ tuning tables

    def _bad_tuning(self, why: str) -> ArtifactError:
        return ArtifactError(f"{self.path / _cache.TUNING / self.tuning_file}: {why}; re-run: "
                             f"{_tune_cmd(self.target, self.path)}")

    def _read_tuning(self) -> None:
        import json
        p = self.path / _cache.TUNING / self.tuning_file
        try:
            t = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise self._bad_tuning(f"corrupted tuning table ({type(e).__name__}: {e})") from None
        try:
            if t.get("format") != TUNING_FORMAT or t.get("format_version") != TUNING_FORMAT_VERSION:
                raise ValueError(f"not a {TUNING_FORMAT} v{TUNING_FORMAT_VERSION} file")
            if t.get("compiler_version") != self.version:
                raise self._bad_tuning(f"tuned by tilec {t.get('compiler_version')}, this is tilec {self.version}")
            if (t.get("backend"), t.get("target")) != (self.backend, self.target):
                raise ValueError(f"made for {t.get('backend')}/{t.get('target')}")
            for g in t["gemm"]:
                sel = {}
                for b, row in g["buckets"].items():
                    binding = dict(row["binding"])
                    if (g["kernel"], _bkey(binding)) not in self._entries:
                        raise ValueError(f"names {g['kernel']} {_fmt(binding)}, which is not in the directory")
                    sel[int(b)] = binding
                self._tuned_gemm[(g["kernel"], g["dtype"], int(g["N"]), int(g["K"]))] = sel
            for a in t.get("attention", []):
                tiles = {}
                for kind, tile in a["tiles"].items():
                    if kind not in _plan.KINDS:
                        raise ValueError(f"unknown stage kind {kind!r}")
                    tiles[kind] = {"BM": int(tile["BM"]), "BN": int(tile["BN"])}
                    b = {"BM": tiles[kind]["BM"], "BN": tiles[kind]["BN"], "D": int(a["D"]),
                         "G": int(a["G"]), "DT": a["dtype"]}
                    if ("meta_attention", _bkey(b)) not in self._entries:
                        raise ValueError(f"names meta_attention {_fmt(b)}, which is not in the directory")
                self._tuned_attn[(int(a["G"]), int(a["D"]), a["dtype"])] = tiles
        except ArtifactError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise self._bad_tuning(f"corrupted tuning table ({type(e).__name__}: {e})") from None
        self.tuning = t

    @property
    def selection(self) -> str:
        """Which GEMM selection table answers: tuned (file, model, M range) or default."""
        if self.tuning is None:
            return "default (no tuning table; run: " + _tune_cmd(self.target, self.path) + ")"
        m = self.tuning.get("model", {}).get("name", "?")
        return (f"tuned ({_cache.TUNING}/{self.tuning_file}: {m}, M <= {self.tuning.get('budget')}, "
                f"{self.tuning.get('method', '?')}); default elsewhere")

    def __repr__(self) -> str:
        return (f"Artifacts({str(self.path)!r}, backend={self.backend!r}, target={self.target!r}, "
                f"launcher={self.launcher!r}, "
                f"{len(self._entries)} entries, gemm selection: {self.selection})")

    @property
    def launch(self):
        """The launcher of this directory's backend (runtime.launchers)."""
        if self._launch is None:
            self._launch = _launchers.get(self.launcher, self.target)
        return self._launch

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
        """``(kernel, binding)`` of the GEMM variant the selection table picks (tuned where
        ``tilec tune`` covered (N, K) and M's bucket, else the default table)."""
        kname = "smooth_gemm_t" if trans_b else "smooth_gemm"
        q = 1 << (max(int(M), 1) - 1).bit_length()
        fk = (kname, dtype, N, K, q)
        hit = self._fast.get(fk)
        if hit is not None:
            return hit
        sel = self._tuned_gemm.get((kname, dtype, N, K))
        if sel is not None and q in sel:
            binding = sel[q]
            hit = self._fast[fk] = (self.kernel(kname, **binding), binding)
            return hit
        hit = self._fast[fk] = self._default_gemm(kname, M, N, K, dtype)
        return hit

    def default_gemm(self, M: int, N: int, K: int, dtype: str, trans_b: bool = True):
        """What the default table would pick (tuning compares against it)."""
        return self._default_gemm("smooth_gemm_t" if trans_b else "smooth_gemm", M, N, K, dtype)

    def _default_gemm(self, kname: str, M: int, N: int, K: int, dtype: str):
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
        """``C = x @ w^T`` (x: [M, K], w: [N, K], numpy f16) through the selected variant on
        this directory's launcher; rows past M are virtual padding (nothing is copied)."""
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
        self.launch(kernel, {"A": x, "W": w, "C": c})
        return c

    # ------------------------------------------------------------------ attention

    @property
    def num_cores(self) -> int:
        """Cores the task table is dealt over: AI cores (Ascend), SMs (GPU), host cores."""
        from tilec import targets
        t = targets.get(self.target)
        for f in ("aic_cores", "sm_count", "cores"):
            if getattr(t, f, None):
                return int(getattr(t, f))
        return 1

    def _attn_bms(self, group: int, head_dim: int, dtype: str) -> dict[int, list[int]]:
        """Available meta_attention BM -> sorted BNs for (G, D, dtype) (memoised)."""
        key = ("bms", group, head_dim, dtype)
        hit = self._attn_memo.get(key)
        if hit is not None:
            return hit
        out: dict[int, list[int]] = {}
        for (kn, _), e in self._entries.items():
            b = e.binding
            if kn == "meta_attention" and b.get("G") == group and b.get("D") == head_dim and b.get("DT") == dtype:
                out.setdefault(b["BM"], []).append(b["BN"])
        out = self._attn_memo[key] = {bm: sorted(bns) for bm, bns in sorted(out.items())}
        return out

    def attention_tiles(self, group: int, head_dim: int, dtype: str = "f16") -> dict[str, dict]:
        """Per stage kind, the tile {"BM", "BN", "source"}: tuned, or the default rule."""
        key = ("tiles", group, head_dim, dtype)
        hit = self._attn_memo.get(key)
        if hit is None:
            hit = self._attn_memo[key] = self._attention_tiles(group, head_dim, dtype)
        return {k: dict(v) for k, v in hit.items()}

    def _attention_tiles(self, group: int, head_dim: int, dtype: str) -> dict[str, dict]:
        tuned = self._tuned_attn.get((group, head_dim, dtype))
        if tuned is not None:
            return {k: dict(v, source="tuned") for k, v in tuned.items()}
        bms = self._attn_bms(group, head_dim, dtype)
        if not bms:
            raise ArtifactError(
                f"{self.path}: no {self.backend}/{self.target} variant of meta_attention with G={group} "
                f"D={head_dim} DT={dtype}; add it to the variant space and run: "
                f"{_cmd(self.target, self.path, 'meta_attention')}")
        out = {}
        for kind, rows in _plan.DEFAULT_TILE_ROWS.items():
            below = [bm for bm in bms if bm <= rows]
            bm = below[-1] if below else min(bms)
            out[kind] = {"BM": bm, "BN": bms[bm][-1], "source": "default"}
        return out

    def plan(self, stages, num_kv_heads: int, group: int, head_dim: int, dtype: str = "f16",
             num_cores: int | None = None) -> _plan.Plan:
        """The step's attention plan with this directory's tiles (plan once, run every layer)."""
        tiles = self.attention_tiles(group, head_dim, dtype)
        kinds = {s.kind for s in stages} or set(_plan.KINDS)
        bm = max(tiles[k]["BM"] for k in kinds)
        rows = {k: min(t["BM"], bm) for k, t in tiles.items()}
        p = _plan.plan(stages, num_kv_heads, group, bm, num_cores or self.num_cores, tile_rows=rows)
        return p

    def attention(self, plan: _plan.Plan, head_dim: int, dtype: str = "f16"):
        """``(kernel, binding)`` of the meta_attention variant for the plan's tile."""
        tiles = self.attention_tiles(plan.group, head_dim, dtype)
        bns = self._attn_bms(plan.group, head_dim, dtype).get(plan.bm)
        if not bns:
            raise ArtifactError(
                f"{self.path}: no {self.backend}/{self.target} variant of meta_attention with BM={plan.bm} "
                f"G={plan.group} D={head_dim} DT={dtype}; run: {_cmd(self.target, self.path, 'meta_attention')}")
        bn = next((t["BN"] for k, t in tiles.items() if t["BM"] == plan.bm and t["BN"] in bns), bns[-1])
        binding = {"BM": plan.bm, "BN": bn, "D": head_dim, "G": plan.group, "DT": dtype}
        return self.kernel("meta_attention", **binding), binding

    def run(self, plan: _plan.Plan, q, k_cache, v_cache, block_table, out, scale: float | None = None):
        """One meta_attention launch for the whole batch of ``plan``: q [T, HQ, D],
        k_cache / v_cache [NB, BS, HKV, D] (paged), block_table int32 [NSEQ, MAXB], out
        [T, HQ, D] written in place. Returns what the launcher reports."""
        if q.ndim != 3 or k_cache.ndim != 4 or tuple(k_cache.shape) != tuple(v_cache.shape):
            raise ValueError(f"attention: expected q [T, HQ, D] and k/v caches [NB, BS, HKV, D], got "
                             f"{tuple(q.shape)}, {tuple(k_cache.shape)}, {tuple(v_cache.shape)}")
        T, HQ, D = (int(v) for v in q.shape)
        if int(k_cache.shape[2]) != plan.num_kv_heads or HQ != plan.num_kv_heads * plan.group:
            raise ValueError(f"attention: the plan is for {plan.num_kv_heads} KV heads x G={plan.group}, "
                             f"got q with {HQ} heads and caches with {int(k_cache.shape[2])} KV heads")
        if T < plan.num_tokens:
            raise ValueError(f"attention: the plan covers {plan.num_tokens} query tokens, q has {T}")
        kernel, _ = self.attention(plan, D, _dtype_name(q))
        return self.launch(kernel, {
            "Q": q, "KC": k_cache, "VC": v_cache, "O": out, "BT": block_table,
            "TASKS": plan.task_table, "TREE": plan.tree_mask,
            "scale": float(scale) if scale is not None else 1.0 / float(np.sqrt(D))})


def open_artifacts(path, backend: str = "cpu", target: str = "cpu", tuning: bool = True) -> Artifacts:
    """Open and verify an artifact directory; ``ArtifactError`` on anything wrong.
    ``tuning=False`` ignores the tuning tables (``tilec tune`` rewrites them). ``backend`` is
    an entry backend (cpu, triton, ascend) or a launcher that runs one (ascend-sim, npu)."""
    d = Path(path)
    launcher = backend if backend in LAUNCHER_ENTRIES else ""
    backend = LAUNCHER_ENTRIES.get(backend, backend)
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
    if not tuning:
        problems = [p for p in problems if f" {_cache.TUNING}/" not in p]
        m = dict(m, tuning={})
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        fix = (f"re-run: {_tune_cmd(target, d)}" if f" {_cache.TUNING}/" in problems[0]
               else f"rebuild with: {cmd}")
        raise ArtifactError(f"{d}: {problems[0]}{more}; {fix}")
    if not any(e.get("backend") == backend and e.get("target") == target for e in m["entries"].values()):
        raise ArtifactError(f"{d}: no {backend}/{target} entries; build them with: {cmd}")
    return Artifacts(d, backend, target, m, launcher)
