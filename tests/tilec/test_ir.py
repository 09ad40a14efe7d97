"""Tile IR: printing is deterministic, the verifier rejects broken IR, passes fold and decide
masks as documented."""
import pytest

from tilec.compiler import compile_file, compile_source
from tilec.ir.core import Op, Type
from tilec.ir.printer import print_kernel
from tilec.ir.verifier import IRVerifyError, verify
from tilec.kernels import find_kernel, library_files


def test_every_library_kernel_specialises_and_verifies():
    for f in library_files():
        for k in compile_file(f).values():
            verify(k)
            assert print_kernel(k).startswith(f"kernel @{k.name}(")


def test_printing_is_deterministic_and_binding_sensitive():
    f = find_kernel("smooth_gemm")
    a = print_kernel(compile_file(f, "smooth_gemm", {"BM": 64})["smooth_gemm"])
    b = print_kernel(compile_file(f, "smooth_gemm", {"BM": 64})["smooth_gemm"])
    c = print_kernel(compile_file(f, "smooth_gemm", {"BM": 32})["smooth_gemm"])
    d = print_kernel(compile_file(f, "smooth_gemm", {"BM": 64, "DT": "bf16"})["smooth_gemm"])
    assert a == b and a != c and a != d
    assert "consts(BM=64" in a and "f32[64,32]" in a


def test_verifier_rejects_type_mismatch():
    k = compile_file(find_kernel("smooth_gemm"), "smooth_gemm")["smooth_gemm"]
    dot = next(op for op in k.walk() if op.name == "dot")
    dot.results[0].type = Type("f16", dot.results[0].type.shape)
    with pytest.raises(IRVerifyError, match="dot"):
        verify(k)


def test_verifier_rejects_use_before_definition():
    k = compile_file(find_kernel("smooth_gemm"), "smooth_gemm")["smooth_gemm"]
    ops = k.body.ops
    ops.insert(0, ops.pop(next(i for i, o in enumerate(ops) if o.name == "store")))
    with pytest.raises(IRVerifyError, match="before its definition"):
        verify(k)


def test_constant_folding():
    src = """
kernel f(Y: i32[N], BM: const = 16):
    grid(1)
    a = BM * 4 + 3
    store(Y[0 : 1], a + cdiv(BM, 3))
"""
    k = compile_source(src, "f.tile")["f"]
    text = print_kernel(k)
    assert "value=73" in text          # 16*4+3 + ceil(16/3)=6: folded at compile time
    assert "binary" not in text


@pytest.mark.parametrize("binding, masked", [
    ({}, [True, True]),                       # runtime K: virtual padding on both dims
    ({"K": 64}, [True, False]),               # K static and divisible by BK: no K mask
    ({"K": 72}, [True, True]),                # 72 % 32 != 0: K tail masked
])
def test_bounds_analysis(binding, masked):
    k = compile_file(find_kernel("smooth_gemm"), "smooth_gemm", binding)["smooth_gemm"]
    load_a = next(op for op in k.walk() if op.name == "load")
    assert load_a.attrs["masked"] == masked


def test_loop_carried_values_are_explicit():
    k = compile_file(find_kernel("smooth_gemm"), "smooth_gemm")["smooth_gemm"]
    loop = next(op for op in k.walk() if op.name == "for")
    assert [r.type for r in loop.results] == [Type("f32", (32, 32))]
    assert len(loop.regions[0].args) == 2     # induction variable + acc
