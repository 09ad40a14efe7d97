"""`tilec bench-serve` against `tilec serve` on SmolLM2-135M-Instruct, at several request rates,
with a plot of TTFT and TPOT against the rate.

    .venv/bin/python benchmarks/bench_serve.py [--rates 0.25,0.5,1,2] [--num-prompts 24]
        [--input-len 48] [--output-len 32] [--threads 2] [--backend native]

Starts the server on a free loopback port (its own process, as a user would run it), waits for
/health, runs the benchmark client once per rate (Poisson arrivals, streaming), stops the
server. Prints markdown for BENCHMARKS.md ("Serving over HTTP") and writes serve_rates.png
next to this script (needs matplotlib: pip install -e '.[bench]').
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="0.25,0.5,1,2")
    ap.add_argument("--num-prompts", type=int, default=24)
    ap.add_argument("--input-len", type=int, default=48)
    ap.add_argument("--output-len", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backend", default=None)
    ap.add_argument("--slo-ttft", type=float, default=2.0)
    ap.add_argument("--slo-tpot", type=float, default=0.25)
    a = ap.parse_args()
    import httpx

    from serve.bench_client import format_result, run_benchmark, synthetic_prompts
    port = _port()
    cmd = [sys.executable, "-m", "tilec.cli", "serve", "--port", str(port), "--threads", str(a.threads),
           "--log-level", "warning"] + (["--backend", a.backend] if a.backend else [])
    srv = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if srv.poll() is not None:
            raise SystemExit(f"the server exited: {srv.stderr.read()[-2000:]}")
        if time.monotonic() - t0 > 600:
            raise SystemExit("the server did not come up in 10 minutes")
        time.sleep(0.5)
    try:
        model = httpx.get(url + "/v1/models").json()["data"][0]["id"]
        prompts = synthetic_prompts(a.num_prompts, a.input_len, seed=0)
        print(f"machine: {platform.machine()}, nproc {os.cpu_count()}, Python {platform.python_version()}; "
              f"server: tilec serve ({a.backend or 'default backend'}, {a.threads} threads) on loopback; "
              f"client: tilec bench-serve, {a.num_prompts} prompts of ~{a.input_len} words, max_tokens "
              f"{a.output_len} (end of turn ignored), Poisson arrivals; SLO TTFT <= {a.slo_ttft}s, TPOT <= "
              f"{a.slo_tpot}s; load average {os.getloadavg()[0]:.2f}\n")
        rows, res_all = [], []
        for rate in (float(r) for r in a.rates.split(",")):
            res = asyncio.run(run_benchmark(url + "/v1", model, prompts, rate, None, a.output_len, None, 0,
                                            a.slo_ttft, a.slo_tpot))
            res_all.append(res)
            for line in format_result(res, f"TTFT <= {a.slo_ttft}s, TPOT <= {a.slo_tpot}s"):
                print(line)
            rows.append(res)
        print("\n| rate req/s | completed | failed | req/s | output tok/s | TTFT mean / P50 / P99 ms | "
              "TPOT mean / P50 / P99 ms | ITL P50 / P99 ms | goodput req/s |")
        print("| ---: | ---: | ---: | ---: | ---: | --- | --- | --- | ---: |")
        for r in rows:
            def s3(x):
                return "-" if not x.size else f"{x.mean() * 1e3:.0f} / {np.median(x) * 1e3:.0f} / {np.percentile(x, 99) * 1e3:.0f}"
            itl = "-" if not r.itl.size else f"{np.median(r.itl) * 1e3:.0f} / {np.percentile(r.itl, 99) * 1e3:.0f}"
            print(f"| {r.rate:g} | {r.completed} | {r.failed} | {r.completed / r.duration:.2f} | "
                  f"{r.output_tokens / r.duration:.1f} | {s3(r.ttft)} | {s3(r.tpot)} | {itl} | {r.goodput:.2f} |")
        m = httpx.get(url + "/metrics").text
        used = [ln for ln in m.splitlines() if ln.startswith(("tilec_kv_blocks_used", "tilec_requests_waiting",
                                                            "tilec_requests_running"))]
        print("\nafter the run: " + ", ".join(used))
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            rates = [r.rate for r in rows]
            fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
            for q, st in ((50, "o-"), (99, "x--")):
                ax[0].plot(rates, [np.percentile(r.ttft, q) for r in rows], st, label=f"P{q}")
                ax[1].plot(rates, [np.percentile(r.tpot, q) * 1e3 for r in rows], st, label=f"P{q}")
            ax[0].set(xlabel="request rate (req/s)", ylabel="TTFT (s)", title="time to first token")
            ax[1].set(xlabel="request rate (req/s)", ylabel="TPOT (ms)", title="time per output token")
            for x in ax:
                x.legend()
            fig.suptitle("tilec serve, SmolLM2-135M-Instruct, 2-core VM")
            fig.tight_layout()
            out = Path(__file__).with_name("serve_rates.png")
            fig.savefig(out, dpi=110)
            print(f"plot: {out.name}")
        except ImportError:
            print("matplotlib not installed (pip install -e '.[bench]'): plot skipped")
    finally:
        srv.send_signal(signal.SIGINT)
        try:
            srv.wait(30)
        except subprocess.TimeoutExpired:
            srv.kill()


if __name__ == "__main__":
    main()
