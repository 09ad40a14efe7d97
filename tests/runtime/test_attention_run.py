"""Artifacts.plan / run: one meta_attention launch per hybrid batch, equal to the oracle."""
import numpy as np
import pytest

from runtime import launchers
from runtime.artifacts import ArtifactError, open_artifacts
from tilec.testing.attention_cases import decode, make_attention_case, prefill, verify
from tilec.testing.oracle import assert_close, attention_oracle, attention_oracle_arrays


def _random_batch(rng, n_stages):
    """Prefill (chunked: with context), decodes, chain and tree verifies, in random order."""
    specs = [prefill(int(rng.integers(5, 40)), int(rng.integers(0, 30))),
             verify(int(rng.integers(2, 6)), int(rng.integers(1, 50)), None),
             verify(int(rng.integers(3, 7)), int(rng.integers(1, 50)), True)]
    specs += [decode(int(rng.integers(0, 90))) for _ in range(n_stages - len(specs))]
    return [specs[i] for i in rng.permutation(len(specs))]


@pytest.mark.parametrize("group", [1, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cpu_run_matches_oracle(small_arts, group, seed):
    arts = open_artifacts(small_arts)
    rng = np.random.default_rng(seed)
    hkv = 2
    case = make_attention_case(rng, _random_batch(rng, 6), hkv * group, hkv, 64, 16, "f16")
    p = arts.plan(case.stages, hkv, group, 64)
    assert p.bm == 64                                    # a prefill is present: the large tile
    # decode stages got the small tile (16 rows = 16 // G tokens), prefill the large one
    kinds = np.array([case.stages[s].kind for s in p.task_table[:, 9]])
    assert (p.task_table[kinds == "decode", 2] == 1).all()
    assert p.task_table[kinds == "prefill", 2].max() <= 64 // group
    out = np.zeros_like(case.q)
    arts.run(p, case.q, case.k_cache, case.v_cache, case.block_table, out, case.scale)
    assert_close(out, attention_oracle(case), what=f"cpu attention G={group} seed={seed}")


def test_decode_only_batch_uses_small_tile(small_arts):
    arts = open_artifacts(small_arts)
    rng = np.random.default_rng(5)
    case = make_attention_case(rng, [decode(30), decode(7), decode(64)], 8, 2, 64, 16, "f16")
    p = arts.plan(case.stages, 2, 4, 64)
    kernel, binding = arts.attention(p, 64, "f16")
    assert binding["BM"] == 16 and binding["G"] == 4
    out = np.zeros_like(case.q)
    arts.run(p, case.q, case.k_cache, case.v_cache, case.block_table, out)
    assert_close(out, attention_oracle(case))


def test_one_plan_serves_every_layer(small_arts):
    arts = open_artifacts(small_arts)
    rng = np.random.default_rng(11)
    case = make_attention_case(rng, [prefill(20, 9), decode(40), verify(4, 17, True)], 8, 2, 64, 16,
                               "f16")
    p = arts.plan(case.stages, 2, 4, 64)
    table = p.task_table.copy()
    for layer in range(3):
        # each layer has its own queries and its own KV cache (same block table and lengths)
        q = rng.standard_normal(case.q.shape).astype(np.float16)
        kc = rng.standard_normal(case.k_cache.shape).astype(np.float16)
        vc = rng.standard_normal(case.v_cache.shape).astype(np.float16)
        out = np.zeros_like(q)
        arts.run(p, q, kc, vc, case.block_table, out, case.scale)
        ref = attention_oracle_arrays(q, kc, vc, case.block_table, case.stages, case.scale)
        assert_close(out, ref, what=f"layer {layer}")
    np.testing.assert_array_equal(p.task_table, table)       # the plan is not consumed
    assert sum(1 for (k, _) in arts._loaded if k == "meta_attention") == 1


def test_plan_mismatch_is_a_clear_error(small_arts):
    arts = open_artifacts(small_arts)
    rng = np.random.default_rng(1)
    case = make_attention_case(rng, [decode(5)], 8, 2, 64, 16, "f16")
    p = arts.plan(case.stages, 2, 4, 64)
    q = np.zeros((1, 4, 64), np.float16)
    with pytest.raises(ValueError, match="plan is for 2 KV heads x G=4"):
        arts.run(p, q, case.k_cache, case.v_cache, case.block_table, np.zeros_like(q))
    with pytest.raises(ArtifactError, match="no cpu/cpu variant of meta_attention with G=8.*tilec compile"):
        arts.plan(case.stages, 1, 8, 64)


def test_triton_interpreted_matches_oracle(tmp_path, small_jobs_for):
    """Triton artifacts (target h100) through the triton launcher; without a CUDA GPU this is
    Triton's interpreter, so the batch is tiny."""
    pytest.importorskip("triton")
    from tilec import cache
    jobs = [j for j in small_jobs_for([("h100", "triton")]) if j.kernel == "meta_attention"
            and j.binding_dict["G"] == 4]
    assert cache.compile_jobs(jobs, tmp_path).failed == 0
    arts = open_artifacts(tmp_path, backend="triton", target="h100")
    rng = np.random.default_rng(3)
    case = make_attention_case(rng, [prefill(5, 3), decode(9), verify(3, 4, True)], 8, 2, 64, 8, "f16")
    p = arts.plan(case.stages, 2, 4, 64)
    out = np.zeros_like(case.q)
    arts.run(p, case.q, case.k_cache, case.v_cache, case.block_table, out, case.scale)
    assert_close(out, attention_oracle(case), what="triton attention")


def test_ascend_sim_attention_or_reason(small_arts):
    """ascend-sim runs meta_attention once codegen/ascend lowers it; until then the launcher
    says so, and this test skips with that reason."""
    arts = open_artifacts(small_arts)
    rng = np.random.default_rng(4)
    case = make_attention_case(rng, [prefill(6, 2), decode(9), verify(3, 5, None)], 8, 2, 64, 16, "f16")
    p = arts.plan(case.stages, 2, 4, 64, num_cores=24)
    kernel, _ = arts.attention(p, 64, "f16")
    out = np.zeros_like(case.q)
    launch = launchers.get("ascend-sim", "ascend910b2")
    try:
        launch(kernel, {"Q": case.q, "KC": case.k_cache, "VC": case.v_cache, "O": out,
                        "BT": case.block_table, "TASKS": p.task_table, "TREE": p.tree_mask,
                        "scale": case.scale})
    except launchers.LauncherUnavailable as e:
        assert "not lowered for ascend-sim yet" in str(e)
        pytest.skip(str(e))
    assert_close(out, attention_oracle(case), what="ascend-sim attention")
