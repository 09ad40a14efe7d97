"""The reference backend: language semantics (virtual padding, gathers, loops, ifs) and every
library kernel against independent oracles."""
import numpy as np
import pytest

from codegen.launch import LaunchError
from codegen.reference import run
from codegen.reference.interp import BoundsClaimError
from tilec.compiler import compile_source
from tilec.selftest import selftest


def k1(src, **binding):
    ks = compile_source(src, "t.tile", binding=binding)
    assert len(ks) == 1
    return next(iter(ks.values()))


COPY = """
kernel copy(X: f32[N], Y: f32[N], BN: const = 8):
    grid(cdiv(N, BN))
    n0 = program_id(0) * BN
    store(Y[n0 : n0 + BN], load(X[n0 : n0 + BN], other=-1.0) + 1.0)
"""


@pytest.mark.parametrize("n", [1, 7, 8, 9, 23])
def test_virtual_padding_reads_other_and_never_writes_past_the_edge(n):
    k = k1(COPY)
    x = np.arange(n, dtype=np.float32)
    y = np.full(n, np.nan, np.float32)
    run(k, {"X": x, "Y": y})
    np.testing.assert_array_equal(y, x + 1)


def test_out_of_range_reads_give_other():
    src = """
kernel shifted(X: f32[N], Y: f32[N], BN: const = 8):
    grid(cdiv(N, BN))
    n0 = program_id(0) * BN
    store(Y[n0 : n0 + BN], load(X[n0 + 3 : n0 + 3 + BN], other=-5.0))
"""
    x = np.arange(10, dtype=np.float32)
    y = np.zeros(10, np.float32)
    run(k1(src), {"X": x, "Y": y})
    np.testing.assert_array_equal(y, np.r_[x[3:], [-5.0] * 3])


def test_gather_through_index_tile_with_mask():
    src = """
kernel gather(X: f32[N], I: i32[M], Y: f32[M], BM: const = 4):
    grid(cdiv(M, BM))
    m0 = program_id(0) * BM
    idx = load(I[m0 : m0 + BM])
    v = load(X[idx], mask=idx != 2, other=7.0)
    store(Y[m0 : m0 + BM], v)
"""
    x = np.arange(5, dtype=np.float32) * 10
    idx = np.array([4, 2, 0, 9, 1], np.int32)       # 9 is out of range -> other
    y = np.zeros(5, np.float32)
    run(k1(src), {"X": x, "I": idx, "Y": y})
    np.testing.assert_array_equal(y, [40, 7, 0, 7, 10])


def test_loops_with_runtime_bounds_and_runtime_if():
    src = """
kernel tri(Y: i32[N], BN: const = 1):
    grid(N)
    i = program_id(0)
    s = 0
    for j in range(0, i + 1):
        if j % 2 == 0:
            s = s + j
        else:
            s = s - 1
    store(Y[i : i + 1], s)
"""
    n = 9
    y = np.zeros(n, np.int32)
    run(k1(src), {"Y": y})
    exp = [sum(j if j % 2 == 0 else -1 for j in range(i + 1)) for i in range(n)]
    np.testing.assert_array_equal(y, exp)


def test_integer_division_truncates_toward_zero():
    src = """
kernel divs(A: i32[N], B: i32[N], Q: i32[N], R: i32[N], BN: const = 8):
    grid(1)
    a = load(A[0 : BN])
    b = load(B[0 : BN], other=1)
    store(Q[0 : BN], a // b)
    store(R[0 : BN], a % b)
"""
    a = np.array([7, -7, 7, -7, 0, 5], np.int32)
    b = np.array([2, 2, -2, -2, 3, 5], np.int32)
    q, r = np.zeros(6, np.int32), np.zeros(6, np.int32)
    run(k1(src), {"A": a, "B": b, "Q": q, "R": r})
    np.testing.assert_array_equal(q, np.trunc(a / b).astype(np.int32))
    np.testing.assert_array_equal(r, a - np.trunc(a / b).astype(np.int32) * b)


_RANGES = """
kernel ranges(X: f32[N, D], Y: f32[N, D], I: i32[N], BN: const = 16, D: const = 32):
    grid(1)
    j = arange(0, BN)
    d = arange(0, D)
    i = load(I[j])
    a = load(X[j[:, None] % N, d[None, :]])
    b = load(X[(j - 1)[:, None] % N, d[None, :]])
    c = load(X[i[:, None], (d + 1)[None, :] % D])
    store(Y[j[:, None] % N, d[None, :]], a + b + c)
"""


def test_bounds_by_value_ranges():
    """arange(0, D) on a dim of D, x % N with x >= 0 on the dim N and (x + 1) % D need no
    check; a possibly negative x % N (C remainder), a loaded index and arange(0, BN) on the
    runtime dim N keep theirs. The reference run checks every claim."""
    k = k1(_RANGES)
    masked = [op.attrs["masked"] for op in k.walk() if op.name in ("load", "store")]
    assert masked == [[True], [False, False], [True, False], [True, False], [False, False]]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 32)).astype(np.float32)
    y = np.zeros_like(x)
    idx = rng.integers(0, 20, 20).astype(np.int32)
    run(k, {"X": x, "Y": y, "I": idx})
    j = np.arange(16)
    prev = np.vstack([np.zeros((1, 32), np.float32), x[j[1:] - 1]])   # (-1) % 20 is -1: masked, 0
    exp = x[j] + prev + x[idx[:16]][:, (np.arange(32) + 1) % 32]
    np.testing.assert_allclose(y[:16], exp, rtol=1e-5, atol=1e-6)


def test_bounds_claims_are_checked():
    # K is specialised to 64 and BK divides it: the analysis drops the K mask (and the M mask:
    # program_id(0) < M, the size of the grid's axis)
    src = """
kernel rows(X: f32[M, K], Y: f32[M], BK: const = 16):
    grid(M)
    m = program_id(0)
    acc = zeros((BK,), f32)
    for k in range(0, K, BK):
        acc += load(X[m, k : k + BK])
    store(Y[m : m + 1], sum(acc, 0))
"""
    k = k1(src, K=64)
    load = next(op for op in k.walk() if op.name == "load")
    assert load.attrs["masked"] == [False, False]      # and m = program_id(0) < M, the grid's size
    wide = k1(src.replace("grid(M)", "grid(M + 1)"), K=64)     # a grid past M: the row is checked
    assert next(op for op in wide.walk() if op.name == "load").attrs["masked"] == [True, False]
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    y = np.zeros(3, np.float32)
    run(k, {"X": x, "Y": y})
    np.testing.assert_allclose(y, x.sum(1), rtol=1e-5)
    # a wrong claim (forced here) is caught instead of reading garbage
    load.attrs["masked"] = [True, False]
    bad = k1(src.replace("range(0, K, BK)", "range(0, K + BK, BK)"), K=64)
    next(op for op in bad.walk() if op.name == "load").attrs["masked"] = [True, False]
    with pytest.raises(BoundsClaimError):
        run(bad, {"X": x, "Y": y})


def test_launch_errors_name_the_argument():
    k = k1(COPY)
    with pytest.raises(LaunchError, match="'X' has dtype f16"):
        run(k, {"X": np.zeros(4, np.float16), "Y": np.zeros(4, np.float32)})
    with pytest.raises(LaunchError, match="dim 'N' is 4 from one tensor and 5"):
        run(k, {"X": np.zeros(4, np.float32), "Y": np.zeros(5, np.float32)})
    with pytest.raises(LaunchError, match="missing argument"):
        run(k, {"X": np.zeros(4, np.float32)})


@pytest.fixture(scope="module")
def selftest_results():
    return list(selftest("reference", quick=False, seed=1))


def test_selftest_covers_every_library_kernel(selftest_results):
    kernels = {r.kernel for r in selftest_results}
    assert kernels == {"smooth_gemm", "smooth_gemm_t", "rmsnorm", "silu_mul", "rope", "meta_attention"}


def test_every_library_kernel_matches_its_oracle(selftest_results):
    bad = [r for r in selftest_results if not r.ok]
    assert not bad, "\n".join(f"{r.kernel} {r.case}: max err {r.max_err}" for r in bad)


def test_attention_cases_cover_the_batch_kinds(selftest_results):
    names = " ".join(r.case for r in selftest_results if r.kernel == "meta_attention")
    for word in ("prefill_prefix", "decodes", "chain_verify", "tree_verify", "mixed", "g1", "g4", "g8",
                 "d64", "d128", "f16", "bf16"):
        assert word in names, word


def test_attention_detects_a_wrong_mask():
    """The oracle comparison has teeth: flipping the tree mask must fail the check."""
    from tilec.selftest import attention_args, specialise
    from tilec.testing.attention_cases import make_attention_case, verify
    from tilec.testing.oracle import attention_oracle, to_f32
    rng = np.random.default_rng(3)
    case = make_attention_case(rng, [verify(6, 20, True)], 4, 1, 64, 16, "f16")
    kern = specialise("meta_attention", DT="f16", BM=16, BN=16, D=64, G=4)
    p, args = attention_args(case, 16)
    run(kern, args)
    exp = attention_oracle(case)
    assert np.abs(to_f32(args["O"]) - exp).max() < 1e-2
    args["TREE"] = np.ones_like(args["TREE"])            # every spec token sees all others
    args["O"][:] = np.nan
    run(kern, args)
    if not np.all(np.tril(case.stages[0].tree)):         # a chain tree is unaffected
        assert np.abs(to_f32(args["O"]) - exp).max() > 1e-2
