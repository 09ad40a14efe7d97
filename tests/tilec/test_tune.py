"""tilec tune: selection tables that runtime/artifacts.py then uses; clear errors."""
import json
import shutil
import subprocess
import sys

import pytest

from runtime.artifacts import ArtifactError, open_artifacts
from tilec import cache
from tilec.models import ModelError, load_model
from tilec.tune import buckets, gemm_candidates, tune

# head_dim 64, G = 4: QKV 384x256, O 256x256, GateUp 256x256, Down 256x128
TINY = {"hidden_size": 256, "intermediate_size": 128, "num_attention_heads": 4,
        "num_key_value_heads": 1, "head_dim": 64}


def _small_jobs():
    jobs = []
    for j in cache.library_jobs([("cpu", "cpu")], kernels=["meta_attention", "smooth_gemm_t"]):
        b = j.binding_dict
        if b["DT"] != "f16":
            continue
        if j.kernel == "smooth_gemm_t" and b["BM"] in (16, 32) and b["BN"] in (32, 64) and b["BK"] == 32:
            jobs.append(j)
        if j.kernel == "meta_attention" and b["G"] == 4 and b["D"] == 64 and b["BM"] in (16, 64):
            jobs.append(j)
    return jobs


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    d = tmp_path_factory.mktemp("tune")
    assert cache.compile_jobs(_small_jobs(), d).failed == 0
    cfg = d.parent / "tiny-config.json"
    cfg.write_text(json.dumps(TINY))
    table = tune(d, "cpu", load_model(str(cfg)), budget=4, reps=1, progress=False)
    return d, table


def _copy(src, tmp_path):
    dst = tmp_path / "arts"
    shutil.copytree(src, dst)
    return dst


def test_model_shapes():
    m = load_model("llama-3-8b", tp=2)
    assert [(l.name, l.N, l.K) for l in m.linears] == [
        ("qkv", (16 + 2 * 4) * 128, 4096), ("o", 4096, 16 * 128), ("gate_up", 14336, 4096),
        ("down", 4096, 7168)]
    assert (m.group, m.kv_heads, m.head_dim) == (4, 4, 128)
    assert load_model("qwen2.5-7b", tp=4).kv_heads == 1
    with pytest.raises(ModelError, match="do not split over tp=3"):
        load_model("llama-3-8b", tp=3)
    with pytest.raises(ModelError, match="neither a built-in model"):
        load_model("no-such-model")


def test_buckets_and_candidates():
    assert buckets(1) == [1] and buckets(5) == [1, 2, 4, 8]
    bs = [{"BM": m, "BN": n, "BK": 32} for m in (16, 32, 64, 128) for n in (32, 96)]
    c = gemm_candidates(bs, 40, 64, 64)
    assert {b["BM"] for b in c} == {32, 64, 128} and {b["BN"] for b in c} == {32}


def test_tune_writes_tables_that_gemm_uses(tuned):
    d, table = tuned
    assert table["buckets"] == [1, 2, 4] and table["method"].startswith("measured")
    assert "cpu-cpu.json" in json.loads((d / "manifest.json").read_text())["tuning"]
    assert cache.verify(d) == []
    arts = open_artifacts(d)
    assert "tuned" in repr(arts)
    rows = {(r["N"], r["K"]): r for r in table["gemm"]}
    assert set(rows) == {(384, 256), (256, 256), (256, 128)}     # O and GateUp share a row
    for (n, k), r in rows.items():
        for q, pick in r["buckets"].items():
            for m in range(int(q) // 2 + 1, int(q) + 1):
                assert arts.gemm(m, n, k, "f16")[1] == pick["binding"]
            assert pick["seconds"] == min(pick["tried"].values())
    # past the budget and for untuned shapes: the default table
    assert arts.gemm(30, 384, 256, "f16")[1]["BM"] == 32
    assert arts.gemm(3, 64, 64, "f16")[1] == arts.default_gemm(3, 64, 64, "f16")[1]
    tiles = arts.attention_tiles(4, 64, "f16")
    assert {t["source"] for t in tiles.values()} == {"tuned"}
    assert tiles == {k: dict(BM=v["BM"], BN=v["BN"], source="tuned")
                     for k, v in table["attention"][0]["tiles"].items()}


def test_a_tuned_choice_overrides_the_default(tuned, tmp_path):
    """Plumbing: a table that picks what the default would not is followed."""
    d = _copy(tuned[0], tmp_path)
    t = json.loads((d / "tuning" / "cpu-cpu.json").read_text())
    row = next(r for r in t["gemm"] if r["N"] == 384)
    row["buckets"]["1"]["binding"] = {"BM": 32, "BN": 32, "BK": 32, "DT": "f16"}
    cache.write_tuning(d, "cpu-cpu.json", json.dumps(t).encode())
    arts = open_artifacts(d)
    assert arts.default_gemm(1, 384, 256, "f16")[1]["BM"] == 16
    assert arts.gemm(1, 384, 256, "f16")[1] == {"BM": 32, "BN": 32, "BK": 32, "DT": "f16"}


def test_tampered_tuning_table(tuned, tmp_path):
    d = _copy(tuned[0], tmp_path)
    p = d / "tuning" / "cpu-cpu.json"
    p.write_text(p.read_text().replace('"BM": 16', '"BM": 32', 1))
    assert any(x.startswith("tampered: tuning/cpu-cpu.json") for x in cache.verify(d))
    with pytest.raises(ArtifactError, match=r"tampered: tuning/cpu-cpu.json.*re-run: tilec tune .* --target cpu"):
        open_artifacts(d)


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.pop("gemm"), "corrupted tuning table"),
    (lambda t: t["gemm"][0]["buckets"]["1"]["binding"].update(BM=128), "not in the directory"),
    (lambda t: t.update(compiler_version="0.0.0-other"), "tuned by tilec 0.0.0-other"),
    (lambda t: t["attention"][0]["tiles"].update(huge={"BM": 16, "BN": 16}), "unknown stage kind"),
])
def test_corrupted_tuning_table(tuned, tmp_path, edit, match):
    d = _copy(tuned[0], tmp_path)
    t = json.loads((d / "tuning" / "cpu-cpu.json").read_text())
    edit(t)
    cache.write_tuning(d, "cpu-cpu.json", json.dumps(t).encode())   # hashes match: content is bad
    with pytest.raises(ArtifactError, match=f"{match}.*tilec tune"):
        open_artifacts(d)


def test_not_json_tuning_table(tuned, tmp_path):
    d = _copy(tuned[0], tmp_path)
    cache.write_tuning(d, "cpu-cpu.json", b"{oops")
    with pytest.raises(ArtifactError, match="corrupted tuning table.*JSONDecodeError"):
        open_artifacts(d)


def _tilec(*args):
    return subprocess.run([sys.executable, "-m", "tilec.cli", *map(str, args)], capture_output=True, text=True)


def test_cli_tune_retunes_a_damaged_table_and_errors_are_one_line(tuned, tmp_path):
    d = _copy(tuned[0], tmp_path)
    (d / "tuning" / "cpu-cpu.json").write_text("garbage")
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(TINY))
    r = _tilec("tune", d, "--target", "cpu", "--model", cfg, "--budget", "2", "--reps", "1")
    assert r.returncode == 0, r.stderr
    assert "qkv" in r.stdout and "speedup" in r.stdout and "wrote" in r.stdout
    assert _tilec("verify", d).returncode == 0
    assert "GEMM selection: tuned tables tuning/cpu-cpu.json" in _tilec("ls", d).stdout
    r = _tilec("show", d, "tuning/cpu-cpu.json")
    assert r.returncode == 0 and "qkv" in r.stdout and "measured: cpu backend" in r.stdout
    r = _tilec("tune", d, "--target", "cpu", "--model", "nope")
    assert r.returncode == 1 and r.stderr.startswith("tilec: error: nope: neither") and "Traceback" not in r.stderr
    r = _tilec("tune", tmp_path / "missing", "--target", "cpu")
    assert r.returncode == 1 and "tilec compile --target cpu" in r.stderr and "Traceback" not in r.stderr
    r = _tilec("tune", d, "--target", "h100")
    if "CUDA" in r.stderr:
        assert r.returncode == 1 and r.stderr.count("\n") == 1


def test_ascend_tuning_is_modelled(tuned, tmp_path):
    d = _copy(tuned[0], tmp_path)
    t = tune(d, "ascend910b2", load_model("smollm2-135m"), budget=2, reps=1, progress=False)
    assert t["method"].startswith("modelled") and t["backend"] == "ascend"
    assert all(r["buckets"]["1"]["seconds"] > 0 for r in t["gemm"])
    assert cache.verify(d) == []
    # the modelled time is the simulator's: re-run the chosen variant on data
    import numpy as np
    from codegen.ascend import sim
    from tilec import targets
    from tilec.compiler import compile_file
    from tilec.kernels import find_kernel
    row = next(r for r in t["gemm"] if r["layer"] == "o")
    pick = row["buckets"]["2"]
    k = compile_file(find_kernel("smooth_gemm_t"), "smooth_gemm_t", pick["binding"])["smooth_gemm_t"]
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, row["K"])).astype(np.float16)
    w = rng.standard_normal((row["N"], row["K"])).astype(np.float16)
    st = sim.run(k, {"A": a, "W": w, "C": np.zeros((2, row["N"]), np.float16)}, "ascend910b2")
    # the modelled time is the HBM-floored one (bound_cycles), never below streaming W once
    assert st.bound_cycles / targets.get("ascend910b2").clock_hz == pytest.approx(pick["seconds"])
    tgt = targets.get("ascend910b2")
    for r in t["gemm"]:
        for q, b in r["buckets"].items():
            w_bytes = r["N"] * r["K"] * 2
            assert b["seconds"] >= w_bytes / tgt.hbm_bytes_per_s * (1 - 1e-9), (r["layer"], q, b)


def test_ascend_decode_gemm_is_not_modelled_faster_than_hbm(tmp_path):
    """M=1 over a 4096x4096 weight: the pipes alone would finish before HBM could deliver W;
    the tuned time is floored at W's bytes over HBM bandwidth."""
    from tilec import targets
    cfg = tmp_path / "wide.json"
    cfg.write_text(json.dumps({"hidden_size": 4096, "intermediate_size": 2048, "num_attention_heads": 32,
                               "num_key_value_heads": 8, "head_dim": 128}))
    d = tmp_path / "arts"
    d.mkdir()
    cache.compile_jobs([], d)
    jobs = [j for j in _small_jobs() if j.kernel == "smooth_gemm_t"]
    assert cache.compile_jobs(jobs, d).failed == 0   # cpu entries only: ascend is modelled ahead
    t = tune(d, "ascend910b2", load_model(str(cfg)), budget=1, reps=1, progress=False)
    tgt = targets.get("ascend910b2")
    o = next(r for r in t["gemm"] if "o" in r["layer"].split(","))
    floor = o["N"] * o["K"] * 2 / tgt.hbm_bytes_per_s
    assert o["buckets"]["1"]["seconds"] == pytest.approx(floor, rel=0.05)


def test_ascend_tuning_uses_compiled_ascend_entries(tmp_path):
    """With ascend entries in DIR (tilec compile --target ascend910b2) the candidates are those
    entries, not the library's variant space, and the table opens with ascend-sim."""
    jobs = [cache.Job(j.source, j.kernel, j.binding, "ascend", "ascend910b2", j.label)
            for j in _small_jobs() if j.kernel == "smooth_gemm_t"]
    assert cache.compile_jobs(jobs, tmp_path).compiled == len(jobs)
    cfg = tmp_path.parent / "tiny-config-ascend.json"
    cfg.write_text(json.dumps(TINY))
    t = tune(tmp_path, "ascend910b2", load_model(str(cfg)), budget=2, reps=1, progress=False)
    assert not any("library variant space" in n for n in t["notes"])
    arts = open_artifacts(tmp_path, backend="ascend-sim", target="ascend910b2")
    assert arts.tuning is not None and arts.launcher == "ascend-sim"
    row = t["gemm"][0]
    _, b = arts.gemm(1, row["N"], row["K"], "f16")
    assert b == row["buckets"]["1"]["binding"]


def test_backend_constraints_keep_bm48_off_triton():
    """G = 3 needs BM = 48, which Triton cannot build: compiled for cpu, not for triton."""
    from tilec.variants import VariantError, expand
    jobs = cache.library_jobs([("cpu", "cpu"), ("h100", "triton")], kernels=["meta_attention"])
    by = {}
    for j in jobs:
        by.setdefault(j.backend, set()).add(j.binding_dict["BM"])
    assert 48 in by["cpu"] and 48 not in by["triton"]
    with pytest.raises(VariantError, match="backend_constraints"):
        expand({"space": {"BM": [1]}, "backend_constraints": {"triton": "BM > 1"}})


def test_verify_and_gc_see_stray_tuning_files(tuned, tmp_path):
    d = _copy(tuned[0], tmp_path)
    (d / "tuning" / "other.json").write_text("{}")
    (d / "tuning" / ".tmp-cpu-cpu.json.x.tmp").write_text("")
    probs = cache.verify(d)
    assert "stray: tuning/other.json (not in the manifest)" in probs
    assert any("temporary file" in p for p in probs)
    removed = cache.gc(d)
    assert "tuning/other.json" in removed and cache.verify(d) == []
    (d / "tuning" / "cpu-cpu.json").unlink()
    assert cache.verify(d) == ["missing: tuning/cpu-cpu.json (tuning table in the manifest)"]
