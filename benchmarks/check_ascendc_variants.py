"""Every Ascend library variant's emitted Ascend C against the typed API declarations.

Compiles the kernel library for an Ascend target into a temporary artifact directory, then
runs `g++ -fsyntax-only` on each entry's kernel .cpp and host launcher against the executable
twin's headers (codegen/ascend/twin), the way CANN's compiler would see the API. CI checks a
representative set (tests/codegen/test_ascend_attention_emit.py, test_ascendc_twin.py); this
script does all of them (a few minutes on 2 cores).

Run: .venv/bin/python benchmarks/check_ascendc_variants.py [--target ascend910b2] [--jobs 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from codegen.ascend.ascendc_cpu import TWIN, syntax_errors   # noqa: E402
from tilec import cache                                         # noqa: E402


def check_entry(entry: Path) -> str | None:
    """None if the entry's kernel and launcher compile against the twin, else the first error."""
    name = next(p for p in entry.glob("*.cpp") if p.name != "main.cpp").stem
    files = {f.name: f.read_text() for f in entry.iterdir() if f.suffix in (".cpp", ".h")}
    errors = syntax_errors(files, name)
    return f"{entry.name[:16]} {errors[0].splitlines()[0]}" if errors else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="ascend910b2")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="tilec-ascendc-") as d:
        jobs = cache.library_jobs([(a.target, "ascend")])
        st = cache.compile_jobs(jobs, d, workers=a.jobs)
        entries = [p.parent for p in Path(d, "entries").glob("*/main.cpp")]
        print(f"{a.target}: {len(jobs)} variants, {st.compiled} emitted, {len(st.skipped)} the target "
              f"cannot take; checking {len(entries)} entries against {TWIN}", flush=True)
        with ThreadPoolExecutor(max_workers=a.jobs) as ex:
            bad = [e for e in ex.map(check_entry, entries) if e]
    for b in bad:
        print("FAIL", b)
    print(f"{len(entries) - len(bad)} of {len(entries)} compile against the typed declarations "
          f"({time.time() - t0:.0f} s, {os.cpu_count()} cpus)")
    return 1 if bad or not entries else 0


if __name__ == "__main__":
    sys.exit(main())
