"""XY-Serve's dynamic workload on the engine: a reproducible request trace replayed in real time
under each scheduling policy, with prefix reuse and speculative decoding.

    .venv/bin/python benchmarks/bench_serving_policies.py [--requests 24] [--rates 0.5,1,2,4,8,16]
        [--tokens 32] [--threads 2] [--slo-ttft 4] [--slo-tpot 0.6] [--backend native]

The trace (seeded): Poisson arrivals; a third of the requests share a long system prompt, a
third are short questions, a third ask for repetitive text (lists, repeated code) whose
continuations prompt-lookup drafts can guess. Every request generates ``--tokens`` tokens
(end of turn ignored, so every policy does the same work). Per policy and rate: throughput,
TTFT and TPOT P50/P99; the highest rate whose P99 TTFT and P99 TPOT stay under the SLO (QPS at
SLO); prefix hits in tokens; draft acceptance. Then speculative decoding on and off for the
repetitive share. Prints markdown for BENCHMARKS.md ("XY-Serve workload").
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SYSTEM = ("You are a meticulous assistant for a logistics company. You answer questions about "
          "shipments, warehouses and delivery schedules. Always state the assumptions you make, give "
          "numbers with their units, prefer short answers, and say clearly when information is missing. "
          "Never invent tracking numbers. If a question is about a delay, list the likely causes first. "
          "Use metric units. Dates are in ISO format.")
QUESTIONS = ["How long does a pallet take from Rotterdam to Milan?", "What is a bill of lading?",
             "Why would a shipment be held at customs?", "How should fragile goods be packed?",
             "What does FOB mean?", "How do I estimate warehouse space for 500 boxes?"]
SHORT = ["Name a fruit that is red.", "What is 12 times 12?", "Give a synonym for quick.",
         "What color is the sky at noon?", "Say hello in French.", "What is the opposite of cold?"]
REPEAT = ["Repeat the following line ten times: the quick brown fox jumps over the lazy dog.",
          "Write the numbers from 1 to 40 separated by commas.",
          "Print this Python line five times: print('hello world')",
          "List the days of the week, then list them again in the same order, twice."]


def make_trace(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(kind, user message) for n requests, in arrival order (reproducible)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = ("shared", "short", "repeat")[i % 3]
        pool = {"shared": QUESTIONS, "short": SHORT, "repeat": REPEAT}[kind]
        msg = pool[int(rng.integers(len(pool)))]
        out.append((kind, msg))
    return out


def arrivals(n: int, rate: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    return np.cumsum(rng.exponential(1.0 / rate, n))


def replay(eng, prompts, kinds, times, tokens: int) -> dict:
    """Submit prompts at their arrival times (seconds from start), step until done."""
    from serve.sampling_params import SamplingParams
    sp = SamplingParams(max_tokens=tokens, ignore_eos=True)
    t0 = time.perf_counter()
    nxt, ids, rec = 0, {}, {}
    while nxt < len(prompts) or eng.has_unfinished():
        now = time.perf_counter() - t0
        while nxt < len(prompts) and times[nxt] <= now:
            rid = eng.add_request(prompts[nxt], sp)
            ids[rid] = nxt
            rec[nxt] = {"arrival": times[nxt], "kind": kinds[nxt], "first": None, "end": None, "n": 0}
            nxt += 1
        if not eng.has_unfinished():
            time.sleep(max(0.0, min(times[nxt] - now, 0.05)))
            continue
        for o in eng.step():
            r = rec[ids[o.request_id]]
            t = time.perf_counter() - t0
            if r["first"] is None:
                r["first"] = t
            r["n"] = len(o.token_ids)
            if o.finished:
                r["end"] = t
    dur = time.perf_counter() - t0
    rs = list(rec.values())
    ttft = np.array([r["first"] - r["arrival"] for r in rs])
    tpot = np.array([(r["end"] - r["first"]) / max(r["n"] - 1, 1) for r in rs])
    rep = np.array([(r["end"] - r["first"]) / max(r["n"] - 1, 1) for r in rs if r["kind"] == "repeat"])
    return {"duration": dur, "tokens": sum(r["n"] for r in rs), "ttft": ttft, "tpot": tpot, "tpot_repeat": rep}


def pct(x, q):
    return float(np.percentile(x, q))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=24)
    ap.add_argument("--rates", default="0.5,1,2,4,8,16")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--slo-ttft", type=float, default=4.0)
    ap.add_argument("--slo-tpot", type=float, default=0.6)
    ap.add_argument("--policies", default="hybrid,prefill-first,decode-first")
    ap.add_argument("--backend", default=None, help="engine backend (default: the engine's default)")
    a = ap.parse_args()
    import torch
    from serve.config import EngineConfig
    from serve.engine import LLMEngine
    torch.set_num_threads(a.threads)
    rates = [float(r) for r in a.rates.split(",")]
    trace = make_trace(a.requests)
    backend = a.backend or EngineConfig().backend
    print(f"machine: {platform.machine()}, nproc {os.cpu_count()}, Python {platform.python_version()}, "
          f"torch {torch.__version__} ({a.threads} threads); load average {os.getloadavg()[0]:.2f}; "
          f"SmolLM2-135M-Instruct f32 on the {backend} backend; {a.requests} requests "
          f"({sum(k == 'shared' for k, _ in trace)} shared system prompt, {sum(k == 'short' for k, _ in trace)} "
          f"short, {sum(k == 'repeat' for k, _ in trace)} repetitive), {a.tokens} tokens each; "
          f"SLO: P99 TTFT <= {a.slo_ttft}s and P99 TPOT <= {a.slo_tpot}s")
    engines = {}

    def engine(policy, spec, prefix=True):
        key = (policy, spec, prefix)
        if key not in engines:
            engines[key] = LLMEngine(EngineConfig(policy=policy, speculative=spec, prefix_caching=prefix,
                                                  threads=a.threads, kv_cache_memory=256 << 20, progress=False,
                                                  backend=backend))
        return engines[key]

    first = engine("hybrid", "chain")
    tok = first.tokenizer

    def prompt(kind, msg):
        msgs = ([{"role": "system", "content": SYSTEM}] if kind == "shared" else []) + [{"role": "user", "content": msg}]
        return tok.encode(tok.apply_chat_template(msgs), add_special_tokens=False)
    prompts = [prompt(k, m) for k, m in trace]
    kinds = [k for k, _ in trace]

    def run(eng, rate):
        if eng.prefix_cache:
            eng.prefix_cache.clear()
            eng.prefix_cache.hit_tokens = eng.prefix_cache.queried_tokens = 0
        for k in eng.totals:
            eng.totals[k] = 0
        r = replay(eng, prompts, kinds, arrivals(len(prompts), rate), a.tokens)
        t = eng.totals
        r["hit"] = eng.prefix_cache.hit_rate if eng.prefix_cache else 0.0
        r["acc"] = t["accepted"] / t["drafted"] if t["drafted"] else 0.0
        r["per_verify"] = (t["accepted"] + t["verifies"]) / t["verifies"] if t["verifies"] else 0.0
        return r

    policies = a.policies.split(",")
    results = {}
    for rate in rates:                           # policies take turns at each rate
        for pol in policies:
            results[(pol, rate)] = run(engine(pol, "chain"), rate)
    print("\n| policy | rate req/s | throughput tok/s | TTFT P50 s | TTFT P99 s | TPOT P50 s | TPOT P99 s | "
          "prefix hits (tokens) | draft acceptance |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for pol in policies:
        for rate in rates:
            r = results[(pol, rate)]
            print(f"| {pol} | {rate:g} | {r['tokens'] / r['duration']:.1f} | {pct(r['ttft'], 50):.2f} | "
                  f"{pct(r['ttft'], 99):.2f} | {pct(r['tpot'], 50):.3f} | {pct(r['tpot'], 99):.3f} | "
                  f"{r['hit']:.0%} | {r['acc']:.0%} |")
    print("\n| policy | QPS at SLO (highest rate tried that meets it) |")
    print("| --- | ---: |")
    qps = {}
    for pol in policies:
        ok = [rate for rate in rates if pct(results[(pol, rate)]["ttft"], 99) <= a.slo_ttft
              and pct(results[(pol, rate)]["tpot"], 99) <= a.slo_tpot]
        qps[pol] = max(ok) if ok else 0.0
        print(f"| {pol} | {qps[pol]:g} |")
    if "hybrid" in qps and "prefill-first" in qps and qps["prefill-first"]:
        print(f"\nhybrid / prefill-first QPS at SLO: {qps['hybrid'] / qps['prefill-first']:.2f}x")
    # speculative decoding on vs off (hybrid, the middle rate), the repetitive share
    rate = rates[len(rates) // 2]
    on = results[("hybrid", rate)]
    off = run(engine("hybrid", None), rate)
    print(f"\nSpeculative decoding (hybrid, {rate:g} req/s): repetitive requests' mean TPOT "
          f"{on['tpot_repeat'].mean():.3f}s with prompt-lookup chain drafts vs {off['tpot_repeat'].mean():.3f}s "
          f"without ({off['tpot_repeat'].mean() / on['tpot_repeat'].mean():.2f}x); all requests' mean TPOT "
          f"{on['tpot'].mean():.3f}s vs {off['tpot'].mean():.3f}s; acceptance {on['acc']:.0%}, "
          f"{on['per_verify']:.2f} tokens per verify")


if __name__ == "__main__":
    main()
