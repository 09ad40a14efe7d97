"""open_artifacts on a directory `tilec compile --target ascend910b2` built: the ascend-sim
launcher runs its entries on the tile-machine simulator (results against numpy / the attention
oracle; cycles are MODELLED), the npu launcher says what is missing."""
import numpy as np
import pytest

from runtime import launchers
from runtime.artifacts import ArtifactError, open_artifacts
from tilec import cache
from tilec.testing.attention_cases import decode, make_attention_case, prefill, verify
from tilec.testing.oracle import assert_close, attention_oracle


@pytest.fixture(scope="module")
def ascend_dir(tmp_path_factory, small_jobs_for):
    d = tmp_path_factory.mktemp("ascend-arts")
    jobs = small_jobs_for([("ascend910b2", "ascend")])
    stats = cache.compile_jobs(jobs, d)
    assert stats.failed == 0 and not stats.skipped and stats.compiled == len(jobs) == 8
    return d


def test_entries_hold_ascend_c(ascend_dir):
    m = cache.read_manifest(ascend_dir)
    for e in m["entries"].values():
        assert e["backend"] == "ascend" and e["target"] == "ascend910b2" and e["codegen"] == "ok"
        names = set(e["files"])
        assert {"kernel.ir", "meta.json", "main.cpp", "program.txt"} <= names
        assert any(n.endswith("_tiling.h") for n in names) and sum(n.endswith(".cpp") for n in names) == 2
    assert cache.verify(ascend_dir) == []


def test_linear_on_ascend_sim_matches_numpy(ascend_dir):
    arts = open_artifacts(ascend_dir, backend="ascend-sim", target="ascend910b2")
    assert arts.backend == "ascend" and arts.launcher == "ascend-sim"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 64)).astype(np.float16)
    w = rng.standard_normal((64, 64)).astype(np.float16)
    kernel, binding = arts.gemm(5, 64, 64, "f16")
    assert binding["BM"] == 16 and binding["BN"] == 64     # default table: smallest BM, BN | N
    c = np.zeros((5, 64), np.float16)
    st = arts.launch(kernel, {"A": x, "W": w, "C": c})
    assert st.cycles > 0 and st.bound_cycles >= st.cycles   # modelled, floored by HBM
    np.testing.assert_allclose(c.astype(np.float32), x.astype(np.float32) @ w.astype(np.float32).T,
                               rtol=2e-2, atol=2e-2)
    np.testing.assert_array_equal(arts.linear(x, w), c)


@pytest.mark.parametrize("group", [1, 4])
def test_attention_on_ascend_sim_matches_oracle(ascend_dir, group):
    arts = open_artifacts(ascend_dir, backend="ascend-sim", target="ascend910b2")
    rng = np.random.default_rng(group)
    case = make_attention_case(rng, [prefill(9, 3), decode(20), verify(3, 5, True)], 2 * group, 2,
                               64, 16, "f16")
    p = arts.plan(case.stages, 2, group, 64)
    assert p.bm == 64
    out = np.zeros_like(case.q)
    st = arts.run(p, case.q, case.k_cache, case.v_cache, case.block_table, out, case.scale)
    assert st.cycles > 0
    assert_close(out, attention_oracle(case), what=f"ascend-sim attention G={group}")


def test_npu_launcher_says_what_is_missing(ascend_dir):
    ok, why = launchers.npu_available()
    if ok:
        pytest.skip("CANN and torch_npu are present here")
    arts = open_artifacts(ascend_dir, backend="npu", target="ascend910b2")
    with pytest.raises(launchers.LauncherUnavailable, match="CANN and torch_npu") as e:
        arts.launch
    assert why in str(e.value) and "\n" not in str(e.value)


def test_other_ascend_target_is_a_clear_error(ascend_dir):
    with pytest.raises(ArtifactError, match="no ascend/ascend910b4 entries.*tilec compile --target ascend910b4"):
        open_artifacts(ascend_dir, backend="ascend-sim", target="ascend910b4")
