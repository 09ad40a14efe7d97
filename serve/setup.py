"""The artifacts a model needs, compiled and tuned on first use.

``prepare_artifacts`` compiles into the artifact directory every library variant the model
can use on its backend (its dtype; meta_attention for its GQA group and head dim; the layer
kernels that fit its sizes), then, unless the directory already holds a table tuned for this
model, runs ``tilec tune`` for its shapes (for the native backend the generated-torch GEMMs
are compiled too, and tuning picks per shape whichever backend is faster). A second start finds everything cached and only
opens the directory. Progress goes to stderr.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from runtime.artifacts import ArtifactError, open_artifacts

__all__ = ["SetupError", "model_jobs", "prepare_artifacts", "model_shapes"]

_LAYER_KERNELS = ("smooth_gemm_t", "meta_attention", "rmsnorm", "add_rmsnorm", "silu_mul", "rope",
                  "embed", "kv_write", "bias_add")
TUNE_BUDGET = 64


class SetupError(RuntimeError):
    """The artifacts cannot be built for this model and backend; one line."""


def model_shapes(cfg):
    from tilec.models import ModelShapes
    return ModelShapes(cfg.name, cfg.hidden_size, cfg.intermediate_size, cfg.num_heads,
                       cfg.num_kv_heads, cfg.head_dim, 1, cfg.num_layers)


def model_jobs(cfg, target: str, backend: str, dtype: str) -> list:
    """The library compile jobs the model can use (tilec.cache.Job)."""
    from tilec import cache
    kernels = list(_LAYER_KERNELS)
    if not cfg.qkv_bias:
        kernels.remove("bias_add")
    out = []
    for j in cache.library_jobs([(target, backend)], kernels):
        b = j.binding_dict
        if b.get("DT") != dtype:
            continue
        if j.kernel == "meta_attention" and (b["G"] != cfg.group or b["D"] != cfg.head_dim):
            continue
        if j.kernel in ("rope", "kv_write") and b["D"] != cfg.head_dim:
            continue
        if j.kernel in ("rmsnorm", "add_rmsnorm") and b["BN"] < cfg.hidden_size:
            continue
        out.append(j)
    return out


def _say(msg: str) -> None:
    print(f"tilec: {msg}", file=sys.stderr, flush=True)


def prepare_artifacts(d: Path, cfg, backend: str, target: str, dtype: str, tune: bool = True,
                      progress=None):
    """Compile (cached) and tune (once per model) what ``cfg`` needs into ``d``; the opened
    artifacts (runtime.artifacts.Artifacts) for ``backend``."""
    from tilec import cache
    entry_backend = {"ascend-sim": "ascend", "reference": "reference"}.get(backend, backend)
    jobs = model_jobs(cfg, target, entry_backend, dtype)
    kinds = {j.kernel for j in jobs}
    if backend == "native" and tune:
        # the generated-torch GEMMs too: tuning picks, per linear shape and token bucket, whichever
        # backend's variant is faster (torch's BLAS wins some wide prefill buckets)
        jobs += [j for j in model_jobs(cfg, target, "cpu", dtype) if j.kernel == "smooth_gemm_t"]
    missing = [k for k in ("smooth_gemm_t", "meta_attention", "rmsnorm", "add_rmsnorm", "silu_mul", "rope",
                           "embed", "kv_write") if k not in kinds]
    if missing:
        raise SetupError(f"the kernel library has no {backend} variant of {', '.join(missing)} for this model "
                         f"(DT={dtype}, G={cfg.group}, D={cfg.head_dim}, hidden {cfg.hidden_size}); "
                         f"extend tilec/kernels/variants.json")
    t0 = time.perf_counter()
    from tqdm import tqdm
    bar = tqdm(total=len(jobs), desc="compile", unit="variant", file=sys.stderr,
               disable=(not sys.stderr.isatty()) if progress is None else not progress)
    try:
        stats = cache.compile_jobs(jobs, d, workers=min(len(jobs), os.cpu_count() or 1),
                                   progress=lambda r: bar.update(1))
    except cache.CacheError as e:
        raise SetupError(str(e)) from None
    finally:
        bar.close()
    if stats.failed:
        raise SetupError(f"compiling the artifacts failed: {stats.errors[0].splitlines()[0]}")
    if stats.compiled:
        _say(f"compiled {stats.compiled} variants ({stats.hits} cached) into {d} in "
             f"{time.perf_counter() - t0:.1f}s")
    try:
        arts = open_artifacts(d, backend=backend, target=target)
    except ArtifactError as e:
        raise SetupError(str(e)) from None
    tuned_for = ((arts.tuning or {}).get("model") or {}).get("name")
    if tune and backend in ("cpu", "native") and tuned_for != cfg.name:
        from tilec.tune import TuneError
        from tilec.tune import tune as run_tune
        t1 = time.perf_counter()
        _say(f"tuning {d} for {cfg.name} ({dtype}, M up to {TUNE_BUDGET}; once per model)")
        try:
            run_tune(d, target, model_shapes(cfg), TUNE_BUDGET, dtype, reps=2, progress=progress,
                    backend=None if backend == "native" else backend)
        except TuneError as e:
            raise SetupError(str(e)) from None
        _say(f"tuned in {time.perf_counter() - t1:.1f}s")
        arts = open_artifacts(d, backend=backend, target=target)
    return arts
