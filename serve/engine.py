"""The engine: requests in, one hybrid batch per step, tokens and text out.

    eng = LLMEngine(EngineConfig())
    rid = eng.add_request("Hello", SamplingParams(max_tokens=8))
    while eng.has_unfinished():
        for out in eng.step():          # RequestOutput per request that advanced
            print(out.delta, end="")
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import torch

from .block_pool import BlockPool
from .config import EngineConfig
from .model_files import load_model
from .model_runner import ModelRunner, kv_bytes_per_block
from .prefix_cache import PrefixCache
from .sampler import generator_for, sample
from .sampling_params import SamplingParams
from .scheduler import Scheduler
from .sequence import Sequence
from .setup import prepare_artifacts
from .spec_decode import Drafter, SpecConfig, accept
from .tokenizer import Detokenizer

__all__ = ["LLMEngine", "RequestOutput", "RequestError"]


class RequestError(ValueError):
    """A request the engine refuses (too long, empty, bad parameters); one line."""


@dataclass
class RequestOutput:
    request_id: int
    prompt_token_ids: list[int]
    token_ids: list[int]             # generated so far
    text: str                        # generated text so far (stop strings cut off)
    delta: str = ""                  # text added by this step (safe to stream)
    finished: bool = False
    finish_reason: str | None = None
    metrics: dict = field(default_factory=dict)


@dataclass
class StepStats:
    prefill_tokens: int = 0
    decode_tokens: int = 0
    verify_tokens: int = 0
    seqs: int = 0
    seconds: float = 0.0


class LLMEngine:
    def __init__(self, config: EngineConfig | None = None, **kw):
        self.config = c = config or EngineConfig(**kw)
        if c.threads:
            torch.set_num_threads(c.threads)
        if c.backend == "native":
            from codegen.native import set_num_threads
            set_num_threads(c.threads or 0)
        self.model = load_model(c.model, c.serving_dtype, c.cache_path, c.progress)
        self.tokenizer = self.model.tokenizer
        cfg = self.model.config
        self.max_model_len = min(c.max_model_len or cfg.max_position, cfg.max_position)
        from tilec.cache import compiler_version     # a directory per compiler build: never stale
        art_dir = c.artifacts or c.cache_path / "artifacts" / _slug(
            f"{cfg.name}-{c.backend}-{c.serving_dtype}-{compiler_version()}")
        self.arts = prepare_artifacts(art_dir, cfg, c.backend, c.target, c.serving_dtype, c.tune, c.progress)
        per_block = kv_bytes_per_block(cfg, c.block_size, self.model.weights["embed"].dtype)
        num_blocks = c.num_kv_blocks or max(1, c.kv_cache_memory // per_block)
        self.pool = BlockPool(num_blocks, c.block_size)
        self.prefix_cache = PrefixCache(self.pool) if c.prefix_caching else None
        self.drafter = None
        if c.speculative:
            self.drafter = Drafter(SpecConfig(max_draft=c.spec_max_draft,
                                              branches=1 if c.speculative == "chain" else c.spec_branches))
        self.scheduler = Scheduler(self.pool, c.max_num_batched_tokens, c.max_num_seqs, c.policy,
                                   self.prefix_cache, self.drafter)
        self.runner = ModelRunner(self.model, self.arts, num_blocks, c.block_size, self.max_model_len)
        self._ids = itertools.count()
        self.seqs: dict[int, Sequence] = {}
        self.last_step = StepStats()
        self.totals = {"steps": 0, "prefill_tokens": 0, "decode_tokens": 0, "verify_tokens": 0, "generated": 0,
                       "drafted": 0, "accepted": 0, "verifies": 0}

    def describe(self) -> str:
        c = self.config
        return (f"{self.model.describe()}\n"
                f"engine: backend {c.backend} ({self.arts.launcher}, target {c.target}), "
                f"{torch.get_num_threads()} threads, KV cache {self.pool.num_blocks} blocks x {c.block_size} "
                f"tokens, budget {c.max_num_batched_tokens} tokens/step, context {self.max_model_len}, "
                f"policy {c.policy}, prefix caching {'on' if c.prefix_caching else 'off'}, speculative "
                f"{c.speculative or 'off'}; "
                f"artifacts {self.arts.path} ({self.arts.selection})")

    # -------------------------------------------------------------- requests
    def add_request(self, prompt, params: SamplingParams | None = None) -> int:
        """Queue a prompt (text, or token ids); its request id."""
        params = params or SamplingParams()
        if isinstance(prompt, str):
            ids = self.tokenizer.encode(prompt)
        else:
            ids = [int(t) for t in prompt]
            bad = [t for t in ids if not 0 <= t < self.model.config.vocab_size]
            if bad:
                raise RequestError(f"token id {bad[0]} is outside the vocabulary (0..{self.model.config.vocab_size - 1})")
        if not ids:
            raise RequestError("the prompt is empty")
        if len(ids) + params.max_tokens > self.max_model_len:
            raise RequestError(f"the prompt has {len(ids)} tokens and max_tokens is {params.max_tokens}: "
                               f"{len(ids) + params.max_tokens} is over the model's context of "
                               f"{self.max_model_len} tokens")
        need = -(-(len(ids) + params.max_tokens) // self.pool.block_size)
        if need > self.pool.num_blocks:
            raise RequestError(f"the request needs {need} KV blocks; the cache has {self.pool.num_blocks} "
                               f"(raise kv_cache_memory)")
        sid = next(self._ids)
        seq = Sequence(sid, ids, params, Detokenizer(self.tokenizer))
        self.seqs[sid] = seq
        self.scheduler.add(seq)
        return sid

    def abort(self, request_id: int) -> bool:
        """Stop a request and free its KV blocks; False if it was not running or waiting."""
        seq = self.seqs.pop(request_id, None)
        if seq is None or seq.is_finished:
            return False
        self.scheduler.finish(seq, "abort")
        return True

    def has_unfinished(self) -> bool:
        return self.scheduler.has_work

    def logits(self, token_ids: list[int]) -> torch.Tensor:
        """The model's next-token logits (f32 [vocab]) after ``token_ids``, computed by one
        prefill outside the queue (for tests, near-tie reports and scoring)."""
        from .scheduler import ScheduledBatch
        seq = Sequence(-1, list(token_ids), SamplingParams())
        need = seq.blocks_needed(len(token_ids), self.pool.block_size)
        if need > self.pool.num_free:
            raise RequestError(f"scoring {len(token_ids)} tokens needs {need} free KV blocks, "
                               f"{self.pool.num_free} are free")
        seq.block_ids = self.pool.allocate(need)
        try:
            return self.runner.logits(ScheduledBatch([(seq, len(token_ids))]))[0]
        finally:
            self.pool.release(seq.block_ids)

    # -------------------------------------------------------------- the step
    def step(self) -> list[RequestOutput]:
        t0 = time.perf_counter()
        batch = self.scheduler.schedule()
        if not batch:
            if self.scheduler.waiting and not self.scheduler.running:
                seq = self.scheduler.waiting[0]     # nothing runs and it cannot start: refuse it
                self.scheduler.finish(seq, "abort")
                self.seqs.pop(seq.seq_id, None)
                return [self.output(seq)]
            return []
        logits, wanted = self.runner.run(batch)
        for src, _, _ in batch.copies:              # the copies' sources were held for the step
            self.pool.release([src])
        now = time.perf_counter()
        st = self.last_step = StepStats(seqs=len(batch.items))
        for seq, n in batch.items:
            if seq.draft is not None:
                self.totals["verify_tokens"] += n
                st.verify_tokens += n
            elif n == 1 and seq.num_computed > 0:
                st.decode_tokens += 1
            else:
                st.prefill_tokens += n
            seq.num_computed += n
        outs, plain, plain_rows, verified = [], [], [], []
        moves: list[tuple[int, int]] = []
        for seq, r, cnt in wanted:
            if seq.draft is None:
                plain.append(seq)
                plain_rows.append(r)
            else:
                verified.append((seq, self._verify(seq, logits[r:r + cnt], moves)))
        if moves:          # accepted tree nodes' KV packed after their parents', before any reuse
            self.runner.copy_slots([s for s, _ in moves], [d for _, d in moves])
        for seq, toks in verified:
            out = None
            for t in toks:
                out = self._append(seq, t, now)
                if seq.is_finished:
                    break
            outs.append(out)
        if plain:
            for seq, tok in zip(plain, sample(logits[plain_rows], plain)):
                outs.append(self._append(seq, tok, now))
        if self.prefix_cache is not None:          # full blocks this step computed become shareable
            for seq, _ in batch.items:
                if not seq.is_finished and seq.block_ids:
                    self.prefix_cache.insert(seq.tokens, seq.block_ids, seq.num_computed)
        for seq, _ in batch.items:
            seq.draft = None
        st.seconds = time.perf_counter() - t0
        self.totals["steps"] += 1
        self.totals["prefill_tokens"] += st.prefill_tokens
        self.totals["decode_tokens"] += st.decode_tokens
        self.totals["generated"] += len(outs)
        return outs

    def _verify(self, seq: Sequence, logits: torch.Tensor, moves: list) -> list[int]:
        """Accept a prefix of ``seq``'s draft tree with the model's logits (one row per
        node); roll its KV back to the accepted path (moving tree nodes' KV next to their
        parents' in ``moves``) and free blocks the rejected tokens used. The new tokens."""
        d = seq.draft
        ctx = seq.num_computed - len(d.tokens)     # the root's position
        gen = None if seq.params.greedy else generator_for(seq)
        path, toks = accept(d, logits, seq.params, gen)
        bs = self.pool.block_size

        def slot(pos):
            return seq.block_ids[pos // bs] * bs + pos % bs
        for j, node in enumerate(path, start=1):
            if node != j:
                moves.append((slot(ctx + node), slot(ctx + j)))
        seq.num_computed = ctx + 1 + len(path)
        keep = -(-seq.num_computed // bs)
        if len(seq.block_ids) > keep:
            self.pool.release(seq.block_ids[keep:])
            del seq.block_ids[keep:]
        self.drafter.update(seq, len(d), len(path))
        self.totals["drafted"] += len(d)
        self.totals["accepted"] += len(path)
        self.totals["verifies"] += 1
        return toks

    def _append(self, seq: Sequence, tok: int, now: float) -> RequestOutput:
        sp = seq.params
        seq.output_ids.append(tok)
        if seq.first_token_time is None:
            seq.first_token_time = now
        seq.token_times.append(now)
        reason = None
        stop_ids = set(sp.stop_token_ids) | (set() if sp.ignore_eos else set(self.tokenizer.eos_ids))
        if tok in stop_ids:
            reason = "stop"
        else:
            seq.text += seq.detok.add(tok)
            if sp.stop:
                cut = min((i for i in (seq.text.find(s) for s in sp.stop) if i >= 0), default=-1)
                if cut >= 0:
                    seq.text = seq.text[:cut]
                    reason = "stop"
        if reason is None and (len(seq.output_ids) >= sp.max_tokens or seq.num_tokens >= self.max_model_len):
            reason = "length"
            seq.text += seq.detok.flush()
        emitted = seq.emitted
        if reason is None:
            # hold back what could still turn out to be the start of a stop string
            hold = max((len(s) - 1 for s in sp.stop), default=0)
            safe = len(seq.text) - hold
        else:
            safe = len(seq.text)
            self.scheduler.finish(seq, reason)
            self.seqs.pop(seq.seq_id, None)
        delta = seq.text[emitted:safe] if safe > emitted else ""
        seq.emitted = max(emitted, safe)
        return self.output(seq, delta)

    def output(self, seq: Sequence, delta: str = "") -> RequestOutput:
        m = {"arrival": seq.arrival, "scheduled": seq.scheduled_time, "first_token": seq.first_token_time,
             "preemptions": seq.num_preemptions}
        return RequestOutput(seq.seq_id, seq.prompt_ids, list(seq.output_ids), seq.text, delta,
                             seq.is_finished, seq.finish_reason, m)


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in s).lower()
