"""runtime.launchers: backend name -> callable; plain messages where a backend cannot run."""
import numpy as np
import pytest

from runtime import launchers
from runtime.artifacts import open_artifacts


def test_names_and_unknown():
    assert set(launchers.names()) >= {"cpu", "reference", "triton", "ascend-sim", "npu"}
    with pytest.raises(launchers.LauncherUnavailable, match="unknown launcher 'tpu'"):
        launchers.get("tpu")


def test_npu_says_what_is_missing():
    ok, why = launchers.npu_available()
    with pytest.raises(launchers.LauncherUnavailable) as e:
        launchers.get("npu", "ascend910b2")
    if not ok:
        assert "CANN and torch_npu" in str(e.value) and why in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["cpu", "reference", "ascend-sim"])
def test_gemm_through_each_launcher(small_arts, name):
    arts = open_artifacts(small_arts)
    kernel, _ = arts.gemm(20, 64, 64, "f16")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20, 64)).astype(np.float16)
    w = rng.standard_normal((64, 64)).astype(np.float16)
    c = np.zeros((20, 64), np.float16)
    launchers.get(name, "ascend910b2" if name == "ascend-sim" else "cpu")(kernel, {"A": a, "W": w, "C": c})
    np.testing.assert_allclose(c.astype(np.float32), a.astype(np.float32) @ w.astype(np.float32).T,
                               rtol=2e-2, atol=6e-2)


def test_linear_uses_the_directory_launcher(small_arts):
    arts = open_artifacts(small_arts)
    x = np.ones((3, 64), np.float16)
    w = np.full((32, 64), 0.5, np.float16)
    assert (arts.linear(x, w) == 32).all()
    assert arts.launch is arts.launch        # one launcher per directory


def test_ascend_sim_without_a_target_uses_the_default_ascend_target(small_arts):
    """get("ascend-sim") as its docstring shows: the default Ascend target, not a target named
    after the launcher; a non-Ascend target is refused in one line."""
    arts = open_artifacts(small_arts)
    kernel, _ = arts.gemm(4, 64, 64, "f16")
    a = np.ones((4, 64), np.float16)
    w = np.full((64, 64), 0.25, np.float16)
    c = np.zeros((4, 64), np.float16)
    st = launchers.get("ascend-sim")(kernel, {"A": a, "W": w, "C": c})
    assert st.cycles > 0 and (c == 16).all()
    with pytest.raises(launchers.LauncherUnavailable, match="'h100' is not an Ascend target"):
        launchers.get("ascend-sim", "h100")
