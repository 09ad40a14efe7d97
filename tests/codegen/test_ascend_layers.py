"""Vector kernels (rmsnorm, silu_mul, rope) lowered to AIV programs and run on the simulator,
against the reference interpreter and numpy oracles, over ragged row counts and 16-bit types."""
import re
from dataclasses import replace

import numpy as np
import pytest

from codegen import reference
from codegen.ascend import (AivProgram, AscendLegalityError, AscendLoweringError, SyncError,
                            lower, run, simulate_aiv)
from codegen.ascend.program import WaitFlag
from codegen.launch import bind
from tilec.compiler import compile_file, compile_source
from tilec.ir import dtypes as D
from tilec.kernels import find_kernel
from tilec.testing import oracle as O

_CACHE = {}


def spec(name, **binding):
    key = (name, tuple(sorted(binding.items())))
    if key not in _CACHE:
        _CACHE[key] = compile_file(find_kernel(name), name, binding)[name]
    return _CACHE[key]


def rand(rng, shape, dt):
    return rng.standard_normal(shape).astype(np.float32).astype(D.to_numpy(dt))


def both(kernel, args, outs):
    """Run simulator and reference on copies of args; return (sim outputs, ref outputs, stats)."""
    a_sim = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in args.items()}
    a_ref = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in args.items()}
    st = run(kernel, a_sim)
    reference.run(kernel, a_ref)
    return [a_sim[o] for o in outs], [a_ref[o] for o in outs], st


def close(actual, expected, dt):
    atol, rtol = O.tolerance(dt)
    np.testing.assert_allclose(O.to_f32(actual), np.asarray(expected, np.float32), atol=atol, rtol=rtol)


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("m,n,bn", [(1, 96, 128), (5, 96, 128), (33, 200, 256)])
def test_rmsnorm(dt, m, n, bn):
    rng = np.random.default_rng(m)
    args = {"X": rand(rng, (m, n), dt), "W": rand(rng, (n,), dt),
            "Y": np.full((m, n), 7, D.to_numpy(dt)), "eps": 1e-6}
    (y,), (y_ref,), st = both(spec("rmsnorm", DT=dt, BM=4, BN=bn), args, ["Y"])
    np.testing.assert_array_equal(O.to_f32(y), O.to_f32(y_ref))
    close(y, O.rmsnorm_oracle(args["X"], args["W"], 1e-6), dt)
    assert st.tasks == -(-m // 4) and st.cycles > 0


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("m,n", [(1, 100), (3, 256), (40, 300)])
def test_silu_mul(dt, m, n):
    rng = np.random.default_rng(n)
    args = {"G": rand(rng, (m, n), dt), "U": rand(rng, (m, n), dt),
            "Y": np.full((m, n), 7, D.to_numpy(dt))}
    (y,), (y_ref,), st = both(spec("silu_mul", DT=dt), args, ["Y"])
    np.testing.assert_array_equal(O.to_f32(y), O.to_f32(y_ref))
    close(y, O.silu_mul_oracle(args["G"], args["U"]), dt)


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("t,h,d", [(1, 2, 64), (19, 3, 128), (16, 1, 64)])
def test_rope_gathers_positions(dt, t, h, d):
    rng = np.random.default_rng(t)
    cos, sin = O.rope_cache(512, d)
    args = {"X": rand(rng, (t, h, d), dt), "P": rng.integers(0, 300, size=t).astype(np.int32),
            "COS": cos, "SIN": sin, "Y": np.full((t, h, d), 7, D.to_numpy(dt))}
    (y,), (y_ref,), st = both(spec("rope", DT=dt, D=d, HALF=d // 2), args, ["Y"])
    np.testing.assert_array_equal(O.to_f32(y), O.to_f32(y_ref))
    close(y, O.rope_oracle(args["X"], args["P"], cos, sin), dt)
    assert st.bytes["MTE2"] > 0 and st.bytes["MTE3"] == t * h * d * 2


def test_selective_read_write_follow_real_rows():
    def stats(m):
        args = {"G": np.ones((m, 256), np.float16), "U": np.ones((m, 256), np.float16),
                "Y": np.zeros((m, 256), np.float16)}
        return run(spec("silu_mul"), args)
    s1, s16 = stats(1), stats(16)
    assert s1.bytes["MTE2"] * 16 == s16.bytes["MTE2"]          # only real rows are read
    assert s1.bytes["MTE3"] * 16 == s16.bytes["MTE3"]
    assert s1.busy_cycles["VECTOR"] == s16.busy_cycles["VECTOR"]   # whole tiles computed


def test_tasks_spread_over_aiv_cores_and_pipes_overlap():
    m = 16 * 48 * 3                                             # three tasks per AIV
    args = {"G": np.ones((m, 256), np.float16), "U": np.ones((m, 256), np.float16),
            "Y": np.zeros((m, 256), np.float16)}
    st = run(spec("silu_mul"), args)
    assert st.tasks == 144 and st.cores_used == 48
    per_core = {p: c / 48 for p, c in st.busy_cycles.items()}
    assert st.cycles - 1000 < sum(per_core.values())           # ping-pong overlaps the pipes
    assert st.cycles - 1000 >= max(per_core.values())


def _launch(name, **b):
    k = spec(name, **b)
    rng = np.random.default_rng(0)
    args = {"G": rand(rng, (40, 300), "f16"), "U": rand(rng, (40, 300), "f16"),
            "Y": np.zeros((40, 300), np.float16)}
    return k, bind(k, args)


@pytest.mark.parametrize("drop", [("MTE2", "VECTOR"), ("VECTOR", "MTE3"), ("VECTOR", "MTE2"),
                                  ("MTE3", "VECTOR")])
def test_dropping_any_waitflag_is_caught(drop):
    k, L = _launch("silu_mul")
    prog = lower(k)
    assert isinstance(prog, AivProgram)
    simulate_aiv(prog, L.tensors, L.dims, L.scalars, L.grid)
    i = next(i for i, ins in enumerate(prog.body)
             if isinstance(ins, WaitFlag) and (ins.src, ins.dst) == drop)
    bad = replace(prog, body=prog.body[:i] + prog.body[i + 1:])
    with pytest.raises(SyncError):
        simulate_aiv(bad, L.tensors, L.dims, L.scalars, L.grid)


def test_ub_overflow_names_buffer_and_bytes():
    with pytest.raises(AscendLegalityError) as e:
        lower(spec("silu_mul", BM=64, BN=1024), "ascend910b2")
    msg = str(e.value)
    assert re.search(r"UB buffers need \d+ bytes but only 188416 bytes", msg), msg
    assert "silu_mul" in msg and "'in_G' f16[64,1024] x2 = 262144 bytes" in msg


def test_misaligned_ub_row_is_rejected():
    with pytest.raises(AscendLegalityError, match=r"f16\[16,8\]: a row is 16 bytes"):
        lower(spec("silu_mul", BN=8))


def test_unlowerable_op_gets_a_located_error():
    src = ("kernel cs(X: f32[M, N], Y: f32[M], BM: const = 8, BN: const = 8):\n"
           "    grid(cdiv(N, BN))\n"
           "    n0 = program_id(0) * BN\n"
           "    x = load(X[0 : BM, n0 : n0 + BN])\n"
           "    store(Y[0 : BM], sum(x, 0))\n")
    k = compile_source(src, "colsum.tile")["cs"]
    with pytest.raises(AscendLoweringError) as e:
        lower(k)
    assert re.search(r"colsum\.tile:\d+:\d+: error: ascend910b2: only row reductions", str(e.value))


@pytest.mark.parametrize("target,aiv", [("ascend910b2", 48), ("ascend910b4", 40)])
def test_several_tasks_per_core_reuse_ping_pong_slots(target, aiv):
    # 3-4 row blocks per AIV: slots 0/1 alternate and are reused, data must not leak between them
    m = 4 * aiv * 3 + 1
    rng = np.random.default_rng(aiv)
    k = spec("rmsnorm", DT="f16", BM=4, BN=128)
    args = {"X": rand(rng, (m, 96), "f16"), "W": rand(rng, (96,), "f16"),
            "Y": np.full((m, 96), 7, np.float16), "eps": 1e-5}
    ref = {**args, "Y": args["Y"].copy()}
    st = run(k, args, target)
    reference.run(k, ref)
    np.testing.assert_array_equal(args["Y"], ref["Y"])
    assert st.tasks == -(-m // 4) and st.cores_used == aiv and st.target == target


CLIP = """kernel clip(X: f32[M, N], Y: f32[M, N], BM: const = 8, BN: const = 32):
    grid(cdiv(M, BM))
    m0 = program_id(0) * BM
    x = load(X[m0 : m0 + BM, 0 : BN])
    two = full((BM, BN), 2.0, f32)
    y = where(x > 0.5, x, two * x)
    store(Y[m0 : m0 + BM, 0 : BN], where(x < -1.0, -1.0, y))
"""


def test_compare_select_full_lower_and_match_reference():
    k = compile_source(CLIP, "clip.tile")["clip"]
    X = np.random.default_rng(3).standard_normal((13, 20)).astype(np.float32)
    (y,), (y_ref,), _ = both(k, {"X": X, "Y": np.zeros((13, 20), np.float32)}, ["Y"])
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(y, np.where(X < -1, -1, np.where(X > 0.5, X, 2 * X)))
    text = lower(k).dump()
    assert "compare_gt" in text and "select" in text and "dup" in text


def test_no_exported_name_is_also_a_submodule():
    # a package attribute that is a function here and a module under ``import a.b as m`` is
    # a trap: every name codegen.ascend exports means one thing
    import importlib
    import pkgutil

    import codegen.ascend as A
    subs = {m.name for m in pkgutil.iter_modules(A.__path__)}
    assert not [n for n in A.__all__ if n in subs]
    assert A.lower is importlib.import_module("codegen.ascend.dispatch").lower
    assert A.lower_gemm is importlib.import_module("codegen.ascend.gemm").lower_gemm


def _reduce_work_rule(cols, kind):
    # Ascend C ReduceSum/ReduceMax (count form, f32, no index): the first round writes one
    # value per 256-byte repeat (ReduceMax: value and index), rounded up to a 32-byte block
    per_repeat = 2 if kind == "max" else 1
    return -(-(per_repeat * -(-cols // 64)) // 8) * 8 * 4


def test_ub_check_counts_the_reduction_work_buffers():
    from dataclasses import replace as dreplace

    from codegen.ascend.vector import VReduce, ub_slot_bytes
    from tilec import targets as T
    k = spec("rmsnorm", DT="f16", BM=4, BN=1024)
    prog = lower(k)
    reds = [i for i in prog.body if isinstance(i, VReduce)]
    assert reds                                           # rmsnorm sums each row
    bufs = sum(ub_slot_bytes(b) * b.count for b in prog.buffers.values() if b.space == "UB")
    work = max(_reduce_work_rule(prog.buffers[i.src.buf].shape[1], i.kind) for i in reds)
    need = bufs + work + 32                               # + the 32-byte reduction result
    tgt = T.get("ascend910b2")
    with pytest.raises(AscendLegalityError) as e:        # the tiles alone would fit
        lower(k, dreplace(tgt, ub_bytes=need - 32, ub_reserved_bytes=0))
    msg = str(e.value)
    assert f"UB buffers need {need} bytes but only {need - 32} bytes" in msg, msg
    assert f"'work' {work} bytes" in msg, msg
    assert isinstance(lower(k, dreplace(tgt, ub_bytes=need, ub_reserved_bytes=0)), AivProgram)
