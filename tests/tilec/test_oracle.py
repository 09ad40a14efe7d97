"""The test oracles and the attention case generator."""
import math

import ml_dtypes
import numpy as np
import pytest
import torch

from tilec.testing import attention_cases as AC
from tilec.testing import oracle as O


# ---------------------------------------------------------------------------- helpers
def naive_attention(case):
    """Per query token and head, straight from the definitions (float64)."""
    q = case.q.astype(np.float64)
    kc = case.k_cache.astype(np.float64)
    vc = case.v_cache.astype(np.float64)
    bs = case.block_size
    g = case.group
    out = np.zeros(q.shape)
    for st in case.stages:
        kv_len = st.context_len + st.num_tokens
        for i in range(st.num_tokens):
            p = st.context_len + i
            visible = []
            for j in range(kv_len):
                if st.tree is None:
                    ok = j <= p
                else:
                    base = kv_len - st.num_tokens
                    ok = j < base or bool(st.tree[p - base, j - base])
                if ok:
                    visible.append(j)
            blocks = [case.block_table[st.seq, j // bs] for j in visible]
            slots = [j % bs for j in visible]
            for h in range(case.num_q_heads):
                k = kc[blocks, slots, h // g]
                v = vc[blocks, slots, h // g]
                s = k @ q[st.q_start + i, h] * case.scale
                w = np.exp(s - s.max())
                out[st.q_start + i, h] = (w / w.sum()) @ v
    return out


def valid_slots(case):
    """bool [NB, BS]: cache slots that hold real K/V of some sequence."""
    valid = np.zeros(case.k_cache.shape[:2], bool)
    for st in case.stages:
        for j in range(st.context_len + st.num_tokens):
            valid[case.block_table[st.seq, j // case.block_size], j % case.block_size] = True
    return valid


SMALL = [AC.prefill(9, 5), AC.decode(0), AC.decode(13), AC.verify(4, 6),
         AC.verify(6, 3, True), AC.prefill(3, 0)]


# ---------------------------------------------------------------------------- attention
@pytest.mark.parametrize("dtype,hq,hkv,d", [
    (np.float32, 4, 2, 16), (np.float16, 8, 1, 32), (ml_dtypes.bfloat16, 3, 3, 8),
])
def test_attention_oracle_matches_naive_loop(dtype, hq, hkv, d):
    rng = np.random.default_rng(3)
    case = AC.make_attention_case(rng, SMALL, hq, hkv, d, 4, dtype)
    assert any(s.tree is not None for s in case.stages)
    got = O.attention_oracle(case)
    assert got.dtype == np.float32 and got.shape == case.q.shape
    np.testing.assert_allclose(got, naive_attention(case), atol=1e-5, rtol=1e-5)


def test_tree_mask_matters():
    tree = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 1]], bool)   # 2 does not see 1
    rng = np.random.default_rng(5)
    case = AC.make_attention_case(rng, [AC.verify(3, 7, tree)], 2, 1, 16, 4, np.float32)
    chain = AC.make_attention_case(np.random.default_rng(5), [AC.verify(3, 7, None)], 2, 1, 16,
                                   4, np.float32)
    np.testing.assert_array_equal(case.q, chain.q)
    a, b = O.attention_oracle(case), O.attention_oracle(chain)
    np.testing.assert_allclose(a[:2], b[:2], atol=1e-6)        # tokens 0, 1: same view
    assert np.abs(a[2] - b[2]).max() > 1e-3                      # token 2 differs
    np.testing.assert_allclose(a, naive_attention(case), atol=1e-5)


def test_oracle_ignores_garbage_slots():
    rng = np.random.default_rng(11)
    case = AC.make_attention_case(rng, SMALL, 4, 2, 16, 8, np.float32)
    valid = valid_slots(case)
    assert (~valid).sum() > 0 and np.abs(case.k_cache[~valid]).min() >= 50
    before = O.attention_oracle(case)
    case.k_cache[~valid] = 1e4
    case.v_cache[~valid] = -3e3
    np.testing.assert_array_equal(O.attention_oracle(case), before)


def test_stage_mask():
    m = O.stage_mask("prefill", 3, 2)
    assert m.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    t = np.array([[1, 0], [0, 1]], bool)
    assert O.stage_mask("verify", 2, 1, t).tolist() == [[1, 1, 0], [1, 0, 1]]


# ---------------------------------------------------------------------------- cases
def test_make_attention_case_layout():
    rng = np.random.default_rng(0)
    spec = [AC.prefill(40, 30), AC.decode(17), AC.verify(5, 9, True), AC.verify(3, 0)]
    case = AC.make_attention_case(rng, spec, 8, 2, 64, 16, "bf16", name="x")
    assert case.q.shape == (49, 8, 64) and case.q.dtype == AC.BF16
    assert case.k_cache.dtype == AC.BF16 and case.v_cache.shape == case.k_cache.shape
    assert case.k_cache.shape[1:] == (16, 2, 64)
    assert case.group == 4 and case.head_dim == 64 and case.block_size == 16
    assert case.scale == pytest.approx(1 / 8)
    assert [s.kind for s in case.stages] == ["prefill", "decode", "verify", "verify"]
    assert [s.q_start for s in case.stages] == [0, 40, 41, 46]
    assert [s.seq for s in case.stages] == [0, 1, 2, 3]
    assert case.stages[2].tree is not None and case.stages[3].tree is None
    assert case.kv_lens().tolist() == [70, 18, 14, 3]
    bt = case.block_table
    assert bt.dtype == np.int32 and bt.shape == (4, 6)       # 5 blocks + 1 unused column
    used = np.concatenate([bt[i, :n] for i, n in enumerate([5, 2, 1, 1])])
    assert len(set(used.tolist())) == used.size               # distinct physical blocks
    assert case.num_blocks > used.size                         # unused blocks in the pool
    assert (bt[0, 5:] == 0).all() and (bt[1, 2:] == 0).all()
    assert not (np.diff(bt[0, :5]) == 1).all()                 # shuffled, not contiguous
    assert "x" in case.describe()
    # garbage in unread slots is large, real data ~N(0, 1)
    valid = valid_slots(case)
    kf = case.k_cache.astype(np.float32)
    assert np.abs(kf[valid]).std() < 2 and np.abs(kf[~valid]).min() >= 50
    assert np.isfinite(kf).all()


def test_spec_validation():
    with pytest.raises(ValueError):
        AC.make_attention_case(0, [("decode", 1, 2)], 2, 1, 8, 4, np.float16)
    with pytest.raises(ValueError):
        AC.make_attention_case(0, [AC.prefill(3)], 3, 2, 8, 4, np.float16)
    with pytest.raises(ValueError):
        AC.make_attention_case(0, [AC.prefill(3)], 2, 1, 8, 4, np.int32)
    with pytest.raises(ValueError):
        AC.make_attention_case(0, [], 2, 1, 8, 4, np.float16)


def test_random_tree():
    rng = np.random.default_rng(1)
    for s in (1, 2, 5, 16):
        t = AC.random_tree(rng, s)
        assert t.shape == (s, s) and t.dtype == bool
        assert t.diagonal().all() and not np.triu(t, 1).any() and t[:, 0].all()
        for i in range(1, s):
            anc = np.flatnonzero(t[i, :i])
            parent = anc.max()                  # the deepest strict ancestor
            expect = t[parent].copy()
            expect[i] = True
            np.testing.assert_array_equal(t[i], expect)


def test_standard_cases_cover_the_matrix():
    full = AC.standard_cases()
    quick = AC.standard_cases(quick=True)
    names = [n for n, _ in full]
    assert len(set(names)) == len(names)
    assert {n for n, _ in quick} < set(names) and len(quick) <= len(full) // 2
    groups, dims, dtypes, kinds = set(), set(), set(), set()
    ragged = False
    for name, kw in full:
        groups.add(kw["num_q_heads"] // kw["num_kv_heads"])
        dims.add(kw["head_dim"])
        dtypes.add(np.dtype(kw["dtype"]))
        for spec in kw["stages_spec"]:
            kind, n, ctx, tree = AC.normalize_spec(spec)
            kinds.add(kind + ("-tree" if tree is not None else ""))
            ragged |= kind == "prefill" and n % 16 != 0
            assert ctx <= 300
        total = sum(AC.normalize_spec(s)[1] for s in kw["stages_spec"])
        assert total <= 200, name
    assert {1, 4, 8} <= groups and {64, 128} <= dims
    assert {np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)} <= dtypes
    assert {"prefill", "decode", "verify", "verify-tree"} <= kinds and ragged
    assert any(len({AC.normalize_spec(s)[0] for s in kw["stages_spec"]}) == 3
               for _, kw in full)                             # a mixed batch
    qgroups = {kw["num_q_heads"] // kw["num_kv_heads"] for _, kw in quick}
    assert {1, 4, 8} <= qgroups


def test_standard_cases_build_and_run():
    for case in AC.make_standard_cases(seed=0):
        out = O.attention_oracle(case)
        assert np.isfinite(out).all() and np.abs(out).max() < 10, case.name
    # deterministic for a seed
    a = AC.make_standard_cases(seed=1, quick=True)
    b = AC.make_standard_cases(seed=1, quick=True)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.k_cache.astype(np.float32),
                                      y.k_cache.astype(np.float32))


# ---------------------------------------------------------------------------- other oracles
def test_rope_matches_complex_rotation():
    rng = np.random.default_rng(2)
    t, h, d, theta = 7, 3, 16, 500.0
    x = rng.standard_normal((t, h, d)).astype(np.float32)
    pos = rng.integers(0, 50, size=t)
    cos, sin = O.rope_cache(64, d, theta)
    assert cos.shape == (64, d // 2) and cos.dtype == np.float32
    got = O.rope_oracle(x, pos, cos, sin)
    half = d // 2
    z = x[..., :half].astype(np.complex128) + 1j * x[..., half:]
    ang = pos[:, None, None] * theta ** (-2.0 * np.arange(half) / d)
    r = z * np.exp(1j * ang)
    want = np.concatenate([r.real, r.imag], axis=-1)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    # position 0 is the identity; norms are preserved
    np.testing.assert_allclose(O.rope_oracle(x, np.zeros(t, int), cos, sin), x, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), np.linalg.norm(x, axis=-1),
                               rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
def test_gemm_oracle(dtype):
    rng = np.random.default_rng(4)
    a = rng.standard_normal((13, 40)).astype(dtype)
    b = rng.standard_normal((40, 9)).astype(dtype)
    want = a.astype(np.float64) @ b.astype(np.float64)
    got = O.gemm_oracle(a, b)
    assert got.dtype == np.float32 and got.shape == (13, 9)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    bt = np.ascontiguousarray(b.T)
    np.testing.assert_allclose(O.gemm_oracle(a, bt, trans_b=True), want, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(O.gemm_oracle(torch.from_numpy(a.astype(np.float32)), b), want,
                               atol=1e-4, rtol=1e-4)


def test_rmsnorm_and_silu_mul():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 32)).astype(np.float16)
    w = rng.standard_normal(32).astype(np.float16)
    xf, wf = x.astype(np.float64), w.astype(np.float64)
    want = xf / np.sqrt((xf ** 2).mean(-1, keepdims=True) + 1e-5) * wf
    np.testing.assert_allclose(O.rmsnorm_oracle(x, w, 1e-5), want, atol=1e-5, rtol=1e-5)
    g = rng.standard_normal((4, 24)).astype(ml_dtypes.bfloat16)
    u = rng.standard_normal((4, 24)).astype(ml_dtypes.bfloat16)
    gf, uf = g.astype(np.float64), u.astype(np.float64)
    np.testing.assert_allclose(O.silu_mul_oracle(g, u), gf / (1 + np.exp(-gf)) * uf,
                               atol=1e-6, rtol=1e-5)


def test_tolerance():
    f32, f16, bf16 = O.tolerance(np.float32), O.tolerance(np.float16), O.tolerance("bf16")
    assert f32[0] < f16[0] < bf16[0] and f32[1] < f16[1] < bf16[1]
    assert O.tolerance(torch.bfloat16) == bf16 and O.tolerance(ml_dtypes.bfloat16) == bf16
    assert O.tolerance("f16") == f16 and O.tolerance(np.dtype(np.float16)) == f16
    assert O.tolerance(np.float32, tf32=True)[0] > f32[0]
    with pytest.raises(ValueError):
        O.tolerance(np.int32)


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_tolerance_accepts_low_precision_kernel_and_rejects_bugs(dtype):
    """An attention computed the way a kernel would (low-precision inputs, P rounded to the
    input dtype before P@V, output rounded) passes; one that reads a garbage slot fails."""
    for case in AC.make_standard_cases(seed=3, quick=True):
        case.q = case.q.astype(dtype)
        case.k_cache = case.k_cache.astype(dtype)
        case.v_cache = case.v_cache.astype(dtype)
        want = O.attention_oracle(case)
        got = np.zeros_like(want)
        for st in case.stages:
            L = st.context_len + st.num_tokens
            pos = np.arange(L)
            phys = case.block_table[st.seq, pos // case.block_size]
            k = case.k_cache[phys, pos % case.block_size].astype(np.float32)
            v = case.v_cache[phys, pos % case.block_size].astype(np.float32)
            k = np.repeat(k, case.group, axis=1)
            v = np.repeat(v, case.group, axis=1)
            qs = case.q[st.q_start:st.q_start + st.num_tokens].astype(np.float32)
            s = np.einsum("thd,lhd->htl", qs, k) * case.scale
            m = O.stage_mask(st.kind, st.num_tokens, st.context_len, st.tree)
            s = np.where(m[None], s, -np.inf)
            p = np.exp(s - s.max(-1, keepdims=True))
            denom = p.sum(-1, keepdims=True)
            p = p.astype(dtype).astype(np.float32)
            o = np.einsum("htl,lhd->thd", p, v) / denom.transpose(1, 0, 2)
            got[st.q_start:st.q_start + st.num_tokens] = o
        O.assert_close(got.astype(dtype), want, what=case.name)
        # a kernel that gives an unread (garbage) slot a softmax weight of 1e-3
        valid = valid_slots(case)
        blk, slot = (int(i[0]) for i in np.nonzero(~valid))
        leak = case.v_cache[blk, slot].astype(np.float32).repeat(case.group, axis=0)
        bad = got.copy()
        bad[case.stages[-1].q_start] += 1e-3 * leak
        with pytest.raises(AssertionError, match="differ"):
            O.assert_close(bad.astype(dtype), want)


def test_assert_close_messages():
    O.assert_close(np.ones(3, np.float16), np.ones(3, np.float32))
    with pytest.raises(AssertionError, match="shape"):
        O.assert_close(np.ones(3), np.ones(4))
    with pytest.raises(AssertionError, match=r"worst at \(1,\)"):
        O.assert_close(np.array([1.0, 2.0, 3.0], np.float32), np.array([1.0, 2.5, 3.0]))
    with pytest.raises(AssertionError):
        O.assert_close(np.array([np.nan], np.float32), np.array([0.0]))
