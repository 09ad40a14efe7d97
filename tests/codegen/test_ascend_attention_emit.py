"""Ascend C for the three Meta-Attention pipelines: golden sources, real API names, and no
fake builds. Regenerate the golden files with
``TILEC_REGEN=1 pytest tests/codegen/test_ascend_attention_emit.py``."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from codegen.ascend.attention import emit_attention, lower_attention
from codegen.ascend.emit_ascendc import CANN_MISSING, CannUnavailable, build, cann_available
from tilec.selftest import specialise

GOLDEN = Path(__file__).parent / "golden_ascendc"
PIPES = ["2-stage", "3-stage", "4-stage"]


def emitted(pipeline):
    # Llama-3-8B heads (GQA 4, d=128), verify-sized tiles
    k = specialise("meta_attention", DT="f16", BM=64, BN=64, D=128, G=4)
    return emit_attention(lower_attention(k, "ascend910b2", pipeline=pipeline))


@pytest.mark.parametrize("pipeline", PIPES)
@pytest.mark.parametrize("part,ext", [("kernel", "cpp"), ("tiling", "h"), ("launcher", "cpp")])
def test_matches_golden(pipeline, part, ext):
    text = getattr(emitted(pipeline), part)
    path = GOLDEN / f"meta_attention_{pipeline.replace('-', '')}.{part}.{ext}"
    if os.environ.get("TILEC_REGEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing golden {path}; run with TILEC_REGEN=1"
    assert text == path.read_text(), f"{path} differs (TILEC_REGEN=1 regenerates it)"


COMMON = [
    r'#include "kernel_operator\.h"', r"KERNEL_TASK_TYPE_DEFAULT\(KERNEL_TYPE_MIX_AIC_1_2\)",
    r'extern "C" __global__ __aicore__ void meta_attention\(GM_ADDR q, GM_ADDR kc',
    r"TPipe pipe;", r"TBuf<TPosition::VECCALC>", r"TBuf<TPosition::A1>", r"TBuf<TPosition::CO1>",
    r"GlobalTensor<half>", r"LocalTensor<float>", r"if ASCEND_IS_AIC", r"if ASCEND_IS_AIV",
    r"GetBlockIdx\(\)", r"GetBlockNum\(\)",
    r"CrossCoreSetFlag<0x2, PIPE_MTE3>\(FLAG_P_READY\)", r"CrossCoreWaitFlag\(FLAG_P_READY\)",
    r"CrossCoreSetFlag<0x2, PIPE_FIX>\(FLAG_O_READY\)", r"CrossCoreWaitFlag\(FLAG_O_READY\)",
    r"SetFlag<HardEvent::MTE2_MTE1>", r"WaitFlag<HardEvent::MTE1_M>", r"SetFlag<HardEvent::M_FIX>",
    r"WaitFlag<HardEvent::MTE2_V>", r"SetFlag<HardEvent::V_MTE3>",
    r"Nd2NzParams", r"DataCopy\(dst", r"LoadData2DParams", r"LoadData\(", r"MmadParams",
    r"Mmad\(c, a, b, p\)", r"FixpipeParamsV220", r"Fixpipe<float, float, CFG_ROW_MAJOR>",
    r"DataCopyPad\(", r"DataCopyExtParams", r"Exp\(", r"ReduceMax<float>", r"ReduceSum<float>",
    r"Muls\(", r"Adds\(", r"CompareScalar\(", r"Select\(", r"SELMODE::VSEL_TENSOR_SCALAR_MODE",
    r"Cast\(OUT\(0\), ACC\(0\), RoundMode::CAST_RINT", r"Duplicate\(", r"CreateVecIndex\(",
    r"btGm\.GetValue\(seq \* MAXB \+ j / BS\)",                 # paged KV through the block table
]


@pytest.mark.parametrize("pipeline", PIPES)
def test_kernel_uses_ascendc_apis(pipeline):
    src = emitted(pipeline)
    for pat in COMMON:
        assert re.search(pat, src.kernel), pat
    k = src.kernel
    assert ("QkRowsOnVector(S(" in k) == (pipeline == "2-stage")       # QK on the Vector
    assert ("CrossCoreWaitFlag(FLAG_S_READY)" in k) == (pipeline != "2-stage")
    online = "Mul(L(0), L(0), ALPHA(" in k                             # the online update
    assert online == (pipeline != "3-stage")
    for f in ("T", "HQ", "HKV", "NB", "BS", "NSEQ", "MAXB", "NTASK", "NTREE", "wsBytesPerGroup"):
        assert re.search(rf"uint32_t {f};", src.tiling), f
    for pat in (r"ACLRT_LAUNCH_KERNEL\(meta_attention\)\(blockDim, stream, ", r"aclrtMalloc",
                r"ACL_DEV_ATTR_AICORE_CORE_NUM", r"aclrtSynchronizeStream"):
        assert re.search(pat, src.launcher), pat


@pytest.mark.skipif(cann_available(), reason="CANN is installed here")
def test_build_without_cann_raises_plainly(tmp_path, monkeypatch):
    monkeypatch.delenv("ASCEND_HOME_PATH", raising=False)
    with pytest.raises(CannUnavailable) as e:
        build(emitted("4-stage"), tmp_path)
    assert str(e.value) == CANN_MISSING
    assert list(tmp_path.iterdir()) == []


def test_tile_classes_emit_one_kernel_with_a_branch_per_class():
    k = specialise("meta_attention", DT="bf16", BM=64, BN=64, D=128, G=4)
    src = emit_attention(lower_attention(k, pipeline="4-stage", classes=(16, 32, 64))).kernel
    assert src.count('extern "C" __global__ __aicore__ void meta_attention(') == 1
    assert "if (rows <= 16) {" in src and "} else if (rows <= 32) {" in src
    for c in (16, 32, 64):
        assert f"void AicQkBlock{c}()" in src and f"void AivSoftmax{c}()" in src
        assert f"curBM = {c};" in src
    assert "GlobalTensor<bfloat16_t>" in src and "QuantMode_t::NoQuant" in src


# A stand-in for CANN's headers that declares just the names the emitted code uses, loosely
# (variadic templates): compiling against it checks C++ syntax, declarations, scoping and
# brace structure of the emitted sources - NOT the Ascend C API signatures, which need CANN.
_STUB_KERNEL = r"""// minimal stand-in for syntax checking only
#pragma once
#include <cstdint>
#define __aicore__
#define __global__
#define __gm__
#define GM_ADDR uint8_t *
#define ASCEND_IS_AIC constexpr (true)
#define ASCEND_IS_AIV constexpr (true)
#define KERNEL_TASK_TYPE_DEFAULT(x)
typedef uint16_t half;
typedef uint16_t bfloat16_t;
enum pipe_t { PIPE_MTE2, PIPE_MTE3, PIPE_FIX, PIPE_V, PIPE_M, PIPE_MTE1, PIPE_S };
namespace AscendC {
enum KernelType { KERNEL_TYPE_MIX_AIC_1_2 };
template <typename T> struct LocalTensor {
    T GetValue(uint32_t) const { return T(); }
    void SetValue(uint32_t, T) const {}
    LocalTensor operator[](uint32_t) const { return *this; }
};
template <typename T> struct GlobalTensor {
    void SetGlobalBuffer(T *, uint64_t) {}
    T GetValue(uint64_t) { return T(); }
    GlobalTensor operator[](uint64_t) { return *this; }
    uint64_t GetSize() { return 0; }
};
enum class TPosition { A1, A2, B1, B2, CO1, VECCALC };
template <TPosition P> struct TBuf { template <typename T> LocalTensor<T> Get() { return {}; } };
struct TPipe { template <class B> void InitBuffer(B &, uint32_t) {} };
enum class HardEvent { MTE2_MTE1, MTE1_MTE2, MTE1_M, M_MTE1, M_FIX, FIX_M, MTE2_V, V_MTE2, V_MTE3, MTE3_V, V_S };
template <HardEvent E> void SetFlag(int) {}
template <HardEvent E> void WaitFlag(int) {}
template <uint8_t mode, pipe_t p> void CrossCoreSetFlag(uint16_t) {}
inline void CrossCoreWaitFlag(uint16_t) {}
template <pipe_t p> void PipeBarrier() {}
inline int64_t GetBlockIdx() { return 0; }
inline int64_t GetBlockNum() { return 1; }
struct Nd2NzParams { uint16_t ndNum, nValue, dValue, srcNdMatrixStride, srcDValue, dstNzC0Stride, dstNzNStride, dstNzMatrixStride; };
struct LoadData2DParams { uint16_t startIndex; uint8_t repeatTimes; uint16_t srcStride; bool ifTranspose; };
struct MmadParams { uint16_t m, n, k; bool cmatrixInitVal; };
enum class QuantMode_t { NoQuant, F322F16, F322BF16 };
struct FixpipeParamsV220 { uint16_t nSize, mSize, srcStride; uint32_t dstStride; QuantMode_t quantPre; uint16_t ndNum, srcNdStride, dstNdStride; };
struct FixpipeConfig {};
constexpr FixpipeConfig CFG_ROW_MAJOR{};
struct DataCopyExtParams { uint16_t blockCount; uint32_t blockLen, srcStride, dstStride, rsv; };
template <typename T> struct DataCopyPadExtParams { bool isPad; uint8_t leftPadding, rightPadding; T paddingValue; };
enum class CMPMODE { LT, LE, GT, GE, EQ, NE };
enum class SELMODE { VSEL_TENSOR_SCALAR_MODE };
enum class RoundMode { CAST_RINT, CAST_NONE };
#define API(name) template <typename... A> void name(A &&...) {}
API(DataCopy) API(DataCopyPad) API(LoadData) API(Mmad) API(Exp) API(Muls) API(Adds) API(Maxs) API(Mins)
API(Add) API(Sub) API(Mul) API(Div) API(Max) API(Min) API(CompareScalar) API(Compare) API(Select)
API(Cast) API(Duplicate) API(CreateVecIndex)
template <typename T, typename... A> void ReduceMax(A &&...) {}
template <typename T, typename... A> void ReduceSum(A &&...) {}
template <typename D, typename S, const FixpipeConfig &C, typename... A> void Fixpipe(A &&...) {}
}  // namespace AscendC
"""
_STUB_ACL = r"""#pragma once
#include <cstdint>
#include <cstddef>
typedef int aclError;
typedef void *aclrtStream;
constexpr aclError ACL_SUCCESS = 0;
enum { ACL_MEM_MALLOC_HUGE_FIRST, ACL_MEMCPY_HOST_TO_DEVICE, ACL_MEMCPY_DEVICE_TO_HOST, ACL_DEV_ATTR_AICORE_CORE_NUM };
inline aclError aclInit(const char *) { return 0; }
inline aclError aclFinalize() { return 0; }
inline aclError aclrtSetDevice(int32_t) { return 0; }
inline aclError aclrtResetDevice(int32_t) { return 0; }
inline aclError aclrtCreateStream(aclrtStream *) { return 0; }
inline aclError aclrtDestroyStream(aclrtStream) { return 0; }
inline aclError aclrtSynchronizeStream(aclrtStream) { return 0; }
inline aclError aclrtMalloc(void **, size_t, int) { return 0; }
inline aclError aclrtFree(void *) { return 0; }
inline aclError aclrtMemcpy(void *, size_t, const void *, size_t, int) { return 0; }
inline aclError aclrtGetDeviceInfo(uint32_t, int, int64_t *) { return 0; }
"""
_STUB_LAUNCH = r"""#pragma once
#define ACLRT_LAUNCH_KERNEL(name) name##_launch
template <typename... A> void meta_attention_launch(A...) {}
"""


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ on this host")
@pytest.mark.parametrize("pipeline,classes", [("2-stage", None), ("3-stage", None),
                                              ("4-stage", None), ("4-stage", (16, 32, 64))])
def test_emitted_sources_pass_a_cpp_syntax_check_against_stub_headers(tmp_path, pipeline, classes):
    k = specialise("meta_attention", DT="f16", BM=64, BN=64, D=128, G=4)
    src = emit_attention(lower_attention(k, "ascend910b2", pipeline=pipeline, classes=classes))
    (tmp_path / "acl").mkdir()
    (tmp_path / "kernel_operator.h").write_text(_STUB_KERNEL)
    (tmp_path / "acl" / "acl.h").write_text(_STUB_ACL)
    (tmp_path / "aclrtlaunch_meta_attention.h").write_text(_STUB_LAUNCH)
    for name, text in src.files().items():
        (tmp_path / name).write_text(text)
    for name in ("meta_attention.cpp", "main.cpp"):
        r = subprocess.run(["g++", "-std=c++17", "-fsyntax-only", "-I", str(tmp_path),
                            str(tmp_path / name)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[:2000]
