"""Greedy generation is token-identical to Hugging Face transformers (f32, the same GGUF), and
the same whether requests run alone, batched, or with their prefill chunked over steps."""
import pytest
import torch

from serve.sampling_params import SamplingParams

PROMPTS = ["The capital of France is", "def fib(n):", "Once upon a time, in a land far away,",
           "List three colors:\n1.", "Translate to French: I like apples.", "12 + 35 ="]
N = 32


def _near_tie(engine, hf_model, prefix, ours, theirs):
    """At a divergence: both models' logits for the two tokens; equal within f32 noise."""
    with torch.no_grad():
        h = hf_model(torch.tensor([prefix])).logits[0, -1].float()
    o = engine.logits(prefix)
    return (f"after {len(prefix)} tokens: ours picks {ours} (logit {o[ours]:.6f} vs {o[theirs]:.6f}), "
            f"transformers picks {theirs} (logit {h[theirs]:.6f} vs {h[ours]:.6f})",
            abs(float(o[ours] - o[theirs])) < 1e-4 and abs(float(h[ours] - h[theirs])) < 1e-4)


def test_greedy_matches_transformers(engine, hf, run_all):
    tok, model = hf
    prompts = [engine.tokenizer.encode(p) for p in PROMPTS]
    for p, text in zip(prompts, PROMPTS):
        assert p == tok(text).input_ids                      # the same prompt ids
    outs = run_all(engine, prompts, [SamplingParams(max_tokens=N, ignore_eos=True)] * len(prompts))
    for p, o in zip(prompts, outs):
        with torch.no_grad():
            ref = model.generate(torch.tensor([p]), max_new_tokens=N, do_sample=False, eos_token_id=None,
                                 pad_token_id=0)[0, len(p):].tolist()
        if o.token_ids != ref:
            i = next(k for k, (a, b) in enumerate(zip(o.token_ids, ref)) if a != b)
            why, tie = _near_tie(engine, model, p + ref[:i], o.token_ids[i], ref[i])
            assert tie, f"prompt {tok.decode(p)!r} diverges at token {i}: {why}"
        assert len(o.token_ids) == N
    assert engine.pool.num_used == 0


def test_alone_batched_and_chunked_are_identical(engine, run_all):
    prompts = [engine.tokenizer.encode(p) for p in PROMPTS[:4]]
    params = [SamplingParams(max_tokens=12, ignore_eos=True)] * len(prompts)
    batched = [o.token_ids for o in run_all(engine, prompts, params)]
    alone = [run_all(engine, [p], params[:1])[0].token_ids for p in prompts]
    budget = engine.scheduler.budget
    engine.scheduler.budget = 5               # prompts split into 5-token chunks, mixed with decodes
    try:
        steps = []
        ids = [engine.add_request(p, sp) for p, sp in zip(prompts, params)]
        done = {}
        while engine.has_unfinished():
            for o in engine.step():
                if o.finished:
                    done[o.request_id] = o
            steps.append((engine.last_step.prefill_tokens, engine.last_step.decode_tokens))
        chunked = [done[i].token_ids for i in ids]
    finally:
        engine.scheduler.budget = budget
    assert batched == alone == chunked
    assert any(p and d for p, d in steps), "no step mixed a prefill chunk with decodes"
    assert engine.pool.num_used == 0


def test_preemption_under_a_tiny_cache_keeps_the_tokens(engine, run_all):
    prompts = [engine.tokenizer.encode(p) for p in PROMPTS[:4]]
    params = [SamplingParams(max_tokens=24, ignore_eos=True)] * len(prompts)
    want = [o.token_ids for o in run_all(engine, prompts, params)]
    pool, sched = engine.pool, engine.scheduler
    free = pool.free
    keep = list(free)[:6]                   # 6 blocks of 16 tokens for 4 sequences of ~34 tokens
    before = sched.num_preemptions
    pool.free = type(free)(keep)
    try:
        got = [o.token_ids for o in run_all(engine, prompts, params)]
    finally:
        pool.free = free
    assert sched.num_preemptions > before
    assert got == want
    assert sorted(keep) == sorted(b for b in keep if b in pool.free) and pool.num_used == 0
