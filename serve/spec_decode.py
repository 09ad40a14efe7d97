"""Speculative decoding from the request's own context: prompt-lookup (n-gram) drafts, as a
chain or a tree, verified as one V stage of the mixed batch (Meta-Attention's tree mask), with
greedy acceptance or, for temperature > 0, rejection sampling that keeps the target
distribution; the draft length adapts to each request's acceptance and switches off where
drafting does not pay.

A draft is a tree over the request's last token (the root, index 0): ``tokens[i]`` for
nodes 1..n with ``parents[i]`` (0 = the root). Nodes are numbered parents first, so a node's
KV slot (its index) follows its ancestors'. Rope positions are ``context + depth``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .sampler import probabilities

__all__ = ["Draft", "SpecConfig", "Drafter", "accept", "DraftState"]


@dataclass
class Draft:
    tokens: list[int]            # node tokens; tokens[0] is the root (the last real token)
    parents: list[int]           # parents[0] = -1

    def __len__(self) -> int:
        return len(self.tokens) - 1          # draft tokens, root excluded

    @property
    def depths(self) -> list[int]:
        d = [0] * len(self.tokens)
        for i in range(1, len(self.tokens)):
            d[i] = d[self.parents[i]] + 1
        return d

    def children(self) -> list[list[int]]:
        ch = [[] for _ in self.tokens]
        for i in range(1, len(self.tokens)):
            ch[self.parents[i]].append(i)
        return ch

    def mask(self) -> np.ndarray:
        """bool [S, S]: node i sees node j iff j is i or one of its ancestors."""
        n = len(self.tokens)
        m = np.zeros((n, n), bool)
        for i in range(n):
            j = i
            while j >= 0:
                m[i, j] = True
                j = self.parents[j]
        return m

    @property
    def is_chain(self) -> bool:
        return all(p == i - 1 for i, p in enumerate(self.parents) if i)


@dataclass
class SpecConfig:
    max_draft: int = 4           # draft tokens per verify at most
    branches: int = 1            # 1: a chain; > 1: a tree of up to this many continuations
    ngram_max: int = 3
    ngram_min: int = 1
    off_below: float = 0.15      # acceptance (EMA) under which a request stops drafting ...
    cooldown: int = 16           # ... for this many decode steps, then tries again

    def __post_init__(self):
        if self.max_draft < 1 or self.branches < 1 or not 1 <= self.ngram_min <= self.ngram_max:
            raise ValueError("speculative decoding: max_draft and branches must be >= 1 and "
                             "1 <= ngram_min <= ngram_max")


@dataclass
class DraftState:
    """Per-request adaptation: current draft length, acceptance EMA, cool-down."""
    length: int
    ema: float = 0.5
    off_for: int = 0
    proposed: int = 0
    accepted: int = 0
    verifies: int = 0


class Drafter:
    def __init__(self, cfg: SpecConfig):
        self.cfg = cfg

    def state(self, seq) -> DraftState:
        if seq.spec is None:
            seq.spec = DraftState(length=self.cfg.max_draft)
        return seq.spec

    def propose(self, seq, budget: int) -> Draft | None:
        """A draft for ``seq``'s next step (its last token is the root), or None: drafting is
        off for it, nothing in its context continues its last n-gram, or no budget."""
        st = self.state(seq)
        if st.off_for > 0:
            st.off_for -= 1
            return None
        k = min(st.length, budget - 1, seq.params.max_tokens - len(seq.output_ids) - 1)
        if k < 1:
            return None
        toks = seq.tokens
        conts = self._continuations(toks, k, self.cfg.branches)
        if not conts:
            return None
        draft = Draft([toks[-1]], [-1])
        at = [0] * len(conts)               # each continuation's node so far (0: the root)
        for depth in range(k):              # breadth first: every branch gets its first tokens
            for b, c in enumerate(conts):
                if depth >= len(c) or at[b] < 0:
                    continue
                t = c[depth]
                child = next((i for i in range(1, len(draft.tokens))
                              if draft.parents[i] == at[b] and draft.tokens[i] == t), None)
                if child is None:
                    if len(draft) >= k:
                        at[b] = -1
                        continue
                    draft.tokens.append(t)
                    draft.parents.append(at[b])
                    child = len(draft.tokens) - 1
                at[b] = child
        return draft if len(draft) else None

    def _continuations(self, toks: list[int], k: int, branches: int) -> list[list[int]]:
        """Up to ``branches`` distinct continuations (most recent first) of the longest suffix
        n-gram (n from ngram_max down) that occurred earlier in ``toks``."""
        n_all = len(toks)
        arr = np.asarray(toks)
        for n in range(min(self.cfg.ngram_max, n_all - 1), self.cfg.ngram_min - 1, -1):
            suffix = arr[n_all - n:]
            # every earlier start of the suffix (not the suffix itself)
            hits = np.flatnonzero((np.lib.stride_tricks.sliding_window_view(arr[:n_all - 1], n) == suffix).all(1))
            out, firsts = [], set()
            for s in hits[::-1]:
                c = toks[s + n: s + n + k]
                if c and c[0] not in firsts:
                    firsts.add(c[0])
                    out.append(c)
                    if len(out) == branches:
                        break
            if out:
                return out
        return []

    def update(self, seq, proposed: int, accepted: int) -> None:
        """Adapt after a verify: longer drafts while they are accepted, shorter when not, off
        for a while when acceptance stays low."""
        st = self.state(seq)
        st.proposed += proposed
        st.accepted += accepted
        st.verifies += 1
        rate = accepted / proposed if proposed else 0.0
        st.ema = 0.7 * st.ema + 0.3 * rate
        if accepted == proposed:
            st.length = min(st.length + 1, self.cfg.max_draft)
        elif rate < 0.5:
            st.length = max(1, st.length - 1)
        if st.ema < self.cfg.off_below:
            st.off_for = self.cfg.cooldown
            st.ema = 0.5                  # a fresh start after the cool-down
            st.length = max(1, self.cfg.max_draft // 2)


def accept(draft: Draft, logits: torch.Tensor, params, generator=None) -> tuple[list[int], list[int]]:
    """Walk the draft tree with the target model's logits ([S, V], one row per node):
    ``(accepted node indices, new tokens)``, the tokens being the accepted drafts then one
    token of the model's own (a correction or the bonus). Greedy: a child is accepted when it
    is the argmax. Sampled: each child of the current node in turn is accepted with the
    probability the (residual) target distribution gives it, the residual losing each rejected
    child; a deterministic drafter makes this exact speculative sampling, so the tokens follow
    the target distribution."""
    children = draft.children()
    node, path, out = 0, [], []
    while True:
        kids = children[node]
        if params.greedy:
            t = int(torch.argmax(logits[node]))
            nxt = next((c for c in kids if draft.tokens[c] == t), None)
            if nxt is None:
                out.append(t)
                return path, out
        else:
            p = probabilities(logits[node], params.temperature, params.top_k, params.top_p).double()
            nxt = None
            for c in kids:
                t = draft.tokens[c]
                if float(torch.rand((), generator=generator, dtype=torch.float64)) < float(p[t]):
                    nxt = c
                    break
                p[t] = 0.0
                s = float(p.sum())
                if s <= 0.0:
                    break
                p = p / s
            if nxt is None:
                out.append(int(torch.multinomial(p.float(), 1, generator=generator)))
                return path, out
        path.append(nxt)
        out.append(draft.tokens[nxt])
        node = nxt
