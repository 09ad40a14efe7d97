"""The engine on SmolLM2-135M-Instruct (its default backend: native where a C++ compiler is
here; f32) and its oracle, Hugging Face transformers on the same GGUF. The dequantised weights and the compiled, tuned artifacts sit
in one cache directory shared by the test workers (made once, under a file lock); each worker
then opens its own engine in about a second."""
import filelock
import pytest
import torch


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    d = tmp_path_factory.getbasetemp().parent / "tilec-cache"      # one for all workers
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture(scope="session")
def engine(cache_dir):
    from serve.config import EngineConfig
    from serve.engine import LLMEngine
    with filelock.FileLock(str(cache_dir) + ".lock"):
        # the plain engine (no prefix reuse, no drafts): test_workload.py makes its own for those
        return LLMEngine(EngineConfig(cache_dir=str(cache_dir), kv_cache_memory=64 << 20, progress=False,
                                      prefix_caching=False))


def _gguf():
    from serve.model_files import default_model_path
    p = default_model_path()
    return str(p.parent), p.name


@pytest.fixture(scope="session")
def hf_tokenizer():
    transformers = pytest.importorskip("transformers")
    d, f = _gguf()
    return transformers.AutoTokenizer.from_pretrained(d, gguf_file=f)


@pytest.fixture(scope="session")
def hf(hf_tokenizer):
    """(tokenizer, model) from transformers, f32, on the default GGUF."""
    import transformers
    d, f = _gguf()
    model = transformers.AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    model.eval()
    return hf_tokenizer, model


@pytest.fixture(scope="session")
def run_all():
    return _run_all


def _run_all(engine, prompts, params):
    """Generate for prompts (token-id lists) together; finished outputs in order."""
    ids = [engine.add_request(p, sp) for p, sp in zip(prompts, params)]
    done = {}
    while engine.has_unfinished():
        for o in engine.step():
            if o.finished:
                done[o.request_id] = o
    return [done[i] for i in ids]


TIE = 1e-3      # two tokens' logits this close are a tie at f32 noise (logits here are ~10-30)


@pytest.fixture(scope="session")
def same_greedy():
    return _same_greedy


def _same_greedy(engine, prompts, got, want):
    """Greedy outputs ``got`` equal ``want``, except that a sequence may leave the other at a
    near-tie: the two tokens' logits there (one full prefill of the common prefix) agree
    within f32 noise. Batch composition (and so prefix reuse, chunking, drafting) changes the
    order of f32 sums, which may flip such a tie; anything else is a failure."""
    for p, g, w in zip(prompts, got, want):
        if g == w:
            continue
        i = next((k for k, (a, b) in enumerate(zip(g, w)) if a != b), min(len(g), len(w)))
        assert i < min(len(g), len(w)), f"lengths differ: {len(g)} vs {len(w)}"
        lg = engine.logits(list(p) + list(w[:i]))
        a, b = float(lg[g[i]]), float(lg[w[i]])
        assert abs(a - b) < TIE, (f"diverges at token {i}: {g[i]} (logit {a:.6f}) vs {w[i]} (logit {b:.6f}), "
                                  f"not a near-tie")
