"""Split-KV (flash-decoding): the planner's chunks, and Artifacts.run's split path (chunks into
f32 partials, then the merge) equal to the oracle on every kind of stage."""
import numpy as np
import pytest
import torch

from runtime import plan as P
from runtime.artifacts import open_artifacts
from tilec import cache
from tilec.testing.attention_cases import decode, make_attention_case, prefill, verify
from tilec.testing.oracle import assert_close, attention_oracle


def _visible(t):
    kv, q_rows = t[:, P.COL_KV_LEN], t[:, P.COL_Q_ROWS]
    return np.where(t[:, P.COL_MASK] == P.MASK_TREE, kv, np.minimum(kv, t[:, P.COL_Q_POS] + q_rows))


@pytest.mark.parametrize("batch,cores", [([8192] * 2, 132), ([32768], 132), ([4000, 100, 9000], 64),
                                         ([1500] * 2, 40)])
def test_chunks_cover_each_task_once_in_one_wave(batch, cores):
    p = P.plan([P.Stage.decode(i, i, c) for i, c in enumerate(batch)], 8, 4, 16, cores)
    s = P.split_kv(p)
    assert s is not None and s.num_parts <= cores and s.chunk % P.SPLIT_ALIGN == 0
    vis = _visible(p.task_table)
    assert s.merge.shape == (p.num_tasks, 2) and int(s.merge[:, 1].sum()) == s.num_parts
    for u in range(p.num_tasks):
        first, n = s.merge[u]
        rows = slice(first, first + n)
        assert (s.tasks[rows] == p.task_table[u]).all()          # each part carries its task
        starts, stops = s.kv[rows, 0], s.kv[rows, 1]
        assert starts[0] == 0 and (starts[1:] == stops[:-1]).all()       # contiguous chunks
        assert stops[-1] >= vis[u] > starts[-1]                          # the last holds the end
        assert (starts % P.SPLIT_ALIGN == 0).all()


def test_no_split_when_the_cores_are_full_or_the_keys_few():
    full = P.plan([P.Stage.decode(i, i, 8192) for i in range(64)], 8, 4, 16, 132)
    assert P.split_kv(full) is None                     # 512 tasks on 132 cores
    short = P.plan([P.Stage.decode(i, i, 300) for i in range(2)], 8, 4, 16, 132)
    assert P.split_kv(short) is None                    # under SPLIT_MIN_KEYS * 2 keys a task


@pytest.fixture(scope="module")
def split_arts(tmp_path_factory):
    d = tmp_path_factory.mktemp("split-arts")
    jobs = [j for j in cache.library_jobs([("cpu", "cpu")],
                                          kernels=["meta_attention", "meta_attention_split", "attention_merge"])
            if j.binding_dict["D"] == 64 and j.binding_dict["DT"] == "f16" and j.binding_dict["G"] in (1, 4)
            and j.binding_dict["BM"] in (16, 64) and j.binding_dict.get("BN", 16) == 16]
    stats = cache.compile_jobs(jobs, d)
    assert stats.failed == 0 and stats.compiled == 12
    return d


@pytest.mark.parametrize("group", [1, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_split_run_matches_oracle(split_arts, group, seed):
    """Long decodes, a chunked prefill and chain/tree verifies over long contexts, planned for
    many cores: every task is cut into chunks, and the merged output equals the oracle."""
    arts = open_artifacts(split_arts)
    rng = np.random.default_rng(seed)
    specs = [decode(int(rng.integers(1100, 2000))), decode(int(rng.integers(600, 1200))), decode(40),
             prefill(int(rng.integers(20, 40)), int(rng.integers(900, 1300))),
             verify(4, int(rng.integers(1000, 1500)), None), verify(5, int(rng.integers(1000, 1500)), True)]
    case = make_attention_case(rng, [specs[i] for i in rng.permutation(len(specs))], 2 * group, 2,
                               64, 16, "f16")
    p = arts.plan(case.stages, 2, group, 64, num_cores=64, split_kv=True)
    assert p.split is not None and int(p.split.merge[:, 1].max()) >= 2
    out = np.full_like(case.q, np.nan)
    arts.run(p, case.q, case.k_cache, case.v_cache, case.block_table, out, case.scale)
    assert_close(out, attention_oracle(case), what=f"split-KV G={group} seed={seed}")
    unsplit = arts.plan(case.stages, 2, group, 64, num_cores=64, split_kv=False)
    assert unsplit.split is None


def test_split_is_off_by_default_on_cpu_backends(split_arts):
    arts = open_artifacts(split_arts)
    rng = np.random.default_rng(3)
    case = make_attention_case(rng, [decode(3000)], 4, 1, 64, 16, "f16")
    assert arts.plan(case.stages, 1, 4, 64, num_cores=64).split is None
    assert arts.plan(case.stages, 1, 4, 64, num_cores=64, split_kv=True).split is not None


def test_triton_backend_splits_on_its_own(tmp_path):
    """On the triton backend (target h100: 132 SMs) the runtime splits by itself: a long decode
    over KV chunks, a decode-sized GEMM over K; both through Triton (its interpreter here)."""
    pytest.importorskip("triton")
    att = {"BM": 16, "D": 64, "G": 4}
    want = {"meta_attention": dict(att, BN=16), "meta_attention_split": dict(att, BN=16), "attention_merge": att,
            "smooth_gemm_t": {"BM": 16, "BN": 64, "BK": 64},
            "smooth_gemm_t_splitk": {"BM": 16, "BN": 64, "BK": 64}, "gemm_reduce": {"BM": 16, "BN": 64}}
    jobs = [j for j in cache.library_jobs([("h100", "triton")], kernels=list(want))
            if j.binding_dict["DT"] == "f16" and all(j.binding_dict[k] == v for k, v in want[j.kernel].items())]
    assert len(jobs) == len(want) and cache.compile_jobs(jobs, tmp_path).failed == 0
    arts = open_artifacts(tmp_path, backend="triton", target="h100")
    rng = np.random.default_rng(4)
    case = make_attention_case(rng, [decode(1100), decode(30)], 8, 2, 64, 16, "f16")
    p = arts.plan(case.stages, 2, 4, 64)
    assert p.split is not None and p.split.num_parts > p.num_tasks
    out = np.zeros_like(case.q)
    arts.run(p, case.q, case.k_cache, case.v_cache, case.block_table, out, case.scale)
    assert_close(out, attention_oracle(case), what="triton split-KV attention")
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(3, 512, generator=g).half(), torch.randn(64, 512, generator=g).half()
    assert arts.split_k(3, 64, 512, "f16") is not None
    torch.testing.assert_close(arts.linear(x, w).float(), x.float() @ w.float().T, atol=0.1, rtol=2e-2)
