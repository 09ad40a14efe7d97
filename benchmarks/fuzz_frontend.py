"""The long fuzz run (issue: hardening): mutated library programs through the compiler, and
every accepted one run on the reference and cpu backends with small random arguments.

    .venv/bin/python benchmarks/fuzz_frontend.py [--n 10000] [--seed 0] [--limit 2.0] [--save DIR]

Prints the outcome counts (diagnostic / ran / refused at launch / crash / hang) and the
slowest inputs; a crash or hang is saved to DIR (default tests/frontend/fuzz_corpus/), where
tests/frontend/test_fuzz.py replays every file as a regression test.
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=float, default=2.0)
    ap.add_argument("--save", type=Path, default=ROOT / "tests" / "frontend" / "fuzz_corpus")
    a = ap.parse_args()
    from tilec.testing.fuzz import check, mutants
    rng = random.Random(a.seed)
    counts = collections.Counter()
    slow = []
    biggest = 0
    t0 = time.perf_counter()
    for i, src in enumerate(mutants(rng, a.n)):
        biggest = max(biggest, len(src))
        o = check(src, a.limit)
        counts[o.kind] += 1
        slow.append((o.seconds, i, o.kind))
        if o.finding:
            data = src if isinstance(src, bytes) else src.encode()
            a.save.mkdir(parents=True, exist_ok=True)
            name = f"{o.kind}-{hashlib.sha256(data).hexdigest()[:12]}.tile"
            (a.save / name).write_bytes(data)
            print(f"FINDING {o.kind} #{i}: {o.detail.splitlines()[0] if o.detail else ''} -> {name}")
        if (i + 1) % 1000 == 0:
            print(f"{i + 1} inputs, {dict(counts)}, {time.perf_counter() - t0:.0f}s", flush=True)
    slow.sort(reverse=True)
    print(f"\nmachine: {platform.machine()}, nproc {os.cpu_count()}, Python {platform.python_version()}; "
          f"{a.n} inputs (seed {a.seed}, largest {biggest} characters) in {time.perf_counter() - t0:.0f}s")
    print("| outcome | inputs |\n| --- | ---: |")
    for k in ("diagnostic", "ran", "refused", "crash", "hang"):
        print(f"| {k} | {counts.get(k, 0)} |")
    print(f"slowest: " + ", ".join(f"#{i} {k} {s:.2f}s" for s, i, k in slow[:5]))


if __name__ == "__main__":
    main()
