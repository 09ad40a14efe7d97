"""The native backend (tile IR -> C++ -> shared object) against the reference interpreter:
every library kernel on ragged shapes and strided inputs, 16-bit rounding, NaN, integer
division by zero, and what it says without a C++ compiler or on a CPU without the ISA."""
import numpy as np
import pytest
import torch

import codegen.native as N
from codegen import reference
from tilec.compiler import compile_source
from tilec.selftest import specialise

pytestmark = pytest.mark.skipif(not N.available()[0], reason=f"native backend: {N.available()[1]}")


def _both(kernel, args, outs):
    """Run on reference (numpy) and native (torch views of copies); the outputs of each."""
    ref = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in args.items()}
    nat = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in args.items()}
    reference.run(kernel, ref)
    N.run(kernel, {k: (torch.from_numpy(v) if isinstance(v, np.ndarray) and v.dtype != np.dtype("V2") else v)
                   for k, v in nat.items()})
    return [(ref[o], nat[o]) for o in outs]


def _close(a, b, dt):
    tol = {"f32": 1e-5, "f16": 2e-3, "bf16": 2e-2}[dt]
    np.testing.assert_allclose(np.asarray(b, np.float32), np.asarray(a, np.float32), rtol=tol, atol=tol)


@pytest.mark.parametrize("dt", ["f32", "f16"])
@pytest.mark.parametrize("bm,bn,bk", [(1, 32, 64), (4, 64, 256), (16, 32, 64)])
@pytest.mark.parametrize("m", [1, 5, 33])
def test_gemm_ragged(dt, bm, bn, bk, m):
    rng = np.random.default_rng(m)
    k = specialise("smooth_gemm_t", BM=bm, BN=bn, BK=bk, DT=dt)
    npdt = np.float16 if dt == "f16" else np.float32
    args = {"A": rng.standard_normal((m, 72)).astype(npdt), "W": rng.standard_normal((50, 72)).astype(npdt),
            "C": np.full((m, 50), np.nan, npdt)}
    [(r, n)] = _both(k, args, ["C"])
    _close(r, n, dt)


def test_layer_kernels_match_the_reference():
    rng = np.random.default_rng(0)
    f = np.float32
    cases = [
        ("add_rmsnorm", dict(BM=1, BN=1024, DT="f32"),
         {"X": rng.standard_normal((3, 100)).astype(f), "R": rng.standard_normal((3, 100)).astype(f),
          "W": rng.standard_normal(100).astype(f), "Y": np.zeros((3, 100), f), "eps": 1e-5}, ["R", "Y"]),
        ("embed", dict(BT=16, BN=256, DT="f32"),
         {"E": rng.standard_normal((40, 300)).astype(f), "IDS": np.array([3, 0, 39, 3, 7], np.int32),
          "Y": np.zeros((5, 300), f)}, ["Y"]),
        ("kv_write", dict(BT=16, D=64, DT="f32"),
         {"K": rng.standard_normal((5, 2, 64)).astype(f), "V": rng.standard_normal((5, 2, 64)).astype(f),
          "KC": np.zeros((4, 4, 2, 64), f), "VC": np.zeros((4, 4, 2, 64), f),
          "SLOT": np.array([0, 5, 15, -1, 9], np.int32)}, ["KC", "VC"]),
        ("bias_add", dict(BM=16, BN=256, DT="f32"),
         {"X": rng.standard_normal((7, 300)).astype(f), "B": rng.standard_normal(300).astype(f)}, ["X"]),
    ]
    for name, b, args, outs in cases:
        for r, n in _both(specialise(name, **b), args, outs):
            _close(r, n, "f32")


def test_strided_inputs_and_empty_grid():
    k = specialise("silu_mul", BM=16, BN=256, DT="f32")
    x = torch.randn(9, 2 * 300)
    out = torch.zeros(9, 300)
    N.run(k, {"G": x[:, :300], "U": x[:, 300:], "Y": out})
    np.testing.assert_allclose(out, torch.nn.functional.silu(x[:, :300]) * x[:, 300:], rtol=1e-5, atol=1e-6)
    N.run(k, {"G": x[:0, :300], "U": x[:0, 300:], "Y": out[:0]})     # M = 0: nothing to do


def test_half_precision_rounds_after_every_op():
    src = ("kernel h(X: f16[N], Y: f16[N], BN: const = 8):\n"
           "    grid(cdiv(N, BN))\n"
           "    n0 = program_id(0) * BN\n"
           "    x = load(X[n0 : n0 + BN])\n"
           "    store(Y[n0 : n0 + BN], (x * x + x) / 3.0)\n")
    k = compile_source(src, "h.tile", "h", {})["h"]
    x = np.linspace(-4, 4, 21).astype(np.float16)
    [(r, n)] = _both(k, {"X": x, "Y": np.zeros(21, np.float16)}, ["Y"])
    np.testing.assert_array_equal(r, n)                              # bit for bit


def test_nan_propagates_and_division_by_zero_raises():
    src = ("kernel m(X: f32[N], Y: f32[N], Z: i32[N], BN: const = 8):\n"
           "    grid(cdiv(N, BN))\n"
           "    n0 = program_id(0) * BN\n"
           "    x = load(X[n0 : n0 + BN])\n"
           "    store(Y[n0 : n0 + BN], maximum(x, 1.0) + max(x, 0))\n"
           "    z = load(Z[n0 : n0 + BN])\n"
           "    store(Z[n0 : n0 + BN], 100 // z)\n")
    k = compile_source(src, "m.tile", "m", {})["m"]
    x = np.arange(8, dtype=np.float32)
    x[3] = np.nan
    y = torch.zeros(8)
    N.run(k, {"X": torch.from_numpy(x), "Y": y, "Z": torch.arange(1, 9, dtype=torch.int32)})
    assert torch.isnan(y).all()                                       # the row max is NaN
    with pytest.raises(ZeroDivisionError, match="integer division by zero"):
        N.run(k, {"X": torch.ones(8), "Y": y, "Z": torch.zeros(8, dtype=torch.int32)})


def test_without_a_compiler_it_says_so(monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    ok, why = N.available()
    assert not ok and "no C++ compiler" in why
    from runtime import launchers
    with pytest.raises(launchers.LauncherUnavailable, match="native launcher: no C\\+\\+ compiler"):
        launchers.get("native")
    with pytest.raises(N.NativeUnavailable, match="no C\\+\\+ compiler"):
        N.entry_files(specialise("silu_mul", BM=16, BN=256, DT="f32"), "cpu")


def test_an_isa_this_cpu_lacks_is_refused(monkeypatch):
    k = specialise("silu_mul", BM=16, BN=256, DT="f32")
    so = N.build(N.emit(k))
    monkeypatch.setitem(N._LEVEL_FLAGS, "x86-64-v9", {"avx2", "no_such_flag"})
    from codegen.signature import Signature
    with pytest.raises(N.NativeUnavailable, match="built for x86-64-v9, which this CPU lacks \\(no_such_flag\\)"):
        N.NativeKernel(so, Signature.of(k), "x86-64-v9")


@pytest.mark.parametrize("name", ["smooth_gemm_t", "smooth_gemm"])
@pytest.mark.parametrize("m,n,kk", [(1, 96, 64), (5, 96, 200), (16, 96, 72), (33, 100, 130)])
def test_gemm_k_loop_raised_to_one_dot(name, m, n, kk):
    """f32 GEMM tiles that lie inside their tensors run the K loop as one dot over all of K (a
    ragged last chunk, rows past M, strided rows); other tiles (a ragged N edge, a transposed
    view) keep the loop. Both agree with numpy."""
    from codegen.native.emit import emit_source
    k = specialise(name, BM=16, BN=32, BK=32, DT="f32")
    assert "raised" in emit_source(k)
    assert "raised" not in emit_source(specialise(name, BM=16, BN=32, BK=32, DT="f16"))
    g = torch.Generator().manual_seed(m * n + kk)
    big = torch.randn(m, kk + 7, generator=g)
    w = torch.randn(n, kk, generator=g)
    for a in (big[:, :kk], big[:, :kk].T.contiguous().T):     # row-strided view; column-major copy
        c = torch.full((m, n), float("nan"))
        wt = w if name == "smooth_gemm_t" else w.T.contiguous()
        N.run(k, {"A": a, "W" if name == "smooth_gemm_t" else "B": wt, "C": c})
        np.testing.assert_allclose(c.numpy(), (a.double() @ w.double().T).numpy(), rtol=1e-4, atol=1e-4)


def test_exp2_is_accurate_over_its_range():
    """The vectorised exp2 (the base-2 softmax's): within 2 ulp of numpy across the normal
    range, inf above 128, 0 below -126 (as exp's flush), NaN through."""
    src = ("kernel e(X: f32[N], Y: f32[N], BN: const = 64):\n"
           "    grid(cdiv(N, BN))\n"
           "    n0 = program_id(0) * BN\n"
           "    store(Y[n0 : n0 + BN], exp2(load(X[n0 : n0 + BN])))\n")
    k = compile_source(src, "e.tile", "e", {})["e"]
    x = np.concatenate([np.linspace(-125.9, 127.9, 4000), np.linspace(-3, 3, 1001),
                        [0.0, -1e-30, 127.0, 127.4, 127.6, 128.5, -126.5, -1e30, np.nan, np.inf, -np.inf]]
                       ).astype(np.float32)
    y = torch.zeros(x.size)
    N.run(k, {"X": torch.from_numpy(x), "Y": y})
    with np.errstate(over="ignore"):
        got, want = y.numpy(), np.exp2(x.astype(np.float64)).astype(np.float32)
    normal = np.isfinite(x) & (x >= -126) & (x <= 127.9)
    ulp = np.abs(got[normal] - want[normal]) / np.spacing(want[normal])
    assert ulp.max() <= 2, (ulp.max(), x[normal][ulp.argmax()])
    assert np.isinf(got[x >= 128.5]).all() and (got[x < -126.0] == 0).all() and np.isnan(got[np.isnan(x)])
