"""cpu backend fast paths (blocked tile views, the raised K loop, folded dots, skipped padding
rows, whole-row gathers, guarded masked gathers): each must fire where it applies, stay off
where it does not, and agree with the reference interpreter either way."""
from __future__ import annotations

import numpy as np
import pytest

import codegen.cpu as cpu
import codegen.reference as ref
from tilec.compiler import compile_source
from tilec.ir import dtypes as D
from tilec.selftest import specialise
from tilec.testing import oracle as O


def _kernel(src: str, name: str, **binding):
    return compile_source(src, "<test>", name, binding)[name]


def _both(kernel, args, outs):
    a_ref = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in args.items()}
    a_cpu = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in args.items()}
    ref.run(kernel, a_ref)
    cpu.run(kernel, a_cpu)
    return [(a_ref[o], a_cpu[o]) for o in outs]


def _same(r, c, dt="f32"):
    atol, rtol = O.tolerance(dt)
    r32, c32 = O.to_f32(r), O.to_f32(c)
    assert np.array_equal(np.isnan(r32), np.isnan(c32)), "NaN positions differ"
    ok = ~np.isnan(r32)
    np.testing.assert_allclose(c32[ok], r32[ok], atol=atol, rtol=rtol)


def _rand(rng, shape, dt="f32"):
    return rng.standard_normal(shape).astype(np.float32).astype(D.to_numpy(dt))


@pytest.mark.parametrize("m,n,k", [(1, 64, 96), (33, 80, 96), (64, 64, 64), (5, 70, 50)])
def test_gemm_fast_path_fires_and_agrees(m, n, k):
    kern = specialise("smooth_gemm_t", DT="f32", BM=16, BN=32, BK=32)
    src = cpu.emit(kern)
    assert "raised to one dot" in src and "rows_dead=True" in src
    assert "rt.tile_store(C" in src and "_lin" not in src          # no gathers at all
    rng = np.random.default_rng(m + n)
    a, w = _rand(rng, (m, k)), _rand(rng, (n, k))
    c = np.full((m, n), np.nan, np.float32)
    (r, cc), = _both(kern, {"A": a, "W": w, "C": c}, ["C"])
    _same(r, cc)
    _same(cc, O.gemm_oracle(a, w, trans_b=True))


def test_gemm_on_strided_and_transposed_views():
    import torch
    kern = specialise("smooth_gemm", DT="f32", BM=16, BN=32, BK=32)
    rng = np.random.default_rng(3)
    big = _rand(rng, (40, 200))
    a = big[:, ::2]                      # non-unit column stride
    b = _rand(rng, (70, 100)).T          # transposed: [100, 70] with strides (4, 400)
    c = np.zeros((40, 70), np.float32)
    (r, cc), = _both(kern, {"A": a, "B": b, "C": c}, ["C"])
    _same(r, cc)
    ct = torch.zeros(40, 70)
    cpu.run(kern, {"A": torch.from_numpy(big)[:, ::2], "B": torch.from_numpy(b), "C": ct})
    _same(r, ct.numpy())


LOOP_EXTRA = """
kernel scaled(A: f32[M, K], B: f32[K, N], C: f32[M, N], BM: const = 16, BN: const = 16, BK: const = 16):
    grid(cdiv(M, BM), cdiv(N, BN))
    m0 = program_id(0) * BM
    n0 = program_id(1) * BN
    acc = zeros((BM, BN), f32)
    for k in range(0, K, BK):
        a = load(A[m0 : m0 + BM, k : k + BK])
        b = load(B[k : k + BK, n0 : n0 + BN])
        acc = acc * 0.5 + dot(a, b)
    store(C[m0 : m0 + BM, n0 : n0 + BN], acc)
"""


def test_loop_not_raised_when_body_is_not_a_pure_contraction():
    kern = _kernel(LOOP_EXTRA, "scaled")
    assert "raised to one dot" not in cpu.emit(kern)
    rng = np.random.default_rng(4)
    a, b = _rand(rng, (20, 40)), _rand(rng, (40, 24))
    (r, c), = _both(kern, {"A": a, "B": b, "C": np.zeros((20, 24), np.float32)}, ["C"])
    _same(r, c)


COLSUM = """
kernel colsum(A: f32[M, K], W: f32[K, N], S: f32[NB, N], BM: const = 16, BN: const = 16):
    # sums the rows of A @ W per row block: the padding rows of the last block are observed
    grid(cdiv(M, BM), cdiv(N, BN))
    m0 = program_id(0) * BM
    n0 = program_id(1) * BN
    a = load(A[m0 : m0 + BM, 0 : K])
    w = load(W[0 : K, n0 : n0 + BN])
    s = sum(dot(a, w), 0)
    store(S[program_id(0), n0 : n0 + BN], s)
"""


def test_observed_padding_rows_keep_exact_semantics():
    kern = _kernel(COLSUM, "colsum", K=16)
    src = cpu.emit(kern)
    assert "rt.dot(" in src and "rows_dead" not in src
    rng = np.random.default_rng(5)
    a, w = _rand(rng, (3, 16)), _rand(rng, (16, 32))
    w[2, 5] = np.inf                     # 0 * inf = NaN in the padding rows, as in the reference
    (r, c), = _both(kern, {"A": a, "W": w, "S": np.zeros((1, 32), np.float32)}, ["S"])
    assert np.isnan(r[0, 5])
    _same(r, c)


SHIFT = """
kernel shift(X: f32[M, N], Y: f32[M, N], off: i32, BM: const = 8, BN: const = 8):
    grid(cdiv(M, BM), cdiv(N, BN))
    m0 = program_id(0) * BM
    n0 = program_id(1) * BN
    x = load(X[m0 + off : m0 + off + BM, n0 : n0 + BN], other=-7.0)
    store(Y[m0 : m0 + BM, n0 : n0 + BN], x)
"""


@pytest.mark.parametrize("off", [-3, 0, 5, 40])
def test_blocked_load_with_offsets_and_padding(off):
    kern = _kernel(SHIFT, "shift")
    assert "rt.tile_load(X" in cpu.emit(kern)
    rng = np.random.default_rng(6)
    x = _rand(rng, (21, 13))
    (r, c), = _both(kern, {"X": x, "Y": np.zeros((21, 13), np.float32), "off": off}, ["Y"])
    _same(r, c)


OVERLAP = """
kernel overlap(X: f32[M, N], Y: f32[M, N], BM: const = 8):
    # axis 1 blocks nothing in the store: its programs write the same tile; the last wins
    grid(cdiv(M, BM), 3)
    m0 = program_id(0) * BM
    x = load(X[m0 : m0 + BM, 0 : 8]) + cast(program_id(1), f32)
    store(Y[m0 : m0 + BM, 0 : 8], x)
"""


def test_store_falls_back_to_scatter_when_programs_overlap():
    kern = _kernel(OVERLAP, "overlap", N=8)
    assert "rt.tile_store" not in cpu.emit(kern)
    x = _rand(np.random.default_rng(7), (13, 8))
    (r, c), = _both(kern, {"X": x, "Y": np.zeros((13, 8), np.float32)}, ["Y"])
    _same(r, c)
    np.testing.assert_allclose(c, x + 2.0, rtol=1e-6)


PAGED = """
kernel paged(C: f32[NB, BS, H, D], T: i32[R], Y: f32[R, H, DD], BR: const = 4, DD: const = 8):
    grid(cdiv(R, BR), H)
    r0 = program_id(0) * BR
    h = program_id(1)
    rows = r0 + arange(0, BR)
    ok = rows < R
    blk = load(T[rows], mask=ok)
    d = arange(0, DD)
    x = load(C[(blk // BS)[:, None], (blk % BS)[:, None], h, d[None, :]], mask=ok[:, None])
    store(Y[rows[:, None], h, d[None, :]], x, mask=ok[:, None])
"""


@pytest.mark.parametrize("dd,whole", [(8, True), (4, False)])
def test_whole_row_gather_only_for_whole_rows(dd, whole):
    kern = _kernel(PAGED, "paged", D=8, DD=dd)
    src = cpu.emit(kern)
    assert ("rt.gather_rows(" in src) == whole
    assert "rt.store_rows(" in src          # Y's rows are whole in both: one flag per row
    rng = np.random.default_rng(8)
    c = _rand(rng, (5, 4, 2, 8))
    t = rng.integers(0, 20, size=7).astype(np.int32)
    (r, y), = _both(kern, {"C": c, "T": t, "Y": np.zeros((7, 2, dd), np.float32)}, ["Y"])
    _same(r, y)


MASKED_OFF = """
kernel gated(X: f32[N], Y: f32[N], on: i32, B: const = 16):
    grid(cdiv(N, B))
    i = program_id(0) * B + arange(0, B)
    x = load(X[i], mask=(i < N) & (on != 0), other=3.0)
    store(Y[i], x, mask=i < N)
"""


@pytest.mark.parametrize("on", [0, 1])
def test_guarded_gather_when_every_lane_is_masked_off(on):
    kern = _kernel(MASKED_OFF, "gated")
    assert "rt.any_(" in cpu.emit(kern)
    x = _rand(np.random.default_rng(9), (37,))
    (r, c), = _both(kern, {"X": x, "Y": np.zeros(37, np.float32), "on": on}, ["Y"])
    _same(r, c)
    np.testing.assert_array_equal(c, x if on else np.full(37, 3.0, np.float32))


ROWSUM = """
kernel rowsum(C: f32[NR, D], T: i32[R], S: f32[NS, D], BR: const = 8):
    # masked lanes fetch row 0 (their index reads as 0); row-level masking must blank them
    grid(cdiv(R, BR))
    rows = program_id(0) * BR + arange(0, BR)
    ok = rows < R
    idx = load(T[rows], mask=ok)
    d = arange(0, D)
    x = load(C[idx[:, None], d[None, :]], mask=ok[:, None])
    store(S[program_id(0), d], sum(x, 0))
"""


def test_whole_row_gather_blanks_masked_rows_even_over_nan():
    kern = _kernel(ROWSUM, "rowsum", D=8)
    src = cpu.emit(kern)
    assert "rt.gather_rows(" in src and "rt.blank_rows(" in src
    rng = np.random.default_rng(10)
    c = _rand(rng, (6, 8))
    c[0] = np.nan                                    # what the masked lanes point at
    t = rng.integers(1, 6, size=11).astype(np.int32)
    (r, s), = _both(kern, {"C": c, "T": t, "S": np.zeros((2, 8), np.float32)}, ["S"])
    assert np.isfinite(r).all()
    _same(r, s)


@pytest.mark.parametrize("dt", ["f32", "f16", "bf16", "i32", "i64"])
def test_select_is_bit_exact(dt):
    import torch
    from codegen.cpu import rt
    tdt = rt.DTYPES[dt]
    if dt.startswith("i"):
        a = torch.tensor([-5, 7, 2**20, -1], dtype=tdt)
        b = torch.tensor([1, -2, 3, 0], dtype=tdt)
    else:
        a = torch.tensor([float("nan"), -0.0, float("inf"), 1.5]).to(tdt)
        b = torch.tensor([2.0, 0.0, -float("inf"), float("nan")]).to(tdt)
    c = torch.tensor([True, True, False, False])
    got = rt.select(c, a, b)
    want = torch.where(c, a, b)
    assert got.dtype == want.dtype
    assert torch.equal(got.view(-1).view(torch.uint8), want.view(-1).view(torch.uint8))   # bits
    # broadcasting like torch.where: a [2, 1, 4] against c [4] and a 0-dim b
    a2 = a.reshape(1, 1, 4).expand(2, 1, 4)
    b0 = b[0].reshape(())
    assert torch.equal(rt.select(c, a2, b0).view(torch.uint8), torch.where(c, a2, b0).view(torch.uint8))
    # past 1e5 lanes select blends bits, and reuses the mask of its previous call
    cb = c.repeat(1 << 15)
    ab, bb = a.repeat(1 << 15), b.repeat(1 << 15)
    for x, y in ((ab, bb), (bb, ab), (ab, b0)):
        got = rt.select(cb, x, y)
        assert torch.equal(got.view(torch.uint8), torch.where(cb, x, y).view(torch.uint8))
