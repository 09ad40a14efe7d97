"""Choosing each sequence's next token from its logits: greedy, or temperature with top-k /
top-p filtering, drawn from the sequence's own generator when it has a seed (so a seeded
request samples the same tokens whatever else shares its batches)."""
from __future__ import annotations

import torch

__all__ = ["sample", "probabilities", "generator_for"]


def generator_for(seq) -> torch.Generator:
    """The sequence's own random generator (seeded from its parameters, else from entropy)."""
    if seq.generator is None:
        seq.generator = torch.Generator()
        if seq.params.seed is not None:
            seq.generator.manual_seed(seq.params.seed)
        else:
            seq.generator.seed()
    return seq.generator


def probabilities(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """The distribution sampling draws from (f32 [V]) after temperature, top-k and top-p."""
    x = logits.float() / temperature
    if top_k and top_k < x.numel():
        kth = torch.topk(x, top_k).values[-1]
        x = torch.where(x < kth, torch.full_like(x, float("-inf")), x)
    p = torch.softmax(x, -1)
    if top_p < 1.0:
        sp, idx = torch.sort(p, descending=True)
        cum = torch.cumsum(sp, 0)
        drop = cum - sp > top_p                 # keep the smallest prefix reaching top_p
        sp = torch.where(drop, torch.zeros_like(sp), sp)
        p = torch.zeros_like(p).scatter_(0, idx, sp)
        p = p / p.sum()
    return p


def sample(logits: torch.Tensor, seqs) -> list[int]:
    """One token per row of ``logits`` [S, V] for ``seqs`` (S sequences, in order)."""
    out = []
    greedy = torch.argmax(logits, -1).tolist()
    for row, (seq, g) in enumerate(zip(seqs, greedy)):
        sp = seq.params
        if sp.greedy:
            out.append(int(g))
            continue
        p = probabilities(logits[row], sp.temperature, sp.top_k, sp.top_p)
        out.append(int(torch.multinomial(p.cpu(), 1, generator=generator_for(seq))))
    return out
