"""Ascend C emission for the AIV vector kernels: golden sources and API coverage.

Regenerate the golden files with ``TILEC_REGEN=1 pytest tests/codegen/test_ascendc_vector_emit.py``."""
import os
import re
from pathlib import Path

import pytest

from codegen.ascend import lower
from codegen.ascend.emit_ascendc import CannUnavailable, build, cann_available, emit_ascendc
from tilec.selftest import specialise

GOLDEN = Path(__file__).parent / "golden_ascendc"
CASES = {"rmsnorm": dict(DT="f16", BM=4, BN=1024), "silu_mul": dict(DT="bf16"),
         "rope": dict(DT="f16", D=128, HALF=64)}


def emitted(name):
    return emit_ascendc(lower(specialise(name, **CASES[name]), "ascend910b2"))


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("part,ext", [("kernel", "cpp"), ("tiling", "h"), ("launcher", "cpp")])
def test_matches_golden(name, part, ext):
    text = getattr(emitted(name), part)
    path = GOLDEN / f"{name}.{part}.{ext}"
    if os.environ.get("TILEC_REGEN") == "1":
        path.write_text(text)
    assert path.exists(), f"missing golden {path}; run with TILEC_REGEN=1"
    assert text == path.read_text(), f"{path} differs (TILEC_REGEN=1 regenerates it)"


COMMON = [r'#include "kernel_operator\.h"', r"KERNEL_TASK_TYPE_DEFAULT\(KERNEL_TYPE_AIV_ONLY\)",
          r"TPipe pipe;", r"TQue<QuePosition::VECIN, 2>", r"TQue<QuePosition::VECOUT, 2>",
          r"TBuf<TPosition::VECCALC>", r"GlobalTensor<", r"\.SetGlobalBuffer\(",
          r"DataCopyExtParams p\{\(uint16_t\)nr, ", r"DataCopyPad\(gm_Y\[", r"AllocTensor", r"EnQue",
          r"DeQue", r"FreeTensor", r"GetBlockIdx\(\)", r"GetBlockNum\(\)", r"PipeBarrier<PIPE_V>",
          r"Cast\(out_Y, \w+, RoundMode::CAST_RINT, "]


@pytest.mark.parametrize("name,apis", [
    ("rmsnorm", [r"ReduceSum<float>\(red, t_\w+\[r \* 1024\], work, 1024\)", r"Rsqrt\(",
                 r"Adds\(t_\w+, t_\w+, \(float\)tl\.eps, 4\)", r"float s = \(float\)t_\w+\.GetValue\(r\);",
                 r"Muls\(t_\w+\[r \* 1024\], t_\w+\[r \* 1024\], s, 1024\)",
                 r"Mul\(t_\w+\[r \* 1024\], t_\w+\[r \* 1024\], t_w, 1024\)", r"HardEvent::V_S",
                 r"Duplicate\(in_X, \(half\)0\.0f, 4096\)"]),
    ("silu_mul", [r"Exp\(", r"Reciprocal\(", r"Muls\(t_\w+, t_g, -1\.0f, 4096\)",
                  r"Adds\(t_\w+, t_\w+, 1\.0f, 4096\)", r"GlobalTensor<bfloat16_t>"]),
    ("rope", [r"in_pos\.GetValue\(r\)", r"HardEvent::MTE2_S",
              r"DataCopyPad\(in_c\[r \* 64\], gm_COS\[row \* 64 \+ 0\], p, pad\)",
              r"Sub\(", r"gm_X\[s_t0 \* \(int64_t\)tl\.H \* 128 \+ pid1 \* 128 \+ 64\]"]),
])
def test_kernel_uses_ascendc_apis(name, apis):
    src = emitted(name)
    for pat in COMMON + apis:
        assert re.search(pat, src.kernel), pat
    assert re.search(rf"ACLRT_LAUNCH_KERNEL\({name}\)\(blockDim, stream, ", src.launcher)
    assert "ACL_DEV_ATTR_VECTOR_CORE_NUM" in src.launcher
    assert re.search(r"uint32_t tasks;", src.tiling)


def test_rmsnorm_scalar_parameter_travels_in_the_tiling():
    src = emitted("rmsnorm")
    assert "float eps;" in src.tiling and "MakeRmsnormTiling(uint32_t M, uint32_t N, float eps)" in src.tiling
    assert "const float eps = (float)std::atof(argv[3]);" in src.launcher


@pytest.mark.skipif(cann_available(), reason="CANN is installed here")
def test_build_says_cann_is_missing(tmp_path):
    with pytest.raises(CannUnavailable, match="CANN toolkit not found"):
        build(emitted("silu_mul"), tmp_path)


def test_compare_and_select_forms():
    from tilec.compiler import compile_source
    src = ("kernel clip(X: f32[M, N], Y: f32[M, N], BM: const = 8, BN: const = 32):\n"
           "    grid(cdiv(M, BM))\n"
           "    m0 = program_id(0) * BM\n"
           "    x = load(X[m0 : m0 + BM, 0 : BN])\n"
           "    store(Y[m0 : m0 + BM, 0 : BN], where(x < -1.0, -1.0, where(x > 0.5, x, 0.0)))\n")
    text = emit_ascendc(lower(compile_source(src, "clip.tile")["clip"])).kernel
    assert re.search(r"CompareScalar\(t_\w+, in_x, \(float\)0\.5f, CMPMODE::GT, 256\)", text)
    assert re.search(r"Select\(t_\w+, t_\w+, in_x, \(float\)0\.0f, SELMODE::VSEL_TENSOR_SCALAR_MODE, 256\)",
                     text)
    assert re.search(r"Duplicate\(t_\w+, \(float\)-1\.0f, 256\)", text)   # left scalar splatted
