"""tilec demo: compile -> tune -> run hybrid batches layer by layer, checked (small setting)."""
import json
import subprocess
import sys

from tilec.demo import run_demo

# a few variants only: enough for SmolLM2-135M's shapes (G = 3, D = 64)
SPACES = {"format": "tilec-variants", "format_version": 1, "kernels": {
    "smooth_gemm_t": {"space": {"BM": [16, 64], "BN": [32, 64], "BK": [64], "DT": ["f16"]}},
    "meta_attention": {"space": {"BM": [48], "BN": [16, 64], "D": [64], "G": [3], "DT": ["f16"]}}}}


def test_demo_runs_and_checks(tmp_path):
    spaces = tmp_path / "variants.json"
    spaces.write_text(json.dumps(SPACES))
    lines = []
    kw = dict(steps=1, tune_ascend=False, variants_path=spaces, reps=1, echo=lines.append)
    ok = run_demo(tmp_path / "arts", layers=2, budget=1, **kw)
    text = "\n".join(lines)
    assert ok, text
    assert "compiled 12, cache hits 0, failed 0 (12 variants: cpu 6, ascend910b2 6)" in text
    assert "verify: ok" in text
    assert "gemm selection: tuned" in text
    assert "one plan served 2 layers; meta_attention variants loaded so far: 1" in text
    assert text.count("  ok") == 2 and "FAIL" not in text
    assert "balance (max/mean core load)" in text and "meta_attention BM=48" in text
    # the Ascend part runs through the same directory opened for ascend-sim
    assert "backend='ascend', target='ascend910b2', launcher='ascend-sim', 6 entries" in text
    sim = [x for x in lines if x.startswith("   ascend-sim")]
    assert len(sim) == 2 and all("MODELLED" in x and "max |err| vs oracle" in x for x in sim), sim
    assert "attention meta_attention BM=48" in sim[0] and "qkv 960x576 (M=" in sim[1]
    # a second compile of the same directory is all cache hits
    from tilec import cache
    st = cache.compile_jobs(cache.library_jobs([("cpu", "cpu"), ("ascend910b2", "ascend")],
                                               variants_path=spaces), tmp_path / "arts")
    assert (st.compiled, st.hits) == (0, 12)


def test_demo_cli_error_is_one_line(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = subprocess.run([sys.executable, "-m", "tilec.cli", "demo", "--out", str(f)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith("tilec: error:") and "Traceback" not in r.stderr
