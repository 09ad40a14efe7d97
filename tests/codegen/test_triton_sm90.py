"""The Triton source a GPU would run, compiled for sm_90 on this CPU-only machine (Triton's
offline compiler; no GPU needed): every library variant, each with its register, spill and
shared-memory figures, and no variant spilling unless tilec/kernels/variants.json accepts it
with a reason. (`tilec compile -t h100` does the same, in parallel and cached.)"""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from tilec import cache
from tilec.cli import main
from tilec.variants import accepted_spill, load_spaces

pytest.importorskip("triton", reason="Triton is not installed: the sm_90 check needs its offline compiler")


def every_variant() -> list:
    return cache.library_jobs([("h100", "triton")])


@pytest.fixture(scope="module")
def sm90(tmp_path_factory):
    d = tmp_path_factory.mktemp("h100")
    jobs = every_variant()
    stats = cache.compile_jobs(jobs, d, workers=2)
    return d, jobs, stats


def test_every_library_kernel_has_gpu_variants():
    jobs = every_variant()
    assert {j.kernel for j in jobs} == set(load_spaces())        # every kernel of the library
    assert {("meta_attention", "f16"), ("meta_attention", "bf16"), ("smooth_gemm_t", "f16"),
            ("meta_attention_split", "bf16"), ("attention_merge", "bf16")} <= \
        {(j.kernel, j.binding_dict.get("DT")) for j in jobs}


def test_every_variant_compiles_for_sm90_with_its_figures(sm90):
    d, jobs, stats = sm90
    assert stats.failed == 0, stats.errors[:3]
    entries = cache.read_manifest(d)["entries"].values()
    assert len(entries) == len(jobs)
    for e in entries:
        g = e.get("gpu")
        assert isinstance(g, dict) and g["arch"] == "sm_90", e["kernel"]
        assert g["regs"] > 0 and "spill_stores" in g and g["shared"] >= 0, (e["kernel"], g)
        assert (d / "entries" / e["key"] / "kernel.cubin").read_bytes()[:4] == b"\x7fELF"


def test_no_variant_spills_unless_accepted_with_a_reason(sm90):
    from codegen.triton.aot import spills
    d, _, _ = sm90
    bad = []
    for e in cache.read_manifest(d)["entries"].values():
        n = spills(e["gpu"])
        if n and accepted_spill(e["kernel"], e["binding"]) is None:
            bad.append(f"{e['kernel']} {e['binding']}: {n} bytes spilled, {e['gpu']['regs']} registers")
    assert not bad, "spilling sm_90 variants (accept one in variants.json 'accepted_spills' with a " \
                    "reason, or change its tile / warps):\n" + "\n".join(bad)
    r = CliRunner().invoke(main, ["ls", str(d)])
    assert r.exit_code == 0 and "regs  spill" in r.output and " variant(s) spill (marked !)" not in r.output


def test_accepted_spills_need_a_reason(tmp_path):
    import json

    from tilec.variants import VariantError, load_spaces
    f = tmp_path / "v.json"
    f.write_text(json.dumps({"kernels": {"k": {"space": {"BM": [16]},
                                               "accepted_spills": [{"when": "BM >= 16", "why": " "}]}}}))
    with pytest.raises(VariantError, match="accepted_spills"):
        load_spaces(f)
    f.write_text(json.dumps({"kernels": {"k": {"space": {"BM": [16, 32]},
                                               "accepted_spills": [{"when": "BM >= 32", "why": "wide"}]}}}))
    assert accepted_spill("k", {"BM": 32}, f) == "wide" and accepted_spill("k", {"BM": 16}, f) is None
