"""Split-K: Artifacts.linear over K chunks (f32 partial tiles, then gemm_reduce) equals torch,
with ragged M, N and K, a bias, and the chunk rule's choices."""
import numpy as np
import pytest
import torch

from runtime.artifacts import open_artifacts
from tilec import cache


@pytest.fixture(scope="module")
def splitk_arts(tmp_path_factory):
    d = tmp_path_factory.mktemp("splitk-arts")
    jobs = [j for j in cache.library_jobs([("cpu", "cpu")], kernels=[
        "smooth_gemm_t", "smooth_gemm_t_splitk", "gemm_reduce", "bias_add"])
        if j.binding_dict["DT"] == "f32" and j.binding_dict.get("BM", 16) == 16
        and j.binding_dict.get("BN", 64) in (64, 256) and j.binding_dict.get("BK", 64) == 64]
    stats = cache.compile_jobs(jobs, d)
    assert stats.failed == 0
    assert {j.kernel for j in jobs} == {"smooth_gemm_t", "smooth_gemm_t_splitk", "gemm_reduce", "bias_add"}
    return d


@pytest.mark.parametrize("M,N,K,chunks", [(1, 64, 1024, 4), (5, 100, 700, 3), (17, 64, 300, 2)])
def test_split_k_linear_matches_torch(splitk_arts, M, N, K, chunks):
    arts = open_artifacts(splitk_arts)
    g = torch.Generator().manual_seed(M * N)
    x, w, b = (torch.randn(s, generator=g) for s in ((M, K), (N, K), (N,)))
    sk = arts.split_k(M, N, K, "f32", chunks)
    assert sk is not None
    _, _, binding, n, ks = sk
    assert ks % binding["BK"] == 0 and (n - 1) * ks < K <= n * ks       # chunks cover K once
    out = torch.full((M, N), float("nan"))
    arts.linear(x, w, out, bias=b, split_k=chunks)
    torch.testing.assert_close(out, x @ w.T + b, atol=2e-4, rtol=2e-4)
    plain = arts.linear(x, w, split_k=1)
    torch.testing.assert_close(plain, x @ w.T, atol=2e-4, rtol=2e-4)


def test_split_k_rule(splitk_arts):
    arts = open_artifacts(splitk_arts)
    assert arts.split_k(1, 64, 4096, "f32") is None           # only the triton backend splits itself
    assert arts.split_k(1, 64, 4096, "f32", 1) is None
    assert arts.split_k(1, 64, 100, "f32", 4)[3] == 2         # 100 keys of K: 2 chunks of BK 64
    assert arts.split_k(1, 64, 4096, "f16", 4) is None        # no f16 split variant here
