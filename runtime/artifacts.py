"""Opening an artifact directory written by ``tilec compile`` and running it (DESIGN.md "Runtime").

    arts = open_artifacts("artifacts/", backend="cpu", target="cpu")
    y = arts.linear(x, w)                           # C = x @ w^T, GEMM variant picked for (M, N, K)
    arts.rmsnorm(x, w, eps, residual=r, out=y)      # r += x; y = rmsnorm(r) * w
    arts.rope(q, positions, cos, sin)               # in place
    arts.silu_mul(gate, up, out=h)
    e = arts.embed(table, ids)
    arts.kv_write(k, v, k_cache, v_cache, slots)    # paged KV rows by slot mapping
    p = arts.plan(stages, num_kv_heads=8, group=4, head_dim=128)       # once per step
    arts.run(p, q, k_cache, v_cache, block_table, out)                 # every layer, one launch
    lk = arts.kernel("rmsnorm", BM=4, BN=1024, DT="f32")               # any entry, by name
    lk({"X": x, "W": w, "Y": y, "eps": 1e-5})

Every entry point takes torch tensors and returns torch tensors on the same device (numpy
arrays are accepted and viewed without a copy; the result then comes back as numpy). Bad
arguments raise ``InvalidArgument`` (a ValueError) naming the argument; M = 0 is a no-op.

``open_artifacts`` refuses (``ArtifactError``, one line naming the ``tilec compile`` command
that rebuilds the directory) a missing directory, a missing or corrupted manifest, entries
whose files do not hash to the manifest (``tilec.cache.verify``), and a directory built by
another compiler version. Entries then run from their own files (runtime/loader.py): the
generated code, the launch signature and, for IR launchers, the serialised IR, each re-hashed
just before its code first runs. The frontend is never imported, so a deployed directory runs
without the compiler, and a user's own kernels open by name like the library's.

GEMM selection: the *tuned* table ``tilec tune`` wrote for this (backend, target)
(``DIR/tuning/<backend>-<target>.json``, recorded in the manifest) for the (N, K) shapes and
M buckets it covers; everything else uses the *default* table, computed at open time from the
available variants. Default, per (kernel, dtype) and per M bucket (M rounded up to a power of
two, capped at 128): the smallest available BM >= the bucket (else the largest BM). BN / BK:
the largest available value dividing N / K, else the largest available value. A lookup that
was answered once is one dict access. The layer kernels pick by rule: rmsnorm/add_rmsnorm the
smallest BN covering N, rope and kv_write the head dim, silu_mul the larger BM for long
batches.

Attention: ``plan()`` picks a tile (BM rows) per stage kind, from the tuned table or by
default the available BM closest below the paper's (prefill 128, verify 64, decode 16) for the
model's (G, D, dtype); the launch variant's BM is the largest tile of the kinds present.
``run()`` launches ONE meta_attention kernel for the whole batch from the plan's task table;
the same plan serves every layer of a step. Before the first launch of a plan with a given
block table, every index the kernel will follow is checked (runtime/checks.py): stage
sequences, table width against contexts, every block against the cache. On CUDA the task
table, tree mask and block table go into persistent device buffers refilled in place once per
plan (nothing is copied per layer, and a CUDA graph could capture the launches).

Ascend: ``tilec compile --target ascend910b2`` writes entries of backend "ascend" (Ascend C
sources, the lowered program). ``open_artifacts(DIR, backend="ascend-sim",
target="ascend910b2")`` runs them on the tile-machine simulator (numpy results, MODELLED cycles:
each launch returns the simulator's Stats); ``backend="npu"`` opens them for a real NPU, whose
launcher says plainly that CANN / torch_npu are absent. ``backend="ascend"`` means ascend-sim.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from runtime import checks as _chk
from runtime import launchers as _launchers
from runtime import plan as _plan
from runtime.checks import InvalidArgument
from runtime.loader import EntryError, LoadedKernel, load_entry
from tilec import cache as _cache

__all__ = ["ArtifactError", "Artifacts", "InvalidArgument", "open_artifacts", "M_BUCKETS", "tuning_name"]

M_CAP = 128
M_BUCKETS = tuple(1 << i for i in range(8))  # 1, 2, ..., 128


class ArtifactError(Exception):
    """An artifact directory the runtime cannot use; the message is one line."""


def _cmd(target: str, out, kernel: str | None = None) -> str:
    k = f" --kernel {kernel}" if kernel else ""
    return f"tilec compile --target {target} --out {out}{k}"


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _bucket(m: int) -> int:
    m = max(1, min(int(m), M_CAP))
    return 1 << (m - 1).bit_length()


def _fit_rows(key: str, m: int, fits=None):
    """A ``_pick`` preference: variants that fit (``fits``), then the smallest row tile
    ``key`` covering m rows (the largest when none does), then the smallest other consts."""
    q = _bucket(m)

    def pref(b):
        if fits is not None and not fits(b):
            return None
        t = b[key]
        return (0, t) if t >= q else (1, -t)
    return pref


def _bkey(binding: dict) -> tuple:
    return tuple(sorted(binding.items()))


def _fmt(binding: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(binding.items()))



# launcher name -> the backend of the entries it runs (the rest run entries of their own name)
LAUNCHER_ENTRIES = {"ascend-sim": "ascend", "npu": "ascend"}

# backends whose kernels take the same tensors on the same device, so a tuned row of one
# backend's table may name a variant of the other (tilec tune --target cpu measures both)
_SIBLINGS = {"native": ("cpu",), "cpu": ("native",)}

TUNING_FORMAT = "tilec-tuning"
TUNING_FORMAT_VERSION = 1


def tuning_name(backend: str, target: str) -> str:
    """File name (under DIR/tuning/) of the selection tables for (backend, target)."""
    return f"{backend}-{target}.json"


def _tune_cmd(target: str, out) -> str:
    return f"tilec tune {out} --target {target}"


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
        self._manifest = manifest
        self._manifest_entries = manifest["entries"]
        self._siblings: dict[str, "Artifacts"] = {}   # other backends of this target (tuned GEMM rows)
        for key, e in manifest["entries"].items():
            if e.get("backend") != backend or e.get("target") != target:
                continue
            b = e.get("binding") or {}
            self._entries[(e.get("kernel"), _bkey(b))] = _Entry(key, e.get("kernel"), dict(b))
        self._loaded: dict[tuple, LoadedKernel] = {}   # (name, asked binding) -> entry
        self._by_key: dict[str, LoadedKernel] = {}
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
        self._rule_memo: dict[tuple, LoadedKernel] = {}
        self._checked: dict[str, tuple] = {}    # what -> the tensor state last checked
        self._buffers: dict = {}        # device -> persistent plan buffers (CUDA)
        self._launch = None
        tuned = manifest.get("tuning", {})
        self.tuning_file = tuning_name(backend, target) if tuning_name(backend, target) in tuned else None
        self.tuning: dict | None = None
        self._tuned_gemm: dict[tuple, dict] = {}   # (kname, dtype, N, K) -> {bucket: (backend, binding)}
        self._tuned_attn: dict[tuple, dict] = {}   # (G, D, dtype) -> {kind: {"BM", "BN"}}
        if self.tuning_file:
            self._read_tuning()

    # ------------------------------------------------------------------ tuning tables

    def _bad_tuning(self, why: str) -> ArtifactError:
        return ArtifactError(f"{self.path / _cache.TUNING / self.tuning_file}: {why}; re-run: "
                             f"{_tune_cmd(self.target, self.path)}")

    def _read_tuning(self) -> None:
        import json

        from tilec import safefs
        try:
            t = json.loads(safefs.read_bytes(self.path, f"{_cache.TUNING}/{self.tuning_file}").decode("utf-8"))
        except (OSError, ValueError, RecursionError) as e:
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
                    rb = row.get("backend", self.backend)    # tuning may pick a sibling backend
                    if rb != self.backend and rb not in _SIBLINGS.get(self.backend, ()):
                        raise ValueError(f"picks backend {rb!r}, which cannot run beside {self.backend}")
                    if not self._has_entry(rb, g["kernel"], binding):
                        raise ValueError(f"names {rb} {g['kernel']} {_fmt(binding)}, which is not in the directory")
                    sel[int(b)] = (rb, binding)
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

    def _bindings(self, kernel: str, want: dict) -> list[dict]:
        """The bindings of this backend's entries of ``kernel`` that include ``want``."""
        return [e.binding for (k, _), e in self._entries.items()
                if k == kernel and all(e.binding.get(n) == v for n, v in want.items())]

    # ------------------------------------------------------------------ loading

    def kernel(self, name: str, **binding) -> LoadedKernel:
        """The entry for kernel ``name`` with ``binding``, loaded from its own files (hashes
        checked just before its code is first executed); cached."""
        bk = _bkey(binding)
        hit = self._loaded.get((name, bk))
        if hit is not None:
            return hit
        ent = self._entries.get((name, bk))
        if ent is None:
            ent = self._only_match(name, binding)
        lk = self._by_key.get(ent.key)
        if lk is None:
            try:
                lk = load_entry(self.path, self._manifest_entries[ent.key], self.launcher, self.target)
            except EntryError as e:
                raise ArtifactError(f"{e}; rebuild with: {_cmd(self.target, self.path)}") from None
            self._by_key[ent.key] = lk
        self._loaded[(name, bk)] = lk
        return lk

    def _has_entry(self, backend: str, name: str, binding: dict) -> bool:
        """Whether exactly one entry of ``name`` for ``backend`` has ``binding`` (or includes it:
        a table may leave out the consts the backend fixes, such as GEMM's GM)."""
        if backend == self.backend and (name, _bkey(binding)) in self._entries:
            return True
        return sum(1 for e in self._manifest_entries.values()
                   if e.get("backend") == backend and e.get("target") == self.target and e.get("kernel") == name
                   and all((e.get("binding") or {}).get(k) == v for k, v in binding.items())) == 1

    def _sibling(self, backend: str) -> "Artifacts":
        """The same directory's entries of another backend for this target (where tuning
        measured one of its GEMM variants faster for a shape); opened without tuning tables."""
        sib = self._siblings.get(backend)
        if sib is None:
            sib = self._siblings[backend] = Artifacts(self.path, backend, self.target,
                                                      dict(self._manifest, tuning={}))
        return sib

    def _only_match(self, name: str, binding: dict) -> _Entry:
        """The one entry of ``name`` whose binding includes ``binding`` (a user need not
        repeat the consts the source defaults), or ArtifactError listing what there is."""
        have = [e for (k, _), e in self._entries.items() if k == name]
        hits = [e for e in have if all(e.binding.get(k) == v for k, v in binding.items())]
        if len(hits) == 1:
            return hits[0]
        want = _fmt(binding) or "no binding"
        if not have:
            raise ArtifactError(
                f"{self.path}: no {self.backend}/{self.target} entries of {name}; compile it into the directory "
                f"(a library kernel: {_cmd(self.target, self.path, name)}; your own: tilec compile FILE.tile "
                f"--target {self.target} --out {self.path})")
        listed = "; ".join(_fmt(e.binding) for e in have[:6]) + ("; ..." if len(have) > 6 else "")
        what = "several variants match" if hits else "no variant"
        raise ArtifactError(f"{self.path}: {what} of {name} with {want} for {self.backend}/{self.target} "
                            f"(entries: {listed}); compile the one you need: "
                            f"{_cmd(self.target, self.path, name)}")

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
            rb, binding = sel[q]
            arts = self if rb == self.backend else self._sibling(rb)
            hit = self._fast[fk] = (arts.kernel(kname, **binding), binding)
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
        want = {"BM": bm, "BN": nk[0], "BK": nk[1], "DT": dtype}
        bs = self._avail[(kname, dtype)][0]
        # the entry with that tile (its other consts, such as GM, are what the backend built)
        binding = next((dict(b) for b in bs if all(b[k] == v for k, v in want.items())), None)
        if binding is None:           # a sparse space: the closest variant with this BM
            cands = [b for b in bs if b["BM"] == bm] or bs
            binding = dict(max(cands, key=lambda b: (N % b["BN"] == 0, K % b["BK"] == 0, b["BN"], b["BK"])))
        return self.kernel(kname, **binding), binding

    def split_k(self, M: int, N: int, K: int, dtype: str, chunks: int | None = None):
        """``(split kernel, reduce kernel, binding, chunks, ks)`` when ``x @ w^T`` should run
        split over K, else None. ``chunks`` None: the rule, on the triton backend only (a
        GPU's SMs): split when the output tiles fill at most half the cores, into as many
        chunks of K as fill them, each at least 4 BK steps long; 1: never; n >= 2: n chunks
        (when the directory has the split kernels)."""
        if (chunks is not None and chunks < 2) or (chunks is None and self.backend != "triton"):
            return None
        q = 1 << (max(int(M), 1) - 1).bit_length()
        key = ("splitk", dtype, N, K, q, chunks)
        if key in self._rule_memo:
            return self._rule_memo[key]
        hit = None
        cands = self._bindings("smooth_gemm_t_splitk", {"DT": dtype})
        if cands:
            bms = sorted({b["BM"] for b in cands})
            bm = next((v for v in bms if v >= q), bms[-1])
            b = max((b for b in cands if b["BM"] == bm),
                    key=lambda b: (N % b["BN"] == 0, K % b["BK"] == 0, b["BN"], b["BK"]))
            red = {"BM": b["BM"], "BN": b["BN"], "DT": dtype}
            has_red = bool(self._bindings("gemm_reduce", red))
            tiles = _cdiv(q, b["BM"]) * _cdiv(N, b["BN"])
            n = chunks if chunks is not None else (
                min(self.num_cores // tiles, K // (4 * b["BK"])) if 2 * tiles <= self.num_cores else 1)
            if has_red and n >= 2:
                ks = _cdiv(_cdiv(K, n), b["BK"]) * b["BK"]        # a multiple of BK
                n = _cdiv(K, ks)
                if n >= 2:
                    hit = (self.kernel("smooth_gemm_t_splitk", **b), self.kernel("gemm_reduce", **red),
                           dict(b), n, ks)
        self._rule_memo[key] = hit
        return hit

    def linear(self, x, w, out=None, bias=None, split_k: int | None = None):
        """``C = x @ w^T (+ bias)`` (x [M, K], w [N, K], bias [N]) through the selected variant;
        rows past M are virtual padding (nothing is copied or padded). Returns ``out``
        (allocated if None). ``split_k``: see ``split_k`` (None: the rule)."""
        xt, wt = _chk.as_tensor(x, "linear: x"), _chk.as_tensor(w, "linear: w")
        _chk.check_2d(xt, "linear: x")
        _chk.check_2d(wt, "linear: w")
        if xt.shape[1] != wt.shape[1]:
            raise InvalidArgument(f"linear: x is [M, K] = {tuple(xt.shape)} but w is [N, K] = {tuple(wt.shape)}")
        _chk.check_same(xt, wt, "linear: w", "x")
        M, K = xt.shape
        N = wt.shape[0]
        c = self._out(out, (M, N), xt, "linear: out")
        if bias is not None:
            bt = _chk.as_tensor(bias, "linear: bias")
            if tuple(bt.shape) != (N,):
                raise InvalidArgument(f"linear: bias has shape {tuple(bt.shape)}, expected ({N},)")
            _chk.check_same(xt, bt, "linear: bias", "x")
        if M:
            dt = _chk.dtype_name(xt, "linear: x")
            sk = self.split_k(M, N, K, dt, split_k)
            if sk is not None:
                part, red, _, n, ks = sk
                cp = self._workspace(xt.device, n * M * N, 0)[0].view(n, M, N)
                part({"A": xt, "W": wt, "CP": cp, "ks": ks})
                red({"CP": cp, "C": c})
            else:
                kernel, _ = self.gemm(M, N, K, dt, trans_b=True)
                kernel({"A": xt, "W": wt, "C": c})
            if bias is not None:
                self._pick("bias_add", dt, {}, _fit_rows("BM", M), (_bucket(M),))({"X": c, "B": bt})
        return _chk.like_input(c, x if out is None else out)

    @staticmethod
    def _out(out, shape, ref, what):
        if out is None:
            return torch.empty(shape, dtype=ref.dtype, device=ref.device)
        return _chk.check_out(out, shape, ref, what)

    # ------------------------------------------------------------------ layer kernels

    def _pick(self, kname: str, dtype: str, want: dict, prefer=None, why: tuple = ()) -> LoadedKernel:
        """The variant of a layer kernel with DT=dtype and the consts in ``want`` (exact), the
        rest chosen by ``prefer(binding) -> sort key`` (smallest wins; None: does not fit);
        memoised on ``why``, the values ``prefer`` depends on."""
        mk = (kname, dtype, tuple(sorted(want.items())), why)
        hit = self._rule_memo.get(mk)
        if hit is not None:
            return hit
        cands = self._bindings(kname, dict(want, DT=dtype))
        if prefer is not None:
            cands = [b for b in cands if prefer(b) is not None]
        if not cands:
            need = " ".join(f"{k}={v}" for k, v in want.items())
            raise ArtifactError(f"{self.path}: no {self.backend}/{self.target} variant of {kname} with DT={dtype}"
                                f"{' ' + need if need else ''}{' that fits' if prefer else ''}; add it to the "
                                f"variant space and run: {_cmd(self.target, self.path, kname)}")
        best = min(cands, key=lambda b: (prefer(b) if prefer else 0, _bkey(b)))
        hit = self._rule_memo[mk] = self.kernel(kname, **best)
        return hit

    def _check_once(self, t: torch.Tensor, lo: int, hi: int, what: str, unique: bool = False) -> None:
        """Index values in [lo, hi) (and, with ``unique``, no repeated non-negative value),
        checked once per tensor state: every layer of a step passes the same positions and
        slots, and a tensor changed in place has a new version and is checked again."""
        try:
            version = t._version
        except RuntimeError:          # an inference tensor: no version counter, so the same object
            version = None
        key = (t.data_ptr(), version, t.numel(), t.stride(), lo, hi, unique)
        hit = self._checked.get(what)
        if hit is not None and hit[0] == key and (version is not None or hit[1] is t):
            return
        _chk.check_index_values(t, lo, hi, what)
        if unique:
            live = t[t >= 0]
            if live.numel() != torch.unique(live).numel():
                raise InvalidArgument(f"{what.split(':')[0]}: two rows target the same cache slot")
        self._checked[what] = (key, t)      # holding t keeps its id from being reused

    def rmsnorm(self, x, w, eps: float, residual=None, out=None):
        """``out = x / sqrt(mean(x^2) + eps) * w`` per row of x [M, N]. With ``residual``
        [M, N]: first ``residual += x`` (in place, rounded to the dtype as the model's own add
        is), then the norm of the updated residual. Returns ``out``."""
        xt, wt = _chk.as_tensor(x, "rmsnorm: x"), _chk.as_tensor(w, "rmsnorm: w")
        _chk.check_2d(xt, "rmsnorm: x")
        M, N = xt.shape
        if tuple(wt.shape) != (N,):
            raise InvalidArgument(f"rmsnorm: w has shape {tuple(wt.shape)}, expected ({N},)")
        _chk.check_same(xt, wt, "rmsnorm: w", "x")
        y = self._out(out, (M, N), xt, "rmsnorm: out")
        dt = _chk.dtype_name(xt, "rmsnorm: x")
        if residual is not None:
            rt = _chk.check_out(residual, (M, N), xt, "rmsnorm: residual")
            if M:
                k = self._pick("add_rmsnorm", dt, {}, _fit_rows("BM", M, lambda b: b["BN"] >= N), (N, _bucket(M)))
                k({"X": xt, "R": rt, "W": wt, "Y": y, "eps": float(eps)})
        elif M:
            k = self._pick("rmsnorm", dt, {}, _fit_rows("BM", M, lambda b: b["BN"] >= N), (N, _bucket(M)))
            k({"X": xt, "W": wt, "Y": y, "eps": float(eps)})
        return _chk.like_input(y, x if out is None else out)

    def silu_mul(self, gate, up, out=None):
        """SwiGLU: ``out = silu(gate) * up`` (both [M, N]; strided views of one gate-up
        projection are fine). Returns ``out``."""
        gt, ut = _chk.as_tensor(gate, "silu_mul: gate"), _chk.as_tensor(up, "silu_mul: up")
        _chk.check_2d(gt, "silu_mul: gate")
        if gt.shape != ut.shape:
            raise InvalidArgument(f"silu_mul: gate {tuple(gt.shape)} and up {tuple(ut.shape)} differ in shape")
        _chk.check_same(gt, ut, "silu_mul: up", "gate")
        M, N = gt.shape
        y = self._out(out, (M, N), gt, "silu_mul: out")
        if M:
            dt = _chk.dtype_name(gt, "silu_mul: gate")
            k = self._pick("silu_mul", dt, {}, _fit_rows("BM", M), (_bucket(M),))
            k({"G": gt, "U": ut, "Y": y})
        return _chk.like_input(y, gate if out is None else out)

    def rope(self, x, positions, cos, sin, out=None):
        """Rotary embedding (neox layout: the two halves of each head rotate as pairs) of x
        [T, H, D] at ``positions`` (int32 [T]) with tables cos/sin f32 [NP, D/2]; in place
        unless ``out`` is given. Positions are checked against the tables."""
        xt = _chk.as_tensor(x, "rope: x")
        pt = _chk.as_tensor(positions, "rope: positions")
        ct, st = _chk.as_tensor(cos, "rope: cos"), _chk.as_tensor(sin, "rope: sin")
        if xt.ndim != 3:
            raise InvalidArgument(f"rope: x must be [T, H, D], got shape {tuple(xt.shape)}")
        T, H, D = xt.shape
        if pt.dtype != torch.int32 or tuple(pt.shape) != (T,):
            raise InvalidArgument(f"rope: positions must be int32 [{T}], got {pt.dtype} {tuple(pt.shape)}")
        for name, t in (("cos", ct), ("sin", st)):
            if t.dtype != torch.float32 or t.ndim != 2 or t.shape[1] != D // 2:
                raise InvalidArgument(f"rope: {name} must be f32 [NP, {D // 2}], got {t.dtype} {tuple(t.shape)}")
            if t.device != xt.device or pt.device != xt.device:
                raise InvalidArgument(f"rope: {name} and positions must be on {xt.device}")
        if ct.shape != st.shape:
            raise InvalidArgument(f"rope: cos {tuple(ct.shape)} and sin {tuple(st.shape)} differ in shape")
        y = xt if out is None else _chk.check_out(out, (T, H, D), xt, "rope: out")
        if T:
            self._check_once(pt, 0, int(ct.shape[0]), "rope: positions")
            k = self._pick("rope", _chk.dtype_name(xt, "rope: x"), {"D": D, "HALF": D // 2}, _fit_rows("BT", T),
                           (_bucket(T),))
            k({"X": xt, "P": pt, "COS": ct, "SIN": st, "Y": y})
        return _chk.like_input(y, x if out is None else out)

    def embed(self, table, ids, out=None):
        """Rows ``table[ids]`` ([T, N]) of an embedding table [V, N]; ids int32 [T], each
        checked to be in [0, V)."""
        et, it = _chk.as_tensor(table, "embed: table"), _chk.as_tensor(ids, "embed: ids")
        _chk.check_2d(et, "embed: table")
        if it.dtype != torch.int32 or it.ndim != 1:
            raise InvalidArgument(f"embed: ids must be int32 [T], got {it.dtype} {tuple(it.shape)}")
        if it.device != et.device:
            raise InvalidArgument(f"embed: ids on {it.device}, table on {et.device}")
        V, N = et.shape
        T = it.shape[0]
        y = self._out(out, (T, N), et, "embed: out")
        if T:
            self._check_once(it, 0, V, "embed: ids")
            k = self._pick("embed", _chk.dtype_name(et, "embed: table"), {}, _fit_rows("BT", T), (_bucket(T),))
            k({"E": et, "IDS": it, "Y": y})
        return _chk.like_input(y, table if out is None else out)

    def kv_write(self, k, v, k_cache, v_cache, slots) -> None:
        """Write new K/V rows k, v [T, HKV, D] into the paged caches [NB, BS, HKV, D] at
        ``slots`` (int32 [T]; slot = block * BS + offset; -1 writes nothing). Every slot is
        checked to lie in the cache, and no two rows may target one slot."""
        kt, vt = _chk.as_tensor(k, "kv_write: k"), _chk.as_tensor(v, "kv_write: v")
        kc, vc = _chk.as_tensor(k_cache, "kv_write: k_cache"), _chk.as_tensor(v_cache, "kv_write: v_cache")
        st = _chk.as_tensor(slots, "kv_write: slots")
        if kt.ndim != 3 or kt.shape != vt.shape:
            raise InvalidArgument(f"kv_write: k and v must be [T, HKV, D] of one shape, got "
                                  f"{tuple(kt.shape)} and {tuple(vt.shape)}")
        if kc.ndim != 4 or kc.shape != vc.shape or tuple(kc.shape[2:]) != tuple(kt.shape[1:]):
            raise InvalidArgument(f"kv_write: caches must be [NB, BS, {kt.shape[1]}, {kt.shape[2]}] of one "
                                  f"shape, got {tuple(kc.shape)} and {tuple(vc.shape)}")
        for name, t in (("v", vt), ("k_cache", kc), ("v_cache", vc)):
            _chk.check_same(kt, t, f"kv_write: {name}", "k")
        T = kt.shape[0]
        if st.dtype != torch.int32 or tuple(st.shape) != (T,):
            raise InvalidArgument(f"kv_write: slots must be int32 [{T}], got {st.dtype} {tuple(st.shape)}")
        if not T:
            return
        NB, BS = int(kc.shape[0]), int(kc.shape[1])
        self._check_once(st, -1, NB * BS, "kv_write: slots", unique=True)
        kern = self._pick("kv_write", _chk.dtype_name(kt, "kv_write: k"), {"D": int(kt.shape[2])}, _fit_rows("BT", T),
                          (_bucket(T),))
        kern({"K": kt, "V": vt, "KC": kc, "VC": vc, "SLOT": st})

    # ------------------------------------------------------------------ attention

    @functools.cached_property
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
             num_cores: int | None = None, split_kv: bool | None = None) -> _plan.Plan:
        """The step's attention plan with this directory's tiles (plan once, run every layer).
        Stages must cover Q tokens 0 .. T-1 without overlap or gap. ``split_kv``: cut the tasks
        into KV chunks when they under-fill the cores (runtime.plan.split_kv); None splits on the
        triton backend (a GPU's SMs) when the directory has the split kernels for the tile."""
        key = ("tiles", group, head_dim, dtype)
        tiles = self._attn_memo.get(key) or self.attention_tiles(group, head_dim, dtype)
        kinds = {s.kind for s in stages} or set(_plan.KINDS)
        bm = max(tiles[k]["BM"] for k in kinds)
        rows = {k: min(t["BM"], bm) for k, t in tiles.items()}
        try:
            p = _plan.plan(stages, num_kv_heads, group, bm, num_cores or self.num_cores, tile_rows=rows)
        except ValueError as e:
            raise InvalidArgument(f"plan: {e}") from None
        _chk.check_stages_cover(p.tokens)
        if split_kv is None:
            split_kv = self.backend == "triton"
        if split_kv and self._split_kernels(p, head_dim, dtype) is not None:
            p.split = _plan.split_kv(p)
        return p

    def _split_kernels(self, plan: _plan.Plan, head_dim: int, dtype: str):
        """(split kernel, merge kernel) for the plan's tile, or None when the directory lacks
        either (then the plan runs unsplit)."""
        key = ("split", plan.bm, plan.group, head_dim, dtype)
        if key not in self._attn_memo:
            want = {"BM": plan.bm, "D": head_dim, "G": plan.group, "DT": dtype}
            parts = sorted(b["BN"] for b in self._bindings("meta_attention_split", want))
            merge = self._bindings("attention_merge", want)
            if not parts or not merge:
                self._attn_memo[key] = None
            else:
                bn = self.attention(plan, head_dim, dtype)[1]["BN"]
                bn = bn if bn in parts else parts[0]
                self._attn_memo[key] = (self.kernel("meta_attention_split", BN=bn, **want),
                                        self.kernel("attention_merge", **want))
        return self._attn_memo[key]

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
        qt = _chk.as_tensor(q, "attention: q")
        kc, vc = _chk.as_tensor(k_cache, "attention: k_cache"), _chk.as_tensor(v_cache, "attention: v_cache")
        if qt.ndim != 3 or kc.ndim != 4 or tuple(kc.shape) != tuple(vc.shape):
            raise InvalidArgument(f"attention: expected q [T, HQ, D] and k/v caches [NB, BS, HKV, D], got "
                                  f"{tuple(qt.shape)}, {tuple(kc.shape)}, {tuple(vc.shape)}")
        T, HQ, D = (int(v) for v in qt.shape)
        if int(kc.shape[2]) != plan.num_kv_heads or HQ != plan.num_kv_heads * plan.group:
            raise InvalidArgument(f"attention: the plan is for {plan.num_kv_heads} KV heads x G={plan.group}, "
                                  f"got q with {HQ} heads and caches with {int(kc.shape[2])} KV heads")
        if int(kc.shape[3]) != D:
            raise InvalidArgument(f"attention: q has head dim {D}, the caches {int(kc.shape[3])}")
        if int(kc.shape[1]) < 1:     # the kernel's `j % BS` needs a block of at least one slot
            raise InvalidArgument(f"attention: the caches' block size is {int(kc.shape[1])}; it must be >= 1")
        if T != plan.num_tokens:
            raise InvalidArgument(f"attention: the plan covers {plan.num_tokens} query tokens, q has {T}")
        _chk.check_same(qt, kc, "attention: k_cache", "q")
        _chk.check_same(qt, vc, "attention: v_cache", "q")
        ot = _chk.check_out(out, (T, HQ, D), qt, "attention: out")
        tasks, tree, bt, kv, merge = self._plan_tensors(plan, block_table, int(kc.shape[0]),
                                                        int(kc.shape[1]), qt.device)
        if not plan.num_tasks:
            return None
        dt = _chk.dtype_name(qt, "attention: q")
        scale = float(scale) if scale is not None else 1.0 / float(np.sqrt(D))
        if plan.split is not None:
            return self._run_split(plan, qt, kc, vc, ot, bt, tasks, tree, kv, merge, scale, dt)
        kernel, _ = self.attention(plan, D, dt)
        return kernel({"Q": qt, "KC": kc, "VC": vc, "O": ot, "BT": bt, "TASKS": tasks, "TREE": tree,
                       "scale": scale})

    def _run_split(self, plan, qt, kc, vc, ot, bt, tasks, tree, kv, merge, scale, dt):
        """Split-KV: one program per KV chunk into f32 partials, then one merge per task."""
        pair = self._split_kernels(plan, int(qt.shape[2]), dt)
        if pair is None:
            raise ArtifactError(f"{self.path}: the plan is split into KV chunks but the directory has no "
                                f"meta_attention_split / attention_merge variant with BM={plan.bm} G={plan.group} "
                                f"D={int(qt.shape[2])} DT={dt}; run: {_cmd(self.target, self.path)}")
        part, comb = pair
        n, bm, d = plan.split.num_parts, plan.bm, int(qt.shape[2])
        op, lse = self._workspace(qt.device, n * bm * d, n * bm)
        op, lse = op.view(n, bm, d), lse.view(n, bm)
        part({"Q": qt, "KC": kc, "VC": vc, "OP": op, "LSE": lse, "BT": bt, "TASKS": tasks, "KV": kv,
              "TREE": tree, "scale": scale})
        return comb({"OP": op, "LSE": lse, "O": ot, "TASKS": tasks, "MERGE": merge})

    def _workspace(self, device, op_numel: int, lse_numel: int):
        """f32 partials of a split run (attention's outputs and log-sum-exps, split-K's tiles):
        one pair of buffers per device, grown (never shrunk) so that a CUDA graph replay keeps
        pointing at them."""
        key = ("split-ws", str(device))
        ws = self._buffers.get(key)
        if ws is None or ws[0].numel() < op_numel or ws[1].numel() < lse_numel:
            ws = self._buffers[key] = (torch.empty(max(op_numel, 1), dtype=torch.float32, device=device),
                                       torch.empty(max(lse_numel, 1), dtype=torch.float32, device=device))
        return ws[0][:op_numel], ws[1][:lse_numel]

    def _plan_tensors(self, plan: _plan.Plan, block_table, num_blocks: int, block_size: int, device):
        """(task table, tree mask, block table, chunk table, merge table) as tensors on
        ``device`` for ``plan`` (a split plan's task table holds its parts; the last two are
        None when it is not split); the block table's indices are checked against the plan and
        the cache once per (plan, block table, cache geometry), and on CUDA the tables go into
        this directory's persistent buffers once per plan."""
        memo = plan.__dict__.setdefault("_runtime", {})
        key = (id(block_table), num_blocks, block_size, str(device))
        hit = memo.get(key)
        if hit is not None and hit[0] is block_table:
            return hit[1]
        btt = _chk.as_tensor(block_table, "attention: block_table")
        if btt.dtype != torch.int32 or btt.ndim != 2:
            raise InvalidArgument(f"attention: block_table must be int32 [NSEQ, MAXB], got {btt.dtype} "
                                  f"{tuple(btt.shape)}")
        host_bt = btt.cpu().numpy() if btt.device.type != "cpu" else btt.numpy()
        _chk.check_block_table(plan.tokens, host_bt, num_blocks, block_size)
        sp = plan.split
        tasks = torch.from_numpy(plan.task_table if sp is None else sp.tasks)
        tree = torch.from_numpy(plan.tree_mask)
        kv = merge = None
        if torch.device(device).type != "cpu":
            buf = self._device_buffers(device)
            tasks, tree, btt = buf.fill(tasks, tree, btt)
            if sp is not None:
                kv, merge = buf.fill_split(torch.from_numpy(sp.kv), torch.from_numpy(sp.merge))
        elif sp is not None:
            kv, merge = torch.from_numpy(sp.kv), torch.from_numpy(sp.merge)
        memo.clear()        # one live binding per plan: a plan serves one step
        memo[key] = (block_table, (tasks, tree, btt, kv, merge))
        return tasks, tree, btt, kv, merge

    def _device_buffers(self, device) -> "_PlanBuffers":
        key = str(device)
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = _PlanBuffers(torch.device(device))
        return buf


class _PlanBuffers:
    """Persistent device buffers for one step's plan, refilled in place (a CUDA graph captured
    over the launches keeps pointing at them). Capacity doubles if a plan outgrows it, which a
    captured graph would then have to be re-captured for."""

    def __init__(self, device, tasks: int = 16384, tree: int = 65536, table: int = 1 << 20):
        self.device = device
        self.tasks = torch.zeros((tasks, _plan.TASK_COLS), dtype=torch.int32, device=device)
        self.tree = torch.zeros(tree, dtype=torch.int32, device=device)
        self.table = torch.zeros(table, dtype=torch.int32, device=device)
        self.kv = torch.zeros((tasks, 2), dtype=torch.int32, device=device)
        self.merge = torch.zeros((tasks, 2), dtype=torch.int32, device=device)

    def _fit(self, name: str, numel: int):
        buf = getattr(self, name)
        if buf.numel() < numel:
            shape = list(buf.shape)
            while shape[0] * (buf.numel() // max(buf.shape[0], 1)) < numel:
                shape[0] *= 2
            buf = torch.zeros(shape, dtype=torch.int32, device=self.device)
            setattr(self, name, buf)
        return buf

    def fill(self, tasks: torch.Tensor, tree: torch.Tensor, bt: torch.Tensor):
        t = self._fit("tasks", tasks.numel())[: tasks.shape[0]]
        t.copy_(tasks, non_blocking=True)
        m = self._fit("tree", tree.numel())[: tree.numel()]
        m.copy_(tree, non_blocking=True)
        if bt.device == self.device:
            b = bt
        else:
            b = self._fit("table", bt.numel())[: bt.numel()].view(bt.shape)
            b.copy_(bt, non_blocking=True)
        return t, m, b

    def fill_split(self, kv: torch.Tensor, merge: torch.Tensor):
        k = self._fit("kv", kv.numel())[: kv.shape[0]]
        k.copy_(kv, non_blocking=True)
        g = self._fit("merge", merge.numel())[: merge.shape[0]]
        g.copy_(merge, non_blocking=True)
        return k, g


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
