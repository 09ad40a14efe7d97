"""Tile-size search from the simulator's cycle model: the timing-only model equals the
simulator, illegal candidates say why, and the choice is the fastest legal one."""
import numpy as np
import pytest
from click.testing import CliRunner

from codegen.ascend import lower, simulate
from codegen.ascend.sim import model_gemm
from codegen.launch import bind
from tilec.cli import main
from tilec.selftest import specialise
from tilec.tiles import choose, gemm_candidates


@pytest.mark.parametrize("name,M,N,K,b", [("smooth_gemm_t", 100, 80, 96, {}),
                                          ("smooth_gemm", 1, 64, 64, {}),
                                          ("smooth_gemm_t", 33, 200, 130, dict(BM=16, BN=64, BK=64)),
                                          ("smooth_gemm", 600, 40, 64, dict(BM=16, BN=16))])
def test_timing_model_equals_simulator(name, M, N, K, b):
    k = specialise(name, DT="f16", **b)
    t = name.endswith("_t")
    args = {"A": np.zeros((M, K), np.float16), "C": np.zeros((M, N), np.float16),
            ("W" if t else "B"): np.zeros((N, K) if t else (K, N), np.float16)}
    L = bind(k, args)
    prog = lower(k)
    sim, mod = simulate(prog, L.tensors, L.dims, L.grid), model_gemm(prog, M, N, K)
    assert (mod.cycles, mod.busy_cycles, mod.bytes, mod.macs, mod.tasks, mod.hbm_cycles) == \
        (sim.cycles, sim.busy_cycles, sim.bytes, sim.macs, sim.tasks, sim.hbm_cycles)
    assert sim.hbm_cycles > 0 and sim.bound_cycles == max(sim.cycles, sim.hbm_cycles)


def test_choice_is_fastest_legal_and_illegal_ones_say_why():
    cands = gemm_candidates("smooth_gemm_t", 40, 512, 256, "bf16", "ascend910b2", sizes=(16, 32, 256))
    assert len(cands) == 27
    best = choose(cands)
    assert best.legal and all(best.cycles <= c.cycles for c in cands if c.legal)
    bad = [c for c in cands if not c.legal]
    assert bad and all("bytes" in c.reason or "alignment" in c.reason or "fractal" in c.reason
                       for c in bad)
    big = next(c for c in cands if (c.BM, c.BN, c.BK) == (256, 256, 256))
    assert not big.legal and "L0" in big.reason and "available" in big.reason
    assert 0 < best.utilisation < 1


def test_tiles_cli_prints_choice_and_rejections():
    r = CliRunner().invoke(main, ["tiles", "--target", "ascend910b2", "--kernel", "smooth_gemm_t",
                                  "--shape", "16,64,64", "--dtype", "bf16"])
    assert r.exit_code == 0, r.output
    assert "MODELLED" in r.output and "choice: BM=" in r.output and "utilisation" in r.output
    assert "larger candidates and why they lost:" in r.output and "illegal:" in r.output
    r = CliRunner().invoke(main, ["tiles", "--target", "ascend910b2", "--kernel", "smooth_gemm",
                                  "--shape", "16,64"])
    assert r.exit_code == 1 and "is not M,N,K" in r.output


def test_attention_report_choice_is_fastest_and_others_say_why():
    from tilec.tiles import attention_report
    text, c = attention_report("verify", "ascend910b2", group=4, head_dim=64, context=64,
                               bm_candidates=(16, 128), bn_candidates=(32, 128))
    assert (c.BM, c.BN) in {(16, 32), (16, 128), (128, 32)}
    lost = text.split("other candidates and why they lost:\n")[1].splitlines()
    assert len(lost) == 3                      # every other candidate, once
    slower = [l for l in lost if "slower:" in l]
    assert slower and all(int(l.split("slower: ")[1].split()[0]) > c.cycles for l in slower)
    assert any("illegal:" in l and "BM=128" in l and "BN=128" in l and "bytes" in l for l in lost)
    assert f"choice: BM={c.BM} BN={c.BN}: {c.pipeline} pipeline" in text and "MODELLED" in text


def test_tiles_cli_meta_attention_stage():
    r = CliRunner().invoke(main, ["tiles", "-t", "ascend910b2", "-k", "meta_attention", "--stage", "decode",
                                  "--context", "64", "-D", "64"])
    assert r.exit_code == 0, r.output
    assert "meta_attention decode on ascend910b2" in r.output and "at context 64" in r.output
    assert "choice: BM=" in r.output and " us) for " in r.output and "why they lost" in r.output
    r = CliRunner().invoke(main, ["tiles", "-t", "ascend910b2", "-k", "meta_attention"])
    assert r.exit_code == 1 and "needs --stage" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["tiles", "-t", "ascend910b2", "-k", "smooth_gemm_t"])
    assert r.exit_code == 1 and "needs --shape M,N,K" in r.output
    r = CliRunner().invoke(main, ["tiles", "-t", "cpu", "-k", "meta_attention", "--stage", "decode"])
    assert r.exit_code == 1 and "not an Ascend target" in r.output
