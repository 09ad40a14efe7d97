"""Attention planning: token table, task table ABI, reordering and balance."""
import numpy as np
import pytest

from runtime import plan as P
from runtime.plan import (COL_KV_HEAD, COL_KV_LEN, COL_MASK, COL_Q_POS, COL_Q_ROWS,
                          COL_Q_START, COL_SEQ, COL_SPEC_LEN, COL_STAGE, COL_TREE_OFF,
                          MASK_CAUSAL, MASK_TREE, TASK_COLS, Stage)


# ---------------------------------------------------------------------------- helpers
def _tree(rng, s):
    m = np.eye(s, dtype=bool)
    for i in range(1, s):
        m[i] |= m[int(rng.integers(0, i))]
    return m


def random_batch(rng, max_stages=12):
    """Random stages in a random order of Q and block-table rows."""
    n = int(rng.integers(1, max_stages + 1))
    specs = []
    for _ in range(n):
        kind = ["prefill", "decode", "verify"][int(rng.integers(0, 3))]
        if kind == "prefill":
            tokens = int(rng.integers(1, 400))
        elif kind == "decode":
            tokens = 1
        else:
            tokens = int(rng.integers(1, 20))
        ctx = int(rng.integers(0, 600))
        tree = _tree(rng, tokens) if kind == "verify" and rng.random() < 0.5 else None
        specs.append((kind, tokens, ctx, tree))
    order = rng.permutation(n)            # Q layout order differs from list order
    seqs = rng.permutation(n + 3)[:n]     # block-table rows arbitrary
    starts = np.zeros(n, int)
    q = 0
    for i in order:
        starts[i] = q
        q += specs[i][1]
    return [Stage(k, int(seqs[i]), int(starts[i]), t, c, tr)
            for i, (k, t, c, tr) in enumerate(specs)]


def expected_tile_tokens(kind, group, bm, tile_rows=None):
    rows = dict(P.DEFAULT_TILE_ROWS, **(tile_rows or {}))
    return min(max(1, rows[kind] // group), bm // group)


def check_tasks(stages, tasks, tree_mask, hkv, group, bm, tile_rows=None):
    """Check every column of every task against the ABI, and exact coverage."""
    assert tasks.dtype == np.int32 and tasks.ndim == 2 and tasks.shape[1] == TASK_COLS
    assert tree_mask.dtype == np.int32 and tree_mask.ndim == 1 and tree_mask.size >= 1
    total = sum(s.num_tokens for s in stages)
    hq = hkv * group
    count = np.zeros((total, hq), np.int64)
    for t in tasks:
        st = stages[t[COL_STAGE]]
        tt = expected_tile_tokens(st.kind, group, bm, tile_rows)
        rel = t[COL_Q_START] - st.q_start
        assert t[COL_SEQ] == st.seq
        assert 0 <= rel < st.num_tokens and rel % tt == 0
        assert t[COL_Q_ROWS] == min(tt, st.num_tokens - rel)
        assert t[COL_Q_ROWS] >= 1 and t[COL_Q_ROWS] <= bm // group
        assert t[COL_Q_POS] == st.context_len + rel
        assert t[COL_KV_LEN] == st.context_len + st.num_tokens
        assert 0 <= t[COL_KV_HEAD] < hkv
        if st.tree is None:
            assert t[COL_MASK] == MASK_CAUSAL and t[COL_SPEC_LEN] == 0
        else:
            s = st.num_tokens
            assert t[COL_MASK] == MASK_TREE and t[COL_SPEC_LEN] == s
            off = t[COL_TREE_OFF]
            got = tree_mask[off:off + s * s].reshape(s, s)
            np.testing.assert_array_equal(got != 0, st.tree)
        heads = t[COL_KV_HEAD] * group + np.arange(group)
        toks = t[COL_Q_START] + np.arange(t[COL_Q_ROWS])
        count[np.ix_(toks, heads)] += 1
    assert (count == 1).all(), "every (query token, query head) must be covered exactly once"


def independent_costs(tasks, group):
    out = []
    for t in tasks:
        if t[COL_MASK] == MASK_TREE:
            vis = t[COL_KV_LEN]
        else:
            vis = min(t[COL_KV_LEN], t[COL_Q_POS] + t[COL_Q_ROWS])
        out.append(int(t[COL_Q_ROWS]) * group * int(vis))
    return np.array(out, np.int64)


CONFIGS = [  # (num_kv_heads, group, bm)
    (1, 1, 128), (2, 4, 128), (4, 8, 64), (1, 7, 126), (3, 2, 16), (2, 32, 32), (8, 4, 256),
]


# ---------------------------------------------------------------------------- task table
def test_columns_and_exact_coverage_random_batches():
    rng = np.random.default_rng(1234)
    for it in range(120):
        hkv, group, bm = CONFIGS[it % len(CONFIGS)]
        tile_rows = None
        if it % 3 == 1:
            tile_rows = {"prefill": int(rng.integers(1, 300)), "verify": int(rng.integers(1, 90))}
        stages = random_batch(rng)
        tasks, tree_mask = P.build_tasks(stages, hkv, group, bm, tile_rows)
        check_tasks(stages, tasks, tree_mask, hkv, group, bm, tile_rows)

        num_cores = int(rng.integers(1, 30))
        pl = P.plan(stages, hkv, group, bm, num_cores, tile_rows)
        check_tasks(stages, pl.task_table, pl.tree_mask, hkv, group, bm, tile_rows)
        np.testing.assert_array_equal(pl.tree_mask, tree_mask)
        # plan == reorder(build_tasks(...)), costs sorted and computed per the ABI
        ordered, assignment = P.reorder(tasks, num_cores, group)
        np.testing.assert_array_equal(pl.task_table, ordered)
        np.testing.assert_array_equal(pl.assignment, assignment)
        np.testing.assert_array_equal(pl.costs, independent_costs(pl.task_table, group))
        np.testing.assert_array_equal(P.task_costs(pl.task_table, group), pl.costs)
        assert (np.diff(pl.costs) <= 0).all()
        assert pl.balance == pytest.approx(P.balance(pl.costs, pl.assignment, num_cores))
        assert pl.num_tasks == len(tasks) and pl.num_tokens == sum(s.num_tokens for s in stages)
        # CSR view of the assignment
        ptr, idx = pl.core_tasks()
        assert ptr[-1] == pl.num_tasks and sorted(idx.tolist()) == list(range(pl.num_tasks))
        for c in range(num_cores):
            assert (pl.assignment[idx[ptr[c]:ptr[c + 1]]] == c).all()


def test_kind_specific_columns():
    tree = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 1, 1]], bool)
    stages = [
        Stage.prefill(seq=3, q_start=0, num_tokens=70, context_len=100),
        Stage.decode(seq=0, q_start=70, context_len=41),
        Stage.verify(seq=1, q_start=71, num_tokens=5, context_len=9),
        Stage.verify(seq=2, q_start=76, num_tokens=4, context_len=20, tree=tree),
    ]
    tasks, tree_mask = P.build_tasks(stages, num_kv_heads=2, group=4, bm=128)
    by_stage = {s: tasks[tasks[:, COL_STAGE] == s] for s in range(4)}
    # prefill: 128 rows / G=4 -> 32 tokens per tile: 32, 32, 6
    pre = by_stage[0]
    assert pre[:, COL_Q_ROWS].tolist() == [32, 32, 32, 32, 6, 6]
    assert pre[:, COL_KV_HEAD].tolist() == [0, 1, 0, 1, 0, 1]
    assert pre[:, COL_Q_POS].tolist() == [100, 100, 132, 132, 164, 164]
    assert set(pre[:, COL_KV_LEN]) == {170} and set(pre[:, COL_MASK]) == {MASK_CAUSAL}
    dec = by_stage[1]
    assert dec[:, COL_Q_ROWS].tolist() == [1, 1] and set(dec[:, COL_Q_POS]) == {41}
    assert set(dec[:, COL_KV_LEN]) == {42} and set(dec[:, COL_SEQ]) == {0}
    chain = by_stage[2]
    assert set(chain[:, COL_MASK]) == {MASK_CAUSAL} and set(chain[:, COL_SPEC_LEN]) == {0}
    assert set(chain[:, COL_Q_POS]) == {9} and set(chain[:, COL_KV_LEN]) == {14}
    tr = by_stage[3]
    assert set(tr[:, COL_MASK]) == {MASK_TREE} and set(tr[:, COL_SPEC_LEN]) == {4}
    assert set(tr[:, COL_Q_POS]) == {20} and set(tr[:, COL_KV_LEN]) == {24}
    off = int(tr[0, COL_TREE_OFF])
    np.testing.assert_array_equal(tree_mask[off:off + 16].reshape(4, 4), tree.astype(np.int32))
    # no tree stage -> a 1-element tree mask
    _, tm = P.build_tasks(stages[:3], 2, 4, 128)
    assert tm.shape == (1,) and tm.dtype == np.int32


def test_token_table_and_tile_sizes():
    stages = [Stage.prefill(0, 0, 300, 5), Stage.decode(1, 300, 7), Stage.verify(2, 301, 20, 3)]
    tt = P.token_table(stages, group=4, bm=128)
    assert len(tt) == 3
    assert tt.start.tolist() == [0, 300, 301]
    assert tt.tokens.tolist() == [300, 1, 20]
    assert tt.kv_len.tolist() == [305, 8, 23]
    assert tt.q_pos.tolist() == [5, 7, 3]
    assert tt.tile_tokens.tolist() == [32, 4, 16]      # 128/4, 16/4, 64/4
    assert tt.tile_rows.tolist() == [128, 16, 64]
    assert tt.num_tiles.tolist() == [10, 1, 2]
    assert tt.kinds() == ["prefill", "decode", "verify"]
    assert tt.total_tokens == 321 and tt.total_tiles == 13
    # BM caps the tile; G > tile rows still gives one token per task
    assert P.tokens_per_task("prefill", 4, 64) == 16
    assert P.tokens_per_task("decode", 32, 32) == 1
    assert P.tokens_per_task("verify", 8, 128, {"verify": 40}) == 5
    assert P.tokens_per_task("prefill", 1, 128, {"prefill": 512}) == 128


def test_empty_batch():
    tasks, tm = P.build_tasks([], 2, 4, 128)
    assert tasks.shape == (0, TASK_COLS) and tm.shape == (1,)
    pl = P.plan([], 2, 4, 128, 8)
    assert pl.num_tasks == 0 and pl.balance == 1.0


def test_stage_is_hashable_and_tree_is_read_only():
    t = np.tril(np.ones((3, 3), bool))
    s = Stage.verify(0, 0, 3, 4, t)
    hash(s)
    t[2, 0] = False                      # caller's array may change; the stage's may not
    assert s.tree[2, 0]
    with pytest.raises(ValueError):
        s.tree[0, 0] = False


# ---------------------------------------------------------------------------- reordering
def test_round_robin_patterns():
    assert P.symmetric_round_robin_assign(10, 3).tolist() == [0, 1, 2, 2, 1, 0, 0, 1, 2, 2]
    assert P.round_robin_assign(7, 3).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert P.symmetric_round_robin_assign(3, 1).tolist() == [0, 0, 0]
    assert P.symmetric_round_robin_assign(5000, 7).shape == (5000,)
    assert P.balance(np.array([1, 1, 1, 1]), np.array([0, 1, 0, 1]), 2) == 1.0
    assert P.balance(np.array([3, 1]), np.array([0, 1]), 2) == 1.5
    assert P.balance(np.zeros(0), np.zeros(0, np.int32), 4) == 1.0


def test_designed_case_symmetric_beats_plain():
    # One prefill of 8 tiles of 128 tokens from position 0: causal tile costs 1:2:..:8.
    stages = [Stage.prefill(0, 0, 8 * 128, 0)]
    pl = P.plan(stages, num_kv_heads=1, group=1, bm=128, num_cores=4)
    assert pl.costs.tolist() == [128 * 128 * k for k in range(8, 0, -1)]
    plain = P.balance(pl.costs, P.round_robin_assign(pl.num_tasks, 4), 4)
    assert pl.balance == pytest.approx(1.0)          # 8+1, 7+2, 6+3, 5+4
    assert plain == pytest.approx(12 / 9)            # 8+4 on core 0
    assert pl.balance < plain
    # plain round-robin over the unsorted tasks (costs 1..8): 4 + 8 on core 3
    tasks, _ = P.build_tasks(stages, 1, 1, 128)
    unsorted = P.balance(P.task_costs(tasks), P.round_robin_assign(len(tasks), 4), 4)
    assert unsorted == pytest.approx(12 / 9)


@pytest.mark.parametrize("hkv,group,bm,cores", [
    (1, 1, 128, 4), (2, 4, 128, 8), (8, 4, 128, 24), (1, 8, 64, 20), (4, 2, 128, 48),
])
def test_skewed_batch_symmetric_not_worse(hkv, group, bm, cores):
    rng = np.random.default_rng(hkv * 100 + cores)
    strict = 0
    for trial in range(6):
        stages = [Stage.prefill(0, 0, int(rng.integers(500, 2000)), int(rng.integers(0, 500)))]
        q = stages[0].num_tokens
        for i in range(int(rng.integers(10, 80))):
            stages.append(Stage.decode(i + 1, q, int(rng.integers(0, 3000))))
            q += 1
        pl = P.plan(stages, hkv, group, bm, cores)
        plain_sorted = P.balance(pl.costs, P.round_robin_assign(pl.num_tasks, cores), cores)
        # With costs sorted, every core gets at most one task of each round of num_cores
        # tasks, and plain round-robin gives core 0 the largest of every round.
        assert pl.balance <= plain_sorted + 1e-12
        strict += pl.balance < plain_sorted - 1e-12
    assert strict >= 1


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize("make", [
    lambda: Stage("encode", 0, 0, 1, 0),
    lambda: Stage("decode", 0, 0, 2, 5),
    lambda: Stage("prefill", 0, 0, 0, 0),
    lambda: Stage("prefill", 0, 0, 4, -1),
    lambda: Stage("prefill", -1, 0, 4, 0),
    lambda: Stage("prefill", 0, 0, 4.0, 0),
    lambda: Stage("prefill", 0, 0, True, 0),
    lambda: Stage("prefill", 0, 0, 2, 0, np.eye(2, dtype=bool)),
    lambda: Stage("decode", 0, 0, 1, 3, np.eye(1, dtype=bool)),
    lambda: Stage("verify", 0, 0, 3, 0, np.eye(2, dtype=bool)),
    lambda: Stage("verify", 0, 0, 2, 0, np.array([[1, 0], [1, 0]], bool)),
    lambda: Stage("verify", 0, 0, 2, 0, np.array([[1, 1], [0, 1]], bool)),
    lambda: Stage("verify", 0, 0, 2, 0, np.array([[0.5, 0], [1, 1]])),
    lambda: Stage("prefill", 0, 2**31 - 4, 8, 0),
])
def test_invalid_stage(make):
    with pytest.raises(ValueError):
        make()


def test_invalid_batch_and_arguments():
    ok = [Stage.prefill(0, 0, 10), Stage.decode(1, 10, 4)]
    with pytest.raises(ValueError, match="overlap"):
        P.build_tasks([Stage.prefill(0, 0, 10), Stage.decode(1, 9, 4)], 1, 1, 128)
    with pytest.raises(ValueError, match="overlap"):
        P.plan([Stage.decode(1, 5, 4), Stage.prefill(0, 0, 10)], 1, 1, 128, 4)
    with pytest.raises(ValueError, match="multiple"):
        P.build_tasks(ok, 1, 3, 128)
    with pytest.raises(ValueError, match="smaller"):
        P.build_tasks(ok, 1, 8, 4)
    with pytest.raises(ValueError):
        P.build_tasks(ok, 0, 1, 128)
    with pytest.raises(ValueError):
        P.build_tasks(ok, 1, 0, 128)
    with pytest.raises(ValueError):
        P.build_tasks(ok, 1, 1, 128, {"encode": 4})
    with pytest.raises(ValueError):
        P.build_tasks(ok, 1, 1, 128, {"prefill": 0})
    with pytest.raises(ValueError):
        P.plan(ok, 1, 1, 128, 0)
    with pytest.raises(ValueError, match="Stage"):
        P.build_tasks([("prefill", 0, 0, 10, 0)], 1, 1, 128)
    with pytest.raises(ValueError):
        P.tokens_per_task("encode", 1, 128)


# ---------------------------------------------------------------------------- ABI semantics
def run_task_table(q, k_cache, v_cache, block_table, tasks, tree_mask, scale, group):
    """Direct numpy reading of the task-table ABI, one task at a time (float64)."""
    q = q.astype(np.float64)
    kc = k_cache.astype(np.float64)
    vc = v_cache.astype(np.float64)
    out = np.full(q.shape, np.nan)
    bs = kc.shape[1]
    for t in tasks:
        seq, q0, nq, qpos, kvl, mask, toff, spec, h = (int(v) for v in t[:9])
        rows = nq * group
        tok = q0 + np.arange(rows) // group
        head = h * group + np.arange(rows) % group
        p = qpos + np.arange(rows) // group                        # row positions
        keys = np.arange(kvl)
        phys = block_table[seq, keys // bs]
        k = kc[phys, keys % bs, h]                                  # [L, D]
        v = vc[phys, keys % bs, h]
        if mask == MASK_CAUSAL:
            vis = keys[None, :] <= p[:, None]
        else:
            base = kvl - spec
            i = p - base
            vis = np.ones((rows, kvl), bool)
            sj = keys[base:] - base
            vis[:, base:] = tree_mask[toff + i[:, None] * spec + sj[None, :]] != 0
        s = (q[tok, head] @ k.T) * scale
        s = np.where(vis, s, -np.inf)
        w = np.exp(s - s.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        out[tok, head] = w @ v
    return out


def test_task_table_semantics_match_oracle():
    from tilec.testing.attention_cases import make_standard_cases
    from tilec.testing.oracle import attention_oracle

    for case in make_standard_cases(seed=7, quick=True):
        for bm, tile_rows in [(128, None), (32, {"prefill": 8, "verify": 4, "decode": 2})]:
            if bm % case.group:
                continue
            pl = P.plan(case.stages, case.num_kv_heads, case.group, bm, 5, tile_rows)
            got = run_task_table(case.q, case.k_cache, case.v_cache, case.block_table,
                                 pl.task_table, pl.tree_mask, case.scale, case.group)
            want = attention_oracle(case)
            assert not np.isnan(got).any(), case.name
            np.testing.assert_allclose(got, want, atol=2e-5, rtol=2e-5, err_msg=case.name)
