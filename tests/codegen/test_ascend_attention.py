"""Meta-Attention on the Ascend AI-core-group simulator: the three pipelines vs the torch
oracle and the reference backend, the pipeline rule, cross-core/intra-core sync checking on
deliberately broken programs, legality messages and pattern recognition."""
import re
from dataclasses import replace

import numpy as np
import pytest

from codegen import reference
from codegen.ascend.attention import (choose_pipeline, lower_attention, run,
                                      simulate_attention)
from codegen.ascend.attention.isa import CrossCoreSetFlag, CrossCoreWaitFlag
from codegen.ascend.attention.lower import P_READY, S_READY
from codegen.ascend.errors import AscendLegalityError, AscendLoweringError
from codegen.ascend.program import WaitFlag
from codegen.ascend.sim import SyncError
from codegen.launch import bind
from tilec.ir import dtypes as D
from tilec.selftest import _err, attention_args, specialise
from tilec.testing import oracle as O
from tilec.testing.attention_cases import (decode, make_attention_case, make_standard_cases,
                                           prefill, verify)

CASES = {c.name: c for c in make_standard_cases(seed=3)}


def kernel_for(case, bm=None, bn=32):
    g = case.group
    bm = bm or (32 if g <= 4 else 64)
    return specialise("meta_attention", DT=D.from_numpy(case.q.dtype), BM=bm, BN=bn,
                      D=case.head_dim, G=g), bm


def check(case, **kw):
    k, bm = kernel_for(case, bn=kw.pop("bn", 32))
    plan, args = attention_args(case, bm)
    st = run(k, args, assignment=plan.assignment % 24, **kw)
    err, ok = _err(args["O"], O.attention_oracle(case), D.from_numpy(case.q.dtype))
    assert ok, f"{case.name} {st.pipeline}: max error {err}"
    return st, args


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_pipeline_matches_oracle(name):
    """Every standard case (prefill with prefix reuse, decodes, chain/tree verify, mixed;
    GQA 1/4/8, d 64/128, f16/bf16, ragged tails) with the pipeline the rule picks."""
    st, _ = check(CASES[name])
    want = "2-stage" if name.startswith("decodes") else None
    if want:
        assert st.pipeline == want
    assert st.cycles > 0 and st.busy["AIV.VECTOR"] > 0


@pytest.mark.parametrize("pipeline,window", [("4-stage", 32), ("2-stage", 32), ("3-stage", None)])
@pytest.mark.parametrize("name", ["tree_verify_small_g1_d64_bf16", "mixed_small_g4_d64_f16",
                                  "decodes_g8_d64_f16", "prefill_small_g4_d128_f16"])
def test_each_pipeline_matches_oracle(name, pipeline, window):
    st, _ = check(CASES[name], pipeline=pipeline, window=window, bn=16)
    assert st.pipeline == pipeline


def test_three_stage_refuses_kv_longer_than_its_window():
    with pytest.raises(ValueError, match=r"3-stage pipeline holds 256 keys .* sees 288: use the "
                                         r"4-stage pipeline"):
        check(CASES["chain_verify_g8_d64_f16"], pipeline="3-stage")


@pytest.mark.parametrize("pipeline,window", [("4-stage", 32), ("3-stage", None), ("2-stage", 64)])
def test_matches_reference_backend(pipeline, window):
    case = make_attention_case(7, [prefill(9, 20), decode(33), verify(4, 12, True)], 8, 2, 64,
                               16, "f16")
    k, bm = kernel_for(case)
    _, a_sim = attention_args(case, bm)
    _, a_ref = attention_args(case, bm)
    run(k, a_sim, pipeline=pipeline, window=window)
    reference.run(k, a_ref)
    np.testing.assert_allclose(a_sim["O"].astype(np.float32), a_ref["O"].astype(np.float32),
                               rtol=4e-3, atol=4e-3)


def test_split_kv_runs_several_windows_and_overlaps():
    case = make_attention_case(1, [prefill(40, 200)], 4, 1, 64, 16, "f16")
    st, _ = check(case, pipeline="4-stage", window=64)
    # QK/SV of ~240 keys in 64-key windows: the Cube and Vector overlap, so the group's time
    # is well under the sum of its pipes' busy cycles
    busy = sum(v for k, v in st.busy.items() if k.startswith(("AIC.", "AIV.")))
    assert max(st.group_cycles) < busy
    st3, _ = check(case, pipeline="3-stage")
    assert st3.macs == st.macs or st3.macs > 0


def test_pipeline_rule():
    def tasks(spec):
        case = make_attention_case(0, spec, 4, 1, 64, 16, "f16")
        return attention_args(case, 32)[1]["TASKS"]
    assert choose_pipeline(tasks([decode(5), decode(300)]), 256) == "2-stage"
    assert choose_pipeline(tasks([prefill(20, 30), decode(9)]), 256) == "3-stage"
    assert choose_pipeline(tasks([prefill(20, 300), decode(9)]), 256) == "4-stage"
    assert choose_pipeline(tasks([verify(3, 10)]), 256) == "3-stage"


def _broken(prog, core, phase, drop):
    """A copy of ``prog`` with the instructions matching ``drop`` removed from a phase."""
    if core == "AIC":
        return replace(prog, aic={**prog.aic, phase: [i for i in prog.aic[phase] if not drop(i)]})
    return replace(prog, aiv=[{**p, phase: [i for i in p[phase] if not drop(i)]} for p in prog.aiv])


def _sim(prog, case, bm):
    _, args = attention_args(case, bm)
    launch = bind(kernel_for(case)[0], args)
    return simulate_attention(prog, launch.tensors, launch.scalars)


@pytest.mark.parametrize("core,phase,drop,msg", [
    ("AIV", "sm_load", lambda i: isinstance(i, CrossCoreWaitFlag) and i.flag == S_READY,
     r"AIV0 reads workspace WS_S\[0\] .*(before anything was written|without a CrossCoreWaitFlag)"),
    ("AIC", "sv_begin", lambda i: isinstance(i, CrossCoreWaitFlag) and i.flag == P_READY,
     r"AIC reads workspace WS_P\[0\] .*(before anything|without a CrossCoreWaitFlag)"),
    ("AIV", "softmax", lambda i: isinstance(i, CrossCoreSetFlag) and i.flag == P_READY,
     r"cross-core deadlock: AIC at CrossCoreWaitFlag\(P_READY\)"),
    ("AIV", "sm_load", lambda i: isinstance(i, WaitFlag) and i.dst == "VECTOR",
     r"VECTOR reads S\[0\] written by MTE2 without a WaitFlag"),
])
def test_broken_programs_are_caught(core, phase, drop, msg):
    case = CASES["mixed_small_g4_d64_f16"]
    k, bm = kernel_for(case)
    prog = _broken(lower_attention(k, pipeline="4-stage", window=32), core, phase, drop)
    with pytest.raises(SyncError, match=msg):
        _sim(prog, case, bm)


def test_legality_names_buffer_and_bytes():
    k = specialise("meta_attention", DT="f16", BM=256, BN=128, D=128, G=4)
    with pytest.raises(AscendLegalityError) as e:
        lower_attention(k, pipeline="4-stage")
    assert re.search(r"meta_attention\.tile:\d+:\d+: .*buffer '\w+'.* needs \d+ bytes.* \d+ "
                     r"bytes", str(e.value)), str(e.value)
    k = specialise("meta_attention", DT="f16", BM=40, BN=16, D=64, G=4)
    with pytest.raises(AscendLegalityError, match="BM=40 must be a multiple of 16"):
        lower_attention(k)


def test_non_attention_kernel_is_rejected_with_location():
    k = specialise("smooth_gemm", DT="f16", BM=32, BN=32, BK=32)
    with pytest.raises(AscendLoweringError, match=r"smooth_gemm\.tile:\d+:\d+: error: ascend910b2: "):
        lower_attention(k)


def test_program_records_pipeline_and_dump():
    k = specialise("meta_attention", DT="bf16", BM=64, BN=64, D=128, G=4)
    for p in ("2-stage", "3-stage", "4-stage"):
        prog = lower_attention(k, pipeline=p)
        assert prog.pipeline == p
        text = prog.dump()
        assert "cross_core_set_flag<2" in text and f"pipeline={p}" in text
        assert ("mmad L0CS" in text) == (p != "2-stage")
        assert ("qk_rows" in text) == (p == "2-stage")


def test_attention_tile_choice_is_modelled_best_and_explains_rejections():
    from tilec.attention_tiles import attention_tile_choice
    c = attention_tile_choice("decode", group=4, head_dim=64, kv_len=100,
                              bm_candidates=(16, 32), bn_candidates=(32, 256))
    assert (c.BM, c.BN) in {(16, 32), (32, 32)} and c.pipeline == "2-stage"
    reasons = dict(((bm, bn), r) for bm, bn, r in c.rejected)
    assert len(reasons) == 3
    assert all(r.startswith("slower: ") and int(r.split()[1]) >= c.cycles
               for (bm, bn), r in reasons.items() if bn == 32)
    assert "needs" in reasons[(16, 256)] and "bytes" in reasons[(16, 256)]
    with pytest.raises(ValueError, match="stage kind"):
        attention_tile_choice("bogus")


@pytest.mark.parametrize("name", ["mixed_g4_d64_bf16", "mixed_small_g4_d64_f16",
                                  "tree_verify_g4_d128_f16"])
def test_tile_classes_one_launch_matches_oracle(name):
    """One launch, a tile size per stage kind (decode 16 rows, verify 32, prefill 64)."""
    case = CASES[name]
    k = specialise("meta_attention", DT=D.from_numpy(case.q.dtype), BM=64, BN=32,
                   D=case.head_dim, G=case.group)
    from runtime.plan import plan
    p = plan(case.stages, case.num_kv_heads, case.group, 64, 24,
             tile_rows={"decode": 16, "verify": 32, "prefill": 64})
    args = {"Q": case.q, "KC": case.k_cache, "VC": case.v_cache,
            "O": np.full(case.q.shape, np.nan, case.q.dtype), "BT": case.block_table,
            "TASKS": p.task_table, "TREE": p.tree_mask, "scale": case.scale}
    st = run(k, args, classes=(16, 32, 64), assignment=p.assignment)
    err, ok = _err(args["O"], O.attention_oracle(case), D.from_numpy(case.q.dtype))
    assert ok, err
    prog = lower_attention(k, pipeline=st.pipeline, classes=(16, 32, 64))
    assert [c.rows for c in prog.classes] == [16, 32, 64]
    assert "S_16" in prog.aiv_buffers and "S_64" in prog.aiv_buffers and "L0BK" in prog.aic_buffers


def test_tile_classes_must_fit_bm():
    k = specialise("meta_attention", DT="f16", BM=64, BN=32, D=64, G=4)
    with pytest.raises(AscendLegalityError, match=r"tile classes \(16, 128\) must be"):
        lower_attention(k, classes=(16, 128))


def test_cross_core_flag_counter_overflow_is_caught():
    """The 910B counter of a cross-core flag holds 16 sets; a 17th without a wait is an error."""
    from codegen.ascend.attention.sim import run_group
    from tilec import targets as T
    case = CASES["mixed_small_g4_d64_f16"]
    k, bm = kernel_for(case)
    prog = lower_attention(k, pipeline="4-stage", window=32)
    _, args = attention_args(case, bm)
    sets = [(CrossCoreSetFlag(flag=P_READY, pipe="FIXPIPE"), {})] * 17
    with pytest.raises(SyncError, match="set more than 16 times"):
        run_group(prog, T.get("ascend910b2"), bind(k, args).tensors, {}, args["TASKS"], [],
                  streams={"AIC": sets, "AIV0": [], "AIV1": []})


def test_two_stage_aiv_without_valid_rows_loads_no_k():
    # decodes with G=4 fill 4 of a 32-row tile: AIV1's 16 rows hold no query, so it skips K
    from codegen.ascend.attention.isa import hbm_rate
    from tilec import targets as T
    case = make_attention_case(5, [decode(90), decode(200), decode(40)], 4, 1, 64, 16, "f16")
    k, bm = kernel_for(case)
    prog = lower_attention(k, pipeline="2-stage")
    assert all("sm_skip" in p for p in prog.aiv)
    old = replace(prog, aiv=[{**p, "sm_skip": p["sm_load"]} for p in prog.aiv])   # loads K
    outs = []
    for pr in (prog, old):
        _, args = attention_args(case, bm)
        launch = bind(k, args)
        outs.append((simulate_attention(pr, launch.tensors, launch.scalars), args["O"]))
    (new_st, new_o), (old_st, old_o) = outs
    np.testing.assert_array_equal(new_o, old_o)                       # identical results
    _, ok = _err(new_o, O.attention_oracle(case), D.from_numpy(case.q.dtype))
    assert ok
    kv = (90 + 200 + 40) * 64 * 2                                      # the K AIV1 no longer reads
    assert old_st.bytes["AIV.MTE2"] - new_st.bytes["AIV.MTE2"] >= kv
    # the modelled MTE2 cycles drop by AIV1's K loads; the launch time does not rise (it does
    # not fall either here: AIV0 loads the same K and AIV1 waits on the cross-core hand-offs)
    saved = old_st.busy["AIV.MTE2"] - new_st.busy["AIV.MTE2"]
    assert saved > 0.9 * kv / hbm_rate(T.get("ascend910b2")), saved
    assert new_st.cycles <= old_st.cycles


def test_ub_check_counts_the_aiv_work_buffer():
    # the emitted AIVs allocate workBuf (reduction work area; 2-stage: two f32 rows of D and a
    # 32-byte dot scratch for QkRowsOnVector after it) and pad each per-row statistic to 32
    # bytes, beside the program's buffers: the check must count both
    from dataclasses import replace as dreplace

    from codegen.ascend.attention import check_attention_legality
    from codegen.ascend.vector import ub_slot_bytes
    from tilec import targets as T
    k, _ = kernel_for(CASES["decodes_g8_d64_f16"])
    prog = lower_attention(k, pipeline="2-stage")
    bufs = sum(ub_slot_bytes(b) * b.count for b in prog.aiv_buffers.values())
    work = 4 * (256 + 2 * 64 + 8)
    pad = sum(b.total_bytes * 7 for b in prog.aiv_buffers.values() if b.shape[1] == 1 and b.dtype == "f32")
    work += pad
    tgt = T.get("ascend910b2")
    with pytest.raises(AscendLegalityError, match=rf"need {bufs + work} bytes but only {bufs} "
                                                   rf"bytes .*'workBuf' {work - pad} bytes, "
                                                   rf"'row-statistic padding' {pad} bytes"):
        check_attention_legality(prog, dreplace(tgt, ub_bytes=bufs, ub_reserved_bytes=0))
    check_attention_legality(prog, dreplace(tgt, ub_bytes=bufs + work, ub_reserved_bytes=0))
