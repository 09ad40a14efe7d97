"""The engine behind an asyncio front: the step loop runs in its own thread, so a slow step
never blocks the event loop that accepts connections.

    ae = AsyncEngine(LLMEngine(config), max_waiting=256)
    ae.start()
    async for out in ae.generate(prompt_ids, params):     # RequestOutput per step that advanced
        print(out.delta, end="")   # the text this step added
    await ae.shutdown(grace=5.0)

Only the engine thread touches the engine: requests and aborts reach it through a command
queue, outputs come back through each request's asyncio queue. A consumer that stops early
(a client that disconnects; the task is cancelled) aborts its request, which frees its KV
blocks. ``stats()`` is a snapshot the engine thread refreshes after every step.
"""
from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from dataclasses import dataclass, field

from .engine import LLMEngine, RequestError, RequestOutput

__all__ = ["AsyncEngine", "Overloaded", "ShuttingDown", "EngineStats"]


class Overloaded(RuntimeError):
    """The waiting queue is full; the caller should answer 503 and let the client retry."""


class ShuttingDown(RuntimeError):
    """The engine is stopping and takes no new requests."""


@dataclass
class EngineStats:
    running: int = 0
    waiting: int = 0
    blocks_used: int = 0            # blocks running requests hold
    blocks_total: int = 0
    cached_blocks: int = 0          # blocks the prefix cache holds (some also in use)
    totals: dict = field(default_factory=dict)
    prefix_hit_tokens: int = 0
    prefix_queried_tokens: int = 0
    preemptions: int = 0


class AsyncEngine:
    def __init__(self, engine: LLMEngine, max_waiting: int = 256, on_step=None, on_finish=None):
        self.engine = engine
        self.max_waiting = max_waiting
        self.on_step = on_step          # (engine, step seconds) after every step, engine thread
        self.on_finish = on_finish      # (RequestOutput, times dict) per finished request
        self._cmds: queue.Queue = queue.Queue()
        self._wake = threading.Event()
        self._queues: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._times: dict[int, dict] = {}
        self._thread: threading.Thread | None = None
        self._stop = False
        self._closing = False
        self._pending = 0               # submitted, not yet seen by the engine thread
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self.error: BaseException | None = None
        self._stats = EngineStats()
        self._refresh()

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="tilec-engine", daemon=True)
            self._thread.start()

    async def shutdown(self, grace: float = 5.0) -> None:
        """Take no new requests, let in-flight ones finish for up to ``grace`` seconds, abort
        the rest (their streams end with finish_reason "abort"), stop the thread."""
        self._closing = True
        t0 = time.monotonic()
        while self._queues and time.monotonic() - t0 < grace:
            await asyncio.sleep(0.05)
        self._cmds.put(("abort_all", None, None))
        self._wake.set()
        while self._queues and time.monotonic() - t0 < grace + 5.0:
            await asyncio.sleep(0.02)
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10.0)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.error is None

    def stats(self) -> EngineStats:
        return self._stats

    # -------------------------------------------------------------- requests
    def admissible(self, n: int = 1) -> None:
        """Raise Overloaded / ShuttingDown if ``n`` more requests would be refused now (an
        HTTP front checks before it commits to a streaming response)."""
        if self._closing or not self.alive:
            raise ShuttingDown("the server is shutting down" if self._closing else
                               f"the engine stopped: {self.error!r}")
        if self._stats.waiting + self._pending + n > self.max_waiting:
            raise Overloaded(f"{self._stats.waiting + self._pending} requests are waiting "
                             f"(the limit is {self.max_waiting}); retry later")

    async def generate(self, prompt_ids: list[int], params):
        """Outputs of one request as the engine produces them; cancelling the consumer aborts
        the request. Raises RequestError (bad request), Overloaded, ShuttingDown."""
        if self._closing or not self.alive:
            raise ShuttingDown("the server is shutting down" if self._closing else
                               f"the engine stopped: {self.error!r}")
        with self._lock:
            if self._stats.waiting + self._pending >= self.max_waiting:
                raise Overloaded(f"{self._stats.waiting + self._pending} requests are waiting "
                                 f"(the limit is {self.max_waiting}); retry later")
            self._pending += 1
        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue()
        ticket = next(self._ids)
        fut = loop.create_future()
        self._cmds.put(("add", ticket, (prompt_ids, params, loop, q, fut)))
        self._wake.set()
        rid = await fut                       # RequestError from add_request propagates here
        done = False
        try:
            while True:
                item = await q.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finished:
                    done = True
                    return
        finally:
            if not done:                      # the consumer went away: free its KV
                self._cmds.put(("abort", rid, None))
                self._wake.set()

    # -------------------------------------------------------------- the engine thread
    def _loop(self) -> None:
        eng = self.engine
        try:
            while not self._stop:
                self._commands()
                if not eng.has_unfinished():
                    self._refresh()
                    self._wake.wait(0.1)
                    self._wake.clear()
                    continue
                t0 = time.perf_counter()
                outs = eng.step()
                now = time.perf_counter()
                for o in outs:
                    self._deliver(o, now)
                self._refresh()
                if self.on_step:
                    self.on_step(eng, now - t0)
        except BaseException as e:            # a broken engine fails every request loudly
            self.error = e
            for rid in list(self._queues):
                self._send(rid, RuntimeError(f"engine failed: {type(e).__name__}: {e}"))
            raise

    def _commands(self) -> None:
        eng = self.engine
        while True:
            try:
                kind, a, b = self._cmds.get_nowait()
            except queue.Empty:
                return
            if kind == "add":
                prompt_ids, params, loop, q, fut = b
                with self._lock:
                    self._pending -= 1
                try:
                    rid = eng.add_request(prompt_ids, params)
                except (RequestError, ValueError) as e:
                    loop.call_soon_threadsafe(_resolve, fut, None, e)
                    continue
                self._queues[rid] = (loop, q)
                self._times[rid] = {"arrival": time.perf_counter(), "last": None, "first": None}
                loop.call_soon_threadsafe(_resolve, fut, rid, None)
            elif kind == "abort":         # the consumer left: nobody to deliver to
                seq = eng.seqs.get(a)
                self._queues.pop(a, None)
                times = self._times.pop(a, None)
                if seq is not None and eng.abort(a) and self.on_finish and times is not None:
                    self.on_finish(eng.output(seq), times)
            elif kind == "abort_all":
                for rid in list(self._queues):
                    seq = eng.seqs.get(rid)
                    if seq is not None and eng.abort(rid):
                        self._deliver(eng.output(seq), time.perf_counter())

    def _deliver(self, out: RequestOutput, now: float) -> None:
        t = self._times.get(out.request_id)
        if t is not None:
            if t["first"] is None:
                t["first"] = now
            t.setdefault("token_times", []).append((now, len(out.token_ids)))
        self._send(out.request_id, out)
        if out.finished:
            self._queues.pop(out.request_id, None)
            times = self._times.pop(out.request_id, None)
            if self.on_finish and times is not None:
                self.on_finish(out, times)

    def _send(self, rid: int, item) -> None:
        entry = self._queues.get(rid)
        if entry is not None:
            loop, q = entry
            try:
                loop.call_soon_threadsafe(q.put_nowait, item)
            except RuntimeError:               # the loop is closed: nobody is listening
                pass

    def _refresh(self) -> None:
        eng = self.engine
        pc = eng.prefix_cache
        self._stats = EngineStats(
            running=len(eng.scheduler.running), waiting=len(eng.scheduler.waiting),
            blocks_used=len({b for s in eng.scheduler.running for b in s.block_ids}),
            blocks_total=eng.pool.num_blocks, cached_blocks=pc.num_nodes if pc else 0,
            totals=dict(eng.totals), prefix_hit_tokens=pc.hit_tokens if pc else 0,
            prefix_queried_tokens=pc.queried_tokens if pc else 0, preemptions=eng.scheduler.num_preemptions)


def _resolve(fut: asyncio.Future, value, error) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(value)
