"""cpu backend: row classes (codegen/cpu/rows.py), masked-off lanes nothing observes
(codegen/cpu/lanes.py), reuse of one access' index for another (paged V with K's indices) and
row scatters. Each must fire where it applies, stay off where it must not, and agree with
the reference interpreter either way."""
from __future__ import annotations

import re
import numpy as np
import pytest

import codegen.cpu as cpu
from codegen.cpu import lanes, rows, rt
from tilec.selftest import attention_args, specialise
from tilec.testing import oracle as O
from tilec.testing.attention_cases import make_attention_case

from test_cpu_fastpaths import _both, _kernel, _rand, _same   # (rootdir-relative import: tests are not a package)

LIVE = """
kernel live(X: f32[N, D], L: i32[P], Y: f32[N, D], S: i32[P], BR: const = 8, D: const = 8):
    # instance t owns rows [t * BR, t * BR + L[t]) of Y; S gets one value per instance
    grid(P)
    t = program_id(0)
    n = load(L[t])
    r = arange(0, BR)
    ok = r < n
    row = t * BR + r
    d = arange(0, D)
    x = load(X[row[:, None], d[None, :]], mask=ok[:, None])
    y = exp(x) * 2.0 + cast(r // 2, f32)[:, None]
    store(Y[row[:, None], d[None, :]], y, mask=ok[:, None] & (row < N)[:, None])
    store(S[t], n * 10)
"""


def test_row_classes_fire_and_agree():
    kern = _kernel(LIVE, "live")
    plan, why = rows.analyse(kern)
    assert plan is not None, why
    assert plan.rows == 8 and plan.flag.type.dtype == "bool"
    src = cpu.emit(kern)
    assert "rt.row_classes(" in src
    rng = np.random.default_rng(1)
    live = np.array([0, 3, 8, 1, 8, 5, 0, 2, 8, 8, 1, 1], np.int32)     # a row-free instance too
    p = len(live)
    x = _rand(rng, (p * 8, 8))
    args = {"X": x, "L": live, "Y": np.full((p * 8, 8), np.nan, np.float32),
            "S": np.full(p, -1, np.int32)}
    (ry, cy), (rs, cs) = _both(kern, args, ["Y", "S"])
    _same(ry, cy)
    np.testing.assert_array_equal(cs, live * 10)          # every instance ran its row-free store
    np.testing.assert_array_equal(rs, cs)
    assert np.isnan(cy[1 * 8 + 3:2 * 8]).all()           # rows past an instance's count untouched


@pytest.mark.parametrize("change,why", [
    ("    store(S[t], cast(sum(sum(y, 1), 0), i32))\n", "reduction over the row axis"),
    ("    store(Y[row[:, None], d[None, :]], dot(y, trans(x)) * 0.0 + y, mask=ok[:, None])\n",
     None),                                              # a contraction over D: still fine
    ("    store(Y[row[:, None], d[None, :]], y)\n", "not masked by the per-row flag"),
    ("    store(Y[row[:, None], d[None, :]], y * 3.0, mask=(row < N)[:, None])\n", None),
])
def test_row_analysis_refuses_what_would_change_results(change, why):
    src = LIVE.replace("    store(S[t], n * 10)\n", change)
    kern = _kernel(src, "live")
    plan, reason = rows.analyse(kern)
    if why is not None:             # else: whatever the analysis decides, results must agree
        assert plan is None and why in reason
    rng = np.random.default_rng(2)
    live = np.array([2, 8, 0, 5], np.int32)
    args = {"X": _rand(rng, (32, 8)), "L": live, "Y": np.full((32, 8), np.nan, np.float32),
            "S": np.zeros(4, np.int32)}
    (ry, cy), (rs, cs) = _both(kern, args, ["Y", "S"])
    _same(ry, cy)
    np.testing.assert_array_equal(rs, cs)


def test_row_analysis_refuses_contraction_and_variable_division_on_rows():
    contract = LIVE.replace("    y = exp(x) * 2.0 + cast(r // 2, f32)[:, None]\n",
                            "    y = dot(x, trans(x))\n")
    plan, reason = rows.analyse(_kernel(contract, "live"))
    assert plan is None and "contraction over the row axis" in reason or "sizes" in reason
    divide = LIVE.replace("cast(r // 2, f32)", "cast(r // n, f32)")
    plan, reason = rows.analyse(_kernel(divide, "live"))
    assert plan is None and "integer division" in reason
    # and a zero divisor in a dead row still raises, as in the reference
    with pytest.raises(ZeroDivisionError):
        cpu.run(_kernel(divide, "live"), {"X": np.zeros((8, 8), np.float32),
                                          "L": np.zeros(1, np.int32),
                                          "Y": np.zeros((8, 8), np.float32),
                                          "S": np.zeros(1, np.int32)})


def test_row_class_partition():
    import torch
    live = torch.tensor([3] * 12 + [48] * 12, dtype=torch.int32)
    cls = rt.row_classes(live, 48)
    assert [r for _, r in cls] == [3, 48]
    assert sorted(torch.cat([s for s, _ in cls]).tolist()) == list(range(24))
    same = rt.row_classes(torch.full((7,), 5, dtype=torch.int32), 48)
    assert len(same) == 1 and same[0][0] == slice(None) and same[0][1] == 5
    # near counts share a class: one more pass costs more than the rows it saves
    near = rt.row_classes(torch.tensor([15, 16, 16, 14], dtype=torch.int32), 48)
    assert len(near) == 1 and near[0][1] == 16
    none = rt.row_classes(torch.zeros(3, dtype=torch.int32), 48)
    assert none[0][1] == 1                       # row-free instances still run


def _attention_case(seed, **kw):
    rng = np.random.default_rng(seed)
    spec = [("prefill", 37, 20), ("decode", 50), ("decode", 3), ("verify", 4, 30, None),
            ("verify", 5, 25, True)]
    case = make_attention_case(rng, spec, 6, 2, 64, 16, "f32", name="mixed")
    return case, attention_args(case, 24, **kw)[1]


def _access_ops(kernel, tensor):
    return [op for op in kernel.walk() if op.name == "load" and
            op.operands[0] is next(tp.value for tp in kernel.tensors if tp.name == tensor)]


def test_attention_k_lanes_unobserved_v_lanes_observed():
    kern = specialise("meta_attention", DT="f32", D=64, G=3, BM=24, BN=32)
    ln = lanes.Lanes(kern)
    # the masked KV loop's loads (the unmasked loop's have no masked-off lanes)
    k_load, v_load = (next(op for op in _access_ops(kern, t) if op.attrs["has_mask"]) for t in ("KC", "VC"))
    assert ln.unobserved(k_load)
    assert not ln.unobserved(v_load)                   # p @ V sums over the masked rows
    src = cpu.emit(kern)
    assert re.search(r"masked-off lanes of k(_\d+)? left as fetched", src) and "rt.blank_rows(v" in src
    assert "= rt.any_(is_tree" in src                  # tree-mask arithmetic under the flag


def _poison_unused_slots(case, args):
    """NaN in every K/V cache slot no stage may read: what masked-off lanes would fetch."""
    kc, vc, bt = args["KC"], args["VC"], args["BT"]
    used = np.zeros(kc.shape[:2], bool)
    for st in case.stages:
        for p in range(st.context_len + st.num_tokens):
            used[bt[st.seq, p // kc.shape[1]], p % kc.shape[1]] = True
    kc[~used] = np.nan
    vc[~used] = np.nan


def test_attention_garbage_in_masked_lanes_never_leaks():
    kern = specialise("meta_attention", DT="f32", D=64, G=3, BM=24, BN=32)
    case, args = _attention_case(3)
    _poison_unused_slots(case, args)
    (r, c), = _both(kern, args, ["O"])
    assert np.isfinite(c).all()
    _same(r, c)
    _same(c, O.attention_oracle(case))


def test_v_with_other_strides_than_k_recomputes_its_index():
    kern = specialise("meta_attention", DT="f32", D=64, G=3, BM=24, BN=32)
    src = cpu.emit(kern)
    assert "_lin_2 if (VC_s0" in src or "if (VC_s0" in src      # V reuses K's index when it can
    case, args = _attention_case(4)
    wide = np.full(args["VC"].shape[:-1] + (80,), np.nan, np.float32)
    wide[..., 8:72] = args["VC"]
    args["VC"] = wide[..., 8:72]                      # same values, other strides, offset
    (r, c), = _both(kern, args, ["O"])
    _same(r, c)
    _same(c, O.attention_oracle(case))


PAGED_OUT = """
kernel scatter(X: f32[R, DD], T: i32[R], Y: f32[NR, H, DD], BR: const = 4, DD: const = 8):
    grid(cdiv(R, BR), H)
    r = program_id(0) * BR + arange(0, BR)
    ok = r < R
    dst = load(T[r], mask=ok)
    d = arange(0, DD)
    x = load(X[r[:, None], d[None, :]], mask=ok[:, None])
    store(Y[dst[:, None], program_id(1), d[None, :]], x * 2.0, mask=ok[:, None])
"""


@pytest.mark.parametrize("contiguous", [True, False])
def test_row_scatter_contiguous_and_strided(contiguous):
    kern = _kernel(PAGED_OUT, "scatter")
    assert "rt.store_rows(" in cpu.emit(kern)
    rng = np.random.default_rng(5)
    x = _rand(rng, (7, 8))
    t = rng.permutation(11)[:7].astype(np.int32)
    y = np.full((11, 3, 9 if not contiguous else 8), np.nan, np.float32)
    yv = y if contiguous else y[..., :8]              # row starts not a multiple of 8
    (r, c), = _both(kern, {"X": x, "T": t, "Y": yv}, ["Y"])
    _same(r, c)


EMPTY = """
kernel empty(X: f32[R, C], Y: f32[B, C], B: const = 4, C: const = 4):
    grid(1)
    r = arange(0, B)
    c = arange(0, C)
    x = load(X[r[:, None], c[None, :]], other=5.0)
    store(Y[r[:, None], c[None, :]], x)
"""


def test_empty_tensor_reads_other():
    kern = _kernel(EMPTY, "empty")
    (r, c), = _both(kern, {"X": np.zeros((0, 4), np.float32), "Y": np.zeros((4, 4), np.float32)},
                    ["Y"])
    np.testing.assert_array_equal(c, np.full((4, 4), 5.0, np.float32))
    np.testing.assert_array_equal(r, c)


GATED = """
kernel gated(X: f32[N, D], L: i32[P], F: i32[P], Y: f32[N, D], BR: const = 8, D: const = 8):
    # a per-instance flag gates a load whose row index is computed before the row flag
    grid(P)
    t = program_id(0)
    n = load(L[t])
    on = load(F[t]) != 0
    r = arange(0, BR)
    rowx = t * BR + r
    ok = r < n
    d = arange(0, D)
    x = load(X[rowx[:, None], d[None, :]], mask=ok[:, None] & on, other=7.0)
    store(Y[(t * BR + r)[:, None], d[None, :]], x + 1.0, mask=ok[:, None])
"""


def test_flag_guard_and_row_classes_together():
    kern = _kernel(GATED, "gated")
    src = cpu.emit(kern)
    assert "rt.row_classes(" in src and "= rt.any_(on" in src
    rng = np.random.default_rng(6)
    live = np.array([3, 8, 0, 1, 8, 2], np.int32)
    flag = np.array([1, 0, 1, 1, 0, 1], np.int32)
    args = {"X": _rand(rng, (48, 8)), "L": live, "F": flag, "Y": np.full((48, 8), np.nan, np.float32)}
    (r, c), = _both(kern, args, ["Y"])
    _same(r, c)
    assert (c[8:16] == 8.0).all()                  # flag off: every lane reads other (7) + 1
