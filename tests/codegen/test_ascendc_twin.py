"""The executable twin of the Ascend C API (codegen/ascend/twin) and the ascendc-cpu backend:
the typed declarations reject calls the documentation does not allow, the twin reports races,
misuse and deadlocks with the kernel line, and every library kernel's emitted Ascend C runs on
it against the same oracles as the other backends (all three attention pipelines)."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from codegen.ascend import ascendc_cpu as A
from codegen.ascend.ascendc_cpu import TWIN, TwinError

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ on this host")

# The line the first emitted meta_attention carried (issue 14, item 1): an int32 tensor against
# a uint32 scalar deduces T two ways in CompareScalar<T, U>(dst, src0, const T scalar, ...).
ITEM1 = "CompareScalar(ROWOK(0), TOK(0), qRows, CMPMODE::LT, 32);"


def _kernel(body: str, members: str = "") -> str:
    return f"""#include "kernel_operator.h"
using namespace AscendC;
struct K {{
    TPipe pipe;
    TBuf<TPosition::VECCALC> tokBuf, rowokBuf, aBuf, bBuf;
    uint32_t qRows = 3;
    {members}
    LocalTensor<int32_t> TOK(uint32_t) {{ return tokBuf.Get<int32_t>(); }}
    LocalTensor<uint8_t> ROWOK(uint32_t) {{ return rowokBuf.Get<uint8_t>(); }}
    void Run() {{
        pipe.InitBuffer(tokBuf, 256);
        pipe.InitBuffer(rowokBuf, 256);
        pipe.InitBuffer(aBuf, 1024);
        pipe.InitBuffer(bBuf, 1024);
        {body}
    }}
}};
"""


def _syntax(tmp_path, src: str) -> subprocess.CompletedProcess:
    (tmp_path / "k.cpp").write_text(src)
    return subprocess.run(["g++", "-std=c++17", "-fsyntax-only", "-I", str(TWIN), str(tmp_path / "k.cpp")],
                          capture_output=True, text=True)


def test_typed_declarations_reject_the_original_compare_call(tmp_path):
    r = _syntax(tmp_path, _kernel(ITEM1))
    assert r.returncode != 0
    assert "CompareScalar" in r.stderr and "conflicting types" in r.stderr
    # the same call with the scalar of the tensor's type is accepted by the compiler
    assert _syntax(tmp_path, _kernel(ITEM1.replace("qRows", "(int32_t)qRows"))).returncode == 0


def test_typed_declarations_reject_a_float_select_mask(tmp_path):
    bad = ("Select(aBuf.Get<float>(), bBuf.Get<float>(), aBuf.Get<float>(), 0.0f, "
           "SELMODE::VSEL_TENSOR_SCALAR_MODE, 64);")
    r = _syntax(tmp_path, _kernel(bad))
    assert r.returncode != 0 and "unsigned bit mask" in r.stderr


def _run_kernel(tmp_path, body: str) -> subprocess.CompletedProcess:
    """Compile a one-AIV kernel against the twin and run it; returns the process."""
    src = _kernel(body) + """
#include "acl/acl.h"
int main() {
    return (int)twin::Run(twin::Launch::AIV_ONLY, 1, [] { K k; k.Run(); });
}
"""
    (tmp_path / "k.cpp").write_text(src)
    exe = tmp_path / "k"
    c = subprocess.run(["g++", "-std=c++17", "-O0", "-pthread", "-w", "-I", str(TWIN), "k.cpp", "-o", str(exe)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert c.returncode == 0, c.stderr[:2000]
    return subprocess.run([str(exe)], capture_output=True, text=True, cwd=tmp_path, timeout=60)


def test_twin_rejects_int32_compare_modes_other_than_eq(tmp_path):
    r = _run_kernel(tmp_path, "CompareScalar(ROWOK(0), TOK(0), (int32_t)qRows, CMPMODE::LT, 64);")
    assert r.returncode == 3 and "int32_t sources compare only with CMPMODE::EQ" in r.stderr
    assert "k.cpp:" in r.stderr        # the kernel line


def test_twin_rejects_a_compare_count_short_of_a_256_byte_repeat(tmp_path):
    r = _run_kernel(tmp_path, "CompareScalar(ROWOK(0), aBuf.Get<float>(), 1.0f, CMPMODE::LT, 8);")
    assert r.returncode == 3 and "256-byte repeats" in r.stderr


def test_twin_reports_a_vector_result_read_by_the_scalar_unit_without_a_flag(tmp_path):
    body = """LocalTensor<float> a = aBuf.Get<float>();
        Duplicate(a, 1.0f, 64);
        float x = a.GetValue(3);   // no SetFlag/WaitFlag<V_S> in between
        (void)x;"""
    r = _run_kernel(tmp_path, body)
    assert r.returncode == 3 and "race" in r.stderr and "PIPE_S reads UB" in r.stderr
    ok = body.replace("float x", "SetFlag<HardEvent::V_S>(0);\n        WaitFlag<HardEvent::V_S>(0);\n        float x")
    assert _run_kernel(tmp_path, ok).returncode == 0


def test_twin_reports_dependent_vector_ops_without_a_pipe_barrier(tmp_path):
    body = """LocalTensor<float> a = aBuf.Get<float>(), b = bBuf.Get<float>();
        Duplicate(a, 1.0f, 64);
        Adds(b, a, 1.0f, 64);"""
    r = _run_kernel(tmp_path, body)
    assert r.returncode == 3 and "PIPE_V reads UB" in r.stderr
    assert _run_kernel(tmp_path, body.replace("Adds", "PipeBarrier<PIPE_V>();\n        Adds")).returncode == 0


def test_twin_reports_a_copy_overwriting_what_the_vector_unit_still_reads(tmp_path):
    # MTE2 refills a UB buffer the vector unit read, with no V -> MTE2 flag: write-after-read
    body = """LocalTensor<float> a = aBuf.Get<float>(), b = bBuf.Get<float>();
        Duplicate(a, 1.0f, 64);
        SetFlag<HardEvent::V_MTE2>(1);      // hands the Duplicate's write over, not the read below
        WaitFlag<HardEvent::V_MTE2>(1);
        PipeBarrier<PIPE_V>();
        Adds(b, a, 1.0f, 64);
        GlobalTensor<float> g;
        g.SetGlobalBuffer((__gm__ float *)gm, 64);
        DataCopyPad(a, g, DataCopyExtParams{1, 256, 0, 0, 0}, DataCopyPadExtParams<float>{});"""
    src = _kernel(body, "uint8_t *gm = nullptr;").replace("struct K {", "inline uint8_t *g_gm = nullptr;\nstruct K {")
    src = src.replace("uint8_t *gm = nullptr;", "uint8_t *gm = g_gm;")
    for extra, rc in (("", 3), ("SetFlag<HardEvent::V_MTE2>(0);\n        WaitFlag<HardEvent::V_MTE2>(0);\n        ", 0)):
        text = src.replace("        DataCopyPad(a, g,", "        " + extra + "DataCopyPad(a, g,") + """
#include "acl/acl.h"
int main() {
    void *p = nullptr;
    aclrtMalloc(&p, 256, ACL_MEM_MALLOC_HUGE_FIRST);
    g_gm = (uint8_t *)p;
    return (int)twin::Run(twin::Launch::AIV_ONLY, 1, [] { K k; k.Run(); });
}
"""
        (tmp_path / "k.cpp").write_text(text)
        c = subprocess.run(["g++", "-std=c++17", "-O0", "-pthread", "-w", "-I", str(TWIN), "k.cpp", "-o", "k"],
                           capture_output=True, text=True, cwd=tmp_path)
        assert c.returncode == 0, c.stderr[:2000]
        r = subprocess.run([str(tmp_path / "k")], capture_output=True, text=True, timeout=60)
        assert r.returncode == rc, r.stderr
        if rc:
            assert "PIPE_MTE2 overwrites UB" in r.stderr and "PIPE_V of AIV0 read" in r.stderr


def test_twin_reports_misaligned_reduction_destination(tmp_path):
    body = """LocalTensor<float> a = aBuf.Get<float>(), b = bBuf.Get<float>();
        Duplicate(a, 1.0f, 64);
        PipeBarrier<PIPE_V>();
        ReduceMax<float>(b[1], a, b[64], 64);"""
    r = _run_kernel(tmp_path, body)
    assert r.returncode == 3 and "not 32-byte aligned" in r.stderr


def test_twin_enforces_the_usable_ub(tmp_path):
    r = _run_kernel(tmp_path, "TBuf<TPosition::VECCALC> big; pipe.InitBuffer(big, 192 * 1024);")
    assert r.returncode == 3 and "usable bytes" in r.stderr


def _attention(pipeline):
    from tilec.selftest import attention_args, specialise
    from tilec.testing.attention_cases import make_standard_cases
    case = [c for c in make_standard_cases(seed=3, quick=True) if c.name.startswith("mixed")][0]
    kern = specialise("meta_attention", DT="f16", BM=32, BN=16, D=case.head_dim, G=case.group)
    p, args = attention_args(case, 32)
    return case, kern, args


def test_a_removed_flag_in_emitted_attention_is_reported_as_a_race(monkeypatch):
    # drop the AIV's wait for the scores' arrival: the vector unit would read S early
    from codegen.ascend import attention as att
    real = att.emit_attention

    def broken(prog):
        from dataclasses import replace
        src = real(prog)
        text = src.kernel.replace("        WaitFlag<HardEvent::MTE2_V>(0 + (ch & 1));\n", "", 1)
        assert text != src.kernel
        return replace(src, kernel=text)
    monkeypatch.setattr(att, "emit_attention", broken)
    case, kern, args = _attention("4-stage")
    with pytest.raises(TwinError, match=r"meta_attention\.cpp:\d+: race: PIPE_V reads UB"):
        A.run(kern, args, pipeline="4-stage", cores=2)


def test_selftest_ascendc_cpu_quick_passes_every_case():
    # the README's row: every library kernel, all three attention pipelines, against the oracles
    from tilec.selftest import selftest
    results = list(selftest("ascendc-cpu", quick=True))
    ran = [r for r in results if not r.skipped]
    bad = [(r.kernel, r.case, r.note) for r in ran if not r.ok]
    assert not bad, bad
    kernels = {r.kernel for r in ran}
    assert kernels == {"smooth_gemm", "smooth_gemm_t", "rmsnorm", "silu_mul", "rope", "meta_attention"}
    pipes = {p for r in ran if r.kernel == "meta_attention" for p in ("2-stage", "3-stage", "4-stage") if p in r.case}
    assert pipes == {"2-stage", "3-stage", "4-stage"}


def test_emitted_attention_agrees_with_the_simulators_program():
    # same program, two executions: the simulator's and the emitted Ascend C on the twin
    from codegen.ascend.attention import run as sim_run
    for pipeline in ("2-stage", "4-stage"):
        case, kern, args = _attention(pipeline)
        sim_args = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in args.items()}
        sim_run(kern, sim_args, pipeline=pipeline)
        A.run(kern, args, pipeline=pipeline, cores=4)
        a = args["O"].astype(np.float32)
        b = sim_args["O"].astype(np.float32)
        assert np.isfinite(a).all() and np.abs(a - b).max() <= 2e-3, (pipeline, np.abs(a - b).max())
