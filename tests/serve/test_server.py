"""`tilec serve` for real: the server on a loopback port, driven with the official `openai`
client (completions, chat, streaming with usage, stop strings, seeds, errors), API keys, client
disconnects, and a bounded load test that leaves the KV pool and the queue empty."""
import asyncio
import json
import re
import socket
import time

import httpx
import pytest

openai = pytest.importorskip("openai")

MODEL = "SmolLM2-135M-Instruct"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(cache_dir, **kw):
    from serve.config import EngineConfig
    from serve.engine import LLMEngine
    from serve.server import Server
    eng = LLMEngine(EngineConfig(cache_dir=str(cache_dir), kv_cache_memory=64 << 20, progress=False,
                                 max_num_seqs=16))
    return Server(engine=eng, port=_port(), log_level="warning", **kw).start_in_thread()


@pytest.fixture(scope="module")
def server(cache_dir, engine):          # engine: the shared cache is built (under its lock) first
    srv = _server(cache_dir)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def _metrics(server) -> dict:
    text = httpx.get(server.url + "/metrics").text
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(tilec_[a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def _idle(server, timeout=30.0) -> dict:
    t0 = time.monotonic()
    while True:
        m = _metrics(server)
        if m["tilec_requests_running"] == 0 and m["tilec_requests_waiting"] == 0 and m["tilec_kv_blocks_used"] == 0:
            return m
        assert time.monotonic() - t0 < timeout, f"not idle: {m}"
        time.sleep(0.2)


def test_models_health_and_metrics(server, client):
    assert [m.id for m in client.models.list().data] == [MODEL]
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    m = _metrics(server)
    assert m["tilec_kv_blocks_total"] > 0 and "tilec_requests_running" in m


def test_completion_and_chat(client, engine):
    r = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0)
    want = engine.tokenizer.decode([t for t in _greedy(engine, "The capital of France is", 8)])
    assert r.choices[0].text == want and r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 8 and r.usage.prompt_tokens == len(engine.tokenizer.encode("The capital of France is"))
    c = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "What is the capital of France?"}],
                                       max_tokens=30, temperature=0)
    assert "Paris" in c.choices[0].message.content and c.choices[0].finish_reason == "stop"
    assert c.choices[0].message.role == "assistant"
    two = client.completions.create(model=MODEL, prompt=["One, two,", "Red, green,"], max_tokens=4, temperature=0)
    assert [x.index for x in two.choices] == [0, 1] and two.usage.completion_tokens == 8


def _greedy(engine, text, n):
    from serve.sampling_params import SamplingParams
    rid = engine.add_request(engine.tokenizer.encode(text), SamplingParams(max_tokens=n))
    while engine.has_unfinished():
        for o in engine.step():
            if o.request_id == rid and o.finished:
                return o.token_ids


def test_streaming_with_usage_equals_the_whole(client):
    kw = dict(model=MODEL, prompt="Once upon a time", max_tokens=16, temperature=0)
    whole = client.completions.create(**kw).choices[0].text
    parts, usage, finish = [], None, None
    for ev in client.completions.create(stream=True, stream_options={"include_usage": True}, **kw):
        if ev.usage:
            usage = ev.usage
        for ch in ev.choices:
            parts.append(ch.text)
            finish = ch.finish_reason or finish
    assert "".join(parts) == whole and finish == "length" and usage.completion_tokens == 16
    chat_parts = []
    for ev in client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Count to five."}],
                                             max_tokens=20, temperature=0, stream=True):
        for ch in ev.choices:
            chat_parts.append(ch.delta.content or "")
    assert "".join(chat_parts).strip()


def test_stop_strings_and_seeds(client):
    full = client.completions.create(model=MODEL, prompt="List three colors:\n1.", max_tokens=20, temperature=0,
                                     extra_body={"ignore_eos": True}).choices[0].text
    stop = full.split("\n")[1][:2]
    r = client.completions.create(model=MODEL, prompt="List three colors:\n1.", max_tokens=20, temperature=0,
                                  stop=[stop]).choices[0]
    assert r.finish_reason == "stop" and stop not in r.text and full.startswith(r.text)
    kw = dict(model=MODEL, prompt="Write a word:", max_tokens=12, temperature=1.0, top_p=0.95)
    a = client.completions.create(seed=7, **kw).choices[0].text
    b = client.completions.create(seed=7, **kw).choices[0].text
    c = [client.completions.create(seed=s, **kw).choices[0].text for s in (8, 9, 10)]
    assert a == b and any(x != a for x in c)


@pytest.mark.parametrize("body,status,needle", [
    ({"model": "nope", "prompt": "x"}, 404, "does not exist"),
    ({"model": MODEL, "prompt": "x", "max_tokens": 9000}, 400, "the prompt has 1 tokens and max_tokens is 9000"),
    ({"model": MODEL, "prompt": "x", "temperature": 5}, 400, "temperature"),
    ({"model": MODEL, "prompt": "x", "n": 2}, 400, "n must be 1"),
    ({"model": MODEL}, 400, "prompt"),
    ({"model": MODEL, "prompt": [1, 999999]}, 400, "outside the vocabulary"),
    ({"model": MODEL, "prompt": ""}, 400, "empty"),
])
def test_errors_have_openai_shape(server, body, status, needle):
    r = httpx.post(server.url + "/v1/completions", json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert needle in err["message"] and set(err) == {"message", "type", "param", "code"}
    r = httpx.post(server.url + "/v1/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]


def test_the_official_client_sees_the_errors(client):
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="x")
    with pytest.raises(openai.BadRequestError, match="maximum context length"):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=10**6)


def test_full_queue_is_503(server):
    ae = server.async_engine
    old, ae.max_waiting = ae.max_waiting, 0
    try:
        r = httpx.post(server.url + "/v1/completions", json={"model": MODEL, "prompt": "x", "stream": True})
        assert r.status_code == 503 and "waiting" in r.json()["error"]["message"]
    finally:
        ae.max_waiting = old


def test_api_key(cache_dir, engine):
    srv = _server(cache_dir, api_key="sekret")
    try:
        assert httpx.get(srv.url + "/health").status_code == 200          # /health is open
        r = httpx.get(srv.url + "/v1/models")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(srv.url + "/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = openai.OpenAI(base_url=srv.url + "/v1", api_key="sekret", max_retries=0)
        assert ok.models.list().data[0].id == MODEL
    finally:
        srv.stop()


def test_disconnects_abort_and_free(server):
    """A client that goes away mid-stream, or while a non-streaming request runs, frees it."""
    body = {"model": MODEL, "prompt": "Count from one to a thousand:", "max_tokens": 400, "temperature": 0,
            "ignore_eos": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=dict(body, stream=True), timeout=60) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i >= 6:
                break                              # leave after a few tokens
    try:
        httpx.post(server.url + "/v1/completions", json=body, timeout=1.5)
    except httpx.TimeoutException:
        pass                                       # the client gave up: the server must notice
    m = _idle(server)
    assert m['tilec_requests_finished_total{reason="abort"}'] >= 2


def test_bounded_load(server):
    """16 concurrent clients for 20 s, a third of them leaving mid-stream: no 5xx, every
    request answered or cleanly refused, and the pool and the queue empty afterwards."""
    async def worker(i, stats, until):
        async with httpx.AsyncClient(timeout=120) as c:
            k = 0
            while time.monotonic() < until:
                k += 1
                leave = (i + k) % 3 == 0
                body = {"model": MODEL, "prompt": f"Request {i}.{k}: tell me something.", "max_tokens": 24,
                        "temperature": 0.7, "seed": i * 100 + k, "stream": True}
                try:
                    async with c.stream("POST", server.url + "/v1/completions", json=body) as r:
                        stats["status"].append(r.status_code)
                        if r.status_code != 200:
                            await r.aread()
                            continue
                        lines = 0
                        async for line in r.aiter_lines():
                            if line.startswith("data: "):
                                lines += 1
                                if line == "data: [DONE]":
                                    stats["done"] += 1
                                elif "error" in json.loads(line[6:]):
                                    stats["stream_errors"] += 1
                            if leave and lines >= 3:
                                stats["left"] += 1
                                break
                except httpx.HTTPError as e:
                    stats["errors"].append(repr(e))

    async def main():
        stats = {"status": [], "done": 0, "left": 0, "errors": [], "stream_errors": 0}
        until = time.monotonic() + 20
        await asyncio.gather(*[worker(i, stats, until) for i in range(16)])
        return stats
    s = asyncio.run(main())
    assert not s["errors"] and s["stream_errors"] == 0
    assert all(code in (200, 503) for code in s["status"]) and s["status"].count(200) >= 16
    assert s["done"] + s["left"] == s["status"].count(200) and s["left"] > 0 and s["done"] > 0
    m = _idle(server)
    assert m["tilec_kv_blocks_used"] == 0 and m["tilec_requests_waiting"] == 0
