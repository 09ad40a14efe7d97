import dataclasses

import pytest

from tilec import targets
from tilec.targets import AscendTarget, CpuTarget, GpuTarget, UnknownTargetError

KiB = 1024


def _numeric(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, (tuple, list)):
        return any(_numeric(v) for v in value)
    if isinstance(value, dict):
        return any(_numeric(v) for v in value.values())
    return False


def test_registry_names_and_get():
    assert set(targets.names()) == {"ascend910b2", "ascend910b4", "h100", "h200", "cpu"}
    assert list(targets.names()) == sorted(targets.names())
    for name in targets.names():
        t = targets.get(name)
        assert t.name == name
    assert targets.get(" Ascend910B2 ") is targets.ASCEND910B2
    assert [t.name for t in targets.all_targets()] == list(targets.names())


def test_kind_and_backend():
    expect = {"ascend910b2": ("ascend", "ascend"), "ascend910b4": ("ascend", "ascend"),
              "h100": ("gpu", "triton"), "h200": ("gpu", "triton"), "cpu": ("cpu", "cpu")}
    for name, (kind, backend) in expect.items():
        t = targets.get(name)
        assert (t.kind, t.backend) == (kind, backend)
    assert isinstance(targets.get("ascend910b2"), AscendTarget)
    assert isinstance(targets.get("h100"), GpuTarget)
    assert isinstance(targets.get("cpu"), CpuTarget)


def test_unknown_target_lists_known_names():
    with pytest.raises(UnknownTargetError) as info:
        targets.get("ascend910c")
    assert isinstance(info.value, KeyError)
    msg = str(info.value)
    assert "ascend910c" in msg
    for name in targets.names():
        assert name in msg
    with pytest.raises(KeyError):
        targets.get(None)


@pytest.mark.parametrize("name", targets.names())
def test_every_numeric_field_has_a_source(name):
    t = targets.get(name)
    field_names = {f.name for f in dataclasses.fields(t)}
    for f in dataclasses.fields(t):
        value = getattr(t, f.name)
        if _numeric(value):
            src = t.sources.get(f.name, "")
            assert src.strip(), f"{name}.{f.name} has no source"
    # no stray citations for fields that do not exist
    assert set(t.sources) <= field_names


@pytest.mark.parametrize("name", ["ascend910b2", "ascend910b4"])
def test_ascend_estimates_are_marked(name):
    t = targets.get(name)
    for f in ("mte2_bytes_per_cycle", "mte1_bytes_per_cycle", "mte3_bytes_per_cycle",
              "fixpipe_bytes_per_cycle", "hbm_bytes_per_s", "l2_bytes_per_s"):
        assert "estimate" in t.sources[f], f


@pytest.mark.parametrize("name", ["ascend910b2", "ascend910b4"])
def test_ascend_capacities_and_alignment(name):
    t = targets.get(name)
    assert t.l1_bytes == 512 * KiB
    assert t.l0a_bytes == t.l0b_bytes == 64 * KiB
    assert t.l0c_bytes == 128 * KiB
    assert t.ub_bytes == 192 * KiB
    assert (t.ub_align, t.l1_align, t.l0a_align, t.l0b_align, t.l0c_align) == (32, 32, 512, 512, 64)
    assert t.capacity("L0A") == 64 * KiB and t.alignment("l0c") == 64
    assert t.fractal_shape("f16") == (16, 16) == t.fractal_shape("bf16")
    assert t.fractal_shape("f32") == (16, 8)
    for rows, cols in t.fractal.values():  # every fractal row is one 32-byte block
        assert rows == 16
    assert t.pipe_bytes_per_cycle("mte1") == t.mte1_bytes_per_cycle
    with pytest.raises(ValueError):
        t.capacity("l3")
    with pytest.raises(ValueError):
        t.fractal_shape("i64")


def test_core_counts():
    b2, b4 = targets.get("ascend910b2"), targets.get("ascend910b4")
    assert (b2.aic_cores, b2.aiv_cores) == (24, 48)
    assert (b4.aic_cores, b4.aiv_cores) == (20, 40)
    assert b2.aiv_per_aic == b4.aiv_per_aic == 2


def test_cube_peak_910b2():
    b2 = targets.get("ascend910b2")
    expected = 24 * 4096 * 2 * 1.8e9  # ~354 TFLOP/s
    assert abs(b2.cube_flops_per_s("f16") - expected) <= 0.10 * expected
    assert b2.cube_flops_per_s("bf16") == b2.cube_flops_per_s("f16")
    assert b2.cube_flops_per_s("f32") == pytest.approx(b2.cube_flops_per_s("f16") / 4)
    assert b2.peak_flops_per_s("f16") == b2.cube_flops_per_s("f16")
    with pytest.raises(ValueError):
        b2.cube_flops_per_s("i64")
    assert b2.vector_bytes_per_s == pytest.approx(256 * 1.8e9 * 48)
    assert b2.hbm_bytes_per_s == pytest.approx(1.6e12)
    assert b2.l2_bytes == 192 * 1024 * 1024


def test_gpu_figures():
    h100, h200 = targets.get("h100"), targets.get("h200")
    assert h100.sm_count == h200.sm_count == 132
    assert h100.hbm_bytes_per_s == pytest.approx(3.35e12)
    assert h200.hbm_bytes_per_s == pytest.approx(4.8e12)
    assert h100.peak_flops_per_s("bf16") == pytest.approx(989e12, rel=0.01)
    assert h200.peak_flops_per_s("bf16") == h100.peak_flops_per_s("bf16")
    assert h100.measured_bf16_matmul_flops_per_s < h100.peak_flops_per_s("bf16")
    assert h100.measured_copy_bytes_per_s < h100.hbm_bytes_per_s
    assert h200.measured_copy_bytes_per_s < h200.hbm_bytes_per_s
    assert "measured" in h100.sources["measured_copy_bytes_per_s"]
    assert h100.smem_bytes_per_sm == 228 * KiB


def test_cpu_cores_positive():
    assert targets.get("cpu").cores >= 1


def test_targets_are_frozen_and_hashable():
    t = targets.get("ascend910b2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.aic_cores = 1
    assert len({hash(x) for x in targets.all_targets()}) == len(targets.names())
    assert dataclasses.replace(t, name="copy").aic_cores == 24
