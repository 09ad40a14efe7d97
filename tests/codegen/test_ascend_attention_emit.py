"""Ascend C for the three Meta-Attention pipelines: golden sources, real API names, and no
fake builds. Regenerate the golden files with
``TILEC_REGEN=1 pytest tests/codegen/test_ascend_attention_emit.py``."""
import os
import re
import shutil
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


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ on this host")
@pytest.mark.parametrize("pipeline,classes", [("2-stage", None), ("3-stage", None),
                                              ("4-stage", None), ("4-stage", (16, 32, 64))])
def test_emitted_sources_compile_against_the_typed_api_declarations(pipeline, classes):
    # the twin's headers carry the documented signatures (codegen/ascend/twin): a call the API
    # does not allow is a compile error here, not only on a machine with CANN
    from codegen.ascend.ascendc_cpu import syntax_errors
    k = specialise("meta_attention", DT="f16", BM=64, BN=64, D=128, G=4)
    src = emit_attention(lower_attention(k, "ascend910b2", pipeline=pipeline, classes=classes))
    assert syntax_errors(src.files(), "meta_attention") == []
