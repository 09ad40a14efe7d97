"""`tilec bench-serve`: a serving benchmark against any OpenAI-compatible server (after vLLM's
benchmark_serving): a reproducible synthetic dataset, Poisson arrivals at a request rate (or
all at once) with an optional cap on concurrency, streaming completions; request and token
throughput, TTFT, TPOT and ITL (mean, median, P99) and goodput under an SLO.

    result = asyncio.run(run_benchmark(base_url, model, prompts, rate=2.0, max_concurrency=8))
"""
from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["synthetic_prompts", "run_benchmark", "BenchResult", "format_result"]

_WORDS = ("the of and to in is was for on that with as by at from his her are be this an which or "
          "have one had not but what all were when we there can more if no out so said up other "
          "into time only new some could these two may first then do any like my now over such our "
          "man me even most made after also did many before must through back years where much your "
          "way well down should because each just those people how too little state good very make "
          "world still own see men work long get here between both life being under never day same "
          "another know while last might us great old year off come since against go came right used "
          "take three").split()


def synthetic_prompts(n: int, input_len: int, seed: int = 0, jitter: float = 0.5) -> list[str]:
    """n prompts of about ``input_len`` words each (+-jitter), from a fixed word list."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = max(1, int(input_len * (1 + rng.uniform(-jitter, jitter))))
        out.append(" ".join(rng.choice(_WORDS) for _ in range(k)))
    return out


@dataclass
class _One:
    ok: bool = False
    error: str = ""
    status: int = 0
    ttft: float = 0.0
    latency: float = 0.0
    itl: list = field(default_factory=list)
    prompt_tokens: int = 0
    output_tokens: int = 0


async def _one(client, url, headers, model, prompt, max_tokens, ignore_eos) -> _One:
    r = _One()
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "stream": True,
            "stream_options": {"include_usage": True}, "ignore_eos": ignore_eos}
    t0 = time.perf_counter()
    last = None
    try:
        async with client.stream("POST", url, json=body, headers=headers) as resp:
            r.status = resp.status_code
            if resp.status_code != 200:
                r.error = (await resp.aread()).decode(errors="replace")[:200]
                return r
            async for line in resp.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    break
                ev = json.loads(data)
                if "error" in ev:
                    r.error = ev["error"].get("message", "error")
                    return r
                now = time.perf_counter()
                if ev.get("usage"):
                    r.prompt_tokens = ev["usage"]["prompt_tokens"]
                    r.output_tokens = ev["usage"]["completion_tokens"]
                if ev.get("choices") and ev["choices"][0].get("text"):
                    if last is None:
                        r.ttft = now - t0
                    else:
                        r.itl.append(now - last)
                    last = now
        r.latency = time.perf_counter() - t0
        r.ok = last is not None
        if not r.ok:
            r.error = "no tokens"
    except Exception as e:          # noqa: BLE001  (connection errors count as failures)
        r.error = f"{type(e).__name__}: {e}"
    return r


@dataclass
class BenchResult:
    rate: float
    duration: float
    completed: int
    failed: int
    input_tokens: int
    output_tokens: int
    ttft: np.ndarray
    tpot: np.ndarray
    itl: np.ndarray
    goodput: float
    errors: list


async def run_benchmark(base_url: str, model: str, prompts: list[str], rate: float = float("inf"),
                        max_concurrency: int | None = None, max_tokens: int = 64, api_key: str | None = None,
                        seed: int = 0, slo_ttft: float | None = None, slo_tpot: float | None = None,
                        ignore_eos: bool = True, timeout: float = 600.0) -> BenchResult:
    import httpx
    url = base_url.rstrip("/") + "/completions"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    rng = np.random.default_rng(seed)
    sem = asyncio.Semaphore(max_concurrency) if max_concurrency else None
    limits = httpx.Limits(max_connections=max_concurrency or len(prompts) + 1)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        async def go(p):
            if sem is None:
                return await _one(client, url, headers, model, p, max_tokens, ignore_eos)
            async with sem:
                return await _one(client, url, headers, model, p, max_tokens, ignore_eos)
        t0 = time.perf_counter()
        tasks = []
        for p in prompts:
            tasks.append(asyncio.create_task(go(p)))
            if rate != float("inf"):
                await asyncio.sleep(float(rng.exponential(1.0 / rate)))
        res = await asyncio.gather(*tasks)
        dur = time.perf_counter() - t0
    ok = [r for r in res if r.ok]
    ttft = np.array([r.ttft for r in ok])
    tpot = np.array([(r.latency - r.ttft) / (r.output_tokens - 1) for r in ok if r.output_tokens > 1])
    itl = np.array([x for r in ok for x in r.itl])
    good = [r for r in ok if (slo_ttft is None or r.ttft <= slo_ttft) and (
        slo_tpot is None or r.output_tokens <= 1 or (r.latency - r.ttft) / (r.output_tokens - 1) <= slo_tpot)]
    return BenchResult(rate, dur, len(ok), len(res) - len(ok), sum(r.prompt_tokens for r in ok),
                       sum(r.output_tokens for r in ok), ttft, tpot, itl, len(good) / dur,
                       [f"{r.status or '-'} {r.error}" for r in res if not r.ok][:5])


def _stats(x: np.ndarray, scale: float = 1e3) -> str:
    if x.size == 0:
        return "-"
    return f"{x.mean() * scale:.1f} / {np.median(x) * scale:.1f} / {np.percentile(x, 99) * scale:.1f}"


def format_result(r: BenchResult, slo: str = "") -> list[str]:
    rate = "inf" if r.rate == float("inf") else f"{r.rate:g}"
    return [f"request rate {rate} req/s: {r.completed} completed, {r.failed} failed in {r.duration:.1f}s",
            f"  request throughput {r.completed / r.duration:.2f} req/s; output {r.output_tokens / r.duration:.1f} "
            f"tok/s; total {(r.input_tokens + r.output_tokens) / r.duration:.1f} tok/s",
            f"  TTFT ms mean / median / P99: {_stats(r.ttft)}",
            f"  TPOT ms mean / median / P99: {_stats(r.tpot)}",
            f"  ITL  ms mean / median / P99: {_stats(r.itl)}",
            f"  goodput {r.goodput:.2f} req/s{' (' + slo + ')' if slo else ''}"]
