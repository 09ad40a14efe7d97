"""Engine settings, with the defaults a user gets from `LLM()` and `tilec generate`."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EngineConfig", "default_cache_dir", "BACKEND_TARGETS"]

# engine backend -> (artifact target, what it runs on)
BACKEND_TARGETS = {"native": "cpu", "cpu": "cpu", "triton": "h100", "ascend-sim": "ascend910b2", "reference": "cpu"}


def default_backend() -> str:
    """native (C++) where a C++ compiler is here, else cpu (generated torch); a CUDA GPU's is
    triton."""
    try:
        import torch
        if torch.cuda.is_available():
            return "triton"
    except ImportError:       # pragma: no cover
        pass
    from codegen.native import available
    return "native" if available()[0] else "cpu"


def default_cache_dir() -> Path:
    """Where dequantised weights and compiled artifacts are kept ($TILEC_CACHE or
    ~/.cache/tilec)."""
    env = os.environ.get("TILEC_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "tilec"


@dataclass
class EngineConfig:
    model: str | None = None          # GGUF file or Hugging Face directory; None: SmolLM2-135M-Instruct
    artifacts: str | None = None      # artifact directory; None: <cache>/artifacts/<backend>-<dtype>
    backend: str | None = None        # native | cpu | triton | ascend-sim | reference (None: default_backend())
    dtype: str | None = None          # serving dtype: f32 on cpu, bf16 on a GPU (default)
    threads: int | None = None        # torch threads on the host (None: all cores)
    block_size: int = 16              # tokens per KV block
    kv_cache_memory: int = 512 << 20  # bytes for the paged K and V caches of all layers
    num_kv_blocks: int | None = None  # overrides kv_cache_memory
    max_num_batched_tokens: int = 512 # token budget of one step (decodes + prefill chunks)
    max_num_seqs: int = 64            # running sequences at most
    max_model_len: int | None = None  # None: the model's context length
    policy: str = "hybrid"            # hybrid | prefill-first | decode-first (serve/scheduler.py)
    prefix_caching: bool = True       # reuse cached KV of shared prompt prefixes (radix tree)
    speculative: str | None = None    # None | "chain" | "tree": prompt-lookup drafts, verified in the batch
    spec_max_draft: int = 4           # draft tokens per verify at most
    spec_branches: int = 2            # continuations in a tree draft
    tune: bool = True                 # tune the GEMM/attention tables on first use
    progress: bool | None = None      # progress bars (None: when stderr is a terminal)
    cache_dir: str | None = None

    def __post_init__(self):
        if self.backend is None:
            self.backend = default_backend()
        if self.backend not in BACKEND_TARGETS:
            raise ValueError(f"backend must be one of {', '.join(BACKEND_TARGETS)}, got {self.backend!r}")
        if self.dtype not in (None, "f32", "f16", "bf16"):
            raise ValueError(f"dtype must be f32, f16 or bf16, got {self.dtype!r}")
        for name in ("block_size", "max_num_batched_tokens", "max_num_seqs", "kv_cache_memory"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.num_kv_blocks is not None and self.num_kv_blocks < 1:
            raise ValueError(f"num_kv_blocks must be >= 1, got {self.num_kv_blocks}")
        if self.policy not in ("hybrid", "prefill-first", "decode-first"):
            raise ValueError(f"policy must be hybrid, prefill-first or decode-first, got {self.policy!r}")
        if self.speculative not in (None, "chain", "tree"):
            raise ValueError(f"speculative must be None, 'chain' or 'tree', got {self.speculative!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")

    @property
    def target(self) -> str:
        return BACKEND_TARGETS[self.backend]

    @property
    def serving_dtype(self) -> str:
        if self.dtype:
            return self.dtype
        return "f32" if self.backend in ("native", "cpu", "reference") else "f16" if self.backend == "ascend-sim" else "bf16"

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else default_cache_dir()
