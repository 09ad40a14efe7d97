"""XY-Serve's dynamic workload in the engine: prefix reuse and speculative decoding (chain and
tree drafts verified inside the mixed batch) leave greedy outputs unchanged; block accounting
returns to zero; the three scheduling policies give the same tokens."""
import pytest

from serve.config import EngineConfig
from serve.engine import LLMEngine
from serve.sampling_params import SamplingParams
from serve.spec_decode import Draft

SYSTEM = ("You are a careful assistant. Answer briefly and precisely, and say when you are not sure. "
          "Think about units, names and dates before answering.")
PROMPTS = [SYSTEM + " Question: what is the capital of Italy?",
           SYSTEM + " Question: name a prime number above 10.",
           "one two three one two three one two three one two three one two",
           "def add(a, b):\n    return a + b\n\ndef add(a, b):\n    return a + b\n\ndef add(a, b):\n"]
N = 24


def _engine(cache_dir, **kw):
    return LLMEngine(EngineConfig(cache_dir=str(cache_dir), kv_cache_memory=64 << 20, progress=False, **kw))


def _ids(eng, prompts=PROMPTS):
    return [eng.tokenizer.encode(p) for p in prompts]


def _tokens(eng, run_all, prompts=PROMPTS, n=N):
    ids = _ids(eng, prompts)
    return [o.token_ids for o in run_all(eng, ids, [SamplingParams(max_tokens=n, ignore_eos=True)] * len(ids))]


def _empty(eng):
    """Every block is free once the prefix cache lets go of its own."""
    held = eng.prefix_cache.num_nodes if eng.prefix_cache else 0
    assert eng.pool.num_used == held
    if eng.prefix_cache:
        eng.prefix_cache.clear()
    assert eng.pool.num_used == 0


@pytest.fixture(scope="module")
def reference(cache_dir, run_all):
    """Greedy tokens with neither prefix reuse nor drafts, all prompts in one batch."""
    return _tokens(_engine(cache_dir, prefix_caching=False), run_all)


def test_prefix_reuse_keeps_outputs(run_all, reference, cache_dir, same_greedy):
    eng = _engine(cache_dir)
    first = _tokens(eng, run_all)                 # all admitted in one step: nothing cached yet
    assert first == reference and eng.prefix_cache.hit_tokens == 0
    again = _tokens(eng, run_all)                 # everything cached now: matches end inside blocks
    same_greedy(eng, _ids(eng), again, reference)
    hit = eng.prefix_cache.hit_tokens
    assert hit > 0 and hit % eng.pool.block_size != 0, "no match ended inside a block (copy-on-write untested)"
    q = [SYSTEM + " Question: what is 2 + 2?"]                     # shares the system prompt only
    plain = _tokens(_engine(cache_dir, prefix_caching=False), run_all, q, 8)
    same_greedy(eng, _ids(eng, q), _tokens(eng, run_all, q, 8), plain)
    assert eng.prefix_cache.hit_tokens > hit
    _empty(eng)


@pytest.mark.parametrize("mode", ["chain", "tree"])
def test_speculative_decoding_keeps_greedy_outputs(run_all, reference, cache_dir, mode, same_greedy):
    eng = _engine(cache_dir, speculative=mode, prefix_caching=False)
    same_greedy(eng, _ids(eng), _tokens(eng, run_all), reference)
    t = eng.totals
    assert t["verifies"] > 0 and t["accepted"] > 0 and t["drafted"] >= t["accepted"]
    _empty(eng)


def test_an_accepted_tree_branch_moves_its_kv(run_all, reference, cache_dir, same_greedy):
    """A drafter whose right answer is always the root's second child, one level down: every
    accepted path is non-contiguous in the KV slots, so the accepted nodes' K/V must be moved
    next to their parents for later tokens to come out right."""
    eng = _engine(cache_dir, speculative="tree", prefix_caching=False)
    want = {i: r for i, r in enumerate(reference)}
    prompt_len = {}

    class Oracle:
        def propose(self, seq, budget):
            ref = want[seq.seq_id]
            k = len(seq.output_ids)
            if k + 2 >= len(ref) or budget < 5:
                return None
            wrong = (ref[k] + 1) % 100
            # root -> wrong (1), right (2); right -> next right (3); wrong -> junk (4)
            return Draft([seq.tokens[-1], wrong, ref[k], ref[k + 1], wrong], [-1, 0, 0, 2, 1])

        def update(self, seq, proposed, accepted):
            prompt_len[seq.seq_id] = accepted

    eng.drafter = eng.scheduler.drafter = Oracle()
    same_greedy(eng, _ids(eng), _tokens(eng, run_all), reference)
    assert eng.totals["accepted"] >= 2 * (eng.totals["verifies"] - len(PROMPTS))
    _empty(eng)


@pytest.mark.parametrize("policy", ["prefill-first", "decode-first"])
def test_policies_give_the_same_tokens(run_all, reference, cache_dir, policy, same_greedy):
    eng = _engine(cache_dir, policy=policy, prefix_caching=False)
    same_greedy(eng, _ids(eng), _tokens(eng, run_all), reference)
    _empty(eng)
