"""Runtime benchmarks: host work per launch (kernel body stubbed out), variant lookup time,
full library compile time and the cache-hit time, and on cpu one planned Meta-Attention
launch for a hybrid batch vs one launch per stage.

    .venv/bin/python benchmarks/bench_runtime.py [--jobs 2] [--reps 5] [--host-only]

``--host-only`` runs only the host-cost table; it also runs on the runtime before artifacts
were executed from their own files (copy this script into a checkout of that commit), which is
how the "before" column of BENCHMARKS.md was taken.

Prints markdown tables for BENCHMARKS.md ("Runtime"). CPU times are wall-clock on this
machine: compare the ratios, not the absolute numbers. The machine line says what ran them.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.artifacts import open_artifacts  # noqa: E402
from tilec import cache, targets  # noqa: E402
from tilec.models import load_model  # noqa: E402
from tilec.testing.attention_cases import make_attention_case  # noqa: E402
from tilec.testing.oracle import assert_close, attention_oracle  # noqa: E402
from tilec.tune import tune  # noqa: E402


def machine() -> str:
    import torch
    return (f"{platform.machine()}, nproc {os.cpu_count()}, Python {platform.python_version()}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"load average before the run {os.getloadavg()[0]:.2f}")


# h200 builds the same sm_90 binaries as h100; one GPU target shows the ahead-of-time cost
COMPILE_TARGETS = ("cpu", "ascend910b2", "ascend910b4", "h100")


def bench_compile(d: Path, jobs: int) -> list[str]:
    tbs, skipped = [], []
    for t in COMPILE_TARGETS:
        try:
            tbs.append(cache.backend_for_target(t))
        except cache.SkipTarget:
            skipped.append(t)
    js = cache.library_jobs(tbs)
    first = cache.compile_jobs(js, d, workers=jobs)
    second = cache.compile_jobs(js, d, workers=jobs)
    # a skipped variant (the target cannot take it) is tried again by every compile
    assert first.failed == 0 and second.hits + len(second.skipped) == second.total, (first.errors[:1], second)
    rows = [
        f"Targets compiled: {', '.join(t for t, _ in tbs)}; targets skipped (backend not built by "
        f"`tilec compile` yet): {', '.join(skipped) or 'none'}. {jobs} worker processes. "
        f"Variants the target cannot take (skipped with their reason): {len(first.skipped)}.",
        "",
        "| run | variants | compiled | cache hits | skipped | seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| first (empty directory) | {first.total} | {first.compiled} | {first.hits} | {len(first.skipped)} | {first.seconds:.2f} |",
        f"| second (nothing changed) | {second.total} | {second.compiled} | {second.hits} | {len(second.skipped)} | {second.seconds:.2f} |",
    ]
    # each target alone into an empty directory: what one target's artifacts cost to build
    for t, b in tbs:
        st = cache.compile_jobs([j for j in js if j.target == t], d.parent / f"only-{t}", workers=jobs)
        rows.append(f"| first, {t} ({b}) alone | {st.total} | {st.compiled} | {st.hits} | "
                    f"{len(st.skipped)} | {st.seconds:.2f} |")
    return rows


def bench_lookup(d: Path, n: int = 20000) -> list[str]:
    model = load_model("smollm2-135m")
    arts_default = open_artifacts(d, tuning=False)
    tune(d, "cpu", model, budget=64, reps=1, progress=False)
    arts_tuned = open_artifacts(d)
    shapes = [(l.N, l.K) for l in model.linears]
    ms = np.random.default_rng(0).integers(1, 512, size=n).tolist()
    rows = ["| table | first lookup (loads the variant) µs | warm lookup µs (median of 5 x "
            f"{n} random M in 1..511 over 4 shapes) |", "| --- | ---: | ---: |"]
    for name, arts in (("default", arts_default), ("tuned", arts_tuned)):
        t0 = time.perf_counter()
        arts.gemm(7, shapes[0][0], shapes[0][1], "f16")
        cold = (time.perf_counter() - t0) * 1e6
        for N, K in shapes:                 # warm every (shape, bucket)
            for m in set(ms):
                arts.gemm(m, N, K, "f16")
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            for i, m in enumerate(ms):
                N, K = shapes[i & 3]
                arts.gemm(m, N, K, "f16")
            runs.append((time.perf_counter() - t0) / n * 1e6)
        rows.append(f"| {name} | {cold:.0f} | {statistics.median(runs):.2f} |")
    return rows


BATCH = ([("prefill", 64, 0), ("prefill", 32, 96)] + [("decode", c) for c in (40, 200, 350, 90, 500, 17)]
         + [("verify", 5, 120, True), ("verify", 4, 300, None)])


def bench_launch(d: Path, reps: int) -> list[str]:
    model = load_model("smollm2-135m")
    arts = open_artifacts(d)
    rng = np.random.default_rng(0)
    case = make_attention_case(rng, BATCH, model.q_heads, model.kv_heads, model.head_dim, 16, "f16")
    G, HKV, D = model.group, model.kv_heads, model.head_dim
    ref = attention_oracle(case)

    def planned():
        out = np.zeros_like(case.q)
        p = arts.plan(case.stages, HKV, G, D)
        arts.run(p, case.q, case.k_cache, case.v_cache, case.block_table, out, case.scale)
        return out

    from runtime.plan import Stage
    alone = [Stage(s.kind, s.seq, 0, s.num_tokens, s.context_len, s.tree) for s in case.stages]

    def per_stage():
        out = np.zeros_like(case.q)
        for s, a in zip(case.stages, alone):    # each stage on its own rows of q and out
            rows = slice(s.q_start, s.q_start + s.num_tokens)
            p = arts.plan([a], HKV, G, D)
            arts.run(p, case.q[rows], case.k_cache, case.v_cache, case.block_table, out[rows], case.scale)
        return out

    res = {}
    for name, fn in (("one planned launch", planned), ("one launch per stage", per_stage)):
        assert_close(fn(), ref, what=name)          # warm-up (compiles) and check
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        res[name] = min(ts)
    p = arts.plan(case.stages, HKV, G, D)
    _, b = arts.attention(p, D, "f16")
    kinds = {}
    for s in case.stages:
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
    one, many = res["one planned launch"], res["one launch per stage"]
    return [f"Batch: {len(case.stages)} stages ({', '.join(f'{n} {k}' for k, n in kinds.items())}), "
            f"{case.num_tokens} tokens; SmolLM2-135M heads (9 query, 3 KV, D=64), f16, "
            f"meta_attention BM={b['BM']} BN={b['BN']}; {p.num_tasks} tasks; best of {reps}; "
            "both checked against the torch SDPA oracle.",
            "",
            "| launches | ms | time ratio vs one planned launch |", "| --- | ---: | ---: |",
            f"| one planned launch (plan + run) | {one * 1e3:.2f} | 1.00 |",
            f"| one launch per stage ({len(case.stages)} plans + launches) | {many * 1e3:.2f} | {many / one:.2f} |"]


def bench_plan(d: Path) -> list[str]:
    """Artifacts.plan (tile choice from the table + runtime.plan.plan) on chat-shaped batches."""
    model = load_model("smollm2-135m")
    arts = open_artifacts(d)
    rng = np.random.default_rng(1)
    rows = ["| stages | tasks | Artifacts.plan µs (median of 200) | balance on 2 cores | on 24 cores |",
            "| ---: | ---: | ---: | ---: | ---: |"]
    for n in (1, 8, 64, 256, 512):
        stages = [("prefill", 512, 0)] + [("verify", 5, int(rng.integers(1, 4000))) if i % 16 == 15
                                          else ("decode", int(rng.integers(1, 4000))) for i in range(n - 1)]
        case = make_attention_case(rng, stages, model.q_heads, model.kv_heads, model.head_dim, 16, "f16")
        args = (case.stages, model.kv_heads, model.group, model.head_dim)
        arts.plan(*args)
        ts = []
        for _ in range(200):
            t0 = time.perf_counter()
            p = arts.plan(*args)
            ts.append(time.perf_counter() - t0)
        p24 = arts.plan(*args, num_cores=24)
        rows.append(f"| {n} | {p.num_tasks} | {statistics.median(ts) * 1e6:.1f} | {p.balance:.3f} | "
                    f"{p24.balance:.3f} |")
    return rows


# --------------------------------------------------------------------- host work per launch

def _stub(kernel_or_loaded) -> None:
    """Replace the generated function behind a cpu-backend kernel with a no-op, so a call
    measures only the runtime's host work (checks, selection, binding, the call itself)."""
    import codegen.cpu as C
    run = getattr(kernel_or_loaded, "run", None)
    target = getattr(run, "__self__", None)          # a loaded entry: its CpuKernel
    if target is None:
        target = C.compile(kernel_or_loaded)         # the runtime before entries ran from files
    target.fn = lambda **kw: None


def _per_call(fn, n: int) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def bench_host(d: Path, n: int = 2000) -> list[str]:
    """µs of host work per linear() and run() call with the kernel body stubbed (best of 5 x
    n calls), and per plan(), on SmolLM2-135M shapes: a decode step of 16 sequences."""
    import torch
    torch.set_num_threads(1)
    model = load_model("smollm2-135m")
    if not (d / "manifest.json").exists():
        cache.compile_jobs(cache.library_jobs([("cpu", "cpu")], ["smooth_gemm_t", "meta_attention"]), d)
    arts = open_artifacts(d)
    rng = np.random.default_rng(0)
    T = 16
    stages = [("decode", int(c)) for c in rng.integers(100, 1000, T)]
    case = make_attention_case(rng, stages, model.q_heads, model.kv_heads, model.head_dim, 16, "f16")
    G, HKV, D = model.group, model.kv_heads, model.head_dim
    qkv = next(l for l in model.linears if l.N > l.K)
    x = rng.standard_normal((T, qkv.K)).astype(np.float16)
    w = rng.standard_normal((qkv.N, qkv.K)).astype(np.float16)
    c = np.empty((T, qkv.N), np.float16)
    _stub(arts.gemm(T, qkv.N, qkv.K, "f16")[0])
    p = arts.plan(case.stages, HKV, G, D)
    _stub(arts.attention(p, D, "f16")[0])
    out = np.zeros_like(case.q)
    rows = ["| call | inputs | µs per call (host work only; best of 5 x %d) |" % n, "| --- | --- | ---: |"]
    rows.append(f"| linear (M={T}, N={qkv.N}, K={qkv.K}) | numpy | "
                f"{_per_call(lambda: arts.linear(x, w, out=c), n):.1f} |")
    run = lambda: arts.run(p, case.q, case.k_cache, case.v_cache, case.block_table, out, case.scale)  # noqa: E731
    rows_t = []
    if hasattr(arts, "embed"):                 # the runtime that takes torch tensors
        xt, wt, ct = (torch.from_numpy(a) for a in (x, w, c))
        rows_t.append(f"| linear (M={T}, N={qkv.N}, K={qkv.K}) | torch | "
                      f"{_per_call(lambda: arts.linear(xt, wt, out=ct), n):.1f} |")
    rows.append(f"| meta_attention run ({T} decodes, {p.num_tasks} tasks) | numpy | {_per_call(run, n):.1f} |")
    if rows_t:
        qt, kt, vt, bt, ot = (torch.from_numpy(a) for a in (case.q, case.k_cache, case.v_cache,
                                                             case.block_table, out))
        run_t = lambda: arts.run(p, qt, kt, vt, bt, ot, case.scale)  # noqa: E731
        rows_t.append(f"| meta_attention run ({T} decodes, {p.num_tasks} tasks) | torch | "
                      f"{_per_call(run_t, n):.1f} |")
    rows += rows_t
    rows.append(f"| plan ({T} decodes) | - | {_per_call(lambda: arts.plan(case.stages, HKV, G, D), n // 4):.1f} |")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--host-only", action="store_true", help="only the host-cost table")
    a = ap.parse_args()
    print(f"machine: {machine()}")
    t0 = time.perf_counter()
    if a.host_only:
        with tempfile.TemporaryDirectory() as tmp:
            print("\n### Host work per launch (kernel body stubbed out)\n")
            print("\n".join(bench_host(Path(tmp) / "arts")))
        return
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "arts"
        print("\n### Full library compile (`tilec compile`, all targets)\n")
        print("\n".join(bench_compile(d, a.jobs)))
        print("\n### GEMM variant lookup (`Artifacts.gemm`)\n")
        print("\n".join(bench_lookup(d)))
        print("\n### Planning through the artifacts (`Artifacts.plan`)\n")
        print("\n".join(bench_plan(d)))
        print("\n### One planned launch vs per-stage launches (cpu backend)\n")
        print("\n".join(bench_launch(d, a.reps)))
        print("\n### Host work per launch (kernel body stubbed out)\n")
        print("\n".join(bench_host(d)))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
