"""runtime.artifacts: opening a compiled artifact directory, GEMM selection, linear()."""
import json

import numpy as np
import pytest

from runtime.artifacts import ArtifactError, open_artifacts
from tilec import cache

SUBSET = {"BN": 32, "BK": 32, "DT": "f16"}


@pytest.fixture(scope="module")
def art_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("arts")
    jobs = [j for j in cache.library_jobs([cache.backend_for_target("cpu")], kernels=["smooth_gemm_t"])
            if all(j.binding_dict[k] == v for k, v in SUBSET.items()) and j.binding_dict["BM"] in (16, 32)]
    assert len(jobs) == 2
    stats = cache.compile_jobs(jobs, d)
    assert stats.failed == 0
    return d


def _copy(src, tmp_path):
    import shutil
    dst = tmp_path / "arts"
    shutil.copytree(src, dst)
    return dst


def test_selection_table(art_dir):
    arts = open_artifacts(art_dir)
    assert arts.gemm(1, 64, 64, "f16")[1] == {"BM": 16, "BN": 32, "BK": 32, "GM": 1, "DT": "f16"}
    assert arts.gemm(17, 64, 64, "f16")[1]["BM"] == 32
    assert arts.gemm(1000, 64, 64, "f16")[1]["BM"] == 32   # no larger BM: the largest
    k1, _ = arts.gemm(3, 64, 64, "f16")
    assert arts.gemm(5, 96, 32, "f16")[0] is k1            # loaded once, cached


@pytest.mark.parametrize("M", [1, 7, 33, 100])
def test_linear_matches_numpy(art_dir, M):
    arts = open_artifacts(art_dir)
    rng = np.random.default_rng(M)
    N, K = 48, 64
    x = rng.standard_normal((M, K)).astype(np.float16)
    w = rng.standard_normal((N, K)).astype(np.float16)
    c = arts.linear(x, w)
    ref = x.astype(np.float32) @ w.astype(np.float32).T
    assert c.shape == (M, N) and c.dtype == np.float16
    np.testing.assert_allclose(c.astype(np.float32), ref, rtol=2e-2, atol=5e-2)


def test_missing_dir(tmp_path):
    with pytest.raises(ArtifactError, match="tilec compile --target cpu --out"):
        open_artifacts(tmp_path / "nope")


def test_tampered_manifest(art_dir, tmp_path):
    d = _copy(art_dir, tmp_path)
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupted manifest.*tilec compile --target cpu"):
        open_artifacts(d)


def test_tampered_entry(art_dir, tmp_path):
    d = _copy(art_dir, tmp_path)
    ir = next((d / "entries").glob("*/kernel.ir"))
    ir.write_text(ir.read_text() + "# x\n")
    with pytest.raises(ArtifactError, match="tampered.*tilec compile"):
        open_artifacts(d)


def test_version_mismatch(art_dir, tmp_path):
    d = _copy(art_dir, tmp_path)
    m = json.loads((d / "manifest.json").read_text())
    for e in m["entries"].values():
        e["compiler_version"] = "0.0.0-other"
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match=r"0\.0\.0-other.*tilec compile --target cpu --out"):
        open_artifacts(d)


def test_missing_variant(art_dir):
    arts = open_artifacts(art_dir)
    with pytest.raises(ArtifactError, match="smooth_gemm_t.*BM=128.*tilec compile"):
        arts.kernel("smooth_gemm_t", BM=128, BN=32, BK=32, DT="f16")
    with pytest.raises(ArtifactError, match="smooth_gemm .*tilec compile"):
        arts.gemm(4, 32, 32, "f16", trans_b=False)


def test_messages_are_one_line(tmp_path):
    with pytest.raises(ArtifactError) as ei:
        open_artifacts(tmp_path / "nope")
    assert "\n" not in str(ei.value)


def test_cli_compiled_directory(tmp_path):
    from click.testing import CliRunner

    from tilec.cli import main
    vp = tmp_path / "variants.json"
    vp.write_text(json.dumps({"format": "tilec-variants", "format_version": 1, "kernels": {
        "smooth_gemm_t": {"space": {"BM": [16, 32, 64, 128], "BN": [32, 64], "BK": [32], "DT": ["f16"]}}}}))
    out = tmp_path / "arts"
    r = CliRunner().invoke(main, ["compile", "--target", "cpu", "--out", str(out), "--kernel", "smooth_gemm_t",
                                  "--variants", str(vp), "-j", "1"])
    assert r.exit_code == 0, r.output
    arts = open_artifacts(out)
    assert [arts.gemm(m, 128, 64, "f16")[1]["BM"] for m in (1, 16, 17, 33, 64, 65, 500)] == [16, 16, 32, 64, 64, 128, 128]
    assert arts.gemm(8, 128, 64, "f16")[1]["BN"] == 64
    assert arts.gemm(8, 96, 64, "f16")[1]["BN"] == 32     # 64 does not divide 96
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 64)).astype(np.float16)
    w = rng.standard_normal((96, 64)).astype(np.float16)
    ref = x.astype(np.float32) @ w.astype(np.float32).T
    np.testing.assert_allclose(arts.linear(x, w).astype(np.float32), ref, rtol=2e-2, atol=5e-2)
