"""Speculative acceptance without a model: greedy walks the argmax path; rejection sampling
over a draft tree emits tokens with exactly the target distribution (a statistical test)."""
import numpy as np
import torch

from serve.sampling_params import SamplingParams
from serve.spec_decode import Draft, Drafter, SpecConfig, accept

V = 6


def _draft():
    # root -> 2 (node 1) -> 4 (node 3); root -> 5 (node 2)
    return Draft([0, 2, 5, 4], [-1, 0, 0, 1])


def test_greedy_follows_the_argmax_path():
    logits = torch.full((4, V), -5.0)
    logits[0, 5] = 3.0          # the root's argmax is node 2's token
    logits[2, 1] = 2.0          # node 2's prediction: not a draft token -> the correction
    path, toks = accept(_draft(), logits, SamplingParams())
    assert path == [2] and toks == [5, 1]
    logits[0, 2], logits[0, 5] = 4.0, 0.0
    logits[1, 4] = 9.0          # node 1 -> node 3 accepted, then node 3's own argmax
    logits[3, 0] = 7.0
    assert accept(_draft(), logits, SamplingParams()) == ([1, 3], [2, 4, 0])


def test_rejection_sampling_keeps_the_target_distribution():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, V, generator=g) * 1.5
    sp = SamplingParams(temperature=0.8, top_k=5, top_p=0.9)
    from serve.sampler import probabilities
    want1 = probabilities(logits[0], 0.8, 5, 0.9).numpy()
    want2 = probabilities(logits[1], 0.8, 5, 0.9).numpy()        # after node 1 (token 2) is accepted
    n = 40000
    first, second = np.zeros(V), np.zeros(V)
    for _ in range(n):
        path, toks = accept(_draft(), logits, sp, g)
        first[toks[0]] += 1
        if path and path[0] == 1:
            second[toks[1]] += 1
    # chi-square against the target, 5 degrees of freedom at most: 30 is far beyond p = 0.001
    def chi2(counts, p):
        m = p > 0
        assert counts[~m].sum() == 0, "a token the target gives no mass to was emitted"
        e = p[m] * counts.sum()
        return float(((counts[m] - e) ** 2 / e).sum())
    assert chi2(first, want1) < 30, (first / n, want1)
    assert second.sum() > 1000 and chi2(second, want2) < 30, (second / second.sum(), want2)


def test_drafter_finds_ngram_continuations_and_adapts():
    class Seq:
        def __init__(self, toks):
            self.prompt_ids, self.output_ids = toks, []
            self.params = SamplingParams(max_tokens=50)
            self.spec = None

        @property
        def tokens(self):
            return self.prompt_ids + self.output_ids
    s = Seq([1, 2, 3, 9, 1, 2, 3, 7, 8, 1, 2, 3])
    d = Drafter(SpecConfig(max_draft=3, branches=2)).propose(s, 100)
    assert d.tokens[0] == 3 and sorted(d.tokens[i] for i in range(1, len(d.tokens)) if d.parents[i] == 0) == [7, 9]
    assert d.mask()[2].tolist()[:3] == [True, d.parents[2] == 1, True]
    chain = Drafter(SpecConfig(max_draft=3)).propose(s, 100)
    assert chain.is_chain and chain.tokens == [3, 7, 8, 1]          # the most recent occurrence
    dr = Drafter(SpecConfig(max_draft=4, off_below=0.3, cooldown=2))
    for _ in range(6):
        dr.update(s, 4, 0)
    assert s.spec.off_for == 2 and dr.propose(s, 100) is None       # switched off for a while
    assert Drafter(SpecConfig()).propose(Seq([5, 6, 7]), 100) is None     # nothing to continue
