"""Ascend C emission for the GEMM program: golden sources, API coverage, and no fake builds.

Regenerate the golden files with ``TILEC_REGEN=1 pytest tests/codegen/test_ascendc_emit.py``."""
import os
import re
from pathlib import Path

import pytest

from codegen.ascend import lower_gemm
from codegen.ascend.emit_ascendc import (CANN_MISSING, AscendCSource, CannUnavailable, build,
                                         cann_available, emit_ascendc)
from tilec.selftest import specialise

GOLDEN = Path(__file__).parent / "golden_ascendc"
CASES = [(name, mode) for name in ("smooth_gemm", "smooth_gemm_t")
         for mode in ("specialised", "runtime")]


def emitted(name, mode) -> AscendCSource:
    extra = {"K": 4096, "N": 4096} if mode == "specialised" else {}
    k = specialise(name, DT="f16", BM=64, BN=64, BK=64, **extra)
    return emit_ascendc(lower_gemm(k, "ascend910b2"))


@pytest.mark.parametrize("name,mode", CASES)
@pytest.mark.parametrize("part,ext", [("kernel", "cpp"), ("tiling", "h"), ("launcher", "cpp")])
def test_matches_golden(name, mode, part, ext):
    text = getattr(emitted(name, mode), part)
    path = GOLDEN / f"{name}_{mode}.{part}.{ext}"
    if os.environ.get("TILEC_REGEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing golden {path}; run with TILEC_REGEN=1"
    assert text == path.read_text(), f"{path} differs (TILEC_REGEN=1 regenerates it)"


KERNEL_APIS = [
    r'#include "kernel_operator\.h"',
    r'extern "C" __global__ __aicore__ void smooth_gemm\w*\(GM_ADDR a, GM_ADDR b, GM_ADDR c, GM_ADDR tiling\)',
    r"TPipe pipe;",
    r"TQue<QuePosition::A1, 2>", r"TQue<QuePosition::B1, 2>",
    r"TQue<QuePosition::A2, 2>", r"TQue<QuePosition::B2, 2>", r"TQue<QuePosition::CO1, 1>",
    r"pipe\.InitBuffer\(inQueueA1, 2, ", r"GlobalTensor<half>", r"\.SetGlobalBuffer\(",
    r"Nd2NzParams", r"\.nValue = mValid;", r"DataCopy\(a1, aGm\[",
    r"LoadData2DParams", r"LoadData\(a2\[", r"LoadData\(b2\[",
    r"MmadParams", r"cmatrixInitVal", r"Mmad\(c1, a2, b2, p\)",
    r"FixpipeParamsV220", r"\.mSize = mValid;", r"QuantMode_t::F322F16",
    r"Fixpipe<half, float, CFG_ROW_MAJOR>\(cGm\[",
    r"GetBlockIdx\(\)", r"GetBlockNum\(\)", r"EnQue", r"DeQue", r"AllocTensor", r"FreeTensor",
    r"void CopyIn\(", r"void SplitA\(", r"void SplitB\(", r"void Compute\(", r"void CopyOut\(",
]


@pytest.mark.parametrize("name,mode", CASES)
def test_kernel_uses_ascendc_apis(name, mode):
    src = emitted(name, mode)
    for pat in KERNEL_APIS:
        assert re.search(pat, src.kernel), pat
    for field in ("M", "N", "K", "BM", "BN", "BK", "tiles"):
        assert re.search(rf"uint32_t {field};", src.tiling), field
    for pat in (r"ACLRT_LAUNCH_KERNEL\(smooth_gemm\w*\)\(blockDim, stream, ", r"aclrtMalloc",
                r"aclrtMemcpy", r"aclrtSynchronizeStream", r'#include "aclrtlaunch_smooth_gemm'):
        assert re.search(pat, src.launcher), pat


def test_specialised_vs_runtime_k_and_transpose():
    spec, rt = emitted("smooth_gemm", "specialised"), emitted("smooth_gemm", "runtime")
    assert "static constexpr uint32_t K = 4096;" in spec.kernel
    assert "InitConstValue" not in spec.kernel           # K multiple of BK: no tail to zero
    assert "K = tiling.K;" in rt.kernel and "InitConstValue" in rt.kernel
    t = emitted("smooth_gemm_t", "runtime").kernel
    assert "p.ifTranspose = true;" in rt.kernel and "p.ifTranspose = true;" not in t
    assert "bGm[(uint64_t)n0 * K + k]" in t and "bGm[(uint64_t)k * N + n0]" in rt.kernel


def test_bf16_output_cast():
    k = specialise("smooth_gemm", DT="bf16", BM=64, BN=64, BK=64)
    src = emit_ascendc(lower_gemm(k)).kernel
    assert "QuantMode_t::F322BF16" in src and "GlobalTensor<bfloat16_t>" in src


@pytest.mark.skipif(cann_available(), reason="CANN is installed here")
def test_build_without_cann_raises_plainly(tmp_path, monkeypatch):
    monkeypatch.delenv("ASCEND_HOME_PATH", raising=False)
    assert cann_available() is False
    with pytest.raises(CannUnavailable) as e:
        build(emitted("smooth_gemm", "runtime"), tmp_path)
    assert str(e.value) == CANN_MISSING
    assert str(e.value) == ("CANN toolkit not found (ASCEND_HOME_PATH unset): the Ascend C source "
                            "was emitted but not compiled or run")
    assert list(tmp_path.iterdir()) == []                # nothing written, nothing run
