"""Token-budget scheduling of hybrid prefill / decode / verify batches (XY-Serve's hybrid
scheduling, vLLM's chunked prefill), with prefix reuse and speculative drafts.

Policies (``policy``):

- ``hybrid`` (default): every step is one batch under ``max_num_batched_tokens``. Running
  sequences that decode go first, each as a decode (1 token) or, with a draft, a verify
  (1 + draft tokens); then running sequences whose prompt is only partly computed take their
  next chunk; then waiting sequences are admitted (first come, first served) with a chunk of
  their prompt while the budget, ``max_num_seqs`` and the free blocks allow. A long prompt is
  thus split across steps and mixed with decodes.
- ``prefill-first`` (nano-vllm's): a step that can admit waiting prompts runs only prefills;
  otherwise it runs the decodes.
- ``decode-first``: a step with any decoding sequence runs only decodes and verifies;
  prefills run when nothing decodes.

Admission looks the sequence up in the prefix cache: the longest cached prefix is reused
(shared full blocks; a match ending inside a block is copied into a block of its own, a copy
the runner makes before the step's forward). When a running sequence needs a block and none
is free, unused cached blocks are evicted first (LRU); then the most recently admitted running
sequence is preempted: its blocks are freed and it goes back to the front of the queue to be
recomputed (its cached prefix usually survives), so the engine never runs out of memory.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from .block_pool import BlockPool
from .sequence import Sequence, Status

__all__ = ["Scheduler", "ScheduledBatch", "POLICIES"]

POLICIES = ("hybrid", "prefill-first", "decode-first")


@dataclass
class ScheduledBatch:
    items: list[tuple[Sequence, int]] = field(default_factory=list)   # (sequence, new tokens)
    preempted: list[Sequence] = field(default_factory=list)
    copies: list[tuple[int, int, int]] = field(default_factory=list)  # (src block, dst block, tokens)

    @property
    def num_tokens(self) -> int:
        return sum(n for _, n in self.items)

    def __bool__(self) -> bool:
        return bool(self.items)


class Scheduler:
    def __init__(self, pool: BlockPool, max_num_batched_tokens: int, max_num_seqs: int,
                 policy: str = "hybrid", prefix_cache=None, drafter=None):
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        self.pool = pool
        self.budget = max_num_batched_tokens
        self.max_num_seqs = max_num_seqs
        self.policy = policy
        self.cache = prefix_cache
        self.drafter = drafter
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []      # in admission order
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        seq.status = Status.WAITING
        self.waiting.append(seq)

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    @staticmethod
    def _decoding(seq: Sequence) -> bool:
        return seq.status is Status.RUNNING and seq.num_uncomputed == 1 and seq.num_computed > 0

    # -------------------------------------------------------------- one step
    def schedule(self) -> ScheduledBatch:
        batch = ScheduledBatch()
        taken: set[int] = set()
        if self.policy == "prefill-first":
            if (self.waiting and len(self.running) < self.max_num_seqs) or self._prefilling():
                self._prefills(batch, taken, self.budget, chunk=False)
                if batch:
                    return batch
            self._decodes(batch, taken, self.budget)
        elif self.policy == "decode-first":
            if any(self._decoding(s) for s in self.running):
                self._decodes(batch, taken, self.budget)
            else:
                self._prefills(batch, taken, self.budget, chunk=False)
        else:
            budget = self._decodes(batch, taken, self.budget)
            self._prefills(batch, taken, budget, chunk=True)
        return batch

    def _prefilling(self) -> bool:
        return any(s.status is Status.RUNNING and not self._decoding(s) for s in self.running)

    def _decodes(self, batch: ScheduledBatch, taken: set, budget: int) -> int:
        """Decodes (or verifies, with a draft) of running sequences, oldest first."""
        for seq in list(self.running):
            if budget == 0:
                break
            if not self._decoding(seq) or seq.seq_id in taken:
                continue
            seq.draft = self.drafter.propose(seq, budget) if self.drafter is not None else None
            n = 1 + (len(seq.draft) if seq.draft is not None else 0)
            if not self._reserve(seq, seq.num_tokens - 1 + n, batch, taken):
                continue            # preempted itself: nothing else could give way
            batch.items.append((seq, n))
            taken.add(seq.seq_id)
            budget -= n
        return budget

    def _prefills(self, batch: ScheduledBatch, taken: set, budget: int, chunk: bool) -> int:
        """Chunks of running sequences still computing their prompt, then admissions. Without
        ``chunk`` a prompt must fit the remaining budget whole (unless the batch is empty)."""
        for seq in list(self.running):
            if budget == 0:
                break
            if seq.status is not Status.RUNNING or seq.seq_id in taken or self._decoding(seq):
                continue
            n = min(seq.num_uncomputed, budget)
            if n <= 0 or (not chunk and n < seq.num_uncomputed and batch):
                continue
            if not self._reserve(seq, seq.num_computed + n, batch, taken):
                continue
            seq.draft = None
            batch.items.append((seq, n))
            taken.add(seq.seq_id)
            budget -= n
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            if not self._admit(seq, batch, budget, chunk):
                break
            n = batch.items[-1][1]
            taken.add(seq.seq_id)
            budget -= n
        return budget

    def _admit(self, seq: Sequence, batch: ScheduledBatch, budget: int, chunk: bool) -> bool:
        bs = self.pool.block_size
        first = seq.num_computed == 0 and not seq.block_ids
        m = None
        if first and self.cache is not None:
            m = self.cache.match(seq.tokens, seq.num_tokens - 1)   # one token left to compute
            if m.tokens == 0:
                m = None
        start = m.tokens if m else 0
        n = min(seq.num_tokens - start, budget)
        if not chunk and n < seq.num_tokens - start and batch:
            return False
        if m:
            self.cache.take(m)                  # hold the shared blocks before evicting anything
            if m.partial:
                self.pool.share([m.partial_block])   # the copy's source stays until the copy runs
        need = -(-(start + n) // bs) - (len(m.blocks) if m else 0)
        if not self._free(need):
            if m:
                self.pool.release(m.blocks)
                if m.partial:
                    self.pool.release([m.partial_block])
            return False
        if m:
            seq.block_ids = list(m.blocks)
            seq.num_computed = m.tokens
            if m.partial:
                dst = self.pool.allocate(1)[0]
                seq.block_ids.append(dst)
                batch.copies.append((m.partial_block, dst, m.partial))
        seq.block_ids += self.pool.allocate(seq.blocks_needed(start + n, bs))
        if self.cache is not None and seq.num_preemptions == 0 and first:
            self.cache.count(len(seq.prompt_ids), start)
        self.waiting.popleft()
        seq.status = Status.RUNNING
        seq.draft = None
        if seq.scheduled_time is None:
            seq.scheduled_time = time.perf_counter()
        self.running.append(seq)
        batch.items.append((seq, n))
        return True

    def _free(self, need: int) -> bool:
        """At least ``need`` free blocks, evicting unused cached prefixes if that is enough."""
        short = need - self.pool.num_free
        if short > 0 and self.cache is not None:
            self.cache.evict(short)
        return need <= self.pool.num_free

    def _reserve(self, seq: Sequence, num_tokens: int, batch: ScheduledBatch, taken: set) -> bool:
        """Blocks for the KV of ``seq``'s first ``num_tokens`` tokens: evicting unused cached
        prefixes, then preempting the newest other running sequences (not already in this
        batch); False when ``seq`` itself had to be preempted."""
        need = seq.blocks_needed(num_tokens, self.pool.block_size)
        while not self._free(need):
            victim = next((s for s in reversed(self.running)
                           if s is not seq and s.seq_id not in taken), None)
            if victim is None:
                self.preempt(seq, batch)
                return False
            self.preempt(victim, batch)
        seq.block_ids += self.pool.allocate(need)
        return True

    def preempt(self, seq: Sequence, batch: ScheduledBatch | None = None) -> None:
        """Free ``seq``'s KV and queue it first, to be recomputed (prompt + output so far)."""
        self.pool.release(seq.block_ids)
        seq.block_ids = []
        seq.num_computed = 0
        seq.draft = None
        seq.num_preemptions += 1
        seq.status = Status.WAITING
        self.running.remove(seq)
        self.waiting.appendleft(seq)
        self.num_preemptions += 1
        if batch is not None:
            batch.preempted.append(seq)

    # -------------------------------------------------------------- after the step
    def finish(self, seq: Sequence, reason: str) -> None:
        """Retire ``seq`` (stop, length or abort) and give its blocks back; a normal finish
        leaves its computed KV (tail block too) in the prefix cache."""
        seq.finish_reason = reason
        if seq.status is Status.RUNNING:
            self.running.remove(seq)
        elif seq.status is Status.WAITING and seq in self.waiting:
            self.waiting.remove(seq)
        if self.cache is not None and reason != "abort" and seq.block_ids:
            self.cache.insert(seq.tokens, seq.block_ids, seq.num_computed, tail=True)
        seq.status = Status.FINISHED
        self.pool.release(seq.block_ids)
        seq.block_ids = []
        seq.draft = None
