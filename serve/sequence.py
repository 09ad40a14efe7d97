"""One request's state: its tokens, where they are in the paged KV cache, its output text."""
from __future__ import annotations

import enum
import time

from .sampling_params import SamplingParams

__all__ = ["Sequence", "Status"]


class Status(enum.Enum):
    WAITING = "waiting"      # not admitted yet, or preempted (its KV freed, to be recomputed)
    RUNNING = "running"
    FINISHED = "finished"


class Sequence:
    """``tokens = prompt + output``; the KV of ``tokens[:num_computed]`` is in the cache, in
    ``block_ids`` (one physical block per ``block_size`` tokens, in order). A step feeds
    ``tokens[num_computed : num_computed + n]``; once every known token is computed the
    step's last row samples the next token."""

    def __init__(self, seq_id: int, prompt_ids: list[int], params: SamplingParams, detok=None):
        self.seq_id = seq_id
        self.prompt_ids = list(prompt_ids)
        self.output_ids: list[int] = []
        self.params = params
        self.status = Status.WAITING
        self.block_ids: list[int] = []
        self.num_computed = 0
        self.finish_reason: str | None = None
        self.detok = detok           # serve.tokenizer.Detokenizer, or None (ids only)
        self.text = ""               # output text so far (stop strings cut off)
        self.emitted = 0             # characters of text already streamed
        self.num_preemptions = 0
        self.arrival = time.perf_counter()
        self.scheduled_time: float | None = None     # first admitted into a batch
        self.first_token_time: float | None = None
        self.token_times: list[float] = []
        self.generator = None        # torch.Generator for seeded sampling (made on first use)
        self.draft = None            # spec_decode.Draft verified by this step, if any
        self.spec = None             # spec_decode.DraftState (draft length adaptation)

    # -------------------------------------------------------------- tokens
    @property
    def tokens(self) -> list[int]:
        return self.prompt_ids + self.output_ids

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    @property
    def num_uncomputed(self) -> int:
        return self.num_tokens - self.num_computed

    @property
    def is_finished(self) -> bool:
        return self.status is Status.FINISHED

    def blocks_needed(self, num_tokens: int, block_size: int) -> int:
        """Blocks beyond those held to hold the KV of the first ``num_tokens`` tokens."""
        return max(0, -(-num_tokens // block_size) - len(self.block_ids))

    def __repr__(self) -> str:
        return (f"Sequence({self.seq_id}, {self.status.value}, prompt {len(self.prompt_ids)}, "
                f"output {len(self.output_ids)}, computed {self.num_computed}, blocks {len(self.block_ids)})")
