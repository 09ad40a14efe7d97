"""tilec tune on the cpu target chooses between the native and cpu backends per shape, by
measurement, and the runtime launches whichever variant won."""
import json

import numpy as np
import pytest
import torch

import codegen.native as N
from runtime.artifacts import ArtifactError, open_artifacts
from tilec import cache
from tilec.models import load_model
from tilec.tune import summary_lines, tune

pytestmark = pytest.mark.skipif(not N.available()[0], reason=f"native backend: {N.available()[1]}")

TINY = {"hidden_size": 128, "intermediate_size": 64, "num_attention_heads": 2,
        "num_key_value_heads": 1, "head_dim": 64}


def _jobs():
    jobs = []
    for j in cache.library_jobs([("cpu", "cpu"), ("cpu", "native")], kernels=["smooth_gemm_t"]):
        b = j.binding_dict
        if b["DT"] == "f32" and b["BM"] in (1, 4, 16) and b["BN"] == 32 and b["BK"] == 64:
            jobs.append(j)
    return jobs


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    d = tmp_path_factory.mktemp("tune-both")
    jobs = _jobs()
    assert {j.backend for j in jobs} == {"cpu", "native"}
    assert cache.compile_jobs(jobs, d).failed == 0
    cfg = d.parent / "tiny-both.json"
    cfg.write_text(json.dumps(TINY))
    table = tune(d, "cpu", load_model(str(cfg)), budget=4, dtype="f32", reps=1, progress=False)
    return d, table


def test_tune_measures_both_backends_per_shape(both):
    d, table = both
    assert table["backend"] == "native" and table["backends"] == ["native", "cpu"]
    assert "native and cpu" in table["method"]
    assert "native-cpu.json" in json.loads((d / "manifest.json").read_text())["tuning"]
    for row in table["gemm"]:
        for r in row["buckets"].values():
            tried = r["tried"]
            assert any(k.startswith("native ") for k in tried) and any(k.startswith("cpu ") for k in tried)
            best = min(tried, key=tried.get)          # the pick is the measured fastest, either backend
            assert best == f"{r['backend']} " + " ".join(f"{k}={r['binding'][k]}" for k in ("BM", "BN", "BK"))
    assert any("native BM=" in line or "cpu BM=" in line for line in summary_lines(table))


def test_runtime_launches_the_winning_backend(both, tmp_path):
    d, table = both
    # make the choice deterministic: rewrite one row to name the cpu backend's variant
    t = json.loads((d / "tuning" / "native-cpu.json").read_text())
    row = next(r for r in t["gemm"] if r["N"] == 128 + 2 * 64)         # the QKV row: N 256, K 128
    for q, r in row["buckets"].items():
        r["backend"] = "cpu" if q == "4" else "native"
        r["binding"] = {"BM": 16 if q == "4" else 4, "BN": 32, "BK": 64, "DT": "f32"}
    dst = tmp_path / "arts"
    import shutil
    shutil.copytree(d, dst)
    cache.write_tuning(dst, "native-cpu.json", json.dumps(t).encode())
    arts = open_artifacts(dst, "native")
    N_, K = row["N"], row["K"]
    k4, _ = arts.gemm(3, N_, K, "f32")
    k1, _ = arts.gemm(1, N_, K, "f32")
    assert k4.launcher == "cpu" and k1.launcher == "native"
    rng = np.random.default_rng(0)
    for m in (1, 3):
        x = torch.from_numpy(rng.standard_normal((m, K)).astype(np.float32))
        w = torch.from_numpy(rng.standard_normal((N_, K)).astype(np.float32))
        torch.testing.assert_close(arts.linear(x, w), x @ w.T, rtol=1e-5, atol=1e-4)


def test_a_row_naming_another_target_backend_is_refused(both, tmp_path):
    d, _ = both
    t = json.loads((d / "tuning" / "native-cpu.json").read_text())
    next(iter(t["gemm"][0]["buckets"].values()))["backend"] = "triton"
    import shutil
    dst = tmp_path / "arts"
    shutil.copytree(d, dst)
    cache.write_tuning(dst, "native-cpu.json", json.dumps(t).encode())
    with pytest.raises(ArtifactError, match="picks backend 'triton', which cannot run beside native"):
        open_artifacts(dst, "native")


def test_backend_option_tunes_one(both, tmp_path):
    d, _ = both
    import shutil
    dst = tmp_path / "arts"
    shutil.copytree(d, dst)
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    t = tune(dst, "cpu", load_model(str(cfg)), budget=1, dtype="f32", reps=1, progress=False, backend="cpu")
    assert t["backend"] == "cpu" and t["backends"] == ["cpu"]
    assert all(r["backend"] == "cpu" for row in t["gemm"] for r in row["buckets"].values())
