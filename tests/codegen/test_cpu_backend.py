"""cpu backend (codegen/cpu): differential tests against the reference interpreter."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import codegen.cpu as cpu
import codegen.reference as ref
from tilec.compiler import compile_source
from tilec.ir import dtypes as D
from tilec.selftest import attention_args, specialise
from tilec.testing import oracle as O
from tilec.testing.attention_cases import make_standard_cases


def _rand(rng, shape, dt):
    return rng.standard_normal(shape).astype(np.float32).astype(D.to_numpy(dt))


def _copy(args):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in args.items()}


def _both(kernel, args, outs):
    """Run reference and cpu on copies of ``args``; return {out: (ref, cpu)}."""
    a_ref, a_cpu = _copy(args), _copy(args)
    ref.run(kernel, a_ref)
    cpu.run(kernel, a_cpu)
    return {o: (a_ref[o], a_cpu[o]) for o in outs}


def _close(r, c, dt):
    atol, rtol = O.tolerance(dt)
    r32, c32 = O.to_f32(r), O.to_f32(c)
    assert np.array_equal(np.isnan(r32), np.isnan(c32))
    ok = ~np.isnan(r32)
    np.testing.assert_allclose(c32[ok], r32[ok], atol=atol, rtol=rtol)


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("trans", [False, True])
@pytest.mark.parametrize("m", [1, 33, 70])
def test_gemm_vs_reference(dt, trans, m):
    rng = np.random.default_rng(m)
    name = "smooth_gemm_t" if trans else "smooth_gemm"
    kern = specialise(name, DT=dt, BM=32, BN=32, BK=32)
    k, n = 96, 80
    a = _rand(rng, (m, k), dt)
    b = _rand(rng, (n, k) if trans else (k, n), dt)
    c = np.full((m, n), np.nan, D.to_numpy(dt))
    out = _both(kern, {"A": a, ("W" if trans else "B"): b, "C": c}, ["C"])
    _close(*out["C"], dt)
    _close(out["C"][1], O.gemm_oracle(a, b, trans_b=trans), dt)


@pytest.mark.parametrize("dt", ["f16", "bf16"])
def test_layers_vs_reference(dt):
    rng = np.random.default_rng(1)
    x, w = _rand(rng, (33, 300), dt), _rand(rng, (300,), dt)
    y = np.full((33, 300), np.nan, D.to_numpy(dt))
    out = _both(specialise("rmsnorm", DT=dt, BM=4, BN=512), {"X": x, "W": w, "Y": y, "eps": 1e-6}, ["Y"])
    _close(*out["Y"], dt)
    g, u = _rand(rng, (40, 300), dt), _rand(rng, (40, 300), dt)
    out = _both(specialise("silu_mul", DT=dt), {"G": g, "U": u, "Y": np.full((40, 300), np.nan, D.to_numpy(dt))}, ["Y"])
    _close(*out["Y"], dt)
    x = _rand(rng, (19, 3, 128), dt)
    pos = rng.integers(0, 300, size=19).astype(np.int32)
    cos, sin = O.rope_cache(512, 128)
    out = _both(specialise("rope", DT=dt, D=128, HALF=64),
                {"X": x, "P": pos, "COS": cos, "SIN": sin, "Y": np.full_like(x, np.nan)}, ["Y"])
    _close(*out["Y"], dt)


_CASES = {c.name: c for c in make_standard_cases(seed=3, quick=True)}


@pytest.mark.parametrize("name", sorted(_CASES))
def test_attention_vs_reference(name):
    """Ragged prefill, decode, chain/tree verify and GQA groups (the standard quick cases)."""
    case = _CASES[name]
    g = case.group
    bm = max(16, g * 2)
    dt = D.from_numpy(case.q.dtype)
    kern = specialise("meta_attention", DT=dt, BM=bm, BN=16, D=case.head_dim, G=g)
    _, args = attention_args(case, bm)
    out = _both(kern, args, ["O"])
    _close(*out["O"], dt)
    _close(out["O"][1], O.attention_oracle(case), dt)


def test_attention_cases_cover_decode_tree_gqa():
    names = " ".join(_CASES)
    assert "decode" in names and "tree" in names and any(c.group > 1 for c in _CASES.values())


_RAGGED = """
kernel ragged(X: f32[N], L: i32[NP], Y: f32[NP, 4], Z: i32[NP]):
    grid(NP)
    p = program_id(0)
    n = load(L[p])
    acc = zeros((4,), f32)
    cnt = 0
    for i in range(p, n, 2):
        acc = acc + load(X[i : i + 4])
        cnt = cnt + 1
        if i % 3 == 0:
            store(Z[p], i)
    if cnt > 1:
        acc = acc * 2.0
    else:
        acc = acc - 1.0
        store(Z[p], 0 - cnt - 1)
    store(Y[p, 0 : 4], acc)
"""


def test_runtime_if_and_per_instance_trip_counts():
    kern = compile_source(_RAGGED, "ragged.tile")["ragged"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(40).astype(np.float32)
    lens = np.array([0, 3, 9, 1, 20, 38, 5, 12], np.int32)       # trip counts 0..19, some empty
    args = {"X": x, "L": lens, "Y": np.full((8, 4), np.nan, np.float32),
            "Z": np.full(8, -99, np.int32)}
    out = _both(kern, args, ["Y", "Z"])
    np.testing.assert_allclose(out["Y"][1], out["Y"][0], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(out["Z"][1], out["Z"][0])
    src = cpu.emit(kern)
    assert "def ragged(" in src and "rt.select(" in src and "rt.trips" in src


_EDGE = """
kernel edge(X: f32[M, N], Y: f32[M, N], BM: const = 8, BN: const = 8):
    grid(cdiv(M, BM), cdiv(N, BN))
    m0 = program_id(0) * BM
    n0 = program_id(1) * BN
    x = load(X[m0 : m0 + BM, n0 : n0 + BN], other=-5.0)
    store(Y[m0 : m0 + BM, n0 : n0 + BN], x + 1.0)
"""


def test_store_past_edge_writes_nothing():
    kern = compile_source(_EDGE, "edge.tile")["edge"]
    x = np.arange(13 * 11, dtype=np.float32).reshape(13, 11)
    # Y is a window of a NaN-poisoned buffer: anything written past its edge would show
    buf = np.full((20, 16), np.nan, np.float32)
    y = buf[2:15, 3:14]
    cpu.run(kern, {"X": x, "Y": y})
    np.testing.assert_array_equal(y, x + 1)
    mask = np.ones(buf.shape, bool)
    mask[2:15, 3:14] = False
    assert np.isnan(buf[mask]).all()


def test_torch_tensors_in_place_and_noncontiguous():
    kern = compile_source(_EDGE, "edge.tile")["edge"]
    x = torch.arange(9 * 20, dtype=torch.float32).reshape(20, 9).t()      # [9, 20], strided
    y = torch.full((9, 20), float("nan"))
    cpu.run(kern, {"X": x, "Y": y})
    torch.testing.assert_close(y, x + 1)


def test_compile_cache_and_source():
    kern = specialise("smooth_gemm", DT="f16", BM=32, BN=32, BK=32)
    ck = cpu.compile(kern)
    assert cpu.compile(kern) is ck
    assert "def smooth_gemm(" in ck.source and "rt.dot(" in ck.source
    # the K loop is raised to one dot over all of K; loads and the store are blocked views
    assert "raised to one dot" in ck.source and "rt.iv_range" not in ck.source
    assert "rt.tile_load(A" in ck.source and "rt.tile_store(C" in ck.source
    a = np.ones((5, 64), np.float16)
    b = np.ones((64, 40), np.float16)
    c = np.zeros((5, 40), np.float16)
    ck(A=a, B=b, C=c)
    assert (c == 64).all()


def test_integer_division_by_zero_raises_only_when_taken():
    src = """
kernel dz(A: i32[NP], B: i32[NP], Y: i32[NP]):
    grid(NP)
    p = program_id(0)
    b = load(B[p])
    y = 0
    if b != 0:
        y = load(A[p]) // b
    store(Y[p], y)
"""
    kern = compile_source(src, "dz.tile")["dz"]
    a = np.array([7, -7, 9, 5], np.int32)
    b = np.array([2, 2, 0, -3], np.int32)
    out = _both(kern, {"A": a, "B": b, "Y": np.zeros(4, np.int32)}, ["Y"])
    np.testing.assert_array_equal(out["Y"][1], [3, -3, 0, -1])
    np.testing.assert_array_equal(out["Y"][1], out["Y"][0])
    kern2 = compile_source(src.replace("if b != 0:", "if b != 12345:"), "dz.tile")["dz"]
    with pytest.raises(ZeroDivisionError):
        cpu.run(kern2, {"A": a, "B": b, "Y": np.zeros(4, np.int32)})


_MIX = """
kernel mix(X: f16[R, 8], L: i32[R], Y: f16[R, 8], Z: i32[R, 8], flag: i32, BR: const = 2):
    grid(cdiv(R, BR))
    r0 = program_id(0) * BR
    x = load(X[r0 : r0 + BR, 0 : 8], other=1.0)
    n = load(L[r0])
    tot = zeros((BR, 8), f32)
    for i in range(0, n, 1):
        for j in range(i, n, 3):
            tot = tot + cast(x, f32) * cast(j - i, f32)
    y = cast(abs(x), f32)
    if flag > 0:
        y = sqrt(y) + log(y + 1.0) + exp2(cast(x, f32))
    else:
        y = y - 1.0
    y = y + tot * 0.01 + max(y, 1)[:, None] - min(y, 1)[:, None]
    store(Y[r0 : r0 + BR, 0 : 8], y)
    q = cast(x * 10.0, i32)
    store(Z[r0 : r0 + BR, 0 : 8], where(q > 0, q % 3, (0 - q) // 4 - q % 4), mask=q != 0)
"""


@pytest.mark.parametrize("flag", [1, -1])
def test_nested_varying_loops_uniform_if_int_semantics(flag):
    """Nested loops whose inner bounds depend on the outer induction variable, an `if` on a
    runtime scalar (uniform over the grid), f16 math, reductions, truncating // and %."""
    kern = compile_source(_MIX, "mix.tile")["mix"]
    rng = np.random.default_rng(flag + 5)
    args = {"X": rng.standard_normal((7, 8)).astype(np.float16),
            "L": rng.integers(-2, 9, 7).astype(np.int32),
            "Y": np.full((7, 8), np.nan, np.float16), "Z": np.full((7, 8), -77, np.int32), "flag": flag}
    out = _both(kern, args, ["Y", "Z"])
    np.testing.assert_array_equal(out["Z"][1], out["Z"][0])
    _close(*out["Y"], "f16")
    assert "if bool(" in cpu.emit(kern)


def test_empty_grid_and_bf16_torch_tensors():
    kern = specialise("smooth_gemm_t", DT="bf16", BM=32, BN=32, BK=32)
    a = torch.randn(0, 64).to(torch.bfloat16)
    w = torch.randn(40, 64).to(torch.bfloat16)
    c = torch.empty(0, 40, dtype=torch.bfloat16)
    cpu.run(kern, {"A": a, "W": w, "C": c})            # grid (0, 2): nothing runs
    a = torch.randn(37, 64).to(torch.bfloat16)
    c = torch.full((37, 40), float("nan"), dtype=torch.bfloat16)
    cpu.run(kern, {"A": a, "W": w, "C": c})
    want = (a.float() @ w.float().t()).to(torch.bfloat16)
    torch.testing.assert_close(c.float(), want.float(), atol=0.1, rtol=0.02)
