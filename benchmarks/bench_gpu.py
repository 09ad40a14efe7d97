"""GPU benchmark: tilec's Triton backend vs cuBLAS, the Triton-tutorial matmul and flash SDPA.

Run: .venv/bin/python benchmarks/bench_gpu.py            (needs a CUDA GPU, H100/H200; < 8 min)
     .venv/bin/python benchmarks/bench_gpu.py --dry-run  (tiny shapes, CPU, Triton interpreter,
                                                          tilec kernels only: checks the plumbing)

Measures
- device peaks: large device-to-device copy (GB/s), 8192^3 bf16 matmul (TFLOP/s);
- smooth_gemm_t (bf16, K and N specialised, a few tile configs, best per shape) vs
  torch.nn.functional.linear (cuBLAS) vs a Triton-tutorial-style autotuned matmul, on the
  Llama-3-8B and Qwen2.5-7B linear shapes over M = 1 .. 4096; and virtual padding (the kernel
  masks rows past M) vs physically padding A to a BM multiple first;
- meta_attention (HQ=32, HKV=8, D=128, bf16) vs SDPA flash on pure prefill (GQA through
  `enable_gqa`, no repeated K/V), vs SDPA over gathered paged KV and the paged-KV kernels that
  are installed (FlashInfer's batch decode, flash-attn's `flash_attn_with_kvcache(block_table=)`)
  on pure decode, at large batch and at small batch with long context (B = 1..8, 8k-32k; also
  split over KV chunks as the planner cuts it, flash-decoding), and
  one launch over a chat-like mixed batch vs per-stage launches;
- the runtime path: the variants `open_artifacts` picks itself (compiled by `tilec compile`),
  launched through Artifacts.linear / Artifacts.run eagerly (host cost of choosing, checking and
  launching) and replayed from a CUDA graph, against the same variant launched directly.
Times are triton.testing.do_bench medians with the 20th-80th percentile spread, on fresh random
(never zero) inputs; every kernel is checked against torch before it is timed. A check that
fails, a tile that cannot run or a baseline that is not installed is listed at the end (and a
failed check makes the exit status 1): nothing is skipped silently. Prints Markdown tables;
saves plots next to this file when matplotlib is importable.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

DRY = "--dry-run" in sys.argv
if DRY:
    os.environ["TRITON_INTERPRET"] = "1"      # must be set before triton is imported

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np      # noqa: E402
import torch            # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

LLAMA = [("Llama-3-8B QKV", 6144, 4096), ("Llama-3-8B O", 4096, 4096),
         ("Llama-3-8B GateUp", 28672, 4096), ("Llama-3-8B Down", 4096, 14336)]
QWEN = [("Qwen2.5-7B QKV", 4608, 3584), ("Qwen2.5-7B O", 3584, 3584),
        ("Qwen2.5-7B GateUp", 37888, 3584), ("Qwen2.5-7B Down", 3584, 18944)]
MS = [1, 7, 16, 33, 100, 128, 255, 512, 1000, 2048, 4096]
# (BM, BN, BK) tilec configs tried per shape; the best per (shape, M) is reported
GEMM_CONFIGS = [(16, 64, 128), (64, 128, 64), (128, 128, 64), (128, 256, 64)]
HQ, HKV, HD = 32, 8, 128
ATT_CONFIGS = [(64, 64), (128, 64)]       # meta_attention (BM, BN); BM % G == 0
PREFILL_CTX = [512, 1024, 2048, 4096, 8192]
DECODE_BATCH = [8, 16, 32, 64, 128]
DECODE_CTX = 2048
LONG_DECODE = [(b, c) for b in (1, 2, 4, 8) for c in (8192, 16384, 32768)]  # (batch, context)
BLOCK = 16
PROBLEMS: list[str] = []        # failed checks, tiles that could not run, missing baselines
FAILED: list[str] = []          # the failed checks alone (exit status 1)


def log(msg=""):
    print(msg, flush=True)


# ----------------------------------------------------------------------------- timing
class Ms(float):
    """A median time in ms that also carries its 20th / 80th percentiles."""
    p20: float
    p80: float

    def __new__(cls, ts):
        ts = sorted(ts)
        m = super().__new__(cls, statistics.median(ts))
        m.p20 = ts[int(0.2 * (len(ts) - 1))]
        m.p80 = ts[int(0.8 * (len(ts) - 1))]
        return m


def bench(fn, rep_ms=60) -> Ms:
    """fn()'s time in ms: do_bench's samples on a GPU, perf_counter under the interpreter."""
    if DRY:
        fn()
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1e3)
        return Ms(ts)
    from triton.testing import do_bench
    return Ms(do_bench(fn, warmup=15, rep=rep_ms, return_mode="all"))


def us(t) -> str:
    """µs with the spread: median (p20-p80)."""
    if t is None:
        return "-"
    if isinstance(t, Ms) and t.p80 > t.p20:
        return f"{t * 1e3:.1f} ({t.p20 * 1e3:.1f}-{t.p80 * 1e3:.1f})"
    return f"{t * 1e3:.1f}"


def close(actual, expected, what, atol=2e-2, rtol=2e-2) -> bool:
    """Check against torch; a mismatch is recorded (listed at the end, exit status 1)."""
    a, e = actual.float(), expected.float()
    err = (a - e).abs()
    tol = atol + rtol * e.abs()
    if not bool(torch.isfinite(a).all()) or bool((err > tol).any()):
        msg = f"{what}: mismatch vs torch, max |err| {err.max().item():.4g}"
        FAILED.append(msg)
        PROBLEMS.append("FAILED " + msg)
        log(f"<!-- {msg} -->")
        return False
    return True


# ----------------------------------------------------------------------------- tilec launch
def tilec_launcher(kernel, args):
    """A zero-argument closure that launches kernel's compiled Triton function on args (torch
    tensors already on the device, scalars), the way codegen.triton.run does but without the
    host<->device copies, so that it can be timed."""
    import codegen.triton as TT
    from codegen.launch import bind
    launch = bind(kernel, args)
    fn = TT.compile(kernel).fn
    call = []
    for tp in kernel.tensors:
        t = launch.tensors[tp.name]
        call.append(t)
        call.extend(int(s) for s in t.stride())
    call.extend(int(launch.dims[n]) for n in kernel.dims)
    for v in kernel.scalars:
        from tilec.ir import dtypes as D
        x = launch.scalars[v.hint]
        call.append(bool(x) if v.type.dtype == "bool" else
                    int(x) if D.is_int(v.type.dtype) else float(x))
    grid = tuple(launch.grid) + (1,) * (3 - len(launch.grid))
    if any(g == 0 for g in grid):
        return lambda: None
    opts = TT.launch_options(TT.Signature.of(kernel))   # the warps/stages the runtime launches with
    return lambda: fn[grid](*call, **opts)


# ----------------------------------------------------------------------------- tutorial matmul
def make_tutorial_matmul():
    """A matmul written after the structure of Triton's 03-matrix-multiplication tutorial:
    grouped program ordering for L2 reuse, a K loop of masked block loads, autotuned over a
    handful of configs keyed on (M, N, K). Computes C = A @ W^T for W [N, K]."""
    import triton
    import triton.language as tl

    def cfg(bm, bn, bk, g, stages, warps):
        return triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": g},
                             num_stages=stages, num_warps=warps)

    configs = [cfg(128, 256, 64, 8, 3, 8), cfg(64, 256, 32, 8, 4, 4), cfg(128, 128, 32, 8, 4, 4),
               cfg(128, 64, 32, 8, 4, 4), cfg(64, 128, 32, 8, 4, 4), cfg(32, 64, 64, 8, 5, 2),
               cfg(16, 128, 128, 8, 4, 4)]

    @triton.autotune(configs=configs, key=["M", "N", "K"])
    @triton.jit
    def mm_nt(a_ptr, w_ptr, c_ptr, M, N, K, s_am, s_ak, s_wn, s_wk, s_cm, s_cn,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
              GROUP_M: tl.constexpr):
        pid = tl.program_id(0)
        tiles_m = tl.cdiv(M, BLOCK_M)
        tiles_n = tl.cdiv(N, BLOCK_N)
        per_group = GROUP_M * tiles_n
        group = pid // per_group
        first_m = group * GROUP_M
        rows_in_group = min(tiles_m - first_m, GROUP_M)
        tm = first_m + ((pid % per_group) % rows_in_group)
        tn = (pid % per_group) // rows_in_group
        offs_m = tm * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = tn * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_k = tl.arange(0, BLOCK_K)
        a_blk = a_ptr + offs_m[:, None] * s_am + offs_k[None, :] * s_ak
        w_blk = w_ptr + offs_k[:, None] * s_wk + offs_n[None, :] * s_wn     # W^T tile [BK, BN]
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            kmask = offs_k + k0 < K
            a = tl.load(a_blk, mask=(offs_m[:, None] < M) & kmask[None, :], other=0.0)
            w = tl.load(w_blk, mask=kmask[:, None] & (offs_n[None, :] < N), other=0.0)
            acc = tl.dot(a, w, acc)
            a_blk += BLOCK_K * s_ak
            w_blk += BLOCK_K * s_wk
        c = c_ptr + offs_m[:, None] * s_cm + offs_n[None, :] * s_cn
        tl.store(c, acc.to(c_ptr.dtype.element_ty), mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))

    def run(a, w, c):
        M, K = a.shape
        N = w.shape[0]
        grid = lambda meta: (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)
        mm_nt[grid](a, w, c, M, N, K, a.stride(0), a.stride(1), w.stride(0), w.stride(1),
                    c.stride(0), c.stride(1))
    return run


# ----------------------------------------------------------------------------- peaks
def measure_peaks(dev):
    if DRY:
        log("peaks: skipped in --dry-run (no GPU); ratios to peak are not printed")
        return None, None
    n = 1 << 30                                               # 1 GiB copy
    src = torch.randn(n // 4, device=dev)
    dst = torch.empty_like(src)
    ms = bench(lambda: dst.copy_(src))
    gbs = 2 * n / ms / 1e6
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    ms = bench(lambda: a @ b)
    tflops = 2 * 8192 ** 3 / ms / 1e9
    del src, dst, a, b
    torch.cuda.empty_cache()
    log(f"measured peaks: device-to-device copy {gbs:.0f} GB/s (read + write), "
        f"8192^3 bf16 matmul {tflops:.0f} TFLOP/s\n")
    return gbs, tflops


# ----------------------------------------------------------------------------- GEMM
def bench_gemm(dev, peaks, shapes, ms_list, configs):
    from tilec.selftest import specialise
    gbs_peak, tf_peak = peaks
    tut = None if DRY else make_tutorial_matmul()
    if DRY:
        log("GEMM: cuBLAS and the tutorial matmul are skipped in --dry-run (need a CUDA GPU); "
            "tilec is checked against torch.matmul on the CPU\n")
    rows, plot = [], {}
    log("| shape (N x K) | M | tilec best (BM,BN,BK) | tilec µs | cuBLAS µs | tutorial µs | "
        "cuBLAS/tilec | tutorial/tilec | tilec TFLOP/s | tilec GB/s | %peak FLOP | %peak BW | "
        "phys-pad µs | pad/virtual |")
    log("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    gen = torch.Generator(device=dev).manual_seed(0)
    for name, n, k in shapes:
        w = torch.randn(n, k, device=dev, generator=gen).to(torch.bfloat16) * 0.05
        kerns = {c: specialise("smooth_gemm_t", DT="bf16", BM=c[0], BN=c[1], BK=c[2], GM=8, K=k, N=n)
                 for c in configs}
        for m in ms_list:
            a = (torch.randn(m, k, device=dev, generator=gen) + 0.01).to(torch.bfloat16)
            ref = torch.nn.functional.linear(a.float(), w.float()).to(torch.bfloat16) \
                if DRY else torch.nn.functional.linear(a, w)
            best = None
            for c, kern in kerns.items():
                out = torch.full((m, n), float("nan"), device=dev, dtype=torch.bfloat16)
                go = tilec_launcher(kern, {"A": a, "W": w, "C": out})
                try:
                    go()
                except Exception as e:           # e.g. out of shared memory for this tile
                    if m == ms_list[0]:
                        PROBLEMS.append(f"tilec tile {c} did not run for {name}: "
                                        f"{type(e).__name__}: {str(e)[:100]}")
                    continue
                if not close(out, ref, f"tilec {name} M={m} {c}"):
                    continue
                t = bench(go)
                if best is None or t < best[1]:
                    best = (c, t, go)
            if best is None:
                PROBLEMS.append(f"tilec {name} M={m}: no tile ran and checked")
                continue
            c, t_tilec, _ = best
            # physical padding: copy A into a BM-multiple buffer, run, slice the result
            bm = c[0]
            mp = -(-m // bm) * bm
            t_pad = None
            if mp != m:
                ap = torch.empty(mp, k, device=dev, dtype=torch.bfloat16)
                outp = torch.empty(mp, n, device=dev, dtype=torch.bfloat16)
                gop = tilec_launcher(kerns[c], {"A": ap, "W": w, "C": outp})

                def padded():
                    ap[:m].copy_(a)
                    ap[m:].zero_()
                    gop()
                    return outp[:m]
                close(padded(), ref, f"tilec padded {name} M={m}")
                t_pad = bench(padded)
            t_cb = t_tut = None
            if not DRY:
                t_cb = bench(lambda: torch.nn.functional.linear(a, w))
                ct = torch.empty(m, n, device=dev, dtype=torch.bfloat16)
                tut(a, w, ct)
                close(ct, ref, f"tutorial {name} M={m}")
                t_tut = bench(lambda: tut(a, w, ct))
            flops = 2.0 * m * n * k
            byts = 2.0 * (m * k + n * k + m * n)
            tf = flops / t_tilec / 1e9
            gb = byts / t_tilec / 1e6
            f = us
            r = lambda x: "-" if x is None else f"{x / t_tilec:.2f}"
            pf = "-" if tf_peak is None else f"{100 * tf / tf_peak:.0f}%"
            pb = "-" if gbs_peak is None else f"{100 * gb / gbs_peak:.0f}%"
            log(f"| {name} ({n}x{k}) | {m} | {c} | {us(t_tilec)} | {f(t_cb)} | {f(t_tut)} | "
                f"{r(t_cb)} | {r(t_tut)} | {tf:.1f} | {gb:.0f} | {pf} | {pb} | {f(t_pad)} | "
                f"{'-' if t_pad is None else f'{t_pad / t_tilec:.2f}'} |")
            rows.append((name, m, t_tilec, t_cb, t_tut, t_pad))
            plot.setdefault(name, []).append((m, tf, None if t_cb is None else flops / t_cb / 1e9,
                                              None if t_tut is None else flops / t_tut / 1e9))
        del w
        if not DRY:
            torch.cuda.empty_cache()
    cb = [r[3] / r[2] for r in rows if r[3]]
    if cb:
        gm = float(np.exp(np.mean(np.log(cb))))
        gt = float(np.exp(np.mean(np.log([r[4] / r[2] for r in rows]))))
        log(f"\ngeomean cuBLAS/tilec time ratio {gm:.2f}, tutorial/tilec {gt:.2f} (> 1: tilec faster)")
    pads = [r[5] / r[2] for r in rows if r[5]]
    if pads:
        log(f"geomean physical-pad/virtual-pad time ratio {float(np.exp(np.mean(np.log(pads)))):.2f} "
            f"over {len(pads)} (shape, M) points with M not a BM multiple")
    log()
    return plot


# ----------------------------------------------------------------------------- attention
def to_dev(case, dev):
    def t(x):
        x = np.ascontiguousarray(x)
        if x.dtype.name == "bfloat16":
            return torch.from_numpy(x.view(np.uint16)).view(torch.bfloat16).to(dev)
        return torch.from_numpy(x).to(dev)
    return t(case.q), t(case.k_cache), t(case.v_cache), t(case.block_table.astype(np.int32))


def meta_launcher(case, q, kc, vc, bt, stages, bm, bn, dev):
    from runtime.plan import plan
    from tilec.selftest import specialise
    kern = specialise("meta_attention", DT="bf16", BM=bm, BN=bn, D=case.head_dim, G=case.group)
    cores = 4 if DRY else torch.cuda.get_device_properties(0).multi_processor_count
    p = plan(stages, case.num_kv_heads, case.group, bm, cores)
    out = torch.zeros_like(q)
    go = tilec_launcher(kern, {"Q": q, "KC": kc, "VC": vc, "O": out, "BT": bt,
                               "TASKS": torch.from_numpy(p.task_table.astype(np.int32)).to(dev),
                               "TREE": torch.from_numpy(p.tree_mask.astype(np.int32)).to(dev),
                               "scale": float(case.scale)})
    return go, out, p


def meta_split_launcher(case, q, kc, vc, bt, stages, bm, bn, dev):
    """(go, out, plan) running the batch split over KV chunks (meta_attention_split, then
    attention_merge) as the planner cuts it for this device's SMs, or None if it would not split."""
    from runtime.plan import plan, split_kv
    from tilec.selftest import specialise
    cores = 132 if DRY else torch.cuda.get_device_properties(0).multi_processor_count
    p = plan(stages, case.num_kv_heads, case.group, bm, cores)
    sp = split_kv(p)
    if sp is None:
        return None
    g = dict(BM=bm, D=case.head_dim, G=case.group, DT="bf16")
    out = torch.zeros_like(q)
    n = sp.num_parts
    op = torch.empty(n, bm, case.head_dim, device=dev, dtype=torch.float32)
    lse = torch.empty(n, bm, device=dev, dtype=torch.float32)
    tasks = torch.from_numpy(sp.tasks).to(dev)
    part = tilec_launcher(specialise("meta_attention_split", BN=bn, **g), {
        "Q": q, "KC": kc, "VC": vc, "OP": op, "LSE": lse, "BT": bt, "TASKS": tasks,
        "KV": torch.from_numpy(sp.kv).to(dev), "TREE": torch.from_numpy(p.tree_mask.astype(np.int32)).to(dev),
        "scale": float(case.scale)})
    merge = tilec_launcher(specialise("attention_merge", **g), {
        "OP": op, "LSE": lse, "O": out, "TASKS": tasks, "MERGE": torch.from_numpy(sp.merge).to(dev)})
    p.split = sp
    return (lambda: (part(), merge())), out, p


def gather_kv(kc, bt, seq_rows, kv_len):
    """[B, HKV, L, D] contiguous K (or V) of equal-length sequences from the paged cache."""
    bs = kc.shape[1]
    nb = -(-kv_len // bs)
    blocks = kc[bt[seq_rows, :nb].long()]                    # [B, nb, BS, HKV, D]
    b = blocks.shape[0]
    return blocks.reshape(b, nb * bs, kc.shape[2], kc.shape[3])[:, :kv_len].transpose(1, 2)


def sdpa(q, k, v, causal, scale, mask=None):
    """SDPA with GQA by ``enable_gqa`` (K/V keep their HKV heads; no repeat_interleave)."""
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                            is_causal=causal, scale=scale,
                                                            enable_gqa=q.shape[1] != k.shape[1])


def paged_baselines(case, q, kc, vc, bt, dev):
    """name -> zero-argument callable running an installed paged-KV decode kernel on the
    case's decode stages (output [B, HQ, D]); a missing or failing one is listed in PROBLEMS."""
    out = {}
    B = len(case.stages)
    lens = torch.tensor([s.context_len + 1 for s in case.stages], dtype=torch.int32, device=dev)
    bs = kc.shape[1]
    try:
        import flashinfer
        ws = torch.empty(128 * 1024 * 1024, dtype=torch.uint8, device=dev)
        w = flashinfer.BatchDecodeWithPagedKVCacheWrapper(ws, "NHD")
        npages = (lens + bs - 1) // bs
        indptr = torch.zeros(B + 1, dtype=torch.int32, device=dev)
        indptr[1:] = torch.cumsum(npages, 0)
        indices = torch.cat([bt[i, :int(npages[i])] for i in range(B)]).to(torch.int32)
        last = (lens - 1) % bs + 1
        w.plan(indptr, indices, last, q.shape[1], kc.shape[2], kc.shape[3], bs,
               q_data_type=q.dtype, kv_data_type=kc.dtype)
        out["FlashInfer batch decode"] = lambda: w.run(q, (kc, vc))
    except Exception as e:      # not installed, or this version's API differs
        PROBLEMS.append(f"baseline FlashInfer batch decode not run: {type(e).__name__}: {str(e)[:120]}")
    try:
        from flash_attn import flash_attn_with_kvcache
        if bs % 256:            # flash-attn's paged KV takes pages of a multiple of 256 tokens
            raise ValueError(f"page size {bs} is not a multiple of 256")
        out["flash_attn_with_kvcache"] = lambda: flash_attn_with_kvcache(
            q[:, None], kc, vc, cache_seqlens=lens, block_table=bt, softmax_scale=case.scale)[:, 0]
    except Exception as e:
        PROBLEMS.append(f"baseline flash_attn_with_kvcache not run: {type(e).__name__}: {str(e)[:120]}")
    return out


def best_meta(case, q, kc, vc, bt, stages, dev, check):
    best = None
    for bm, bn in ATT_CONFIGS:
        go, out, p = meta_launcher(case, q, kc, vc, bt, stages, bm, bn, dev)
        try:
            go()
        except Exception as e:                   # e.g. out of shared memory for this tile
            PROBLEMS.append(f"meta_attention {case.name} tile {(bm, bn)} did not run: "
                            f"{type(e).__name__}: {str(e)[:100]}")
            continue
        check(out, (bm, bn))
        t = bench(go)
        if best is None or t < best[0]:
            best = (t, (bm, bn), p.num_tasks)
    return best


def decode_long(dev, rng, hq, hkv, hd, shapes, checker):
    """Small-batch, long-context decode: meta_attention vs gathered-KV SDPA and the paged-KV
    kernels that are installed; the best baseline is the one a reader would pick."""
    from tilec.testing.attention_cases import make_attention_case
    log("| decode (batch x ctx) | meta (BM,BN) | tasks | meta µs | split-KV parts | split-KV µs | "
        "best paged baseline | its µs | gather+SDPA µs | baseline/best meta |")
    log("| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for B, ctx in shapes:
        case = make_attention_case(rng, [("decode", ctx)] * B, hq, hkv, hd, BLOCK, "bf16",
                                   name=f"decode{B}x{ctx}", extra_blocks=2)
        q, kc, vc, bt = to_dev(case, dev)
        rows = torch.arange(B, device=dev)
        qs = q[:, :, None, :]

        def gathered():
            return sdpa(qs, gather_kv(kc, bt, rows, ctx + 1), gather_kv(vc, bt, rows, ctx + 1),
                        False, case.scale)[:, :, 0, :]
        exp = gathered()
        if DRY:     # the baseline itself (SDPA with enable_gqa over gathered pages) vs the oracle
            from tilec.testing.oracle import attention_oracle
            close(exp, torch.from_numpy(attention_oracle(case)), f"gather+SDPA decode {B}x{ctx}")
        chk = checker(case) if DRY else (lambda out, c: close(out, exp, f"meta decode {B}x{ctx} {c}"))
        best = best_meta(case, q, kc, vc, bt, case.stages, dev, chk)
        if best is None:
            PROBLEMS.append(f"meta_attention decode {B}x{ctx}: no tile ran")
            continue
        t_meta, cfg, ntask = best
        t_split, parts = None, "-"
        sl = meta_split_launcher(case, q, kc, vc, bt, case.stages, cfg[0], cfg[1], dev)
        if sl is not None:
            go, out, sp = sl
            go()
            if chk is not None:
                chk(out, f"{cfg} split-KV")
            t_split, parts = bench(go), sp.split.num_parts
        t_best = min(t for t in (t_meta, t_split) if t is not None)
        t_g = bench(gathered) if not DRY else None
        base = (None, None)
        if not DRY:
            for name, fn in paged_baselines(case, q, kc, vc, bt, dev).items():
                try:
                    if not close(fn(), exp, f"{name} decode {B}x{ctx}"):
                        continue
                    t = bench(fn)
                except Exception as e:
                    PROBLEMS.append(f"baseline {name} decode {B}x{ctx} failed: {type(e).__name__}: {str(e)[:100]}")
                    continue
                if base[1] is None or t < base[1]:
                    base = (name, t)
        ref = base[1] if base[1] is not None else t_g
        log(f"| {B} x {ctx} | {cfg} | {ntask} | {us(t_meta)} | {parts} | {us(t_split)} | "
            f"{base[0] or '-'} | {us(base[1])} | {us(t_g)} | {'-' if ref is None else f'{ref / t_best:.2f}'} |")
    log()


def bench_attention(dev, peaks, hq, hkv, hd, prefill_ctx, decode_batch, decode_ctx, mixed,
                    long_decode=()):
    from tilec.testing.attention_cases import make_attention_case
    from tilec.testing.oracle import attention_oracle
    gbs_peak, tf_peak = peaks
    rng = np.random.default_rng(1)
    flash = None
    if not DRY:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        flash = lambda: sdpa_kernel([SDPBackend.FLASH_ATTENTION])
    else:
        log("attention: SDPA flash and the torch decode baseline are skipped in --dry-run (need "
            "a CUDA GPU); meta_attention is checked against the torch oracle on the CPU\n")

    def checker(case, q_rows=None):
        if DRY:
            exp = torch.from_numpy(attention_oracle(case))
            return lambda out, c: close(out, exp, f"meta_attention {case.name} {c}")
        return None

    plots = {"prefill": [], "decode": []}
    # --- pure prefill
    log("| prefill ctx | meta (BM,BN) | tasks | meta µs | flash µs | flash/meta | meta TFLOP/s | "
        "%peak FLOP |")
    log("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for L in prefill_ctx:
        case = make_attention_case(rng, [("prefill", L, 0)], hq, hkv, hd, BLOCK, "bf16",
                                   name=f"prefill{L}", extra_blocks=2)
        q, kc, vc, bt = to_dev(case, dev)
        qs = q.transpose(0, 1)[None]                          # [1, HQ, L, D]
        if not DRY:
            k = gather_kv(kc, bt, torch.tensor([0], device=dev), L)
            v = gather_kv(vc, bt, torch.tensor([0], device=dev), L)
            with flash():
                ref = sdpa(qs, k, v, True, case.scale)
            exp = ref[0].transpose(0, 1)
            chk = lambda out, c: close(out, exp, f"meta prefill L={L} {c}")
        else:
            chk = checker(case)
        t_meta, cfg, ntask = best_meta(case, q, kc, vc, bt, case.stages, dev, chk)
        t_fl = None
        if not DRY:
            with flash():
                t_fl = bench(lambda: sdpa(qs, k, v, True, case.scale))
        flops = 4.0 * hq * hd * L * (L + 1) / 2                # causal: half the square
        tf = flops / t_meta / 1e9
        log(f"| {L} | {cfg} | {ntask} | {us(t_meta)} | {us(t_fl)} | "
            f"{'-' if t_fl is None else f'{t_fl / t_meta:.2f}'} | {tf:.1f} | "
            f"{'-' if tf_peak is None else f'{100 * tf / tf_peak:.0f}%'} |")
        plots["prefill"].append((L, tf, None if t_fl is None else flops / t_fl / 1e9))
    log()
    # --- pure decode
    log(f"| decode batch (ctx {decode_ctx}) | meta (BM,BN) | tasks | meta µs | gather+SDPA µs | "
        f"SDPA only µs | (gather+SDPA)/meta | meta GB/s | %peak BW |")
    log("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for B in decode_batch:
        case = make_attention_case(rng, [("decode", decode_ctx)] * B, hq, hkv, hd, BLOCK, "bf16",
                                   name=f"decode{B}", extra_blocks=2)
        q, kc, vc, bt = to_dev(case, dev)
        L = decode_ctx + 1
        rows = torch.arange(B, device=dev)
        qs = q[:, :, None, :]                                  # [B, HQ, 1, D]
        if not DRY:
            def base():
                k = gather_kv(kc, bt, rows, L)
                v = gather_kv(vc, bt, rows, L)
                return sdpa(qs, k, v, False, case.scale)
            exp = base()[:, :, 0, :]
            chk = lambda out, c: close(out, exp, f"meta decode B={B} {c}")
        else:
            chk = checker(case)
        t_meta, cfg, ntask = best_meta(case, q, kc, vc, bt, case.stages, dev, chk)
        t_b = t_s = None
        if not DRY:
            t_b = bench(base)
            k = gather_kv(kc, bt, rows, L)
            v = gather_kv(vc, bt, rows, L)
            t_s = bench(lambda: sdpa(qs, k, v, False, case.scale))
        byts = 2.0 * (2 * B * L * hkv * hd + 2 * B * hq * hd)
        gb = byts / t_meta / 1e6
        log(f"| {B} | {cfg} | {ntask} | {us(t_meta)} | {us(t_b)} | {us(t_s)} | "
            f"{'-' if t_b is None else f'{t_b / t_meta:.2f}'} | {gb:.0f} | "
            f"{'-' if gbs_peak is None else f'{100 * gb / gbs_peak:.0f}%'} |")
        plots["decode"].append((B, gb, None if t_b is None else byts / t_b / 1e6))
    log()
    # --- decode at small batch and long context, against the installed paged-KV kernels
    decode_long(dev, rng, hq, hkv, hd, long_decode, checker)
    # --- mixed chat-like batches: one launch vs one launch per stage kind vs torch per stage
    log("| mixed batch | meta one launch µs | meta per-kind launches µs | torch per-stage µs | "
        "per-kind/one | torch/one |")
    log("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, spec in mixed:
        case = make_attention_case(rng, spec, hq, hkv, hd, BLOCK, "bf16", name=label)
        q, kc, vc, bt = to_dev(case, dev)
        bm, bn = ATT_CONFIGS[0]
        go, out, _ = meta_launcher(case, q, kc, vc, bt, case.stages, bm, bn, dev)
        go()
        exp = torch.from_numpy(attention_oracle(case)).to(dev)
        if not close(out, exp, f"meta mixed {label}"):
            continue
        t_one = bench(go)
        kinds = {}
        for s in case.stages:
            kinds.setdefault(s.kind, []).append(s)
        parts = [meta_launcher(case, q, kc, vc, bt, ss, bm, bn, dev)[0] for ss in kinds.values()]

        def per_kind():
            for p in parts:
                p()
        t_kind = bench(per_kind)
        t_torch = None
        if not DRY:
            calls = []
            for s in case.stages:
                L = s.context_len + s.num_tokens
                k = gather_kv(kc, bt, torch.tensor([s.seq], device=dev), L)
                v = gather_kv(vc, bt, torch.tensor([s.seq], device=dev), L)
                qs = q[s.q_start:s.q_start + s.num_tokens].transpose(0, 1)[None]
                if s.num_tokens == 1:
                    calls.append(lambda qs=qs, k=k, v=v: sdpa(qs, k, v, False, case.scale))
                else:
                    pos = torch.arange(L, device=dev)
                    m = pos[None, :] <= (s.context_len + torch.arange(s.num_tokens, device=dev))[:, None]
                    calls.append(lambda qs=qs, k=k, v=v, m=m: sdpa(qs, k, v, False, case.scale, m))

            def per_stage():
                for c in calls:
                    c()
            t_torch = bench(per_stage)
        log(f"| {label} | {us(t_one)} | {us(t_kind)} | {us(t_torch)} | {t_kind / t_one:.2f} | "
            f"{'-' if t_torch is None else f'{t_torch / t_one:.2f}'} |")
    if not DRY:
        log("(torch per-stage: K/V gathered once outside the timing; SDPA per stage, explicit "
            "causal mask for prefill chunks)")
    log()
    return plots


# ----------------------------------------------------------------------------- runtime path
RUNTIME_KERNELS = ("smooth_gemm_t", "smooth_gemm_t_splitk", "gemm_reduce", "meta_attention",
                   "meta_attention_split", "attention_merge")
DRY_VARIANTS = {   # --dry-run: a handful of variants, so the sm_90 compile stays short on a CPU
    "format": "tilec-variants", "format_version": 1, "kernels": {
        "smooth_gemm_t": {"space": {"BM": [16], "BN": [32], "BK": [32], "GM": [8], "DT": ["bf16"]}},
        "smooth_gemm_t_splitk": {"space": {"BM": [16], "BN": [64], "BK": [64], "DT": ["bf16"]}},
        "gemm_reduce": {"space": {"BM": [16], "BN": [64], "DT": ["bf16"]}},
        "meta_attention": {"space": {"BM": [16], "BN": [16], "D": [64], "G": [2], "DT": ["bf16"]}},
        "meta_attention_split": {"space": {"BM": [16], "BN": [16], "D": [64], "G": [2], "DT": ["bf16"]}},
        "attention_merge": {"space": {"BM": [16], "D": [64], "G": [2], "DT": ["bf16"]}}}}


def compile_artifacts(target: str) -> str:
    """``tilec compile -t TARGET`` of the GEMM and attention variants into a fresh directory:
    what ``open_artifacts`` serves from (the same entries and launch options as the engine)."""
    import json
    import subprocess
    import tempfile
    d = tempfile.mkdtemp(prefix="bench-gpu-arts-")
    cmd = [sys.executable, "-m", "tilec.cli", "compile", "-t", target, "-o", d, "--no-progress"]
    for k in RUNTIME_KERNELS:
        cmd += ["-k", k]
    if DRY:
        vf = os.path.join(d, "variants.json")
        with open(vf, "w") as f:
            json.dump(DRY_VARIANTS, f)
        cmd += ["--variants", vf]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"tilec compile failed: {(r.stderr or r.stdout).strip()[-300:]}")
    log(f"runtime path: `tilec compile -t {target}` of {', '.join(RUNTIME_KERNELS)} in "
        f"{time.time() - t0:.0f} s ({r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ''})\n")
    return d


def graph_of(fn, dev):
    """A zero-argument replay of ``fn`` captured in a CUDA graph (after a warm-up call on a
    side stream, as torch requires), or None with the reason listed in PROBLEMS."""
    if DRY or dev != "cuda":
        return None
    try:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            fn()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            fn()
        return g.replay
    except Exception as e:
        PROBLEMS.append(f"CUDA graph capture failed: {type(e).__name__}: {str(e)[:120]}")
        return None


def bench_runtime_path(dev, target, shapes, ms_list, att_cases):
    """What a user of the runtime gets: open_artifacts' own variant choice (the default
    selection table; no GPU tuning table exists yet) launched through Artifacts.linear /
    Artifacts.run, eagerly (host cost of choosing, checking and launching included) and
    replayed from a CUDA graph (host cost gone), against the same variant launched directly."""
    from runtime.artifacts import open_artifacts
    try:
        arts = open_artifacts(compile_artifacts(target), backend="triton", target=target)
    except Exception as e:
        FAILED.append(f"runtime path: {e}")
        PROBLEMS.append(f"FAILED runtime path not measured: {type(e).__name__}: {str(e)[:200]}")
        return
    if DRY:
        log("runtime path: CUDA graphs and cuBLAS need a GPU; in --dry-run the runtime's choice is "
            "launched (Triton interpreter) and checked against torch\n")
    log("| GEMM (N x K) | M | runtime picks | direct µs | Artifacts.linear µs | host µs | "
        "CUDA graph µs | cuBLAS µs | cuBLAS/graph |")
    log("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    gen = torch.Generator(device=dev).manual_seed(3)
    for name, n, k in shapes:
        w = torch.randn(n, k, device=dev, generator=gen).to(torch.bfloat16) * 0.05
        for m in ms_list:
            x = (torch.randn(m, k, device=dev, generator=gen) + 0.01).to(torch.bfloat16)
            ref = torch.nn.functional.linear(x.float(), w.float()).to(torch.bfloat16)
            out = torch.full((m, n), float("nan"), device=dev, dtype=torch.bfloat16)
            try:
                arts.linear(x, w, out)
            except Exception as e:
                FAILED.append(f"Artifacts.linear {name} M={m}")
                PROBLEMS.append(f"FAILED Artifacts.linear {name} M={m}: {type(e).__name__}: {str(e)[:150]}")
                continue
            if not close(out, ref, f"Artifacts.linear {name} M={m}"):
                continue
            from tilec.selftest import specialise
            sk = arts.split_k(m, n, k, "bf16")
            if sk is None:
                _, binding = arts.gemm(m, n, k, "bf16")
                direct = tilec_launcher(specialise("smooth_gemm_t", **binding), {"A": x, "W": w, "C": out})
                pick = " ".join(f"{kk}={binding[kk]}" for kk in ("BM", "BN", "BK", "GM") if kk in binding)
            else:               # the same two launches the runtime makes, without its host work
                _, _, binding, chunks, ks = sk
                cp = torch.empty(chunks, m, n, device=dev, dtype=torch.float32)
                go_p = tilec_launcher(specialise("smooth_gemm_t_splitk", **binding),
                                      {"A": x, "W": w, "CP": cp, "ks": ks})
                go_r = tilec_launcher(specialise("gemm_reduce", BM=binding["BM"], BN=binding["BN"], DT="bf16"),
                                      {"CP": cp, "C": out})
                direct = lambda: (go_p(), go_r())
                pick = (f"split-K {chunks} x {ks}: " +
                        " ".join(f"{kk}={binding[kk]}" for kk in ("BM", "BN", "BK")))
            t_dir, t_rt = bench(direct), bench(lambda: arts.linear(x, w, out))
            replay = graph_of(lambda: arts.linear(x, w, out), dev)
            t_g = bench(replay) if replay else None
            t_cb = None if DRY else bench(lambda: torch.nn.functional.linear(x, w))
            log(f"| {name} ({n}x{k}) | {m} | {pick} | {us(t_dir)} | {us(t_rt)} | "
                f"{1e3 * (t_rt - t_dir):.1f} | {us(t_g)} | {us(t_cb)} | "
                f"{'-' if t_g is None or t_cb is None else f'{t_cb / t_g:.2f}'} |")
    log()
    from tilec.testing.attention_cases import make_attention_case
    from tilec.testing.oracle import attention_oracle
    rng = np.random.default_rng(5)
    log("| attention batch | runtime tiles (BM,BN) | tasks | plan+run µs | run µs | CUDA graph µs |")
    log("| --- | --- | ---: | ---: | ---: | ---: |")
    for label, spec, hq, hkv, hd in att_cases:
        case = make_attention_case(rng, spec, hq, hkv, hd, BLOCK, "bf16", name=label, extra_blocks=2)
        q, kc, vc, bt = to_dev(case, dev)
        out = torch.zeros_like(q)
        try:
            p = arts.plan(case.stages, hkv, hq // hkv, hd, "bf16")
            arts.run(p, q, kc, vc, bt, out, case.scale)
        except Exception as e:
            FAILED.append(f"Artifacts.run {label}")
            PROBLEMS.append(f"FAILED Artifacts.run {label}: {type(e).__name__}: {str(e)[:150]}")
            continue
        if not close(out, torch.from_numpy(attention_oracle(case)).to(dev), f"Artifacts.run {label}"):
            continue

        def step():         # what an engine step pays: plan the batch, then run a layer
            arts.run(arts.plan(case.stages, hkv, hq // hkv, hd, "bf16"), q, kc, vc, bt, out, case.scale)
        t_step, t_run = bench(step), bench(lambda: arts.run(p, q, kc, vc, bt, out, case.scale))
        replay = graph_of(lambda: arts.run(p, q, kc, vc, bt, out, case.scale), dev)
        _, binding = arts.attention(p, hd, "bf16")
        tiles = f"({binding['BM']},{binding['BN']})" + (
            f", split-KV {p.split.num_parts} parts of {p.split.chunk} keys" if p.split is not None else "")
        log(f"| {label} | {tiles} | {p.num_tasks} | {us(t_step)} | "
            f"{us(t_run)} | {us(bench(replay) if replay else None)} |")
    log()


# ----------------------------------------------------------------------------- plots
def save_plots(gemm_plot, att_plot, suffix):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not importable: no plots")
        return
    names = list(gemm_plot)
    cols = 4
    rows_ = -(-len(names) // cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(4 * cols, 3.2 * rows_), squeeze=False)
    for ax, name in zip(axes.flat, names):
        pts = gemm_plot[name]
        ms = [p[0] for p in pts]
        for i, lab in ((1, "tilec"), (2, "cuBLAS"), (3, "tutorial")):
            ys = [p[i] for p in pts]
            if all(y is not None for y in ys):
                ax.plot(ms, ys, marker="o", label=lab)
        ax.set_xscale("log", base=2)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("M (tokens)")
        ax.set_ylabel("TFLOP/s")
        ax.legend(fontsize=7)
    fig.tight_layout()
    p1 = os.path.join(HERE, f"bench_gpu_gemm{suffix}.png")
    fig.savefig(p1, dpi=110)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, xl, yl, other in ((a1, "prefill", "context", "TFLOP/s", "SDPA flash"),
                                   (a2, "decode", "batch", "GB/s", "gather+SDPA")):
        pts = att_plot[key]
        xs = [p[0] for p in pts]
        ax.plot(xs, [p[1] for p in pts], marker="o", label="meta_attention")
        if all(p[2] is not None for p in pts):
            ax.plot(xs, [p[2] for p in pts], marker="s", label=other)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_title(f"{key} (HQ={HQ}, HKV={HKV}, D={HD})" if not DRY else key, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    p2 = os.path.join(HERE, f"bench_gpu_attention{suffix}.png")
    fig.savefig(p2, dpi=110)
    log(f"plots: {os.path.relpath(p1, ROOT)}, {os.path.relpath(p2, ROOT)}")


# ----------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true",
                    help="tiny shapes on the CPU under the Triton interpreter (tilec kernels only)")
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args()
    t0 = time.time()
    if not args.dry_run and not torch.cuda.is_available():
        log("no CUDA GPU: this benchmark needs one (H100/H200); nothing measured "
            "(use --dry-run to check its plumbing on the CPU under the Triton interpreter)")
        return 0
    import codegen.triton  # noqa: F401  (settles TRITON_INTERPRET before triton is imported)
    import triton
    if args.dry_run:
        dev = "cpu"
        log(f"DRY RUN on {platform.processor() or platform.machine()} ({os.cpu_count()} cpus): "
            f"Triton {triton.__version__} interpreter, torch {torch.__version__}; tiny shapes, "
            f"timings are meaningless\n")
        peaks = measure_peaks(dev)
        shapes = [("tiny QKV", 96, 64), ("tiny Down", 64, 128)]
        gemm_plot = bench_gemm(dev, peaks, shapes, [1, 7, 33], [(16, 32, 32), (32, 64, 32)])
        global ATT_CONFIGS
        ATT_CONFIGS = [(16, 16)]
        mixed = [("chat-like: 1 prefill chunk + 3 decodes + 1 verify",
                  [("prefill", 12, 20), ("decode", 30), ("decode", 5), ("verify", 3, 17),
                   ("decode", 40)])]
        att_plot = bench_attention(dev, peaks, 4, 2, 16, [16, 40], [2, 3], 24, mixed,
                                   long_decode=[(1, 64), (1, 1100)])
        bench_runtime_path(dev, "h100", [("tiny QKV", 96, 64), ("tiny Down", 64, 512)], [1, 33],
                           [("1 prefill chunk + 2 decodes", [("prefill", 12, 20), ("decode", 30),
                                                             ("decode", 5)], 4, 2, 64),
                            ("2 decodes, one long (split-KV)", [("decode", 1100), ("decode", 40)], 4, 2, 64)])
    else:
        dev = "cuda"
        torch.backends.cuda.matmul.allow_tf32 = False
        log(f"GPU: {torch.cuda.get_device_name()} | torch {torch.__version__} | "
            f"Triton {triton.__version__} | CUDA {torch.version.cuda}\n")
        peaks = measure_peaks(dev)
        gemm_plot = bench_gemm(dev, peaks, LLAMA + QWEN, MS, GEMM_CONFIGS)
        rng = np.random.default_rng(7)
        mixed = []
        for n_dec in (15, 63):
            spec = [("prefill", 512, int(rng.integers(0, 2048)))]
            spec += [("decode", int(rng.integers(128, 4096))) for _ in range(n_dec)]
            mixed.append((f"chat: 1 prefill chunk 512 + {n_dec} decodes", spec))
        spec = [("prefill", 256, 1024), ("prefill", 256, 0)]
        spec += [("verify", 5, int(rng.integers(256, 4096))) for _ in range(8)]
        spec += [("decode", int(rng.integers(128, 8192))) for _ in range(56)]
        mixed.append(("chat: 2 prefill chunks + 8 verifies + 56 decodes", spec))
        att_plot = bench_attention(dev, peaks, HQ, HKV, HD, PREFILL_CTX, DECODE_BATCH,
                                   DECODE_CTX, mixed, long_decode=LONG_DECODE)
        target = "h200" if "H200" in torch.cuda.get_device_name() else "h100"
        bench_runtime_path(dev, target, LLAMA[:2] + QWEN[:1], [1, 16, 128, 1024],
                           [(lab, spec, HQ, HKV, HD) for lab, spec in mixed])
    if not args.no_plots:
        save_plots(gemm_plot, att_plot, "_dryrun" if args.dry_run else "")
    log(f"total {time.time() - t0:.0f} s")
    if PROBLEMS:
        log("\nNot measured or failed (listed, not skipped silently):")
        for p in PROBLEMS:
            log(f"- {p}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
