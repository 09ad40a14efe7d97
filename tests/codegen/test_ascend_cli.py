"""`tilec emit --backend ascend` and `tilec selftest --backend ascend-sim`."""
import re

from click.testing import CliRunner

from codegen.ascend.dispatch import attention_missing
from tilec.cli import main
from tilec.kernels import find_kernel


def emit(*args):
    return CliRunner().invoke(main, ["emit", *args, "--backend", "ascend"])


def test_emit_prints_kernel_tiling_and_launcher():
    r = emit(str(find_kernel("rmsnorm")), "--kernel", "rmsnorm", "-D", "DT=bf16",
             "--target", "ascend910b4")
    assert r.exit_code == 0, r.output
    banners = re.findall(r"^// ===== (\S+) \(([^,]+), ascend910b4\)", r.output, re.M)
    assert banners == [("rmsnorm.cpp", "kernel"), ("rmsnorm_tiling.h", "tiling header"),
                       ("main.cpp", "host launcher")]
    assert 'extern "C" __global__ __aicore__ void rmsnorm(' in r.output
    assert "struct RmsnormTiling" in r.output and "ACLRT_LAUNCH_KERNEL(rmsnorm)" in r.output


def test_emit_gemm_through_the_same_command():
    r = emit(str(find_kernel("smooth_gemm_t")), "--kernel", "smooth_gemm_t", "-D", "BM=64")
    assert r.exit_code == 0, r.output
    assert "Mmad(" in r.output and "// ===== smooth_gemm_t_tiling.h" in r.output


def test_illegal_tiling_is_a_one_line_error():
    r = emit(str(find_kernel("smooth_gemm")), "--kernel", "smooth_gemm", "-D", "BM=256", "-D", "BN=256")
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.output
    assert "L0C" in lines[0] and "262144 bytes" in lines[0] and "131072 bytes" in lines[0]
    r = emit(str(find_kernel("silu_mul")), "--kernel", "silu_mul", "-D", "BM=64", "-D", "BN=1024")
    assert r.exit_code == 1 and "UB buffers need" in r.output and len(r.output.strip().splitlines()) == 1


def test_non_ascend_target_rejected():
    r = emit(str(find_kernel("silu_mul")), "--kernel", "silu_mul", "--target", "h100")
    assert r.exit_code == 1 and "not an Ascend target" in r.output


def test_attention_emit_reports_state_plainly():
    r = emit(str(find_kernel("meta_attention")), "--kernel", "meta_attention", "-D", "BM=32")
    assert "Traceback" not in r.output
    if attention_missing():
        assert r.exit_code == 1
        assert re.search(r"meta_attention\.tile:\d+:\d+: error: ascend: .*not lowered yet", r.output)
    elif r.exit_code:           # lowered, but its emitter (another module) is not there yet
        assert len(r.output.strip().splitlines()) == 1 and "no Ascend C emitter" in r.output
    else:
        assert "// ===== meta_attention.cpp (kernel" in r.output


def test_selftest_ascend_sim():
    r = CliRunner().invoke(main, ["selftest", "--backend", "ascend-sim", "--quick"])
    assert r.exit_code == 0, r.output
    for k in ("smooth_gemm", "smooth_gemm_t", "rmsnorm", "silu_mul", "rope"):
        assert re.search(rf"^{k}\s.*pass$", r.output, re.M), k
    assert "0 failed" in r.output
    why = attention_missing()
    if why:
        assert f"skipped ({why})" in r.output and "skipped" in r.output.splitlines()[-1]
