"""Shared fixtures: a small artifact directory (a few GEMM and meta_attention variants) for
the runtime tests, compiled once per test session worker."""
import pytest

from tilec import cache

# meta_attention variants the runtime tests launch: D=64, f16, G in {1, 4}, BM 16 (decode) /
# 64 (verify, prefill), BN 16.
ATTN = {"D": 64, "DT": "f16", "BN": 16}
ATTN_G = (1, 4)
ATTN_BM = (16, 64)
GEMM = {"DT": "f16", "BK": 32}
GEMM_BM = (16, 32)
GEMM_BN = (32, 64)


def small_jobs(targets=(("cpu", "cpu"),)):
    jobs = []
    for j in cache.library_jobs(list(targets), kernels=["meta_attention", "smooth_gemm_t"]):
        b = j.binding_dict
        if j.kernel == "meta_attention":
            ok = all(b[k] == v for k, v in ATTN.items()) and b["G"] in ATTN_G and b["BM"] in ATTN_BM
        else:
            ok = all(b[k] == v for k, v in GEMM.items()) and b["BM"] in GEMM_BM and b["BN"] in GEMM_BN
        if ok:
            jobs.append(j)
    return jobs


@pytest.fixture(scope="session")
def small_jobs_for():
    """small_jobs, for tests that compile for other targets."""
    return small_jobs


@pytest.fixture(scope="session")
def small_arts(tmp_path_factory):
    d = tmp_path_factory.mktemp("small-arts")
    stats = cache.compile_jobs(small_jobs(), d)
    assert stats.failed == 0 and stats.compiled == 4 + 4
    return d


# Every layer op's kernels, f32 and f16, for the runtime-op tests: a few GEMM tiles, the
# attention tiles above, and the one or two variants each layer kernel has per dtype.
LAYER_KERNELS = ("smooth_gemm_t", "meta_attention", "rmsnorm", "add_rmsnorm", "silu_mul", "rope",
                 "embed", "kv_write", "bias_add")


def layer_jobs(targets=(("cpu", "cpu"),), dtypes=("f32", "f16")):
    jobs = []
    for j in cache.library_jobs(list(targets), kernels=list(LAYER_KERNELS)):
        b = j.binding_dict
        if b["DT"] not in dtypes:
            continue
        if j.kernel == "meta_attention":
            ok = b["D"] == 64 and b["BN"] == 16 and b["G"] in ATTN_G and b["BM"] in ATTN_BM
        elif j.kernel == "smooth_gemm_t":     # BK 32 (cpu, triton, ascend) or 64 (native: no BK 32)
            ok = b["BK"] == (64 if j.backend == "native" else 32) and b["BM"] in GEMM_BM and b["BN"] in GEMM_BN
        else:
            ok = b.get("BN", 1024) <= 1024 and b.get("D", 64) == 64
        if ok:
            jobs.append(j)
    return jobs


@pytest.fixture(scope="session")
def layer_arts(tmp_path_factory):
    d = tmp_path_factory.mktemp("layer-arts")
    stats = cache.compile_jobs(layer_jobs(), d)
    assert stats.failed == 0 and stats.compiled > 0
    return d


@pytest.fixture(scope="session")
def layer_jobs_for():
    """layer_jobs, for tests that compile for other targets and backends."""
    return layer_jobs
