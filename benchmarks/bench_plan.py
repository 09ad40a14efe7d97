"""Meta-Attention planning time (token table -> tasks -> symmetric round-robin) and the load
balance it reaches vs plain round-robin, for batches of 1..512 stages.

Run: .venv/bin/python benchmarks/bench_plan.py      (CPU only; prints a Markdown table)
"""
from __future__ import annotations

import platform
import timeit

import numpy as np

from runtime.plan import Stage, balance, build_tasks, plan, round_robin_assign, task_costs


def chat_batch(n: int, rng) -> list:
    """A chat-trace-shaped batch: one prefill chunk, a few verifies, the rest decodes."""
    stages, q = [], 0
    for i in range(n):
        if i == 0:
            s = Stage.prefill(i, q, 512, int(rng.integers(0, 2048)))
        elif i % 16 == 0:
            s = Stage.verify(i, q, 5, int(rng.integers(16, 4096)))
        else:
            s = Stage.decode(i, q, int(rng.integers(16, 4096)))
        stages.append(s)
        q += s.num_tokens
    return stages


def main() -> None:
    rng = np.random.default_rng(0)
    hkv, g, bm, cores = 8, 4, 128, 24     # Llama-3-8B heads on a 910B2's 24 AI cores
    print(f"machine: {platform.processor() or platform.machine()}, {platform.python_implementation()} "
          f"{platform.python_version()}")
    print("| stages | tasks | plan time (µs, median) | balance symmetric RR | balance plain RR |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for n in (1, 8, 32, 64, 128, 256, 512):
        stages = chat_batch(n, rng)
        t = timeit.Timer(lambda: plan(stages, hkv, g, bm, cores))
        reps = t.repeat(repeat=7, number=50)
        us = np.median(reps) / 50 * 1e6
        p = plan(stages, hkv, g, bm, cores)
        tasks, _ = build_tasks(stages, hkv, g, bm)
        costs = task_costs(tasks, g)
        rr = balance(costs, round_robin_assign(len(costs), cores), cores)
        print(f"| {n} | {p.num_tasks} | {us:.1f} | {p.balance:.3f} | {rr:.3f} |")


if __name__ == "__main__":
    main()
