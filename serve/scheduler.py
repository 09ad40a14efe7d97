"""Token-budget scheduling of hybrid batches (XY-Serve's hybrid P/D scheduling, vLLM's chunked
prefill).

Every step is one batch under ``max_num_batched_tokens``:

1. running sequences that decode (one new token each) go first, so generation never stalls
   behind a long prompt;
2. then running sequences whose prompt is only partly computed take the next chunk;
3. then waiting sequences are admitted (first come, first served) with a chunk of their
   prompt, while the budget, ``max_num_seqs`` and the free blocks allow.

A long prompt is thus split across steps and mixed with decodes. When a running sequence needs
a block and none is free, the most recently admitted running sequence is preempted: its blocks
are freed and it goes back to the front of the queue to be recomputed (vLLM's recompute
preemption), so the engine never runs out of memory.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .block_pool import BlockPool
from .sequence import Sequence, Status

__all__ = ["Scheduler", "ScheduledBatch"]


@dataclass
class ScheduledBatch:
    items: list[tuple[Sequence, int]] = field(default_factory=list)   # (sequence, new tokens)
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(n for _, n in self.items)

    def __bool__(self) -> bool:
        return bool(self.items)


class Scheduler:
    def __init__(self, pool: BlockPool, max_num_batched_tokens: int, max_num_seqs: int):
        self.pool = pool
        self.budget = max_num_batched_tokens
        self.max_num_seqs = max_num_seqs
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []      # in admission order
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        seq.status = Status.WAITING
        self.waiting.append(seq)

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    # -------------------------------------------------------------- one step
    def schedule(self) -> ScheduledBatch:
        batch = ScheduledBatch()
        budget = self.budget
        bs = self.pool.block_size
        taken: set[int] = set()
        # 1. decodes of running sequences, oldest first
        for seq in list(self.running):
            if budget == 0:
                break
            if seq.status is not Status.RUNNING or seq.num_uncomputed != 1 or seq.num_computed == 0:
                continue
            if not self._reserve(seq, seq.num_tokens, batch, taken):
                continue            # preempted itself: nothing else could give way
            batch.items.append((seq, 1))
            taken.add(seq.seq_id)
            budget -= 1
        # 2. chunks of running sequences still computing their prompt
        for seq in list(self.running):
            if budget == 0:
                break
            if seq.status is not Status.RUNNING or seq.seq_id in taken:
                continue
            n = min(seq.num_uncomputed, budget)
            if n <= 0 or not self._reserve(seq, seq.num_computed + n, batch, taken):
                continue
            batch.items.append((seq, n))
            taken.add(seq.seq_id)
            budget -= n
        # 3. admit waiting sequences while there is room
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            n = min(seq.num_uncomputed, budget)
            need = seq.blocks_needed(seq.num_computed + n, bs)
            if need > self.pool.num_free:
                break              # wait for blocks rather than preempt for a newcomer
            seq.block_ids += self.pool.allocate(need)
            self.waiting.popleft()
            seq.status = Status.RUNNING
            self.running.append(seq)
            batch.items.append((seq, n))
            taken.add(seq.seq_id)
            budget -= n
        return batch

    def _reserve(self, seq: Sequence, num_tokens: int, batch: ScheduledBatch, taken: set) -> bool:
        """Blocks for the KV of ``seq``'s first ``num_tokens`` tokens, preempting the newest
        other running sequences (not already in this batch) while they are short; False when
        ``seq`` itself had to be preempted."""
        need = seq.blocks_needed(num_tokens, self.pool.block_size)
        while need > self.pool.num_free:
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
        seq.num_preemptions += 1
        seq.status = Status.WAITING
        self.running.remove(seq)
        self.waiting.appendleft(seq)
        self.num_preemptions += 1
        if batch is not None:
            batch.preempted.append(seq)

    # -------------------------------------------------------------- after the step
    def finish(self, seq: Sequence, reason: str) -> None:
        """Retire ``seq`` (stop, length or abort) and give its blocks back."""
        seq.finish_reason = reason
        if seq.status is Status.RUNNING:
            self.running.remove(seq)
        elif seq.status is Status.WAITING and seq in self.waiting:
            self.waiting.remove(seq)
        seq.status = Status.FINISHED
        self.pool.release(seq.block_ids)
        seq.block_ids = []
