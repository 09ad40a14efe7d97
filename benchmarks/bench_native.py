"""The native (C++) CPU backend against the plain-torch ops a user would write instead, f32,
SmolLM2-135M shapes, at a fixed torch/OpenMP thread count (1 and 2):

- GEMM (smooth_gemm_t, C = A W^T) vs torch.matmul, weights streamed from memory as a model
  does (a launch per copy of W, the copies larger than the last-level cache), M = 1..512; the
  native time is the best of its variants (what tuning picks);
- decode attention (meta_attention, one launch for the batch) vs torch SDPA per sequence over
  gathered paged K/V, batch 1..16, context 256..2048;
- one decode layer of SmolLM2 (rmsnorm, QKV, rope, KV write, attention, O, rmsnorm, gate/up,
  silu_mul, down) through the runtime's ops on native artifacts vs the same layer in plain
  torch ops, batch 1 and 16, context 256;
- host work per native launch (kernel body a no-op).

    .venv/bin/python benchmarks/bench_native.py [--threads 1,2] [--quick]

Sides take turns round by round; times are best-of-N. Prints markdown for BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

H, I, HQ, HKV, D, BS = 576, 1536, 9, 3, 64, 16
GEMM_SHAPES = [("qkv", 960, 576), ("gate_up", 3072, 576), ("down", 576, 1536)]
GEMM_VARIANTS = [(1, 32, 64), (1, 64, 64), (1, 32, 256), (4, 32, 256), (4, 64, 64), (16, 32, 64),
                 (16, 32, 256), (16, 64, 64), (32, 64, 64), (64, 64, 64), (64, 128, 64), (128, 64, 64)]
STREAM = 96 << 20


def turns(fns: dict, rounds: int = 5, reps: int = 3) -> dict:
    best = {}
    for f in fns.values():
        f()
    for _ in range(rounds):
        for name, f in fns.items():
            for _ in range(reps):
                t0 = time.perf_counter()
                f()
                best[name] = min(best.get(name, 1e9), time.perf_counter() - t0)
    return best


def bench_gemm(ms) -> list[str]:
    import codegen.native as N
    from tilec.selftest import specialise
    rows = ["| layer (N x K) | M | native ms (best variant) | torch.matmul ms | native/torch | variant |",
            "| --- | ---: | ---: | ---: | ---: | --- |"]
    worst_small, big = [], []
    for name, n, k in GEMM_SHAPES:
        copies = max(1, min(48, STREAM // (n * k * 4)))
        all_ws = [torch.randn(n, k) for _ in range(copies)]
        for m in ms:
            # small M streams W from memory (as a model does); large M is compute-bound: one W
            ws = all_ws if m <= 16 else all_ws[:2]
            a = torch.randn(m, k)
            c = torch.empty(m, n)
            cands = [v for v in GEMM_VARIANTS if (v[0] <= max(m, 1) * 4 or v[0] <= 16)
                     and (m <= 16 or v[0] >= 16)]
            kernels = {v: N.compile(specialise("smooth_gemm_t", BM=v[0], BN=v[1], BK=v[2], DT="f32"))
                       for v in cands}
            for v, nk in kernels.items():
                nk.launch({"A": a, "W": ws[0], "C": c})
                assert torch.allclose(c, a @ ws[0].T, rtol=1e-4, atol=1e-3), (name, m, v)

            def run_native(nk):
                def f():
                    for w in ws:
                        nk.launch({"A": a, "W": w, "C": c})
                return f

            def run_torch():
                for w in ws:
                    torch.matmul(a, w.T, out=c)
            fns = {v: run_native(nk) for v, nk in kernels.items()}
            fns["torch"] = run_torch
            best = turns(fns, rounds=3, reps=1)
            tt = best.pop("torch") / len(ws)
            v, tn = min(best.items(), key=lambda kv: kv[1])
            tn /= len(ws)
            ratio = tt / tn
            (worst_small if m <= 16 else big if m >= 256 else []).append(ratio)
            rows.append(f"| {name} ({n} x {k}) | {m} | {tn * 1e3:.3f} | {tt * 1e3:.3f} | "
                        f"{tn / tt:.2f} | BM={v[0]} BN={v[1]} BK={v[2]} |")
    rows.append("")
    if worst_small:
        rows.append(f"M <= 16: native speed / torch speed, worst {min(worst_small):.2f}x, geometric mean "
                    f"{float(np.exp(np.mean(np.log(worst_small)))):.2f}x (goal: at least 0.9x)")
    if big:
        rows.append(f"M >= 256: worst {min(big):.2f}x, geometric mean {float(np.exp(np.mean(np.log(big)))):.2f}x "
                    f"(goal: at least 0.5x)")
    return rows


def bench_attention(batches, ctxs) -> list[str]:
    import codegen.native as N
    from bench_cpu import as_torch, torch_attention
    from tilec.selftest import attention_args, specialise
    from tilec.testing.attention_cases import make_attention_case
    rng = np.random.default_rng(0)
    rows = ["| decodes | context | native ms (one launch) | torch SDPA ms (per sequence) | native/torch | tile |",
            "| ---: | ---: | ---: | ---: | ---: | --- |"]
    ratios = []
    for b in batches:
        for L in ctxs:
            case = make_attention_case(rng, [("decode", L)] * b, HQ, HKV, D, BS, "f32")
            best_n, pick = 1e9, None
            t_torch = None
            for bn in (64, 128):
                k = N.compile(specialise("meta_attention", DT="f32", D=D, G=HQ // HKV, BM=48, BN=bn))
                p, args = attention_args(case, 48, num_cores=1)
                targs = {kk: (as_torch(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v)
                         for kk, v in args.items()}
                q, kc, vc, bt = targs["Q"], targs["KC"], targs["VC"], targs["BT"]
                k.launch(targs)
                exp = torch_attention(case, q, kc, vc, bt)
                assert torch.allclose(targs["O"], exp, atol=1e-4)
                best = turns({"n": lambda: k.launch(targs), "t": lambda: torch_attention(case, q, kc, vc, bt)})
                t_torch = best["t"] if t_torch is None else min(t_torch, best["t"])
                if best["n"] < best_n:
                    best_n, pick = best["n"], bn
            ratios.append(best_n / t_torch)
            rows.append(f"| {b} | {L} | {best_n * 1e3:.3f} | {t_torch * 1e3:.3f} | {best_n / t_torch:.2f} | "
                        f"BM=48 BN={pick} |")
    rows += ["", f"native/torch time ratio: worst {max(ratios):.2f} (goal: at most 1.5)"]
    return rows


def bench_layer(threads: int) -> list[str]:
    """One decode layer: the runtime's ops on native artifacts vs plain torch ops."""
    from runtime.artifacts import open_artifacts
    from runtime.plan import Stage
    from serve.llama import rope_tables
    from serve.model_files import ModelConfig
    from serve.setup import model_jobs
    from tilec import cache
    cfg = ModelConfig("smollm2-shapes", "llama", H, 1, HQ, HKV, D, I, 49152, 100000.0, 1e-5, 8192, True, False)
    d = Path(tempfile.mkdtemp()) / "arts"
    st = cache.compile_jobs(model_jobs(cfg, "cpu", "native", "f32"), d, workers=os.cpu_count() or 1)
    assert st.failed == 0, st.errors[:1]
    from tilec.tune import tune
    from serve.setup import model_shapes
    tune(d, "cpu", model_shapes(cfg), 16, "f32", reps=2, progress=False, backend="native")
    arts = open_artifacts(d, backend="native")
    g = torch.Generator().manual_seed(0)
    W = {"qkv": torch.randn(cfg.qkv_size, H, generator=g) / 24, "o": torch.randn(H, HQ * D, generator=g) / 24,
         "gate_up": torch.randn(2 * I, H, generator=g) / 24, "down": torch.randn(H, I, generator=g) / 40,
         "n1": torch.rand(H, generator=g) + 0.5, "n2": torch.rand(H, generator=g) + 0.5}
    cos, sin = rope_tables(D, 100000.0, 4096)
    rows = ["| decodes | context | native layer ms | plain torch layer ms | native/torch |",
            "| ---: | ---: | ---: | ---: | ---: |"]
    for B in (1, 16):
        L = 256
        nb = B * (L // BS + 1)
        kc = torch.randn(nb, BS, HKV, D, generator=g)
        vc = torch.randn(nb, BS, HKV, D, generator=g)
        bt = torch.arange(nb, dtype=torch.int32).view(B, -1)
        pos = torch.full((B,), L - 1, dtype=torch.int32)
        slots = torch.tensor([b * (L // BS + 1) * BS + L - 1 for b in range(B)], dtype=torch.int32)
        stages = [Stage.decode(b, b, L - 1) for b in range(B)]
        x0 = torch.randn(B, H, generator=g)

        def ours():
            r = x0.clone()
            p = arts.plan(stages, HKV, HQ // HKV, D, "f32")
            x = arts.rmsnorm(r, W["n1"], 1e-5)
            qkv = arts.linear(x, W["qkv"])
            q = qkv[:, :HQ * D].view(B, HQ, D)
            k = qkv[:, HQ * D:(HQ + HKV) * D].view(B, HKV, D)
            v = qkv[:, (HQ + HKV) * D:].view(B, HKV, D)
            arts.rope(q, pos, cos, sin)
            arts.rope(k, pos, cos, sin)
            arts.kv_write(k, v, kc, vc, slots)
            att = torch.empty(B, HQ, D)
            arts.run(p, q, kc, vc, bt, att)
            o = arts.linear(att.view(B, HQ * D), W["o"])
            x = arts.rmsnorm(o, W["n2"], 1e-5, residual=r)
            gu = arts.linear(x, W["gate_up"])
            h = arts.silu_mul(gu[:, :I], gu[:, I:])
            return arts.linear(h, W["down"])

        def plain():
            r = x0.clone()
            x = r * torch.rsqrt(r.pow(2).mean(-1, keepdim=True) + 1e-5) * W["n1"]
            qkv = x @ W["qkv"].T
            q = qkv[:, :HQ * D].view(B, HQ, D)
            k = qkv[:, HQ * D:(HQ + HKV) * D].view(B, HKV, D)
            v = qkv[:, (HQ + HKV) * D:].view(B, HKV, D)
            c, s = cos[pos.long()][:, None], sin[pos.long()][:, None]
            q = torch.cat([q[..., :32] * c - q[..., 32:] * s, q[..., 32:] * c + q[..., :32] * s], -1)
            k = torch.cat([k[..., :32] * c - k[..., 32:] * s, k[..., 32:] * c + k[..., :32] * s], -1)
            blk, off = slots.long() // BS, slots.long() % BS
            kc[blk, off], vc[blk, off] = k, v
            outs = []
            for b in range(B):                       # SDPA over each sequence's gathered pages
                ks = kc[bt[b].long()].reshape(-1, HKV, D)[:L].transpose(0, 1)
                vs = vc[bt[b].long()].reshape(-1, HKV, D)[:L].transpose(0, 1)
                outs.append(torch.nn.functional.scaled_dot_product_attention(
                    q[b].view(HKV, HQ // HKV, D), ks, vs).reshape(HQ * D))
            o = torch.stack(outs) @ W["o"].T
            r = r + o
            x = r * torch.rsqrt(r.pow(2).mean(-1, keepdim=True) + 1e-5) * W["n2"]
            gu = x @ W["gate_up"].T
            h = torch.nn.functional.silu(gu[:, :I]) * gu[:, I:]
            return h @ W["down"].T

        with torch.inference_mode():
            torch.testing.assert_close(ours(), plain(), rtol=1e-3, atol=1e-3)
            best = turns({"n": ours, "t": plain}, rounds=5, reps=5)
        rows.append(f"| {B} | {L} | {best['n'] * 1e3:.3f} | {best['t'] * 1e3:.3f} | {best['n'] / best['t']:.2f} |")
    rows += ["", "goal: native/torch at most 1.5"]
    return rows


def bench_launch() -> list[str]:
    """Host work per native launch with the kernel body a no-op: binding + ctypes call."""
    import codegen.native as N
    from tilec.selftest import specialise
    nk = N.compile(specialise("smooth_gemm_t", BM=16, BN=64, BK=64, DT="f32"))
    a, w, c = torch.randn(16, 576), torch.randn(960, 576), torch.empty(16, 960)
    args = {"A": a, "W": w, "C": c}
    real = nk.fn
    nk.fn = lambda *x: 0                     # the C++ body stubbed: Python-side host work only
    n = 20000
    best = 1e9
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            nk.launch(args)
        best = min(best, (time.perf_counter() - t0) / n)
    nk.fn = real
    empty = {"A": a[:0], "W": w, "C": c[:0]}                 # M = 0: an empty grid, nothing to run
    return [f"native launch, host work only: {best * 1e6:.1f} µs per call (goal: under 10 µs); "
            f"the library's ctypes call itself adds about 1 µs"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    import codegen.native as N
    ok, why = N.available()
    if not ok:
        print(f"native backend unavailable: {why}; nothing measured")
        return
    print(f"machine: {platform.processor() or platform.machine()} ({platform.machine()}), nproc {os.cpu_count()}, "
          f"Python {platform.python_version()}, torch {torch.__version__}, native ISA {N.isa()}; load average "
          f"{os.getloadavg()[0]:.2f}")
    ms = [1, 16, 256] if a.quick else [1, 4, 16, 64, 256, 512]
    for t in (int(x) for x in a.threads.split(",")):
        torch.set_num_threads(t)
        N.set_num_threads(t)
        print(f"\n## {t} thread(s) on both sides\n")
        print("### GEMM, weights streamed from memory\n")
        print("\n".join(bench_gemm(ms)))
        print("\n### Decode attention\n")
        print("\n".join(bench_attention([1, 4, 16] if not a.quick else [1, 16],
                                        [256, 1024, 2048] if not a.quick else [256])))
        print("\n### One SmolLM2 decode layer\n")
        print("\n".join(bench_layer(t)))
    torch.set_num_threads(1)
    N.set_num_threads(1)
    print("\n### Launch cost\n")
    print("\n".join(bench_launch()))


if __name__ == "__main__":
    main()
