"""Artifacts are what runs: entries load from their own files without the frontend, a user's
kernel compiled from its own source opens by name, tampering after open is caught at load,
and a launch never recompiles per step shape."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from runtime.artifacts import ArtifactError, open_artifacts
from tilec import cache
from tilec.cli import main

ROOT = Path(__file__).resolve().parents[2]

USER_KERNEL = """\
kernel axpy(X: DT[N], Y: DT[N], Z: DT[N], a: f32, BN: const = 64, DT: dtype = f32):
    # z = a * x + y
    grid(cdiv(N, BN))
    n0 = program_id(0) * BN
    x = cast(load(X[n0 : n0 + BN]), f32)
    y = cast(load(Y[n0 : n0 + BN]), f32)
    store(Z[n0 : n0 + BN], a * x + y)
"""


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("user")
    (d / "my.tile").write_text(USER_KERNEL)
    r = CliRunner().invoke(main, ["compile", str(d / "my.tile"), "-t", "cpu", "-o", str(d / "art"),
                                  "-D", "BN=128", "-j", "1"])
    assert r.exit_code == 0, r.output
    return d / "art"


def test_user_kernel_runs_by_name(user_dir):
    arts = open_artifacts(user_dir)
    lk = arts.kernel("axpy", BN=128, DT="f32")
    x, y = torch.arange(300, dtype=torch.float32), torch.ones(300)
    z = torch.empty(300)
    lk({"X": x, "Y": y, "Z": z, "a": 2.0})
    assert torch.equal(z, 2 * x + 1)
    assert arts.kernel("axpy", BN=128) is lk         # consts the source defaults need not be repeated
    with pytest.raises(ArtifactError, match="no variant of axpy with BN=64 .*entries: BN=128 DT=f32"):
        arts.kernel("axpy", BN=64, DT="f32")


def test_runtime_runs_with_the_frontend_unimportable(user_dir, layer_arts):
    """A deployed directory runs without the compiler: importing frontend fails in this process."""
    script = textwrap.dedent(f"""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "frontend" or name.startswith("frontend."):
                    raise ImportError("frontend is not installed here")
        sys.meta_path.insert(0, Block())
        import torch
        from runtime.artifacts import open_artifacts
        from runtime.plan import Stage
        arts = open_artifacts({str(layer_arts)!r})
        x, w = torch.randn(5, 64), torch.randn(32, 64)
        assert torch.allclose(arts.linear(x, w), x @ w.T, atol=1e-4)
        y = arts.rmsnorm(torch.randn(5, 96), torch.ones(96), 1e-5)
        p = arts.plan([Stage.prefill(0, 0, 3), Stage.decode(1, 3, 5)], 2, 4, 64, "f32")
        q = torch.randn(4, 8, 64); kc = torch.randn(4, 4, 2, 64); out = torch.empty_like(q)
        arts.run(p, q, kc, kc.clone(), torch.tensor([[0, 1], [2, 3]], dtype=torch.int32), out)
        u = open_artifacts({str(user_dir)!r}).kernel("axpy", BN=128, DT="f32")
        z = torch.empty(10); u({{"X": torch.ones(10), "Y": torch.ones(10), "Z": z, "a": 3.0}})
        assert torch.equal(z, torch.full((10,), 4.0))
        assert not any(m == "frontend" or m.startswith("frontend.") for m in sys.modules)
        print("ran without the frontend")
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ran without the frontend" in r.stdout


def _copy(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


def _entries(d, kernel):
    m = cache.read_manifest(d)
    return [e for e in m["entries"].values() if e["kernel"] == kernel]


def _entry(d, kernel):
    return _entries(d, kernel)[0]


def test_tampering_between_open_and_launch_is_caught(layer_arts, tmp_path):
    d = _copy(layer_arts, tmp_path / "arts")
    arts = open_artifacts(d)                      # verified here ...
    for e in _entries(d, "silu_mul"):
        p = d / "entries" / e["key"] / "kernel.py"
        p.write_text(p.read_text() + "\nimport os  # injected\n")     # ... changed afterwards
    with pytest.raises(ArtifactError, match=r"kernel\.py: tampered: sha256 .* differs from the manifest"):
        arts.silu_mul(torch.ones(2, 8), torch.ones(2, 8))


def test_a_symlinked_entry_file_is_refused(layer_arts, tmp_path):
    d = _copy(layer_arts, tmp_path / "arts")
    arts = open_artifacts(d)
    for i, e in enumerate(_entries(d, "embed")):
        p = d / "entries" / e["key"] / "kernel.py"
        outside = tmp_path / f"outside{i}.py"
        outside.write_bytes(p.read_bytes())       # same content, so only the link gives it away
        p.unlink()
        p.symlink_to(outside)
    with pytest.raises(ArtifactError, match="kernel.py: unreadable: .*a symlink"):
        arts.embed(torch.ones(3, 8), torch.zeros(2, dtype=torch.int32))


def test_ir_json_must_match_kernel_ir(layer_arts, tmp_path):
    """The reference launcher runs ir.json; a document that differs from kernel.ir (hashed into
    the key) is refused even when the manifest's hashes were rewritten to match it."""
    from runtime.loader import EntryError, LoadedKernel
    e = _entry(layer_arts, "rmsnorm")
    files = {n: (layer_arts / "entries" / e["key"] / n).read_bytes() for n in e["files"]}
    doc = json.loads(files["ir.json"])
    doc["name"] = "rmsnorm2"
    files["ir.json"] = json.dumps(doc).encode()
    lk = LoadedKernel("rmsnorm", e["binding"], e["key"], "reference", None, run=None, files=files)
    with pytest.raises(EntryError, match="does not describe the program in kernel.ir"):
        lk.ir


def test_no_recompile_across_step_shapes(layer_arts, monkeypatch):
    """50 steps of different token counts load each variant once: dims are launch arguments."""
    import codegen.cpu as C
    made = []
    orig = C.CpuKernel.__init__

    def counting(self, *a, **k):
        made.append(a[1].kernel)
        orig(self, *a, **k)
    monkeypatch.setattr(C.CpuKernel, "__init__", counting)
    arts = open_artifacts(layer_arts)
    rng = np.random.default_rng(0)
    w = torch.randn(48, 64)
    for step in range(50):
        m = int(rng.integers(1, 16))           # one M bucket: one GEMM variant
        arts.linear(torch.randn(m, 64), w)
        arts.rmsnorm(torch.randn(m, 96), torch.ones(96), 1e-5)
    assert sorted(made) == ["rmsnorm", "smooth_gemm_t"]


def test_triton_never_specialises_on_dims_or_scalars(layer_arts, tmp_path, layer_jobs_for):
    """The generated @triton.jit marks every dim and scalar do_not_specialize, so a new step
    shape is never a new compile; on a CUDA GPU the JIT cache is counted over 50 shapes."""
    pytest.importorskip("triton")
    import codegen.triton as T
    jobs = [j for j in layer_jobs_for([("cpu", "triton")], ("f16",)) if j.kernel == "rmsnorm"]
    assert cache.compile_jobs(jobs, tmp_path).failed == 0
    arts = open_artifacts(tmp_path, backend="triton", target="cpu")
    lk = arts.kernel("rmsnorm", **jobs[0].binding_dict)
    src = lk.files["kernel.py"].decode()
    assert "@triton.jit(do_not_specialize=['M_', 'N_', 'eps_'])" in src
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: the JIT-cache count needs one (the decorator is checked above)")
    fn = T.load(src, lk.signature).fn
    w = torch.ones(96, dtype=torch.float16, device="cuda")
    for m in range(1, 51):
        x = torch.randn(m, 96, dtype=torch.float16, device="cuda")
        T.load(src, lk.signature).launch({"X": x, "W": w, "Y": torch.empty_like(x), "eps": 1e-5})
    assert sum(len(c) for c in fn.device_caches.values() if isinstance(c, (dict, tuple))) <= 2


def test_h100_entries_hold_sm90_binaries_and_figures(tmp_path):
    """tilec compile -t h100 on a machine without a GPU: the binary and its figures."""
    pytest.importorskip("triton")
    jobs = [j for j in cache.library_jobs([("h100", "triton")], ["smooth_gemm_t"])
            if j.binding_dict == {"BM": 64, "BN": 64, "BK": 32, "GM": 8, "DT": "f16"}]
    assert cache.compile_jobs(jobs, tmp_path).failed == 0
    (e,) = cache.read_manifest(tmp_path)["entries"].values()
    assert {"kernel.py", "kernel_interp.py", "kernel.cubin", "kernel.ptx", "signature.json"} <= set(e["files"])
    g = e["gpu"]
    assert g["arch"] == "sm_90" and g["regs"] > 0 and g["shared"] > 0 and "spill_stores" in g
    cubin = (tmp_path / "entries" / e["key"] / "kernel.cubin").read_bytes()
    assert cubin[:4] == b"\x7fELF"
    r = CliRunner().invoke(main, ["ls", str(tmp_path)])
    assert r.exit_code == 0 and "regs  spill" in r.output and str(g["regs"]) in r.output


def test_plan_tensors_are_made_once_per_step(layer_arts):
    """Every layer of a step reuses the plan's task table, tree mask and checked block table
    (on CUDA: persistent device buffers); a new block table is checked again."""
    from runtime.plan import Stage
    arts = open_artifacts(layer_arts)
    p = arts.plan([Stage.prefill(0, 0, 3), Stage.decode(1, 3, 5)], 2, 4, 64, "f32")
    q, kc = torch.randn(4, 8, 64), torch.randn(4, 4, 2, 64)
    bt = torch.tensor([[0, 1], [2, 3]], dtype=torch.int32)
    seen = []
    orig = arts._plan_tensors

    def spy(*a, **k):
        r = orig(*a, **k)
        seen.append(tuple(id(t) for t in r))
        return r
    arts._plan_tensors = spy
    for _ in range(3):
        arts.run(p, q, kc, kc.clone(), bt, torch.empty_like(q))
    assert len(set(seen)) == 1
    with pytest.raises(ValueError, match="block 1 is 9"):
        arts.run(p, q, kc, kc.clone(), torch.tensor([[0, 1], [2, 9]], dtype=torch.int32), torch.empty_like(q))
