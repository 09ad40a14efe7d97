"""Offline tuning: selection tables for the runtime (``tilec tune DIR --target T``).

For a model's linear shapes (tilec.models: QKV, O, GateUp, Down of one tensor-parallel rank)
and M buckets 1, 2, 4, .. up to the budget, every GEMM variant of DIR worth trying is
*measured* (cpu backend on this CPU; Triton on a CUDA GPU) or *modelled* (Ascend targets: the
tile-machine simulator's cycle model), and the fastest is recorded per (N, K, bucket). For
attention, the meta_attention variants of the model's (G, D, dtype) are measured per stage
kind (a decode-only, verify-only and prefill-only batch) and the fastest tile kept.

What is tried, to keep tuning bounded: for bucket m, the two smallest available BMs >= m and
the largest BM < m (tiles covering the bucket, and one that splits it), with every BN / BK that
divides N / K and the next longer BK (a K step past K is virtual padding, and a long step can
stream a weight row best); plus the default table's pick, so the summary can compare against it. Each
candidate is run once to warm up, then timed ``reps`` times (best kept). M is the bucket
itself: the worst case of the bucket for virtual padding.

On the cpu target DIR may hold two backends' entries (native: compiled C++; cpu: generated
torch). Unless ``backend`` names one, every GEMM candidate of each is measured on the same
arguments and each (N, K, bucket) row records the backend whose variant won (the runtime opens
the other backend's entry for that shape); attention tiles are tuned on the first (native
where present), the backend the table is for.

The tables go to DIR/tuning/<backend>-<target>.json (plain JSON) through
``tilec.cache.write_tuning``: an atomic write under the directory's lock, recorded with its
sha256 in the manifest so ``tilec verify`` re-hashes it. runtime/artifacts.py reads it.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from tilec import cache as _cache
from tilec.models import ModelShapes

__all__ = ["TuneError", "DEFAULT_BUDGET", "buckets", "gemm_candidates", "tune", "summary_lines"]

DEFAULT_BUDGET = 64
DEFAULT_REPS = 3
GEMM_KERNEL = "smooth_gemm_t"

# Stage-type batches for attention tuning (small: tuning runs in seconds on 2 cores).
ATTN_BATCHES = {
    "decode": [("decode", 96), ("decode", 40), ("decode", 150), ("decode", 7)] * 2,
    "verify": [("verify", 4, 64, None), ("verify", 6, 100, True)],
    "prefill": [("prefill", 64, 0)],
}
ATTN_BLOCK = 16


class TuneError(Exception):
    """Tuning cannot run as asked; the message is one line."""


def buckets(budget: int) -> list[int]:
    """M buckets 1, 2, 4, .. up to budget rounded up to a power of two."""
    if budget < 1:
        raise TuneError(f"--budget must be >= 1, got {budget}")
    top = 1 << (budget - 1).bit_length()
    return [1 << i for i in range(top.bit_length())]


def gemm_candidates(bindings: list[dict], bucket: int, N: int, K: int) -> list[dict]:
    """The variants worth trying for one (bucket, N, K) (see the module docstring)."""
    bms = sorted({b["BM"] for b in bindings})
    above = [bm for bm in bms if bm >= bucket] or bms[-1:]
    pick = set(above[:2])
    smaller = [bm for bm in bms if bm < bucket]
    if smaller:
        pick.add(smaller[-1])
    bns = {b["BN"] for b in bindings}
    bks = {b["BK"] for b in bindings}
    bns = {v for v in bns if N % v == 0} or bns
    # every K step divides K, plus one longer step if the space has one: a long K step that
    # runs past K (virtual padding) can still be the fastest way to stream a weight row
    longer = [v for v in bks if K % v and v > max((x for x in bks if K % x == 0), default=0)]
    bks = ({v for v in bks if K % v == 0} | set(sorted(longer)[:1])) or bks
    return [b for b in bindings if b["BM"] in pick and b["BN"] in bns and b["BK"] in bks]


def _key(b: dict) -> str:
    return " ".join(f"{k}={b[k]}" for k in ("BM", "BN", "BK") if k in b)


def _ckey(backend: str | None, b: dict) -> str:
    """A candidate's name in a table; prefixed with its backend where several are measured."""
    return f"{backend} {_key(b)}" if backend else _key(b)


@dataclass
class _Method:
    backend: str
    kind: str          # "measured" or "modelled"
    describe: str
    launch: object = None
    clock_hz: float = 0.0
    target: str = ""

    def time(self, kernel, args: dict, reps: int) -> float:
        if self.kind == "modelled":
            st = _model_gemm(kernel, args, self.target)
            if st is None:                       # no data-free model: simulate the data
                st = self.launch(kernel, args)
            # the HBM floor where the stats carry one: a decode GEMM streams all of W, and the
            # per-core pipe model alone would let all cores together beat HBM bandwidth
            return float(getattr(st, "bound_cycles", st.cycles)) / self.clock_hz
        # weights as a model streams them: a launch per copy of W, the copies together larger
        # than the last-level cache, so a decode GEMM is timed at memory speed, not cache speed
        ws = args.get("_W_copies") or [args.get("W")]
        run = {k: v for k, v in args.items() if k != "_W_copies"}
        self.launch(kernel, run)                 # warm-up (compiles on first use)
        sync = _cuda_sync if self.backend == "triton" else None
        best = float("inf")
        for _ in range(reps):
            if sync:
                sync()
            t0 = time.perf_counter()
            for w in ws:
                if "W" in run:
                    run["W"] = w
                self.launch(kernel, run)
            if sync:
                sync()
            best = min(best, (time.perf_counter() - t0) / len(ws))
        return best


def _cuda_sync():
    import torch
    torch.cuda.synchronize()


CPU_BACKENDS = ("native", "cpu")     # the cpu target's backends, the preferred first


def _cpu_backends(d, backend: str | None) -> list[str]:
    """The cpu target's backends to tune: ``backend`` if given, else each one DIR holds GEMM
    entries of whose launcher runs here (native needs a C++ compiler), native first."""
    if backend:
        return [backend]
    from runtime import launchers
    try:
        entries = _cache.read_manifest(d)["entries"].values()
    except _cache.CacheError:
        return ["cpu"]                       # _source() reports the directory's problem
    held = {e.get("backend") for e in entries if e.get("target") == "cpu" and e.get("kernel") == GEMM_KERNEL}
    out = []
    for b in CPU_BACKENDS:
        if b in held:
            try:
                launchers.get(b)
            except launchers.LauncherUnavailable:
                continue
            out.append(b)
    return out or ["cpu"]


def _method(target: str, reps: int, backend: str | None = None) -> _Method:
    from runtime import launchers
    from tilec import targets
    try:
        t = targets.get(target)
    except targets.UnknownTargetError as e:
        raise TuneError(str(e)) from None
    if t.kind == "cpu":
        b = backend or "cpu"
        if b not in CPU_BACKENDS:
            raise TuneError(f"the cpu target is served by the cpu and native backends, not {b}")
        try:
            return _Method(b, "measured", f"measured: {b} backend, wall time, best of {reps}", launchers.get(b))
        except launchers.LauncherUnavailable as e:
            raise TuneError(str(e)) from None
    if t.kind == "gpu":
        import torch
        if not torch.cuda.is_available():
            raise TuneError(f"tuning for {t.name} measures Triton kernels on a CUDA GPU; there is none "
                            f"here (tune --target cpu, or an Ascend target for the cycle model)")
        return _Method("triton", "measured", f"measured: triton on {torch.cuda.get_device_name()}, "
                       f"best of {reps}", launchers.get("triton", t.name))
    return _Method("ascend", "modelled", f"modelled: {t.name} tile-machine simulator cycle model",
                   launchers.get("ascend-sim", t.name), clock_hz=float(t.clock_hz), target=t.name)


def _model_gemm(kernel, args: dict, target: str):
    """The simulator's data-free cycle model of a GEMM (codegen.ascend.sim.model_gemm, equal to
    simulate cycle for cycle), or None where it does not exist."""
    from codegen.ascend import sim
    model = getattr(sim, "model_gemm", None)
    if model is None or kernel.name != GEMM_KERNEL:
        return None
    from codegen.ascend.gemm import lower_gemm
    kernel = getattr(kernel, "ir", kernel)      # a loaded entry carries its IR
    a, w = args["A"], args["W"]
    return model(lower_gemm(kernel, target), int(a.shape[0]), int(w.shape[0]), int(a.shape[1]), target)


@dataclass
class _Source:
    """Where candidate kernels come from: DIR's verified entries, or for an Ascend target
    DIR has no entries for, the library's variant space (modelled ahead of the compile)."""
    arts: object = None
    library: dict = field(default_factory=dict)
    note: str = ""
    backend: str = "ascend"

    def bindings(self, kernel: str) -> list[dict]:
        if self.arts is not None:
            return self.arts.variants(kernel)
        from tilec.variants import backend_allows, library_variants, load_spaces
        spec = load_spaces()[kernel]          # what `tilec compile` would build for it
        return [b for k, b in library_variants([kernel]) if backend_allows(spec, b, self.backend)]

    def kernel(self, name: str, binding: dict):
        if self.arts is not None:
            return self.arts.kernel(name, **binding)
        key = (name, tuple(sorted(binding.items())))
        if key not in self.library:
            from tilec.compiler import compile_file
            from tilec.kernels import find_kernel
            self.library[key] = compile_file(find_kernel(name), name, dict(binding))[name]
        return self.library[key]


def _source(d, method: _Method, target: str) -> _Source:
    from runtime.artifacts import ArtifactError, open_artifacts
    try:
        return _Source(arts=open_artifacts(d, method.backend, target, tuning=False))
    except ArtifactError as e:
        if method.backend != "ascend" or "no ascend/" not in str(e):
            raise TuneError(str(e)) from None
    # still refuse a damaged directory
    try:
        problems = _cache.verify(d)
    except _cache.CacheError as e:
        raise TuneError(str(e)) from None
    problems = [p for p in problems if f" {_cache.TUNING}/" not in p]   # rewritten below
    if problems:
        raise TuneError(f"{d}: {problems[0]}; rebuild with: tilec compile --target {target} --out {d}")
    return _Source(note=f"candidates from the library variant space: {d} has no ascend/{target} "
                        f"entries yet (tilec compile --target {target} --out {d} builds them)")


STREAM_BYTES = 96 << 20     # more than a host's last-level cache


def _gemm_args(M: int, N: int, K: int, dtype: str, rng, backend: str) -> dict:
    from tilec.testing.attention_cases import as_numpy_dtype
    dt = as_numpy_dtype(dtype)
    w = rng.standard_normal((N, K)).astype(dt)
    args = {"A": rng.standard_normal((M, K)).astype(dt), "W": w, "C": np.zeros((M, N), dt)}
    args = _to_device(args, backend)
    if backend in ("cpu", "native"):     # a CPU's GEMM for small M is timed streaming W from memory
        n = max(1, min(64, STREAM_BYTES // max(w.nbytes, 1)))
        args["_W_copies"] = [args["W"]] + [args["W"].copy() for _ in range(n - 1)]
    return args


def _to_device(args: dict, backend: str) -> dict:
    if backend != "triton":
        return args
    import torch
    out = {}
    for k, v in args.items():
        if isinstance(v, np.ndarray):
            t = torch.from_numpy(v.view(np.uint16)).view(torch.bfloat16) if v.dtype.name == "bfloat16" \
                else torch.from_numpy(v)
            out[k] = t.cuda()
        else:
            out[k] = v
    return out


def _default_binding(bindings: list[dict], M: int, N: int, K: int) -> dict:
    """The default table's pick (runtime/artifacts.py's rule), for comparison."""
    from runtime.artifacts import _bucket
    bms = sorted({b["BM"] for b in bindings})
    q = _bucket(M)
    bm = next((v for v in bms if v >= q), bms[-1])
    bn = max((b["BN"] for b in bindings if N % b["BN"] == 0), default=max(b["BN"] for b in bindings))
    bk = max((b["BK"] for b in bindings if K % b["BK"] == 0), default=max(b["BK"] for b in bindings))
    want = {"BM": bm, "BN": bn, "BK": bk}
    for b in bindings:
        if all(b[k] == v for k, v in want.items()):
            return b
    cands = [b for b in bindings if b["BM"] == bm] or bindings
    return max(cands, key=lambda b: (N % b["BN"] == 0, K % b["BK"] == 0, b["BN"], b["BK"]))


def _attention_jobs(src: _Source, model: ModelShapes, dtype: str) -> list[dict]:
    return [b for b in src.bindings("meta_attention")
            if b.get("G") == model.group and b.get("D") == model.head_dim and b.get("DT") == dtype]


def tune(d, target: str, model: ModelShapes, budget: int = DEFAULT_BUDGET, dtype: str = "f16",
         reps: int = DEFAULT_REPS, progress: bool | None = None, seed: int = 0, backend: str | None = None) -> dict:
    """Tune DIR for ``target`` on ``model``'s shapes; writes and returns the table."""
    from pathlib import Path

    from tqdm import tqdm

    from runtime import launchers
    from runtime.artifacts import TUNING_FORMAT, TUNING_FORMAT_VERSION, tuning_name
    d = Path(d)
    bks = buckets(budget)
    from tilec import targets
    try:
        tname = targets.get(target).name
    except targets.UnknownTargetError as e:
        raise TuneError(str(e)) from None
    is_cpu = targets.get(target).kind == "cpu"
    if backend is not None and not is_cpu:
        raise TuneError(f"--backend chooses between the cpu target's backends; {tname} has one")
    names = _cpu_backends(d, backend) if is_cpu else [None]
    methods = [_method(target, reps, b) for b in names]
    method = methods[0]                      # the table's backend: attention, defaults
    srcs = [_source(d, m, target) for m in methods]
    src = srcs[0]
    gemm_bs = [b for b in src.bindings(GEMM_KERNEL) if b.get("DT") == dtype]
    if not gemm_bs:
        raise TuneError(f"{d}: no {method.backend}/{tname} variant of {GEMM_KERNEL} with DT={dtype}; run: "
                        f"tilec compile --target {tname} --out {d} --kernel {GEMM_KERNEL}")
    several = len(methods) > 1

    def ckey(i: int, b: dict) -> str:      # a candidate's name: backend-prefixed when several
        return _ckey(methods[i].backend if several else None, b)
    plan_g = []   # (linear, bucket, [(method index, candidate)], default)
    for lin in model.linears:
        for q in bks:
            default = _default_binding(gemm_bs, q, lin.N, lin.K)
            cands = []
            for i, s in enumerate(srcs):
                bs = gemm_bs if i == 0 else [b for b in s.bindings(GEMM_KERNEL) if b.get("DT") == dtype]
                got = gemm_candidates(bs, q, lin.N, lin.K) if bs else []
                if i == 0 and default not in got:
                    got = got + [default]
                cands += [(i, b) for b in got]
            plan_g.append((lin, q, cands, default))
    attn_bs = _attention_jobs(src, model, dtype)
    attn_runnable = True
    attn_note = ""
    if attn_bs and method.backend == "ascend":
        why = _ascend_attention_missing(src.kernel("meta_attention", attn_bs[0]), tname)
        if why:
            attn_runnable, attn_note = False, why
    if not attn_bs:
        attn_note = (f"no meta_attention variant for G={model.group} D={model.head_dim} DT={dtype} "
                     f"in the directory; attention tiles stay at the defaults")
    total = sum(len(c) for *_, c, _ in plan_g) + (3 * len(attn_bs) if attn_runnable else 0)
    bar = tqdm(total=total, file=sys.stderr, unit="run", desc=f"tune {tname}",
               disable=(not sys.stderr.isatty()) if progress is None else not progress)
    rng = np.random.default_rng(seed)
    t_start = time.perf_counter()
    gemm_rows: dict[tuple, dict] = {}
    illegal: dict[str, str] = {}
    try:
        for lin, q, cands, default in plan_g:
            args = _gemm_args(q, lin.N, lin.K, dtype, rng, method.backend)
            times = {}
            for i, b in cands:
                k = ckey(i, b)
                if k in illegal:
                    bar.update(1)
                    continue
                try:
                    times[k] = methods[i].time(srcs[i].kernel(GEMM_KERNEL, b), args, reps)
                except launchers.LauncherUnavailable as e:
                    raise TuneError(str(e)) from None
                except Exception as e:
                    if method.kind != "modelled" or "Legality" not in type(e).__name__:
                        raise
                    illegal[k] = str(e).splitlines()[0]   # the tile does not fit this target
                bar.update(1)
            if not times:
                raise TuneError(f"no {GEMM_KERNEL} variant is legal on {tname} for N={lin.N} K={lin.K}: "
                                f"{next(iter(illegal.values()), '')}")
            best = min(times, key=times.get)
            ci, chosen = next((i, b) for i, b in cands if ckey(i, b) == best)
            row = gemm_rows.setdefault((lin.name, lin.N, lin.K), {
                "kernel": GEMM_KERNEL, "dtype": dtype, "layer": lin.name, "N": lin.N, "K": lin.K,
                "buckets": {}})
            dkey = ckey(0, default)
            row["buckets"][str(q)] = {
                "binding": dict(chosen),
                "backend": methods[ci].backend,
                "seconds": times[best],
                "default": dkey, "default_seconds": times.get(dkey),
                "tried": {k: v for k, v in sorted(times.items())}}
        attention = []
        if attn_bs and attn_runnable:
            attention.append(_tune_attention(src, method, model, dtype, attn_bs, reps, rng, bar))
    finally:
        bar.close()
    # Two layers with the same (N, K) share a row (e.g. O and Down of a square model).
    table = {
        "format": TUNING_FORMAT, "format_version": TUNING_FORMAT_VERSION,
        "backend": method.backend, "target": tname, "compiler_version": _cache.compiler_version(),
        "backends": [m.backend for m in methods],
        "method": method.describe if not several else
        f"measured: {' and '.join(m.backend for m in methods)} backends, wall time, best of {reps}",
        "model": model.to_json(), "budget": budget, "buckets": bks,
        "dtype": dtype, "reps": reps, "seconds": round(time.perf_counter() - t_start, 3),
        "gemm": _dedupe(list(gemm_rows.values())), "attention": attention,
        "notes": [n for n in (src.note, attn_note) if n],
        "illegal": illegal,
    }
    data = (json.dumps(table, indent=1, sort_keys=True) + "\n").encode()
    try:
        table["path"] = str(_cache.write_tuning(d, tuning_name(method.backend, tname), data))
    except _cache.CacheError as e:
        raise TuneError(str(e)) from None
    return table


def _ascend_attention_missing(kernel, target: str) -> str | None:
    """Why the simulator cannot run meta_attention here, or None when it can."""
    import importlib.util
    if importlib.util.find_spec("codegen.ascend.dispatch") is None:
        return "meta_attention is not lowered for ascend-sim yet (codegen/ascend lowers GEMM only)"
    from codegen.ascend.dispatch import lower
    from codegen.ascend.errors import AscendLoweringError
    try:
        lower(getattr(kernel, "ir", kernel), target)
    except AscendLoweringError as e:
        return f"meta_attention is not lowered for ascend-sim yet: {str(e).splitlines()[0]}"
    return None


def _dedupe(rows: list[dict]) -> list[dict]:
    seen = {}
    for r in rows:
        k = (r["kernel"], r["dtype"], r["N"], r["K"])
        if k in seen:
            seen[k]["layer"] += "," + r["layer"]
        else:
            seen[k] = r
    return list(seen.values())


def _tune_attention(src: _Source, method: _Method, model: ModelShapes, dtype: str,
                    bindings: list[dict], reps: int, rng, bar) -> dict:
    from runtime.plan import plan as make_plan
    from tilec.testing.attention_cases import make_attention_case
    from tilec import targets
    t = targets.get(src.arts.target if src.arts is not None else method.target)
    cores = getattr(t, "aic_cores", None) or getattr(t, "sm_count", None) or getattr(t, "cores", 1)
    tiles, tried = {}, {}
    for kind, spec in ATTN_BATCHES.items():
        case = make_attention_case(rng, spec, model.q_heads, model.kv_heads, model.head_dim,
                                   ATTN_BLOCK, dtype)
        times = {}
        for b in sorted(bindings, key=lambda b: (b["BM"], b["BN"])):
            p = make_plan(case.stages, model.kv_heads, model.group, b["BM"], cores,
                          tile_rows={kind: b["BM"]})
            args = _to_device({"Q": case.q, "KC": case.k_cache, "VC": case.v_cache,
                               "O": np.zeros_like(case.q), "BT": case.block_table,
                               "TASKS": p.task_table, "TREE": p.tree_mask, "scale": case.scale},
                              method.backend)
            times[(b["BM"], b["BN"])] = method.time(src.kernel("meta_attention", b), args, reps)
            bar.update(1)
        (bm, bn) = min(times, key=times.get)
        tiles[kind] = {"BM": bm, "BN": bn, "seconds": times[(bm, bn)]}
        tried[kind] = {f"BM={k[0]} BN={k[1]}": v for k, v in times.items()}
    return {"kernel": "meta_attention", "G": model.group, "D": model.head_dim, "dtype": dtype,
            "tiles": tiles, "tried": tried,
            "batches": {k: [list(map(str, s)) for s in v] for k, v in ATTN_BATCHES.items()}}


def summary_lines(table: dict) -> list[str]:
    """A printable summary: per layer and bucket the pick, its time and the default's."""
    unit, scale = ("µs", 1e6)
    out = [f"{table['method']}; model {table['model']['name']} (tp={table['model']['tp']}), "
           f"{table['dtype']}, M buckets {', '.join(map(str, table['buckets']))}",
           f"{'layer':<14} {'N x K':>11} {'M':>4}  {'chosen':<25} {'time ' + unit:>10} "
           f"{'default':<25} {'default ' + unit:>11} {'speedup':>7}"]
    for row in table["gemm"]:
        for q, r in row["buckets"].items():
            ds = r.get("default_seconds")
            sp = f"{ds / r['seconds']:.2f}x" if ds and r["seconds"] > 0 else "-"
            dst = f"{ds * scale:.1f}" if ds else "-"
            pick = _ckey(r.get("backend") if len(table.get("backends", ())) > 1 else None, r["binding"])
            out.append(f"{row['layer']:<14} {row['N']:>5}x{row['K']:<5} {q:>4}  "
                       f"{pick:<25} {r['seconds'] * scale:>10.1f} {r['default']:<25} "
                       f"{dst:>11} {sp:>7}")
    for a in table.get("attention", []):
        out.append(f"attention G={a['G']} D={a['D']} {a['dtype']}: " + ", ".join(
            f"{k} BM={v['BM']} BN={v['BN']} ({v['seconds'] * scale:.1f} {unit})" for k, v in a["tiles"].items()))
    for n in table.get("notes", []):
        out.append(f"note: {n}")
    if table.get("illegal"):
        out.append(f"illegal on {table['target']}: " + "; ".join(f"{k}: {v}" for k, v in table["illegal"].items()))
    out.append(f"wrote {table.get('path', '?')} in {table['seconds']:.1f}s")
    return out
