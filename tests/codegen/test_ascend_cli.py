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
        assert re.search(r"meta_attention\.tile:\d+:\d+: error: ascend910b2: .*not lowered yet", r.output)
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


_EPILOGUE_GEMM = """\
kernel scaled_gemm(A: f16[M, K], B: f16[K, N], C: f16[M, N],
                   BM: const = 32, BN: const = 32, BK: const = 32):
    grid(cdiv(M, BM), cdiv(N, BN))
    m0 = program_id(0) * BM
    n0 = program_id(1) * BN
    acc = zeros((BM, BN), f32)
    for k in range(0, K, BK):
        acc += dot(load(A[m0 : m0 + BM, k : k + BK]), load(B[k : k + BK, n0 : n0 + BN]))
    acc = acc * 2.0
    store(C[m0 : m0 + BM, n0 : n0 + BN], cast(acc, f16))
"""


def test_unsupported_construct_reads_like_a_compiler_error(tmp_path):
    """FILE:LINE:COL: error: TARGET: ..., once, with the line and a caret under what the user
    wrote (the operator, not the implicit broadcast of its scalar), in the user's words."""
    f = tmp_path / "scaled.tile"
    f.write_text(_EPILOGUE_GEMM)
    r = emit(str(f), "--kernel", "scaled_gemm", "--target", "ascend910b4")
    assert r.exit_code == 1 and "Traceback" not in r.output
    lines = r.output.rstrip("\n").splitlines()
    assert lines[0].startswith(f"{f}:9:15: error: ascend910b4: an arithmetic operator ('mul') is not "
                               f"supported outside the K loop"), lines[0]
    assert r.output.count("error") == 1 and "tilec: error" not in r.output
    assert lines[1].strip() == "acc = acc * 2.0" and lines[2].index("^") == lines[1].index("*")
    assert "splat" not in r.output and "op '" not in r.output
