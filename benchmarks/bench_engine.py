"""The serving engine against Hugging Face `generate`: output tokens/s, time to first token and
peak memory, on the same weights (SmolLM2-135M-Instruct, the GGUF dequantised to f32), the same
prompts, greedy, the same torch thread count; batch 1 and 16 concurrent requests. Then a
per-op profile of the engine's steps.

    .venv/bin/python benchmarks/bench_engine.py [--threads 1] [--tokens 64] [--backend native]
        [--batches 1,16] [--rounds 3]

Each (side, batch) runs in its own process (peak RSS is that process's), sides taking turns
for ``--rounds`` rounds; the tables give each side's median (this VM's speed drifts by tens of
percent between minutes, so one pair of runs is not a ratio to trust). Prints markdown for
BENCHMARKS.md ("Serving engine").
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPTS = [
    "What is the capital of France?", "Write a haiku about compilers.", "Give me three tips for staying focused.",
    "Explain what a hash table is.", "Translate 'good morning' into Spanish.", "What is 17 times 23?",
    "Name three planets in the solar system.", "Write a Python function that reverses a string.",
    "Why is the sky blue?", "Suggest a name for a pet turtle.", "What does a compiler do?",
    "Describe a sunset in one sentence.", "List four primary colors.", "How do airplanes fly?",
    "What is machine learning?", "Tell me a fun fact about octopuses.",
]


def _prompt_ids(tok, n):
    return [tok.encode(tok.apply_chat_template([{"role": "user", "content": p}]), add_special_tokens=False)
            for p in PROMPTS[:n]]


def worker_ours(batch: int, tokens: int, threads: int, backend: str, profile: bool) -> dict:
    import torch
    torch.set_num_threads(threads)
    from serve.config import EngineConfig
    from serve.engine import LLMEngine
    from serve.sampling_params import SamplingParams
    eng = LLMEngine(EngineConfig(backend=backend, threads=threads, kv_cache_memory=256 << 20, progress=False))
    prompts = _prompt_ids(eng.tokenizer, batch)
    sp = SamplingParams(max_tokens=tokens, ignore_eos=True)
    # warm-up: every kernel variant loaded, the allocator settled
    for p in prompts[:2]:
        eng.add_request(p, SamplingParams(max_tokens=2, ignore_eos=True))
    while eng.has_unfinished():
        eng.step()
    prof = _profile(eng) if profile else None
    t0 = time.perf_counter()
    ids = [eng.add_request(p, sp) for p in prompts]
    first, n = {}, 0
    while eng.has_unfinished():
        for o in eng.step():
            first.setdefault(o.request_id, time.perf_counter() - t0)
            n += 1
    dt = time.perf_counter() - t0
    out = {"tokens": n, "seconds": dt, "ttft": sum(first[i] for i in ids) / len(ids),
           "steps": eng.totals["steps"], "peak_rss": _peak()}
    if prof:
        out["profile"] = prof.result(eng.totals["steps"])
    return out


class _Profile:
    def __init__(self):
        self.t: dict[str, float] = {}
        self.steps0 = 0

    def wrap(self, obj, name, label=None):
        fn = getattr(obj, name)

        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                key = label(a, k) if label else name
                self.t[key] = self.t.get(key, 0.0) + time.perf_counter() - t0
        setattr(obj, name, timed)

    def result(self, steps: int) -> dict:
        n = max(steps - self.steps0, 1)
        return {k: v / n * 1e3 for k, v in sorted(self.t.items(), key=lambda kv: -kv[1])}


def _profile(eng) -> _Profile:
    """Per-op wall time of the engine's steps (ms per step), by wrapping the artifacts' ops."""
    p = _Profile()
    p.steps0 = eng.totals["steps"]
    cfg = eng.model.config
    names = {cfg.qkv_size: "linear qkv", cfg.hidden_size: "linear o/down", 2 * cfg.intermediate_size: "linear gate_up",
             cfg.vocab_size: "linear lm_head"}
    arts = eng.arts

    def lin(a, k):
        return names.get(int(a[1].shape[0]), "linear")
    p.wrap(arts, "linear", lin)
    for op in ("rmsnorm", "rope", "silu_mul", "embed", "kv_write", "plan"):
        p.wrap(arts, op)
    p.wrap(arts, "run", lambda a, k: "attention (meta_attention)")
    import serve.engine as mr
    orig = mr.sample

    def sample(*a, **k):
        t0 = time.perf_counter()
        try:
            return orig(*a, **k)
        finally:
            p.t["sampling"] = p.t.get("sampling", 0.0) + time.perf_counter() - t0
    mr.sample = sample
    p.wrap(eng.runner.llama, "forward", lambda a, k: "forward (total)")
    return p


def worker_hf(batch: int, tokens: int, threads: int) -> dict:
    import torch
    torch.set_num_threads(threads)
    import transformers
    from serve.model_files import default_model_path
    path = default_model_path()
    tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                              dtype=torch.float32).eval()
    # the engine's prompt ids (tests/serve checks the two tokenizers and templates agree)
    prompts = [tok.encode(tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                  add_generation_prompt=True), add_special_tokens=False)
               for p in PROMPTS[:batch]]
    width = max(len(p) for p in prompts)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])          # left padding
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    kw = dict(attention_mask=mask, do_sample=False, pad_token_id=pad, eos_token_id=None)
    with torch.inference_mode():
        model.generate(ids[:2], attention_mask=mask[:2], max_new_tokens=2, do_sample=False,
                       pad_token_id=pad, eos_token_id=None)                      # warm-up
        t0 = time.perf_counter()
        model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw)
        ttft = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = model.generate(ids, max_new_tokens=tokens, min_new_tokens=tokens, **kw)
        dt = time.perf_counter() - t0
    n = int((out.shape[1] - width) * out.shape[0])
    return {"tokens": n, "seconds": dt, "ttft": ttft, "peak_rss": _peak()}


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _run(side: str, batch: int, a) -> dict:
    cmd = [sys.executable, __file__, "--worker", side, "--batch", str(batch), "--tokens", str(a.tokens),
           "--threads", str(a.threads), "--backend", a.backend] + (["--profile"] if a.profile_in == side + str(batch) else [])
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"{side} batch {batch} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _tps(run: dict) -> float:
    return run["tokens"] / run["seconds"]


def _median(runs: list[dict]) -> dict:
    """Per-field medians over rounds (tokens/s, TTFT, peak RSS)."""
    import statistics
    return {"tps": statistics.median(_tps(r) for r in runs), "ttft": statistics.median(r["ttft"] for r in runs),
            "peak_rss": statistics.median(r["peak_rss"] for r in runs)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--backend", default=None, help="engine backend (default: the engine's default)")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--worker", choices=["ours", "hf"], help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker == "ours":
        print(json.dumps(worker_ours(a.batch, a.tokens, a.threads, a.backend, a.profile)))
        return
    if a.worker == "hf":
        print(json.dumps(worker_hf(a.batch, a.tokens, a.threads)))
        return
    import torch
    if a.backend is None:
        from serve.config import default_backend
        a.backend = default_backend()
    print(f"machine: {platform.machine()}, nproc {os.cpu_count()}, Python {platform.python_version()}, "
          f"torch {torch.__version__}, {a.threads} thread(s) on both sides, load average "
          f"{os.getloadavg()[0]:.2f}; SmolLM2-135M-Instruct Q4_1 GGUF dequantised to f32 on both sides; "
          f"greedy, {a.tokens} new tokens per request (end-of-turn ignored); backend {a.backend}; "
          f"median of {a.rounds} rounds")
    batches = [int(b) for b in a.batches.split(",")]
    rows = []
    a.profile_in = None
    for b in batches:
        runs = {"ours": [], "hf": []}
        for r in range(a.rounds):           # sides take turns: ours, hf, ours, hf, ...
            if b == batches[-1] and r == a.rounds - 1:
                a.profile_in = f"ours{b}"
            for side in ("ours", "hf"):
                runs[side].append(_run(side, b, a))
            print(f"  batch {b} round {r + 1}/{a.rounds}: ours {_tps(runs['ours'][-1]):.1f} tok/s, "
                  f"transformers {_tps(runs['hf'][-1]):.1f} tok/s", file=sys.stderr, flush=True)
        rows.append((b, _median(runs["ours"]), _median(runs["hf"]), runs["ours"][-1].get("profile")))
    print("\n| requests | side | output tokens/s | ratio vs transformers | mean time to first token ms | "
          "peak RSS MiB |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for b, ours, hf, _ in rows:
        to, th = ours["tps"], hf["tps"]
        print(f"| {b} | tilec engine ({a.backend}) | {to:.1f} | {to / th:.2f} | {ours['ttft'] * 1e3:.0f} | "
              f"{ours['peak_rss'] / 2**20:.0f} |")
        print(f"| {b} | transformers generate | {th:.1f} | 1.00 | {hf['ttft'] * 1e3:.0f} | "
              f"{hf['peak_rss'] / 2**20:.0f} |")
    prof = rows[-1][3]
    if prof:
        print(f"\nEngine profile, {batches[-1]} requests (ms per step, summed over the step's launches):\n")
        print("| op | ms per step |")
        print("| --- | ---: |")
        for k, v in prof.items():
            print(f"| {k} | {v:.2f} |")


if __name__ == "__main__":
    main()
