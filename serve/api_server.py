"""The OpenAI-compatible HTTP API (FastAPI): `tilec serve`.

    POST /v1/completions, POST /v1/chat/completions   (stream: true -> server-sent events,
         ending in "data: [DONE]"; stream_options.include_usage adds a usage chunk)
    GET  /v1/models, GET /health, GET /metrics (Prometheus)

Errors use OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``: 400 for bad
fields and for a prompt plus max_tokens over the context (naming both counts), 401 for a
missing or wrong API key (every endpoint but /health, when the server has one), 404 for an
unknown model, 503 when the waiting queue is full or the server is shutting down. A client
that disconnects aborts its request and frees its KV blocks, streaming or not.
"""
from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any, Literal, Optional, Union

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from .async_engine import AsyncEngine, Overloaded, ShuttingDown
from .engine import RequestError
from .metrics import ServerMetrics
from .sampling_params import SamplingParams
from .tokenizer import TokenizerError

__all__ = ["build_app"]


# ------------------------------------------------------------------------- request bodies

class _Common(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    max_tokens: Optional[int] = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0)                      # extension (vLLM's)
    n: int = 1
    stream: bool = False
    stream_options: Optional[dict] = None
    stop: Optional[Union[str, list[str]]] = None
    stop_token_ids: Optional[list[int]] = None               # extension
    seed: Optional[int] = None
    ignore_eos: bool = False                                 # extension
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: Optional[Any] = None
    user: Optional[str] = None


class CompletionRequest(_Common):
    prompt: Union[str, list[str], list[int], list[list[int]]]
    echo: bool = False
    suffix: Optional[str] = None
    best_of: Optional[int] = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: Union[str, list[dict], None] = None


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: Optional[int] = Field(default=None, ge=1)
    add_generation_prompt: bool = True


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type_: str | None = None):
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type_ or {400: "invalid_request_error", 401: "authentication_error",
                              404: "not_found_error", 503: "service_unavailable"}.get(status, "server_error")


def _error(status: int, message: str, param=None, code=None, type_=None) -> JSONResponse:
    e = APIError(status, message, param, code, type_)
    return JSONResponse({"error": {"message": e.message, "type": e.type, "param": e.param, "code": e.code}},
                        status_code=status)


# ------------------------------------------------------------------------- the app

def build_app(ae: AsyncEngine, served_model_name: str, api_key: str | None = None,
              max_model_len: int | None = None, lifespan=None) -> FastAPI:
    app = FastAPI(title="tilec", docs_url=None, redoc_url=None, lifespan=lifespan)
    metrics = ServerMetrics(ae)
    ae.on_step, ae.on_finish = metrics.on_step, metrics.on_finish
    eng = ae.engine
    tok = eng.tokenizer
    ctx = max_model_len or eng.max_model_len
    created = int(time.time())
    app.state.metrics = metrics
    app.state.engine = ae

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError):
        metrics.refused.labels(str(e.status)).inc()
        return _error(e.status, e.message, e.param, e.code, e.type)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        err = e.errors()[0] if e.errors() else {}
        loc = [str(x) for x in err.get("loc", []) if x != "body"]
        msg = err.get("msg", "invalid request")
        if err.get("type") == "json_invalid":
            msg = "the request body is not valid JSON"
        metrics.refused.labels("400").inc()
        return _error(400, f"{'.'.join(loc) + ': ' if loc else ''}{msg}", ".".join(loc) or None)

    async def _auth(request: Request):
        if api_key:
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                raise APIError(401, "missing or wrong API key (send 'Authorization: Bearer KEY')",
                               code="invalid_api_key")
    keyed = [Depends(_auth)]        # every endpoint but /health

    @app.get("/health")
    async def health():
        if not ae.alive:
            return _error(503, f"the engine is not running: {ae.error!r}")
        return {"status": "ok"}

    @app.get("/metrics", dependencies=keyed)
    async def prom():
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models", dependencies=keyed)
    async def models():
        return {"object": "list", "data": [{"id": served_model_name, "object": "model", "created": created,
                                            "owned_by": "tilec", "max_model_len": ctx}]}

    def _params(req: _Common, max_tokens: int | None) -> SamplingParams:
        if req.model != served_model_name:
            raise APIError(404, f"the model '{req.model}' does not exist; this server serves "
                                f"'{served_model_name}'", "model", "model_not_found")
        if req.n != 1:
            raise APIError(400, "n must be 1 (one choice per request)", "n")
        if req.logprobs not in (None, False, 0):
            raise APIError(400, "logprobs are not supported", "logprobs")
        if req.presence_penalty or req.frequency_penalty:
            raise APIError(400, "presence_penalty and frequency_penalty are not supported (send 0)",
                           "presence_penalty" if req.presence_penalty else "frequency_penalty")
        stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        try:
            return SamplingParams(max_tokens=max_tokens or 16, temperature=req.temperature, top_k=req.top_k,
                                  top_p=req.top_p, seed=req.seed, stop=stop,
                                  stop_token_ids=req.stop_token_ids or [], ignore_eos=req.ignore_eos)
        except ValueError as e:
            raise APIError(400, str(e).removeprefix("sampling: "), str(e).split()[1] if " " in str(e) else None)

    def _check_len(ids: list[int], sp: SamplingParams, param: str) -> None:
        if not ids:
            raise APIError(400, "the prompt is empty", param)
        if len(ids) + sp.max_tokens > ctx:
            raise APIError(400, f"this model's maximum context length is {ctx} tokens; the prompt has "
                                f"{len(ids)} tokens and max_tokens is {sp.max_tokens} ({len(ids) + sp.max_tokens} "
                                f"in all); shorten the prompt or lower max_tokens", "max_tokens",
                           "context_length_exceeded")
        bad = next((t for t in ids if not 0 <= t < eng.model.config.vocab_size), None)
        if bad is not None:
            raise APIError(400, f"token id {bad} is outside the vocabulary", param)

    async def _final(ids, sp, request):
        try:
            gen = ae.generate(ids, sp)
            last = None
            stop_watch = asyncio.Event()

            async def watch():
                while not stop_watch.is_set():
                    if await request.is_disconnected():
                        return True
                    await asyncio.sleep(0.25)
                return False
            watcher = asyncio.create_task(watch())
            try:
                async for out in gen:
                    last = out
                    if watcher.done() and watcher.result():
                        break                        # the client left: closing gen aborts
            finally:
                stop_watch.set()
                await gen.aclose()
                watcher.cancel()
            return last
        except (Overloaded, ShuttingDown) as e:
            raise APIError(503, str(e))
        except RequestError as e:
            raise APIError(400, str(e))

    def _admissible(n: int) -> None:
        try:
            ae.admissible(n)
        except (Overloaded, ShuttingDown) as e:
            raise APIError(503, str(e))

    def _usage(p: int, c: int) -> dict:
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    # ------------------------------------------------------------- completions
    @app.post("/v1/completions", dependencies=keyed)
    async def completions(req: CompletionRequest, request: Request):
        sp = _params(req, req.max_tokens)
        if req.echo or req.suffix or (req.best_of not in (None, 1)):
            raise APIError(400, "echo, suffix and best_of are not supported", "echo")
        p = req.prompt
        if isinstance(p, str):
            prompts = [tok.encode(p)]
        elif p and all(isinstance(x, str) for x in p):
            prompts = [tok.encode(x) for x in p]
        elif p and all(isinstance(x, int) for x in p):
            prompts = [list(p)]
        elif p and all(isinstance(x, list) for x in p):
            prompts = [list(x) for x in p]
        else:
            raise APIError(400, "prompt must be a string, a list of strings, or token ids", "prompt")
        for ids in prompts:
            _check_len(ids, sp, "prompt")
        rid = f"cmpl-{secrets.token_hex(12)}"
        _admissible(len(prompts))
        if req.stream:
            return _sse(_stream(rid, "text_completion", prompts, sp, req, chat=False))
        outs = await asyncio.gather(*[_final(ids, sp, request) for ids in prompts])
        if any(o is None for o in outs):
            return Response(status_code=499)
        return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": served_model_name,
                "choices": [{"index": i, "text": o.text, "logprobs": None, "finish_reason": o.finish_reason}
                            for i, o in enumerate(outs)],
                "usage": _usage(sum(len(x) for x in prompts), sum(len(o.token_ids) for o in outs))}

    # ------------------------------------------------------------- chat
    @app.post("/v1/chat/completions", dependencies=keyed)
    async def chat(req: ChatRequest, request: Request):
        sp = _params(req, req.max_completion_tokens or req.max_tokens)
        msgs = []
        for m in req.messages:
            c = m.content
            if isinstance(c, list):
                if not all(isinstance(x, dict) and x.get("type") == "text" for x in c):
                    raise APIError(400, "only text content parts are supported", "messages")
                c = "".join(str(x.get("text", "")) for x in c)
            msgs.append({"role": m.role, "content": c or ""})
        try:
            ids = tok.encode(tok.apply_chat_template(msgs, req.add_generation_prompt), add_special_tokens=False)
        except TokenizerError as e:
            raise APIError(400, str(e), "messages")
        _check_len(ids, sp, "messages")
        rid = f"chatcmpl-{secrets.token_hex(12)}"
        _admissible(1)
        if req.stream:
            return _sse(_stream(rid, "chat.completion.chunk", [ids], sp, req, chat=True))
        o = await _final(ids, sp, request)
        if o is None:
            return Response(status_code=499)
        return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": served_model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": o.text},
                             "logprobs": None, "finish_reason": o.finish_reason}],
                "usage": _usage(len(ids), len(o.token_ids))}

    # ------------------------------------------------------------- streaming
    def _sse(gen) -> StreamingResponse:
        return StreamingResponse(gen, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def _stream(rid, obj, prompts, sp, req: _Common, chat: bool):
        """SSE events for every prompt's deltas (interleaved as they come), then usage, then
        [DONE]. Starting the requests may fail (queue full): that is the first and only event."""
        include_usage = bool((req.stream_options or {}).get("include_usage"))
        created = int(time.time())
        merged: asyncio.Queue = asyncio.Queue()
        gens = []

        def chunk(i, delta, finish):
            if chat:
                d = {"role": "assistant", "content": delta} if delta is None else {"content": delta}
                if delta is None:
                    d["content"] = ""
                choice = {"index": i, "delta": d, "logprobs": None, "finish_reason": finish}
            else:
                choice = {"index": i, "text": delta or "", "logprobs": None, "finish_reason": finish}
            return "data: " + json.dumps({"id": rid, "object": obj, "created": created, "model": served_model_name,
                                          "choices": [choice]}) + "\n\n"

        async def pump(i, gen):
            try:
                async for out in gen:
                    await merged.put((i, out))
            except Exception as e:           # noqa: BLE001  (reported in the stream)
                await merged.put((i, e))
            finally:
                await merged.put((i, None))

        tasks = []
        try:
            for ids in prompts:
                gens.append(ae.generate(ids, sp))
            if chat:
                yield chunk(0, None, None)
            tasks = [asyncio.create_task(pump(i, g)) for i, g in enumerate(gens)]
            open_ = len(gens)
            used = [0] * len(gens)
            while open_:
                i, out = await merged.get()
                if out is None:
                    open_ -= 1
                    continue
                if isinstance(out, Exception):
                    if isinstance(out, (Overloaded, ShuttingDown)):
                        msg, status = str(out), 503
                    elif isinstance(out, RequestError):
                        msg, status = str(out), 400
                    else:
                        msg, status = f"{type(out).__name__}: {out}", 500
                    metrics.refused.labels(str(status)).inc()
                    yield "data: " + json.dumps({"error": {"message": msg, "type": APIError(status, "").type,
                                                           "param": None, "code": status}}) + "\n\n"
                    continue
                used[i] = len(out.token_ids)
                if out.delta or out.finished:
                    yield chunk(i, out.delta, out.finish_reason if out.finished else None)
            if include_usage:
                yield "data: " + json.dumps({"id": rid, "object": obj, "created": created, "model": served_model_name,
                                             "choices": [], "usage": _usage(sum(len(x) for x in prompts),
                                                                            sum(used))}) + "\n\n"
            yield "data: [DONE]\n\n"
        finally:
            # a disconnect cancels this generator, and nothing may be awaited here any more:
            # cancelling the pumps raises inside each request's generator, whose own cleanup
            # (synchronous) tells the engine to abort it and free its KV blocks
            for t in tasks:
                t.cancel()

    return app
