"""MODELLED Meta-Attention figures on Ascend 910B2 from the tile-machine simulator.

(a) chat-like mixed batches (one prefill chunk, many decodes, a few verifies) as ONE
    Meta-Attention launch vs per-stage kernels (each stage type its own launch with its own
    tile and the pipeline the rule picks for it);
(b) the three pipelines (2-, 3-, 4-stage) on a decode-only, a prefill and a long-KV batch.

Heads are Llama-3-8B's (32 query heads, 8 KV heads, d = 128), f16, KV block size 128. Every
number is the simulator's cycle model (codegen/ascend/attention/sim.py), NOT a measurement:
no Ascend hardware was used. Run: .venv/bin/python benchmarks/bench_ascend_attention.py
With --twin every launch also runs its emitted Ascend C on the API twin (ascendc-cpu backend)
and the table gains the largest difference between the two outputs (the same program run
twice: by the simulator and as compiled C++).
"""
from __future__ import annotations

import os

# numpy's threaded BLAS fights over the cores on tiny tile matmuls; the model does not care
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse            # noqa: E402
import platform            # noqa: E402
import re                  # noqa: E402
import time                # noqa: E402

import numpy as np         # noqa: E402

from codegen.ascend.attention import run                          # noqa: E402
from codegen.ascend.attention.sim import LAUNCH_CYCLES            # noqa: E402
from codegen.ascend.errors import AscendLegalityError             # noqa: E402
from runtime.plan import plan                                     # noqa: E402
from tilec import targets as T                                    # noqa: E402
from tilec.selftest import specialise                             # noqa: E402
from tilec.testing.attention_cases import (decode, make_attention_case, prefill,  # noqa: E402
                                           verify)

HQ, HKV, D, BS, DT = 32, 8, 128, 128, "f16"
G = HQ // HKV
TARGET = "ascend910b2"
HOST_LAUNCH_US = 5.0       # assumption, not measured: host-side cost of one kernel launch
TILE = {"prefill": 128, "verify": 32, "decode": 16}      # per-stage kernels' BM
TWIN = {"on": False}        # --twin: also run each launch's emitted Ascend C on the API twin


def launch(case, stages, bm, bn=64, pipeline=None, tiles=None):
    """One launch over ``stages``: tile BM for every kind, or ``tiles`` (kind -> rows): a
    multi-class program with one tile size per stage kind (the largest is BM)."""
    tgt = T.get(TARGET)
    rows = tiles or {"prefill": bm, "verify": bm, "decode": bm}
    p = plan(stages, HKV, G, bm, tgt.aic_cores, tile_rows=rows)
    k = specialise("meta_attention", DT=DT, BM=bm, BN=bn, D=D, G=G)
    args = {"Q": case.q, "KC": case.k_cache, "VC": case.v_cache, "O": np.zeros_like(case.q),
            "BT": case.block_table, "TASKS": p.task_table, "TREE": p.tree_mask,
            "scale": case.scale}
    classes = tuple(sorted(set(rows.values()))) if tiles else None
    st = run(k, args, TARGET, pipeline=pipeline, assignment=p.assignment, classes=classes)
    st.twin_diff = twin_diff(k, args, st.pipeline, classes) if TWIN["on"] else None
    return st, p.num_tasks


def twin_diff(k, args, pipeline, classes) -> float:
    """Largest |O_twin - O_sim| of the same launch's emitted Ascend C on the API twin."""
    from codegen.ascend.ascendc_cpu import run as twin_run
    a = dict(args, O=np.zeros_like(args["O"]))
    twin_run(k, a, TARGET, pipeline=pipeline, classes=classes)
    d = np.abs(a["O"].astype(np.float32) - args["O"].astype(np.float32))
    return float(d.max()) if np.isfinite(a["O"].astype(np.float32)).all() else float("nan")


def agree(*sts) -> str:
    ds = [s.twin_diff for s in sts if s is not None and s.twin_diff is not None]
    return f"{max(ds):.1e}" if ds else "not run"


def us(cycles):
    return cycles / T.get(TARGET).clock_hz * 1e6


def mixed(n_dec, seed):
    rng = np.random.default_rng(seed)
    spec = ([prefill(256, 256)] + [decode(int(c)) for c in rng.integers(256, 2048, n_dec)]
            + [verify(5, int(rng.integers(500, 1500)), True) for _ in range(2)]
            + [verify(4, int(rng.integers(500, 1500)))])
    return make_attention_case(rng, spec, HQ, HKV, D, BS, DT)


def table_a(sizes):
    rows = []
    for n_dec in sizes:
        case = mixed(n_dec, n_dec)
        metas = []
        for label, bm, tiles in (("BM=64", 64, None), ("BM=128", 128, None),
                                 ("tiles 16/32/64", 64, {"decode": 16, "verify": 32,
                                                         "prefill": 64})):
            st, ntask = launch(case, case.stages, bm, tiles=tiles)
            metas.append((st.cycles, label, st.pipeline, ntask, st))
        meta_cyc, meta_bm, meta_pipe, meta_tasks = min(m[:4] for m in metas)
        sts = [m[4] for m in metas]
        per, per_desc = 0, []
        for kind in ("prefill", "decode", "verify"):
            sub = [s for s in case.stages if s.kind == kind]
            best = None
            for pipe in ("2-stage", "3-stage", "4-stage"):     # its best pipeline, by the model
                try:
                    st, _ = launch(case, sub, TILE[kind], pipeline=pipe)
                except (ValueError, AscendLegalityError):   # KV > 3-stage window; no legal UB
                    continue
                if best is None or st.cycles < best.cycles:
                    best = st
            per += best.cycles
            sts.append(best)
            per_desc.append(f"{kind} BM={TILE[kind]} {best.pipeline} {us(best.cycles):.1f}")
        other = [f"{lab}: {us(c):.1f}" for c, lab, *_ in metas]
        rows.append((f"1 prefill(256 @ctx 256) + {n_dec} decodes + 3 verifies",
                     f"{us(meta_cyc):.1f} ({meta_bm}, {meta_pipe}; {', '.join(other)})",
                     f"{us(per):.1f} ({'; '.join(per_desc)})",
                     f"{per / meta_cyc:.2f}",
                     f"{(us(per) + 3 * HOST_LAUNCH_US) / (us(meta_cyc) + HOST_LAUNCH_US):.2f}",
                     agree(*sts)))
    print("\n### (a) one Meta-Attention launch vs per-stage kernels (MODELLED, ascend910b2)\n")
    print("| batch | one launch, µs | per-stage launches, µs (sum) | per-stage / one launch "
          "(device) | same, + 5 µs host cost per launch (assumed) | twin vs simulator, max |ΔO| |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for r in rows:
        print("| " + " | ".join(r) + " |")


def table_b():
    rng = np.random.default_rng(7)
    batches = [
        ("decode-only: 32 decodes, ctx 64..256", 16,
         [decode(int(c)) for c in rng.integers(64, 256, 32)]),
        ("decode-only: 32 decodes, ctx 512..2048", 16,
         [decode(int(c)) for c in rng.integers(512, 2048, 32)]),
        ("prefill: 4 x 128 tokens, no context", 64, [prefill(128, 0) for _ in range(4)]),
        ("prefill: 2 x 256 tokens, no context", 128, [prefill(256, 0), prefill(256, 0)]),
        ("long KV: 64-token chunk after 4032 cached", 64, [prefill(64, 4032)]),
    ]
    print("\n### (b) the three pipelines (MODELLED, ascend910b2)\n")
    print("| batch | BM | pipeline | µs | Cube busy | Vector busy | rule picks | twin vs simulator, max |ΔO| |")
    print("| --- | ---: | --- | ---: | ---: | ---: | --- | ---: |")
    for name, bm, spec in batches:
        case = make_attention_case(rng, spec, HQ, HKV, D, BS, DT)
        picked = launch(case, case.stages, bm)[0].pipeline
        for pipe in ("2-stage", "3-stage", "4-stage"):
            try:
                st, _ = launch(case, case.stages, bm, pipeline=pipe)
            except ValueError:
                print(f"| {name} | {bm} | {pipe} | n/a: KV longer than the 3-stage window | | | | |")
                continue
            except AscendLegalityError as e:
                m = re.search(r"UB buffers need \d+ bytes but only \d+ bytes", str(e))
                print(f"| {name} | {bm} | {pipe} | n/a: {m.group(0) if m else e} | | | | |")
                continue
            span = sum(st.group_cycles)
            cube = st.busy.get("AIC.CUBE", 0) / span
            vec = st.busy.get("AIV.VECTOR", 0) / (2 * span)
            print(f"| {name} | {bm} | {pipe} | {us(st.cycles):.1f} | {cube:.1%} | {vec:.1%} | "
                  f"{'yes' if pipe == picked else ''} | {agree(st)} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one small mixed batch only")
    ap.add_argument("--twin", action="store_true",
                    help="also run every launch's emitted Ascend C on the API twin and compare")
    a = ap.parse_args()
    TWIN["on"] = a.twin
    t0 = time.time()
    print(f"machine: {platform.machine()}, nproc {os.cpu_count()}, Python "
          f"{platform.python_version()}; modelled target {TARGET} (no Ascend hardware); "
          f"launch = slowest AI-core group + {LAUNCH_CYCLES} cycles")
    table_a([8] if a.quick else [16, 48])
    if not a.quick:
        table_b()
    print(f"\ntotal {time.time() - t0:.0f} s of simulation")


if __name__ == "__main__":
    main()
