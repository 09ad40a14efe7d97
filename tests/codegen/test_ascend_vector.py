"""The AIV ISA (codegen/ascend/vector.py): each instruction against numpy, virtual padding of
the copies, the flag discipline and UB legality."""
import ml_dtypes
import numpy as np
import pytest

from codegen.ascend.program import Buffer, Ref, SetFlag, WaitFlag
from codegen.ascend.sim import SyncError, run_instrs
from codegen.ascend.vector import (Bcast, CopyGmToUb, CopyGmToUbGather, CopyUbToGm, GmView,
                                   Scalar, SOp, UbLegalityError, VBinary, VCast, VCompare,
                                   VDup, VReduce, VSelect, VUnary, check_ub)
from tilec import targets as T

BF16 = ml_dtypes.bfloat16


def ub(name, r, c, dt="f32", count=1):
    return Buffer(name, "UB", (r, c), dt, count, "ND")


def hand(src, dst):
    return [SetFlag(src=src, dst=dst, event=0), WaitFlag(src=src, dst=dst, event=0)]


def load_f32(x, rows, cols, name="x"):
    """MTE2 copy of GM tensor X into UB tile `name`, handed to VECTOR."""
    return [CopyGmToUb(src=GmView("X", (("r0", rows), (0, cols))), dst=Ref(name))] + \
        hand("MTE2", "VECTOR")


def test_copy_reads_valid_rows_only_and_pads():
    X = np.arange(5 * 32, dtype=np.float32).reshape(5, 32)
    bufs = [ub("x", 8, 32)]
    m, st = run_instrs(bufs, load_f32(X, 8, 32), {"X": X}, {"r0": 3})
    t = m.slots[("x", 0)].data
    np.testing.assert_array_equal(t[:2], X[3:5])
    assert not t[2:].any()
    assert st.bytes["MTE2"] == 2 * 32 * 4                   # only the two real rows moved


def test_copy_pad_value_and_column_tail():
    X = np.ones((4, 40), np.float16)
    bufs = [Buffer("x", "UB", (4, 64), "f16", 1, "ND")]
    ins = [CopyGmToUb(src=GmView("X", ((0, 4), ("c0", 64))), dst=Ref("x"), pad=-1.0)]
    m, _ = run_instrs(bufs, ins, {"X": X}, {"c0": 32})
    t = m.slots[("x", 0)].data
    assert (t[:, :8] == 1).all() and (t[:, 8:] == -1).all()


def test_store_writes_valid_part_only_through_a_dropped_dim():
    Y = np.full((3, 2, 16), 7, np.float16)
    bufs = [Buffer("y", "UB", (4, 16), "f16", 1, "ND")]
    ins = [VDup(dst=Ref("y"), value=Scalar(2.5))] + hand("VECTOR", "MTE3") + \
          [CopyUbToGm(src=Ref("y"), dst=GmView("Y", ((1, 4), ("h", None), (0, 16))))]
    m, st = run_instrs(bufs, ins, {"Y": Y}, {"h": 1})
    assert (Y[1:, 1] == 2.5).all() and (Y[0] == 7).all() and (Y[:, 0] == 7).all()
    assert st.bytes["MTE3"] == 2 * 16 * 2


def test_gather_rows_by_index():
    TAB = np.arange(10 * 8, dtype=np.float32).reshape(10, 8)
    P = np.array([4, 9, 12, 0], np.int32)                  # 12 is outside the table
    bufs = [Buffer("p", "UB", (1, 8), "i32", 1, "ND"), ub("c", 4, 8)]
    ins = [CopyGmToUb(src=GmView("P", ((0, 8),)), dst=Ref("p")),
           CopyGmToUbGather(table="TAB", index=Ref("p"), cols=(0, 8), dst=Ref("c"), count="n")]
    m, _ = run_instrs(bufs, ins, {"TAB": TAB, "P": P}, {"n": 3})
    t = m.slots[("c", 0)].data
    np.testing.assert_array_equal(t[0], TAB[4])
    np.testing.assert_array_equal(t[1], TAB[9])
    assert not t[2].any() and not t[3].any()                # out of table / past count


@pytest.mark.parametrize("op,f", [("add", np.add), ("sub", np.subtract), ("mul", np.multiply),
                                  ("div", np.divide), ("max", np.maximum), ("min", np.minimum)])
@pytest.mark.parametrize("mode", ["tile", "row", "col", "scalar"])
def test_binary_ops_and_broadcasts(op, f, mode):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 8)).astype(np.float32)
    B = (rng.standard_normal((4, 8)) + 3).astype(np.float32)
    bufs = [ub("x", 4, 8), ub("b", 4, 8), ub("r", 1, 8), ub("c", 4, 1), ub("o", 4, 8)]
    ins = [CopyGmToUb(src=GmView("X", ((0, 4), (0, 8))), dst=Ref("x")),
           CopyGmToUb(src=GmView("B", ((0, 4), (0, 8))), dst=Ref("b")),
           CopyGmToUb(src=GmView("B", ((0, None), (0, 8))), dst=Ref("r")),
           CopyGmToUb(src=GmView("B", ((0, 4), (0, 1))), dst=Ref("c"))] + hand("MTE2", "VECTOR")
    b, want_b = {"tile": (Ref("b"), B), "row": (Bcast(Ref("r"), "row"), B[0:1, :]),
                 "col": (Bcast(Ref("c"), "col"), B[:, 0:1]), "scalar": (Scalar("s"), np.float32(1.5))}[mode]
    ins.append(VBinary(op=op, dst=Ref("o"), a=Ref("x"), b=b))
    m, st = run_instrs(bufs, ins, {"X": X, "B": B}, {"s": 1.5})
    np.testing.assert_allclose(m.slots[("o", 0)].data, f(X, want_b), rtol=1e-6)
    assert st.busy_cycles["VECTOR"] > 0


@pytest.mark.parametrize("op,f", [("exp", np.exp), ("ln", np.log), ("sqrt", np.sqrt),
                                  ("rsqrt", lambda x: 1 / np.sqrt(x)),
                                  ("reciprocal", lambda x: 1 / x), ("abs", np.abs),
                                  ("neg", np.negative), ("relu", lambda x: np.maximum(x, 0))])
def test_unary_ops(op, f):
    X = np.linspace(0.1, 4, 32, dtype=np.float32).reshape(4, 8)
    if op in ("abs", "neg", "relu"):
        X = X - 2
    bufs = [ub("x", 4, 8), ub("o", 4, 8)]
    ins = load_f32(X, 4, 8) + [VUnary(op=op, dst=Ref("o"), src=Ref("x"))]
    m, _ = run_instrs(bufs, ins, {"X": X}, {"r0": 0})
    np.testing.assert_allclose(m.slots[("o", 0)].data, f(X), rtol=1e-6)


@pytest.mark.parametrize("dt,npdt", [("f16", np.float16), ("bf16", BF16)])
def test_cast_round_trip_and_reductions(dt, npdt):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((8, 16)).astype(npdt)
    bufs = [Buffer("x", "UB", (8, 16), dt, 1, "ND"), ub("f", 8, 16), ub("s", 8, 1), ub("m", 8, 1),
            Buffer("h", "UB", (8, 16), dt, 1, "ND")]
    ins = [CopyGmToUb(src=GmView("X", ((0, 8), (0, 16))), dst=Ref("x"))] + hand("MTE2", "VECTOR") + \
          [VCast(dst=Ref("f"), src=Ref("x")), VReduce(kind="sum", dst=Ref("s"), src=Ref("f")),
           VReduce(kind="max", dst=Ref("m"), src=Ref("f")), VCast(dst=Ref("h"), src=Ref("f"))]
    m, _ = run_instrs(bufs, ins, {"X": X})
    f = X.astype(np.float32)
    np.testing.assert_array_equal(m.slots[("f", 0)].data, f)
    np.testing.assert_allclose(m.slots[("s", 0)].data[:, 0], f.sum(1), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(m.slots[("m", 0)].data[:, 0], f.max(1))
    assert m.slots[("h", 0)].data.dtype == npdt
    np.testing.assert_array_equal(m.slots[("h", 0)].data, X)


def test_compare_select_dup_and_scalar_ops():
    X = np.arange(-4, 4, dtype=np.float32).reshape(1, 8)
    bufs = [ub("x", 1, 8), Buffer("k", "UB", (1, 8), "bool", 1, "ND"), ub("z", 1, 8), ub("o", 1, 8)]
    ins = load_f32(X, 1, 8) + [
        SOp(dst="t", op="mul", a="pid0", b=2), SOp(dst="t", op="min", a="t", b=1),
        VCompare(pred="gt", dst=Ref("k"), a=Ref("x"), b=Scalar("t")),
        VDup(dst=Ref("z"), value=Scalar(-1e30)),
        VSelect(dst=Ref("o"), mask=Ref("k"), a=Ref("x"), b=Ref("z"))]
    m, _ = run_instrs(bufs, ins, {"X": X}, {"r0": 0, "pid0": 3})
    assert m.env["t"] == 1
    np.testing.assert_array_equal(m.slots[("o", 0)].data, np.where(X > 1, X, np.float32(-1e30)))


def test_vector_read_without_flag_is_a_sync_error():
    X = np.ones((1, 8), np.float32)
    bufs = [ub("x", 1, 8), ub("o", 1, 8)]
    ins = [CopyGmToUb(src=GmView("X", ((0, 1), (0, 8))), dst=Ref("x")),
           VUnary(op="exp", dst=Ref("o"), src=Ref("x"))]
    with pytest.raises(SyncError, match="VECTOR reads x\\[0\\] written by MTE2"):
        run_instrs(bufs, ins, {"X": X})


def test_overwrite_before_reader_hands_back_is_a_sync_error():
    X = np.ones((1, 8), np.float32)
    bufs = [ub("x", 1, 8), ub("o", 1, 8)]
    cp = CopyGmToUb(src=GmView("X", ((0, 1), (0, 8))), dst=Ref("x"))
    ok = [cp] + hand("MTE2", "VECTOR") + [VUnary(op="exp", dst=Ref("o"), src=Ref("x"))] + \
        hand("VECTOR", "MTE2") + [cp]
    run_instrs(bufs, ok, {"X": X})
    bad = [cp] + hand("MTE2", "VECTOR") + [VUnary(op="exp", dst=Ref("o"), src=Ref("x")), cp]
    with pytest.raises(SyncError, match="MTE2 overwrites x\\[0\\] used by VECTOR"):
        run_instrs(bufs, bad, {"X": X})


def test_ub_legality_messages():
    tgt = T.get("ascend910b2")
    assert check_ub([ub("c", 4, 1)], tgt) == 32              # a 16-byte column still takes 32 B
    with pytest.raises(UbLegalityError, match=r"UB buffer 'x' f16\[4,24\]: a row is 48 bytes"):
        check_ub([Buffer("x", "UB", (4, 24), "f16", 1, "ND")], tgt)
    with pytest.raises(UbLegalityError) as e:
        check_ub([ub("big", 256, 128, count=2), ub("c", 8, 8)], tgt, "k")
    msg = str(e.value)
    assert "262400 bytes" in msg and "188416 bytes" in msg and "'big'" in msg


def test_one_pipe_releasing_two_buffers_under_two_events():
    # VECTOR reads x then y, then releases them to MTE2 under ev0 and ev1. On the hardware a
    # WaitFlag covers everything the source pipe did before its SetFlag, so waiting ev1 alone
    # hands y (and x) back; MTE2 may then refill y before it waits ev0.
    X = np.ones((1, 8), np.float32)
    bufs = [ub("x", 1, 8), ub("y", 1, 8), ub("o", 1, 8)]
    cx = CopyGmToUb(src=GmView("X", ((0, 1), (0, 8))), dst=Ref("x"))
    cy = CopyGmToUb(src=GmView("X", ((0, 1), (0, 8))), dst=Ref("y"))
    head = [cx, cy] + hand("MTE2", "VECTOR") + [
        VBinary(op="add", dst=Ref("o"), a=Ref("x"), b=Ref("y")),
        SetFlag(src="VECTOR", dst="MTE2", event=0), SetFlag(src="VECTOR", dst="MTE2", event=1)]
    ok = head + [WaitFlag(src="VECTOR", dst="MTE2", event=1), cy,
                 WaitFlag(src="VECTOR", dst="MTE2", event=0), cx]
    m, _ = run_instrs(bufs, ok, {"X": X})
    np.testing.assert_array_equal(m.slots[("o", 0)].data, 2 * X)
    # dropping both waits must still be caught (the waits are what hand the buffers back)
    bad = head + [cy]
    with pytest.raises(SyncError, match="MTE2 overwrites y\\[0\\] used by VECTOR"):
        run_instrs(bufs, bad, {"X": X})


def test_a_wait_does_not_cover_accesses_after_its_set():
    X = np.ones((1, 8), np.float32)
    bufs = [ub("x", 1, 8), ub("o", 1, 8)]
    cx = CopyGmToUb(src=GmView("X", ((0, 1), (0, 8))), dst=Ref("x"))
    bad = [cx] + hand("MTE2", "VECTOR") + [
        SetFlag(src="VECTOR", dst="MTE2", event=0),
        VUnary(op="exp", dst=Ref("o"), src=Ref("x")),          # read after the set
        WaitFlag(src="VECTOR", dst="MTE2", event=0), cx]
    with pytest.raises(SyncError, match="MTE2 overwrites x\\[0\\] used by VECTOR"):
        run_instrs(bufs, bad, {"X": X})
