"""Per-request behaviour of the engine: sampling (seeded, reproducible in any batch), stop
strings and stop tokens, limits, and requests refused with a clear message."""
import pytest

from serve.engine import RequestError
from serve.sampling_params import SamplingParams


def test_seeded_sampling_is_reproducible_in_any_batch(engine, run_all):
    p = engine.tokenizer.encode("Write a short poem about the sea.")
    sp = SamplingParams(max_tokens=12, temperature=0.9, top_k=40, top_p=0.95, seed=1234, ignore_eos=True)
    alone = run_all(engine, [p], [sp])[0].token_ids
    other = engine.tokenizer.encode("Something else entirely")
    batched = run_all(engine, [other, p], [SamplingParams(max_tokens=5, temperature=1.0, seed=1), sp])
    assert batched[1].token_ids == alone
    diff = run_all(engine, [p], [SamplingParams(max_tokens=12, temperature=0.9, top_k=40, top_p=0.95,
                                                seed=99, ignore_eos=True)])[0].token_ids
    assert diff != alone


def test_stop_strings_tokens_and_limits(engine, run_all):
    tok = engine.tokenizer
    p = tok.encode("List three colors:\n1.")
    full = run_all(engine, [p], [SamplingParams(max_tokens=20, ignore_eos=True)])[0]
    assert full.finish_reason == "length" and len(full.token_ids) == 20
    stop = full.text.split("\n")[1][:3]            # the start of the second item
    o = run_all(engine, [p], [SamplingParams(max_tokens=20, stop=[stop], ignore_eos=True)])[0]
    assert o.finish_reason == "stop" and stop not in o.text and full.text.startswith(o.text)
    first = full.token_ids[3]
    o = run_all(engine, [p], [SamplingParams(max_tokens=20, stop_token_ids=[first], ignore_eos=True)])[0]
    assert o.finish_reason == "stop" and o.token_ids == full.token_ids[:4]
    chat = tok.encode(tok.apply_chat_template([{"role": "user", "content": "Say hi."}]), add_special_tokens=False)
    o = run_all(engine, [chat], [SamplingParams(max_tokens=200)])[0]
    assert o.finish_reason == "stop" and o.token_ids[-1] in tok.eos_ids and "<|im_end|>" not in o.text
    assert engine.pool.num_used == 0


def test_streamed_deltas_add_up_to_the_text(engine):
    p = engine.tokenizer.encode("Tell me about Paris.")
    rid = engine.add_request(p, SamplingParams(max_tokens=16, stop=["Eiffel"], ignore_eos=True))
    deltas, final = [], None
    while engine.has_unfinished():
        for o in engine.step():
            deltas.append(o.delta)
            final = o
    assert final.request_id == rid and "".join(deltas) == final.text


def test_bad_requests_are_refused(engine):
    with pytest.raises(RequestError, match="the prompt is empty"):
        engine.add_request([], SamplingParams())
    with pytest.raises(RequestError, match=r"the prompt has 3 tokens and max_tokens is 9000: 9003 is over the "
                                           r"model's context of 8192 tokens"):
        engine.add_request([1, 2, 3], SamplingParams(max_tokens=9000))
    with pytest.raises(RequestError, match="token id 99999 is outside the vocabulary"):
        engine.add_request([1, 99999], SamplingParams())
    for bad in (dict(max_tokens=0), dict(temperature=-1), dict(top_p=0), dict(top_k=-2), dict(stop=[""])):
        with pytest.raises(ValueError, match="sampling: "):
            SamplingParams(**bad)
    assert not engine.has_unfinished()


def test_abort_frees_blocks(engine):
    rid = engine.add_request(engine.tokenizer.encode("Count to one hundred: 1, 2, 3,"),
                             SamplingParams(max_tokens=50, ignore_eos=True))
    engine.step()
    engine.step()
    assert engine.pool.num_used > 0
    assert engine.abort(rid) and not engine.abort(rid)
    assert engine.pool.num_used == 0 and not engine.has_unfinished()
