"""The serving engine: a Llama-family model generating text on compiled artifacts.

    from serve import LLM, SamplingParams
    llm = LLM()                                   # SmolLM2-135M-Instruct, cpu backend
    out = llm.generate(["The capital of France is"], SamplingParams(max_tokens=16))
    print(out[0].text)

One concept per module (nano-vllm's layout): config, sampling_params, sequence, block_pool,
scheduler, model_files (GGUF / Hugging Face loading and the weight cache), tokenizer, llama
(the model on the runtime), model_runner (step inputs, KV cache, sampling), sampler, engine
(the step loop), llm (the Python API), setup (compiling and tuning the artifacts a model needs).
"""
from .config import EngineConfig
from .sampling_params import SamplingParams

__all__ = ["LLM", "EngineConfig", "RequestOutput", "SamplingParams"]


def __getattr__(name):      # the engine (torch, the runtime) loads only when asked for
    if name in ("LLM", "RequestOutput"):
        from . import llm
        return getattr(llm, name)
    raise AttributeError(name)
