"""The tilec command line: ir and selftest (check is covered with the diagnostics)."""
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from tilec.cli import main
from tilec.kernels import find_kernel


def test_ir_prints_specialised_ir():
    r = CliRunner().invoke(main, ["ir", str(find_kernel("smooth_gemm")), "--kernel", "smooth_gemm",
                                  "-D", "BM=64", "-D", "DT=bf16", "-D", "K=4096"])
    assert r.exit_code == 0, r.output
    assert "kernel @smooth_gemm(%A: tensor<bf16[M,4096]>" in r.output
    assert "consts(BM=64, BN=32, BK=32, GM=1, DT=bf16)" in r.output


def test_ir_bad_define_and_unknown_kernel():
    f = str(find_kernel("smooth_gemm"))
    r = CliRunner().invoke(main, ["ir", f, "--kernel", "smooth_gemm", "-D", "BM"])
    assert r.exit_code == 2 and "NAME=VALUE" in r.output
    r = CliRunner().invoke(main, ["ir", f, "--kernel", "nope"])
    assert r.exit_code == 1 and "no kernel named 'nope'" in r.output
    r = CliRunner().invoke(main, ["ir", f, "--kernel", "smooth_gemm", "-D", "XX=3"])
    assert r.exit_code == 1 and "has no const or dim named 'XX'" in r.output


def test_ir_illegal_binding_reports_static_assert():
    r = CliRunner().invoke(main, ["ir", str(find_kernel("meta_attention")), "--kernel", "meta_attention",
                                  "-D", "BM=16", "-D", "G=3"])
    assert r.exit_code == 1
    assert "BM must be a multiple of the GQA group size G" in r.output


def test_selftest_quick_passes_and_prints_a_table():
    p = subprocess.run([sys.executable, "-m", "tilec.cli", "selftest", "--backend", "reference", "--quick",
                        "--kernel", "meta_attention"], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "meta_attention" in p.stdout and "pass" in p.stdout
    assert "0 failed" in p.stdout.splitlines()[-1]


@pytest.mark.parametrize("backend", ["cpu", "native", "triton"])
def test_selftest_passes_on_the_cpu_and_triton_backends(backend):
    """The CI gate: `tilec selftest --backend cpu|native|triton` (Triton interpreted here; the
    whole case set for native, which runs in seconds)."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    quick = [] if backend == "native" else ["--quick"]
    p = subprocess.run([sys.executable, "-m", "tilec.cli", "selftest", "--backend", backend, *quick],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    last = p.stdout.splitlines()[-1]
    assert last.startswith(f"{backend}: ") and " 0 failed" in last and "passed" in last


def test_emit_triton_and_cpu_sources():
    f = str(find_kernel("smooth_gemm"))
    r = CliRunner().invoke(main, ["emit", f, "-k", "smooth_gemm_t", "-b", "triton", "-D", "K=4096"])
    assert r.exit_code == 0, r.output
    assert "@triton.jit" in r.output and "def smooth_gemm_t(" in r.output
    r = CliRunner().invoke(main, ["emit", f, "-k", "smooth_gemm", "-b", "cpu"])
    assert r.exit_code == 0, r.output
    assert "def smooth_gemm(" in r.output
    r = CliRunner().invoke(main, ["emit", f, "-k", "smooth_gemm_t", "-b", "native", "-D", "DT=f32"])
    assert r.exit_code == 0, r.output
    assert 'extern "C" int tilec_launch(' in r.output and "tl::dot_nt(" in r.output


def test_emit_triton_rejects_non_power_of_two_tiles():
    r = CliRunner().invoke(main, ["emit", str(find_kernel("rmsnorm")), "-k", "rmsnorm", "-b", "triton",
                                  "-D", "BN=96"])
    assert r.exit_code == 1
    assert "power-of-2" in r.output


def test_compile_prints_an_error_shared_by_many_variants_once(tmp_path):
    src = tmp_path / "bad.tile"
    src.write_text("kernel bad(X: f32[N], BN: const = 16):\n    grid(1)\n    store(X[0 : BN], nope)\n")
    r = CliRunner().invoke(main, ["compile", str(src), "-t", "cpu,ascend910b2", "-o", str(tmp_path / "o")])
    assert r.exit_code == 1
    assert r.output.count("unknown name 'nope'") == 1 and "(the same error for 2 variants)" in r.output
    assert "failed 2 (2 variants" in r.output
