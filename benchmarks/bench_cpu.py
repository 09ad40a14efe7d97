"""CPU benchmark: the cpu backend (generated torch code) vs the reference backend (numpy
interpreter) vs hand-written torch, for smooth_gemm_t and meta_attention.

Run: .venv/bin/python benchmarks/bench_cpu.py [--dtype f32|bf16]   (CPU only; < 3 min on 2 cores)

Shapes: SmolLM-135M-sized layers (hidden 576, MLP 1536; 9 query heads, 3 KV heads, D=64).
- smooth_gemm_t, M = 1, 7, 16, 33, 64, 128, 256, 512 tokens, against W [1536, 576] (N=1536, K=576, the
  up projection) and W [576, 1536] (N=576, K=1536, the down projection); K and N specialised.
  Hand-written torch: torch.matmul(A, W.T).
- meta_attention on contexts 256, 1024, 2048: one batch = a 64-token prefill chunk at the
  end of the context + 4 decodes at that context, one launch. Hand-written torch: per stage,
  gather the paged K/V and run SDPA with an explicit boolean mask.

dtype: f32 by default. torch's CPU bf16/f16 GEMMs are only fast on CPUs with native bf16/f16
matrix instructions (AMX / AVX512-BF16); elsewhere they fall back to slow paths, which would
make the comparison measure torch's fallback rather than the generated code. f32 is the
native path of both torch and numpy on every x86 CPU, so it is the fair one; --dtype bf16
runs the same tables in bf16 for comparison.
The reference backend interprets one program instance at a time, so it is timed only on the
small sizes (skipped above REF_MAX_* below, said so in the table).
Times are the best (minimum) of repeated runs after one warm-up (robust to other load
on the machine; the load average is printed), on fresh random (never zero) inputs; the
backends take turns round by round (the VM's speed drifts, and a ratio's two times are
then taken under the same conditions);
every backend's output is checked against torch before timing.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np      # noqa: E402
import torch            # noqa: E402

GEMM_MS = [1, 7, 16, 33, 64, 128, 256, 512]
GEMM_NK = [(1536, 576), (576, 1536)]
CTXS = [256, 1024, 2048]
HQ, HKV, HD, BLOCK = 9, 3, 64, 16
CHUNK, NDEC = 64, 4
GEMM_CFG = dict(BM=32, BN=64, BK=64)
ATT_CFG = dict(BM=48, BN=128)         # BM a multiple of G = 3; on a CPU long KV tiles pay
                                      # (fewer loop steps, each a bigger batched op)
REF_MAX_GEMM_M = 256                  # reference backend skipped for larger M
REF_MAX_CTX = 2048                    # ... and for longer attention contexts


def interleaved(fns: dict, rounds: int) -> dict:
    """Best time of each fn over rounds that take turns (name -> (fn, runs per round)): a VM
    whose speed drifts then slows the numerator and the denominator of a ratio alike."""
    best = {}
    for fn, _ in fns.values():
        fn()                                      # warm-up
    for _ in range(rounds):
        for name, (fn, reps) in fns.items():
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
    return best


def to_f32(x):
    if isinstance(x, torch.Tensor):
        return x.float()
    return torch.from_numpy(np.asarray(x).astype(np.float32))


def check(actual, expected, dtype, what):
    atol, rtol = (1e-3, 1e-3) if dtype == "f32" else (3e-2, 3e-2)
    a, e = to_f32(actual), to_f32(expected)
    err = (a - e).abs()
    if not bool(torch.isfinite(a).all()) or bool((err > atol + rtol * e.abs()).any()):
        raise AssertionError(f"{what}: mismatch vs torch, max |err| {err.max().item():.3g}")


def np_dtype(dt):
    from tilec.ir import dtypes as D
    return D.to_numpy(dt)


def rand(rng, shape, dt):
    x = rng.standard_normal(shape).astype(np.float32)
    x[x == 0] = 0.5
    return x.astype(np_dtype(dt))


def as_torch(x):
    if x.dtype.name == "bfloat16":
        return torch.from_numpy(x.view(np.uint16)).view(torch.bfloat16)
    return torch.from_numpy(x)


def fmt(t):
    return "-" if t is None else f"{t * 1e3:.3f}"


def bench_gemm(cpu_run, ref_run, dt, rng):
    from tilec.selftest import specialise
    print(f"### smooth_gemm_t ({dt}, BM={GEMM_CFG['BM']} BN={GEMM_CFG['BN']} BK={GEMM_CFG['BK']}, "
          f"K and N specialised)\n")
    print("| N x K | M | cpu ms | reference ms | torch.matmul ms | reference/cpu (speedup) | "
          "cpu/torch (time ratio) | cpu GFLOP/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n, k in GEMM_NK:
        kern = specialise("smooth_gemm_t", DT=dt, K=k, N=n, **GEMM_CFG)
        w = rand(rng, (n, k), dt)
        wt = as_torch(w)
        for m in GEMM_MS:
            a = rand(rng, (m, k), dt)
            at = as_torch(a)
            expected = torch.matmul(at, wt.T)
            c = np.full((m, n), np.nan, np_dtype(dt))
            ct = as_torch(c)             # shares memory with c
            cpu_run(kern, {"A": at, "W": wt, "C": ct})
            check(ct, expected, dt, f"cpu gemm M={m} N={n} K={k}")
            fns = {"cpu": (lambda: cpu_run(kern, {"A": at, "W": wt, "C": ct}), 8),
                   "torch": (lambda: torch.matmul(at, wt.T), 8)}
            if m <= REF_MAX_GEMM_M:
                c2 = np.full((m, n), np.nan, np_dtype(dt))
                ref_run(kern, {"A": a, "W": w, "C": c2})
                check(c2, expected, dt, f"reference gemm M={m} N={n} K={k}")
                fns["ref"] = (lambda: ref_run(kern, {"A": a, "W": w, "C": c2}), 1)
            best = interleaved(fns, rounds=4)
            t_cpu, t_ref, t_torch = best["cpu"], best.get("ref"), best["torch"]
            gf = 2.0 * m * n * k / t_cpu / 1e9
            RESULTS["gemm"].append((f"{n}x{k}", m, t_cpu, t_ref, t_torch))
            print(f"| {n} x {k} | {m} | {fmt(t_cpu)} | {fmt(t_ref) if t_ref else f'skipped (M > {REF_MAX_GEMM_M})'} | "
                  f"{fmt(t_torch)} | {'-' if t_ref is None else f'{t_ref / t_cpu:.1f}x'} | "
                  f"{t_cpu / t_torch:.2f} | {gf:.1f} |")
    print()


def torch_attention(case, q, kc, vc, bt):
    """Hand-written torch: per stage, gather paged K/V, SDPA with an explicit bool mask."""
    from tilec.testing.oracle import stage_mask
    out = torch.empty_like(q)
    g = case.group
    for st in case.stages:
        n, ctx = st.num_tokens, st.context_len
        L = ctx + n
        pos = torch.arange(L)
        phys = bt[st.seq, pos // BLOCK].long()
        k = kc[phys, pos % BLOCK].repeat_interleave(g, dim=1).transpose(0, 1)    # [HQ, L, D]
        v = vc[phys, pos % BLOCK].repeat_interleave(g, dim=1).transpose(0, 1)
        qs = q[st.q_start:st.q_start + n].transpose(0, 1)                        # [HQ, n, D]
        mask = torch.from_numpy(stage_mask(st.kind, n, ctx))
        o = torch.nn.functional.scaled_dot_product_attention(qs, k, v, attn_mask=mask,
                                                             scale=case.scale)
        out[st.q_start:st.q_start + n] = o.transpose(0, 1)
    return out


def bench_attention(cpu_run, ref_run, dt, rng):
    from tilec.selftest import attention_args, specialise
    from tilec.testing.attention_cases import make_attention_case
    print(f"### meta_attention ({dt}, HQ={HQ} HKV={HKV} D={HD}, BM={ATT_CFG['BM']} BN={ATT_CFG['BN']}; "
          f"batch = {CHUNK}-token prefill chunk + {NDEC} decodes at the context, one launch)\n")
    print("| context | tasks | cpu ms | reference ms | torch SDPA ms | reference/cpu (speedup) | "
          "cpu/torch (time ratio) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    kern = specialise("meta_attention", DT=dt, D=HD, G=HQ // HKV, **ATT_CFG)
    for L in CTXS:
        spec = [("prefill", CHUNK, L - CHUNK)] + [("decode", L)] * NDEC
        case = make_attention_case(rng, spec, HQ, HKV, HD, BLOCK, dt, name=f"ctx{L}")
        p, args = attention_args(case, ATT_CFG["BM"], num_cores=torch.get_num_threads())
        targs = {k: (as_torch(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v)
                 for k, v in args.items()}
        q, kc, vc, bt = targs["Q"], targs["KC"], targs["VC"], targs["BT"]
        expected = torch_attention(case, q, kc, vc, bt)
        cpu_run(kern, targs)
        check(targs["O"], expected, dt, f"cpu meta_attention ctx={L}")
        fns = {"cpu": (lambda: cpu_run(kern, targs), 6),
               "torch": (lambda: torch_attention(case, q, kc, vc, bt), 6)}
        if L <= REF_MAX_CTX:
            ref_run(kern, args)          # numpy arrays; O written in place
            check(args["O"], expected, dt, f"reference meta_attention ctx={L}")
            fns["ref"] = (lambda: ref_run(kern, args), 1)
        best = interleaved(fns, rounds=6)
        t_cpu, t_ref, t_torch = best["cpu"], best.get("ref"), best["torch"]
        RESULTS["attention"].append((L, t_cpu, t_ref, t_torch))
        print(f"| {L} | {p.num_tasks} | {fmt(t_cpu)} | "
              f"{fmt(t_ref) if t_ref else f'skipped (ctx > {REF_MAX_CTX})'} | {fmt(t_torch)} | "
              f"{'-' if t_ref is None else f'{t_ref / t_cpu:.1f}x'} | {t_cpu / t_torch:.2f} |")
    print()


RESULTS: dict = {"gemm": [], "attention": []}


def summary() -> None:
    """Geometric means of the two ratios the issue sets goals for."""
    def gmean(xs):
        return float(np.exp(np.mean(np.log(xs)))) if xs else float("nan")
    for what, rows, ti in (("smooth_gemm_t", RESULTS["gemm"], 2), ("meta_attention", RESULTS["attention"], 1)):
        speed = [r[ti + 1] / r[ti] for r in rows if r[ti + 1] is not None]
        ratio = [r[ti] / r[ti + 2] for r in rows]
        print(f"- {what}: reference/cpu geometric mean {gmean(speed):.1f}x (min {min(speed):.1f}x); "
              f"cpu/torch geometric mean {gmean(ratio):.2f} (worst {max(ratio):.2f})")
    print()


def plot(path_prefix: str) -> None:
    """Throughput plots next to this script (matplotlib is the optional `bench` extra)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -e '.[bench]'): plots skipped")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for shape in sorted({r[0] for r in RESULTS["gemm"]}):
        rows = [r for r in RESULTS["gemm"] if r[0] == shape]
        n, k = map(int, shape.split("x"))
        ms = [r[1] for r in rows]
        ax.plot(ms, [2 * m * n * k / r[2] / 1e9 for m, r in zip(ms, rows)], "o-", label=f"cpu backend {shape}")
        ax.plot(ms, [2 * m * n * k / r[4] / 1e9 for m, r in zip(ms, rows)], "x--", label=f"torch.matmul {shape}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("M (tokens)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title("smooth_gemm_t on CPU (f32)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path_prefix + "_gemm.png", dpi=110)
    fig, ax = plt.subplots(figsize=(6, 4))
    ls = [r[0] for r in RESULTS["attention"]]
    ax.plot(ls, [r[1] * 1e3 for r in RESULTS["attention"]], "o-", label="cpu backend (one launch)")
    ax.plot(ls, [r[3] * 1e3 for r in RESULTS["attention"]], "x--", label="torch SDPA per stage")
    ax.set_xlabel("context length")
    ax.set_ylabel("ms per batch")
    ax.set_title("meta_attention on CPU (f32), prefill chunk + 4 decodes")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path_prefix + "_attention.png", dpi=110)
    print(f"plots: {path_prefix}_gemm.png, {path_prefix}_attention.png")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    args = ap.parse_args()
    try:
        from codegen.cpu import run as cpu_run
    except Exception as e:       # the backend is optional in some builds
        print(f"cpu backend missing (codegen.cpu not importable: {type(e).__name__}: {e}); "
              f"nothing measured")
        return 0
    from codegen.reference import run as ref_run
    t0 = time.time()
    print(f"machine: {platform.processor() or platform.machine()} ({platform.machine()}), "
          f"nproc {os.cpu_count()}, torch {torch.__version__} with {torch.get_num_threads()} "
          f"threads, numpy {np.__version__}, Python {platform.python_version()}")
    print(f"dtype {args.dtype} (see the module docstring for why f32 is the default); "
          f"times are best-of-N, ms; "
          f"load average before the run {os.getloadavg()[0]:.2f}\n")
    rng = np.random.default_rng(0)
    bench_gemm(cpu_run, ref_run, args.dtype, rng)
    bench_attention(cpu_run, ref_run, args.dtype, rng)
    summary()
    plot(os.path.join(os.path.dirname(os.path.abspath(__file__)), f"cpu_{args.dtype}"))
    print(f"reference/cpu: how many times faster the cpu backend is than the reference "
          f"interpreter; cpu/torch: the cpu backend's time over hand-written torch's (1 = parity). "
          f"total {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
