"""MODELLED SmoothGEMM (virtual padding) vs a physically padded GEMM on an Ascend target,
over M = 1..4096 on Llama-3-8B's linear shapes. Nothing runs on an NPU: every figure comes
from the tile-machine simulator's cycle model (codegen/ascend/sim.py, ``model_gemm``).

Per (shape, M) the tile is the fastest of a small candidate set (the same tile for both
variants). The padded GEMM is the same program run on an M padded up to a multiple of BM in
GM (every row is real, so MTE2 reads and FixPipe writes the padding too), plus, when M is not
already a multiple of BM, the copy that makes the padded activation (read M rows, write
M_pad rows; modelled as an AIV copy kernel at the MTE2/MTE3 rates over all vector cores).
The output is not copied back (a view is used).

Times are the simulator's ``bound_cycles``: the per-core pipe model, or the HBM floor (every
GM byte once at HBM bandwidth) where that is higher, marked "(HBM)".

Usage: python benchmarks/bench_ascend_gemm.py [--target ascend910b2] [--quick]
Prints a markdown table for BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import platform
import time

SHAPES = {"qkv_proj": (6144, 4096), "o_proj": (4096, 4096), "gate_up_proj": (28672, 4096),
          "down_proj": (4096, 14336)}          # Llama-3-8B: (N, K) of C = A @ W^T, W is [N, K]
MS = (1, 7, 16, 100, 128, 300, 1000, 1024, 2500, 4096)   # tile multiples and ragged ones
TILES = [(bm, bn, bk) for bm in (16, 64, 128) for bn in (128, 256) for bk in (32, 64)]


def pad_copy_cycles(M, Mp, K, tgt, item=2):
    from codegen.ascend.sim import STARTUP_CYCLES
    if Mp == M:                     # already a whole number of tiles: nothing to pad
        return 0, 0
    rd, wr = M * K * item, Mp * K * item
    return max(rd / (tgt.mte2_bytes_per_cycle * tgt.aiv_cores),
               wr / (tgt.mte3_bytes_per_cycle * tgt.aiv_cores)) + STARTUP_CYCLES, rd + wr


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="ascend910b2")
    ap.add_argument("--quick", action="store_true", help="two shapes, four Ms")
    a = ap.parse_args()
    from codegen.ascend import lower_gemm
    from codegen.ascend.sim import model_gemm
    from tilec import targets as T
    from tilec.selftest import specialise
    tgt = T.get(a.target)
    shapes = dict(list(SHAPES.items())[:2]) if a.quick else SHAPES
    ms = (1, 16, 100, 1024) if a.quick else MS
    t0 = time.time()
    peak = tgt.cube_macs_per_cycle["bf16"] * tgt.aic_cores
    print(f"MODELLED on {tgt.name} ({tgt.aic_cores} AI cores, {tgt.clock_hz / 1e9:.1f} GHz), bf16, "
          f"smooth_gemm_t; model run on {platform.machine()} / Python {platform.python_version()}\n")
    print("| layer (N x K) | M | tile BM x BN x BK | SmoothGEMM µs | util | padded µs | padded util "
          "| padded / smooth time | extra HBM MB (padded) | padded GEMM alone µs |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    progs = {}
    for layer, (N, K) in shapes.items():
        for M in ms:
            best = None
            for bm, bn, bk in TILES:
                key = (bm, bn, bk, N, K)
                if key not in progs:
                    progs[key] = lower_gemm(specialise("smooth_gemm_t", DT="bf16", BM=bm, BN=bn,
                                                       BK=bk, N=N, K=K), tgt)
                st = model_gemm(progs[key], M, N, K, tgt)
                if best is None or (st.bound_cycles, st.cycles) < (best[1].bound_cycles, best[1].cycles):
                    best = ((bm, bn, bk), st)
            (bm, bn, bk), sm = best
            Mp = -(-M // bm) * bm
            pd = model_gemm(progs[(bm, bn, bk, N, K)], Mp, N, K, tgt)
            cp_cycles, cp_bytes = pad_copy_cycles(M, Mp, K, tgt)
            pd_cycles = pd.bound_cycles + cp_cycles
            gm = lambda s: s.bytes["MTE2"] + s.bytes["FIXPIPE"]      # noqa: E731
            extra = gm(pd) + cp_bytes - gm(sm)
            us = lambda c: c / tgt.clock_hz * 1e6                     # noqa: E731
            sc = sm.bound_cycles
            print(f"| {layer} ({N} x {K}) | {M} | {bm} x {bn} x {bk} | {us(sc):.1f}"
                  f"{' (HBM)' if sm.hbm_cycles > sm.cycles else ''} | "
                  f"{100 * M * N * K / (sc * peak):.1f}% | {us(pd_cycles):.1f} | "
                  f"{100 * M * N * K / (pd_cycles * peak):.1f}% | {pd_cycles / sc:.2f} | "
                  f"{extra / 1e6:.2f} | {us(pd.bound_cycles):.1f} |")
    print(f"\nmodel time {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
