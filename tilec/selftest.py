"""``tilec selftest``: every library kernel on a standard case set against independent
numpy/torch oracles. Backends plug in through ``RUNNERS``: a runner takes a specialised kernel
and a dict of numpy arrays/scalars and writes the outputs into those arrays."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from tilec.compiler import compile_file
from tilec.ir import dtypes as D
from tilec.kernels import find_kernel
from tilec.testing import oracle as O
from tilec.testing.attention_cases import make_standard_cases


# backend name -> module whose ``run(kernel, args)`` executes a kernel on numpy arrays in place
RUNNERS: dict[str, str] = {"reference": "codegen.reference", "cpu": "codegen.cpu", "native": "codegen.native",
                           "triton": "codegen.triton", "ascend-sim": "codegen.ascend.sim",
                           "ascendc-cpu": "codegen.ascend.ascendc_cpu"}


def runner(backend: str) -> Callable:
    import importlib
    if backend not in RUNNERS:
        raise KeyError(f"unknown backend '{backend}'; known: {', '.join(RUNNERS)}")
    try:
        mod = importlib.import_module(RUNNERS[backend])
    except ModuleNotFoundError as e:
        raise KeyError(f"backend '{backend}' is not available in this build ({e})") from None
    return mod.run


@dataclass
class Result:
    kernel: str
    case: str
    max_err: float
    ok: bool
    seconds: float
    note: str = ""
    skipped: bool = False           # not run here; ``note`` says why (not a failure)


_SPEC_CACHE: dict = {}


def specialise(kernel: str, **binding):
    key = (kernel, tuple(sorted(binding.items())))
    if key not in _SPEC_CACHE:
        _SPEC_CACHE[key] = compile_file(find_kernel(kernel), kernel, binding)[kernel]
    return _SPEC_CACHE[key]


def _rand(rng, shape, dt):
    return rng.standard_normal(shape).astype(np.float32).astype(D.to_numpy(dt))


def _err(actual, expected, dtype):
    atol, rtol = O.tolerance(dtype)
    a, e = O.to_f32(actual), np.asarray(expected, np.float32)
    diff = np.abs(a - e)
    ok = bool(np.all(np.isfinite(a)) and np.all(diff <= atol + rtol * np.abs(e)))
    return float(diff.max()) if diff.size else 0.0, ok


def _case(kernel: str, label: str, run_, kern, args: dict, out, expected, dtype) -> Result:
    """Run one case and check ``out`` against the oracle (``expected()``, computed after the
    run); a backend that cannot run the case fails it, with why."""
    t0 = time.perf_counter()
    try:
        run_(kern, args)
    except Exception as e:
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        return Result(kernel, label, float("nan"), False, time.perf_counter() - t0, why)
    seconds = time.perf_counter() - t0
    err, ok = _err(out, expected(), dtype)
    return Result(kernel, label, err, ok, seconds)


def gemm_cases(quick: bool):
    ms = [1, 7, 33, 64] if quick else [1, 7, 16, 33, 64, 100]
    for dt in ("f16", "bf16"):
        for trans in (False, True):
            for m in ms:
                # K and N are fixed per model: one case specialises them, the rest stay runtime
                yield dt, trans, m, 96, 80, {}
            if not quick:
                yield dt, trans, 45, 64, 64, {"K": 64, "N": 64}


def run_gemm(backend, quick, rng):
    run_ = runner(backend)
    for dt, trans, m, k, n, extra in gemm_cases(quick):
        name = "smooth_gemm_t" if trans else "smooth_gemm"
        kern = specialise(name, DT=dt, BM=32, BN=32, BK=32, **extra)
        a = _rand(rng, (m, k), dt)
        b = _rand(rng, (n, k) if trans else (k, n), dt)
        c = np.full((m, n), np.nan, D.to_numpy(dt))
        label = f"{dt} M={m} N={n} K={k}{' (N,K static)' if extra else ''}"
        yield _case(name, label, run_, kern, {"A": a, ("W" if trans else "B"): b, "C": c}, c,
                    lambda: O.gemm_oracle(a, b, trans_b=trans), dt)


def run_layers(backend, quick, rng):
    run_ = runner(backend)
    for dt in ("f16", "bf16"):
        for m, n in ((5, 96), (33, 576)):
            x, w = _rand(rng, (m, n), dt), _rand(rng, (n,), dt)
            y = np.full((m, n), np.nan, D.to_numpy(dt))
            kern = specialise("rmsnorm", DT=dt, BM=4, BN=1024 if n > 128 else 128)
            yield _case("rmsnorm", f"{dt} M={m} N={n}", run_, kern,
                        {"X": x, "W": w, "Y": y, "eps": 1e-6}, y,
                        lambda: O.rmsnorm_oracle(x, w, 1e-6), dt)
        for m, n in ((3, 100), (40, 300)):
            g, u = _rand(rng, (m, n), dt), _rand(rng, (m, n), dt)
            y = np.full((m, n), np.nan, D.to_numpy(dt))
            kern = specialise("silu_mul", DT=dt)
            yield _case("silu_mul", f"{dt} M={m} N={n}", run_, kern, {"G": g, "U": u, "Y": y}, y,
                        lambda: O.silu_mul_oracle(g, u), dt)
        for t, h, d in ((1, 2, 64), (19, 3, 128)):
            x = _rand(rng, (t, h, d), dt)
            pos = rng.integers(0, 300, size=t).astype(np.int32)
            cos, sin = O.rope_cache(512, d)
            y = np.full((t, h, d), np.nan, D.to_numpy(dt))
            kern = specialise("rope", DT=dt, D=d, HALF=d // 2)
            yield _case("rope", f"{dt} T={t} H={h} D={d}", run_, kern,
                        {"X": x, "P": pos, "COS": cos, "SIN": sin, "Y": y}, y,
                        lambda: O.rope_oracle(x, pos, cos, sin), dt)


def attention_args(case, bm: int, num_cores: int = 4):
    from runtime.plan import plan
    p = plan(case.stages, case.num_kv_heads, case.group, bm, num_cores)
    out = np.full(case.q.shape, np.nan, case.q.dtype)
    return p, {"Q": case.q, "KC": case.k_cache, "VC": case.v_cache, "O": out,
               "BT": case.block_table.astype(np.int32), "TASKS": p.task_table.astype(np.int32),
               "TREE": p.tree_mask.astype(np.int32), "scale": float(case.scale)}


def _missing_lowering(backend) -> str | None:
    """Why this backend cannot run meta_attention in this build, or None."""
    if backend == "ascend-sim":
        from codegen.ascend.dispatch import attention_missing
        return attention_missing()
    return None


def run_attention(backend, quick, rng):
    run_ = runner(backend)
    why = _missing_lowering(backend)
    for case in make_standard_cases(seed=int(rng.integers(1 << 30)), quick=quick):
        if why:
            yield Result("meta_attention", f"{case.name} ({len(case.stages)} stages)", 0.0, True,
                         0.0, why, skipped=True)
            continue
        g = case.group
        bm = max(16, g * 2)
        if backend in ASCEND_BACKENDS:     # the Ascend tile splits BM over two AIVs in 16-row fractals
            bm = -(-max(32, bm) // 32) * 32
        dt = D.from_numpy(case.q.dtype)
        kern = specialise("meta_attention", DT=dt, BM=bm, BN=16, D=case.head_dim, G=g)
        # the emitted Ascend C runs every pipeline form; the other backends have one
        for pipeline in (PIPELINES if backend == "ascendc-cpu" else (None,)):
            p, args = attention_args(case, bm)
            label = f"{case.name} ({len(case.stages)} stages, {p.num_tasks} tasks)"
            if pipeline:
                label = f"{case.name} {pipeline} ({p.num_tasks} tasks)"
            t0 = time.perf_counter()
            try:
                run_(kern, args, **({"pipeline": pipeline} if pipeline else {}))
            except Exception as e:      # a backend that cannot run the case fails it, with why
                why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                if pipeline and _not_applicable(e):
                    yield Result("meta_attention", label, 0.0, True, 0.0, why, skipped=True)
                else:
                    yield Result("meta_attention", label, float("nan"), False,
                                 time.perf_counter() - t0, why)
                continue
            err, ok = _err(args["O"], O.attention_oracle(case), dt)
            yield Result("meta_attention", label, err, ok, time.perf_counter() - t0)


ASCEND_BACKENDS = ("ascend-sim", "ascendc-cpu")
PIPELINES = ("2-stage", "3-stage", "4-stage")


def _not_applicable(e: Exception) -> bool:
    """A pipeline form that cannot take this case (e.g. a 3-stage window shorter than the KV)."""
    from codegen.ascend import NOT_APPLICABLE
    return isinstance(e, NOT_APPLICABLE)


def selftest(backend: str, quick: bool = False, seed: int = 0, only: str | None = None):
    runner(backend)     # fail early, naming the backend
    rng = np.random.default_rng(seed)
    kernels = {run_gemm: ("smooth_gemm", "smooth_gemm_t"),
               run_layers: ("rmsnorm", "silu_mul", "rope"), run_attention: ("meta_attention",)}
    for gen in (run_gemm, run_layers, run_attention):
        if only is not None and only not in kernels[gen]:
            continue                # --kernel: do not run the other case sets at all
        for r in gen(backend, quick, rng):
            if only is None or r.kernel == only:
                yield r
