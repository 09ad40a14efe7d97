"""The Python API: ``LLM(model, artifacts=..., backend=...).generate(prompts, params)``."""
from __future__ import annotations

import sys


from .config import EngineConfig
from .engine import LLMEngine, RequestError, RequestOutput
from .sampling_params import SamplingParams

__all__ = ["LLM", "RequestOutput", "RequestError"]


class LLM:
    """Offline generation on compiled artifacts (compiled and tuned on first use).

        llm = LLM()                                     # SmolLM2-135M-Instruct, native (C++) or cpu backend
        outs = llm.generate(["Hello"], SamplingParams(max_tokens=32))
        outs = llm.chat([[{"role": "user", "content": "Hi!"}]])
    """

    def __init__(self, model: str | None = None, artifacts: str | None = None, backend: str | None = None, **kw):
        self.engine = LLMEngine(EngineConfig(model=model, artifacts=artifacts, backend=backend, **kw))
        self.tokenizer = self.engine.tokenizer

    def generate(self, prompts, params: SamplingParams | list | None = None, stream=None) -> list[RequestOutput]:
        """Generate for every prompt (text or token ids) at once, batched by the scheduler.
        ``params`` is one SamplingParams for all or a list, one per prompt; ``stream(out)`` is
        called with every step's output of every request."""
        single = isinstance(prompts, str) or (prompts and isinstance(prompts[0], int))
        prompts = [prompts] if single else list(prompts)
        plist = params if isinstance(params, list) else [params or SamplingParams()] * len(prompts)
        if len(plist) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(plist)} sampling parameters")
        eng = self.engine
        ids = [eng.add_request(p, sp) for p, sp in zip(prompts, plist)]
        final: dict[int, RequestOutput] = {}
        while eng.has_unfinished():
            for out in eng.step():
                if stream is not None:
                    stream(out)
                if out.finished:
                    final[out.request_id] = out
        return [final[i] for i in ids]

    def chat(self, conversations, params=None, stream=None) -> list[RequestOutput]:
        """Like generate, for conversations (lists of {"role", "content"}) rendered with the
        model's chat template."""
        if conversations and isinstance(conversations[0], dict):
            conversations = [conversations]
        prompts = [self.tokenizer.encode(self.tokenizer.apply_chat_template(c), add_special_tokens=False)
                   for c in conversations]
        return self.generate(prompts, params, stream)


def stream_to(out_file=sys.stdout):
    """A ``stream`` callback printing each delta as it arrives (one request at a time)."""
    def cb(out: RequestOutput):
        if out.delta:
            out_file.write(out.delta)
            out_file.flush()
    return cb


def throughput(outs: list[RequestOutput], seconds: float) -> str:
    n = sum(len(o.token_ids) for o in outs)
    return f"{n} tokens in {seconds:.2f}s = {n / seconds:.1f} tokens/s"



