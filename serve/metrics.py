"""Prometheus metrics of the server (``prometheus_client``), one registry per server.

Gauges (sampled on scrape from the engine thread's snapshot): requests running and waiting,
KV blocks in use and in all, blocks the prefix cache holds. Counters: prompt and generated
tokens, prefix-cache hits and lookups in tokens, preemptions, draft tokens proposed and
accepted, finished requests by reason, refused requests by HTTP status. Histograms: time to
first token, inter-token latency, end-to-end latency, queue time (arrival to first
scheduling), and tokens per step by stage kind (prefill, decode, verify).
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

__all__ = ["ServerMetrics"]

_LAT = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_TOK = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class _EngineCollector:
    """Reads the engine's latest snapshot at scrape time (no lock on the hot path)."""

    def __init__(self, async_engine):
        self.ae = async_engine

    def collect(self):
        s = self.ae.stats()
        for name, doc, v in (
                ("tilec_requests_running", "Requests in the running batch", s.running),
                ("tilec_requests_waiting", "Requests waiting to be scheduled", s.waiting),
                ("tilec_kv_blocks_used", "KV blocks held by running requests", s.blocks_used),
                ("tilec_kv_blocks_total", "KV blocks in the pool", s.blocks_total),
                ("tilec_kv_blocks_cached", "KV blocks held by the prefix cache", s.cached_blocks)):
            yield GaugeMetricFamily(name, doc, value=v)
        t = s.totals
        for name, doc, v in (
                ("tilec_prefix_cache_hit_tokens", "Prompt tokens served from the prefix cache", s.prefix_hit_tokens),
                ("tilec_prefix_cache_queried_tokens", "Prompt tokens looked up in the prefix cache",
                 s.prefix_queried_tokens),
                ("tilec_preemptions", "Requests preempted (KV freed, recomputed later)", s.preemptions),
                ("tilec_spec_draft_tokens", "Draft tokens proposed for verification", t.get("drafted", 0)),
                ("tilec_spec_accepted_tokens", "Draft tokens accepted", t.get("accepted", 0)),
                ("tilec_engine_steps", "Engine steps", t.get("steps", 0))):
            yield CounterMetricFamily(name, doc, value=v)


class ServerMetrics:
    def __init__(self, async_engine):
        r = self.registry = CollectorRegistry()
        r.register(_EngineCollector(async_engine))
        self.prompt_tokens = Counter("tilec_prompt_tokens", "Prompt tokens of finished requests", registry=r)
        self.generation_tokens = Counter("tilec_generation_tokens", "Generated tokens", registry=r)
        self.finished = Counter("tilec_requests_finished", "Finished requests", ["reason"], registry=r)
        self.refused = Counter("tilec_requests_refused", "Requests refused", ["status"], registry=r)
        self.ttft = Histogram("tilec_time_to_first_token_seconds", "Time to first token", buckets=_LAT, registry=r)
        self.itl = Histogram("tilec_inter_token_latency_seconds", "Time between tokens", buckets=_LAT, registry=r)
        self.e2e = Histogram("tilec_e2e_request_latency_seconds", "Arrival to last token", buckets=_LAT, registry=r)
        self.queue = Histogram("tilec_queue_time_seconds", "Arrival to first scheduling", buckets=_LAT, registry=r)
        self.step_tokens = Histogram("tilec_step_tokens", "Tokens per engine step by stage kind", ["kind"],
                                     buckets=_TOK, registry=r)

    def on_step(self, engine, seconds: float) -> None:
        st = engine.last_step
        for kind, n in (("prefill", st.prefill_tokens), ("decode", st.decode_tokens), ("verify", st.verify_tokens)):
            if n:
                self.step_tokens.labels(kind).observe(n)

    def on_finish(self, out, times: dict) -> None:
        m = out.metrics
        self.prompt_tokens.inc(len(out.prompt_token_ids))
        self.generation_tokens.inc(len(out.token_ids))
        self.finished.labels(out.finish_reason or "unknown").inc()
        arrival = m.get("arrival")
        if arrival is not None:
            if m.get("first_token") is not None:
                self.ttft.observe(m["first_token"] - arrival)
            if m.get("scheduled") is not None:
                self.queue.observe(m["scheduled"] - arrival)
            end = (times.get("token_times") or [(None, 0)])[-1][0]
            if end is not None:
                self.e2e.observe(end - arrival)
        prev = None
        for t, n in times.get("token_times") or []:   # (when, tokens so far) per delivered step
            if prev is not None and n > prev[1]:
                gap = (t - prev[0]) / (n - prev[1])
                for _ in range(n - prev[1]):
                    self.itl.observe(gap)
            prev = (t, n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
