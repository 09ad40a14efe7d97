"""Ascend 910B-class ("DaVinci" AI core, NPU arch 220x, AIC-C-220) target descriptions.

What is documented and what is estimated:

* Documented (Huawei / CANN material): per-core buffer capacities (L1 512 KiB, L0A/L0B
  64 KiB, L0C 128 KiB, UB 192 KiB per AIV), buffer alignments (UB/L1 32 B, L0A/L0B 512 B,
  L0C 64 B), operand fractal shapes (16 rows x 32 bytes), the Cube step of 16x16x16 fp16
  MACs, the vector repeat of 8 datablocks x 32 B = 256 B, core counts of the 910B2 (24 AIC,
  48 AIV), its Cube clock (``cube_freq=1800``) and L2 size (192 MiB).
* Taken from CANN platform config values that are only available second hand (public
  transcriptions of ``platform_config/Ascend910B*.ini``), and therefore marked ``estimate``:
  the per-pipe rates (``[AICoreMemoryRates]`` in bytes per cycle per core) and every 910B4
  figure beyond its core counts.
* Estimated with no public figure at all: the fp32 Cube rate (a quarter of fp16, as the
  project design assumes), the FixPipe rate, the HBM bandwidths (no Huawei datasheet gives
  them; 1.6 TB/s is the figure quoted for 910B2 in public material) and the L2 bandwidth.

Every number's citation is in the target's ``sources`` mapping, keyed by field name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# --- citations ------------------------------------------------------------------------------
_ARCH_220X = ("Ascend C programming guide, 'NPU Architecture Version 220x' (CANN 8.5.0), "
              "https://www.hiascend.com/document/detail/en/canncommercial/850/opdevg/"
              "Ascendcopdevg/atlas_ascendc_10_0011.html")
_RESTRICTIONS = ("Ascend C API reference, 'General Restrictions' table 2 (alignment per storage "
                 "unit, CANN 8.0.0), https://www.hiascend.com/document/detail/zh/canncommercial/"
                 "800/apiref/ascendcopapi/atlasascendc_api_07_0004.html")
_BASIC_ARCH = ("Ascend C programming guide, 'Basic Architecture' (Cube multiplies two fp16 16x16 "
               "matrices per execution, CANN 8.3.RC1), https://www.hiascend.com/document/detail/"
               "zh/CANNCommunityEdition/83RC1/opdevg/Ascendcopdevg/atlas_ascendc_10_0007.html")
_HOTCHIPS = ("Huawei, 'Da Vinci architecture', Hot Chips 31 (2019): Cube = 4096 fp16 MACs; "
             "https://www.anandtech.com/show/14756/hot-chips-live-blogs-huawei-da-vinci-architecture")
_DATA_FORMAT = ("Ascend C programming guide, 'Data Layout Formats' (FRACTAL_NZ: 16 rows x "
                "32 B / sizeof(T) columns per fractal), https://www.hiascend.com/document/detail/"
                "en/canncommercial/latest/opdevg/Ascendcopdevg/atlas_ascendc_10_0099.html")
_VECTOR_REPEAT = ("Ascend C programming guide, vector compute: each repeat takes 8 datablocks of "
                  "32 B = 256 B from UB, https://www.hiascend.com/doc_center/source/zh/"
                  "canncommercial/80RC3/developmentguide/opdevg/Ascendcopdevg/"
                  "atlas_ascendc_10_0022.html; CCE intrinsic API 'cceapi_0007' (8 x 32 B per "
                  "iteration)")
_CATLASS = ("hicann/catlass include/acot/arch/arch.hpp, struct AtlasA2 (L1_SIZE 512 KiB, "
            "L0A_SIZE/L0B_SIZE 64 KiB, L0C_SIZE 128 KiB, UB_SIZE 192 KiB)")
_INI_B2 = ("CANN platform config Ascend910B2.ini (data/platform_config/), as reproduced in "
           "public Ascend kernel-dev notes")
_INI_B4 = ("CANN platform config Ascend910B4.ini, as transcribed in public third-party tooling "
           "tests (not checked against a Huawei document)")
_INI_RATES = ("CANN platform config [AICoreMemoryRates] (bytes/cycle/core), values as quoted "
              "publicly from Ascend910B1.ini (same AIC-C-220 core)")
_ACL_CORES = ("Ascend C 'AI Core work modes' (split mode: 1 AIC : 2 AIV per AI Core), "
              "https://www.hiascend.com/document/detail/zh/canncommercial/850/opdevg/"
              "Ascendcopdevg/atlas_ascendc_10_0007.html")


@dataclass(frozen=True, kw_only=True)
class AscendTarget:
    """One Ascend 910B-class chip. Per-core figures are per AIC (Cube core) unless they say AIV.

    Sizes and alignments are in bytes, rates in bytes per cycle of ``clock_hz``.
    Treat the dict fields as read-only.
    """

    kind: ClassVar[str] = "ascend"

    name: str
    backend: str = "ascend"
    soc_version: str                      # what CANN's --soc_version expects
    aic_cores: int                        # Cube cores (AIC)
    aiv_cores: int                        # vector cores (AIV), 2 per AIC
    clock_hz: float                       # AI core (Cube) clock
    # on-chip buffers, bytes (L1/L0* per AIC, UB per AIV)
    l1_bytes: int
    l0a_bytes: int
    l0b_bytes: int
    l0c_bytes: int
    ub_bytes: int
    ub_reserved_bytes: int                # of ub_bytes, kept for the vector unit's own scratch
    # minimum access granularity / address alignment, bytes
    ub_align: int
    l1_align: int
    l0a_align: int
    l0b_align: int
    l0c_align: int
    # operand fractal (rows, cols) in elements for L1/L0A/L0B; L0C fractal for the f32 result
    fractal: dict[str, tuple[int, int]] = field(hash=False)
    l0c_fractal: tuple[int, int]
    # compute
    cube_macs_per_cycle: dict[str, int] = field(hash=False)   # per AIC, by input dtype
    vector_bytes_per_cycle: int                                # per AIV
    # per-pipe rates, bytes per cycle per core
    mte2_bytes_per_cycle: int             # GM -> L1 / UB
    mte1_bytes_per_cycle: int             # L1 -> L0A / L0B
    mte3_bytes_per_cycle: int             # UB -> GM
    fixpipe_bytes_per_cycle: int          # L0C -> GM
    # memory system, whole chip
    hbm_bytes: int
    hbm_bytes_per_s: float
    l2_bytes: int
    l2_bytes_per_s: float
    sources: dict[str, str] = field(hash=False, repr=False)
    notes: str = ""

    # -- derived ---------------------------------------------------------------------------
    @property
    def aiv_per_aic(self) -> int:
        return self.aiv_cores // self.aic_cores

    def cube_flops_per_s(self, dtype: str = "f16") -> float:
        """Peak Cube rate of the whole chip, FLOP/s (2 per MAC), for inputs of ``dtype``."""
        try:
            macs = self.cube_macs_per_cycle[dtype]
        except KeyError:
            raise ValueError(f"the Cube of {self.name} takes {', '.join(self.cube_macs_per_cycle)}"
                             f" inputs, not {dtype}") from None
        return 2.0 * macs * self.clock_hz * self.aic_cores

    peak_flops_per_s = cube_flops_per_s

    @property
    def vector_bytes_per_s(self) -> float:
        """Peak vector-unit throughput of the whole chip (all AIV), bytes of operand per second."""
        return self.vector_bytes_per_cycle * self.clock_hz * self.aiv_cores

    @property
    def mem_bytes_per_s(self) -> float:
        return self.hbm_bytes_per_s

    def fractal_shape(self, dtype: str) -> tuple[int, int]:
        try:
            return self.fractal[dtype]
        except KeyError:
            raise ValueError(f"no Cube fractal for {dtype} on {self.name}") from None

    def capacity(self, buffer: str) -> int:
        """Bytes a kernel may allocate in buffer 'l1', 'l0a', 'l0b', 'l0c' or 'ub' (UB: per AIV,
        less the reserved part)."""
        n = self._pick(buffer, "bytes", ("l1", "l0a", "l0b", "l0c", "ub"))
        return n - self.ub_reserved_bytes if buffer.lower() == "ub" else n

    def alignment(self, buffer: str) -> int:
        return self._pick(buffer, "align", ("l1", "l0a", "l0b", "l0c", "ub"))

    def pipe_bytes_per_cycle(self, pipe: str) -> int:
        """Rate of pipe 'mte2', 'mte1', 'mte3' or 'fixpipe', bytes per cycle per core."""
        return self._pick(pipe, "bytes_per_cycle", ("mte2", "mte1", "mte3", "fixpipe"))

    def _pick(self, key: str, suffix: str, allowed: tuple[str, ...]) -> int:
        k = key.lower()
        if k not in allowed:
            raise ValueError(f"unknown {suffix} key {key!r}; expected one of {', '.join(allowed)}")
        return getattr(self, f"{k}_{suffix}")


# Figures shared by every 910B part (same AIC-C-220 core).
def _core_common() -> dict:
    return dict(
        l1_bytes=512 * KiB, l0a_bytes=64 * KiB, l0b_bytes=64 * KiB, l0c_bytes=128 * KiB,
        ub_bytes=192 * KiB, ub_reserved_bytes=8 * KiB,
        ub_align=32, l1_align=32, l0a_align=512, l0b_align=512, l0c_align=64,
        fractal={"f16": (16, 16), "bf16": (16, 16), "f32": (16, 8), "i8": (16, 32)},
        l0c_fractal=(16, 16),
        cube_macs_per_cycle={"f16": 16 * 16 * 16, "bf16": 16 * 16 * 16, "f32": 16 * 16 * 16 // 4},
        vector_bytes_per_cycle=256,
        mte2_bytes_per_cycle=110,
        mte1_bytes_per_cycle=512,
        mte3_bytes_per_cycle=64,
        fixpipe_bytes_per_cycle=64,
    )


def _core_sources() -> dict[str, str]:
    return {
        "l1_bytes": f"{_INI_B2}: l1_size=524288; {_CATLASS}",
        "l0a_bytes": f"{_INI_B2}: l0_a_size=65536; {_CATLASS}",
        "l0b_bytes": f"{_INI_B2}: l0_b_size=65536; {_CATLASS}",
        "l0c_bytes": f"{_INI_B2}: l0_c_size=131072; {_CATLASS}",
        "ub_bytes": f"{_INI_B2}: ub_size=196608 (per AIV); {_CATLASS}",
        "ub_reserved_bytes": "assumption (issue 14 review, not confirmed in public documentation): "
                             "8 KiB of UB kept free for Select/Compare scratch on 910B; the "
                             "executable twin (codegen/ascend/twin) enforces the same limit",
        "ub_align": f"{_ARCH_220X}; {_RESTRICTIONS}; ini ubblock_size=32",
        "l1_align": f"{_ARCH_220X}; {_RESTRICTIONS}",
        "l0a_align": f"{_ARCH_220X}; {_RESTRICTIONS}",
        "l0b_align": f"{_ARCH_220X}; {_RESTRICTIONS}",
        "l0c_align": f"{_ARCH_220X}; {_RESTRICTIONS}",
        "fractal": f"{_DATA_FORMAT}; {_ARCH_220X} (L0A zZ, L0B nZ, L1 NZ); "
                   "ini [DtypeMKN] DT_INT8=16,32,16",
        "l0c_fractal": f"{_ARCH_220X} (L0C NZ, 16x16 fp32 fractals)",
        "cube_macs_per_cycle": f"f16/bf16: {_BASIC_ARCH}; {_HOTCHIPS}; ini cube_m/n/k_size=16. "
                               "f32 = a quarter of fp16: estimate (project design assumption)",
        "vector_bytes_per_cycle": f"{_VECTOR_REPEAT}; ini vec_calc_size=128 (fp16 elements). "
                                  "One repeat per cycle is an estimate",
        "mte2_bytes_per_cycle": f"estimate: {_INI_RATES}: l2_read_rate=110 (GM read when "
                                "L2-resident; HBM-bound reads are capped by hbm_bytes_per_s, "
                                "ini ddr_rate=32 per core)",
        "mte1_bytes_per_cycle": f"estimate: {_INI_RATES}: l1_to_l0_a_rate=512 (L0B assumed equal)",
        "mte3_bytes_per_cycle": f"estimate: {_INI_RATES}: ub_to_l2_rate=64",
        "fixpipe_bytes_per_cycle": "estimate: no public figure; assumed equal to the UB->L2 write "
                                   "rate (ub_to_l2_rate=64)",
    }


ASCEND910B2 = AscendTarget(
    name="ascend910b2",
    soc_version="Ascend910B2",
    aic_cores=24,
    aiv_cores=48,
    clock_hz=1.8e9,
    hbm_bytes=64 * GiB,
    hbm_bytes_per_s=1.6e12,
    l2_bytes=192 * MiB,
    l2_bytes_per_s=110 * 24 * 1.8e9,
    **_core_common(),
    sources={
        **_core_sources(),
        "aic_cores": f"{_INI_B2}: ai_core_cnt=24 / cube_core_cnt=24",
        "aiv_cores": f"{_INI_B2}: vector_core_cnt=48; {_ACL_CORES}",
        "clock_hz": f"{_INI_B2}: [AICoreSpec] cube_freq=1800 (MHz)",
        "hbm_bytes": "CANN platform config memory_size=68719476736 (64 GiB, as quoted for "
                     "Ascend910B1.ini); the 910B2 is the 64 GB part",
        "hbm_bytes_per_s": "estimate: ~1.6 TB/s quoted for 910B2 in public material (no Huawei "
                           "datasheet figure); cf. ini ddr_rate=32 B/cycle/core x 24 x 1.8 GHz "
                           "= 1.38 TB/s",
        "l2_bytes": "CANN platform config l2_size=201326592 (192 MiB); hicann/catlass arch.hpp "
                    "L2CacheByte = 192 MiB",
        "l2_bytes_per_s": f"estimate: {_INI_RATES}: l2_read_rate=110 x 24 AIC x 1.8 GHz",
    },
    notes="Atlas A2 (Atlas 800T/800I A2) part. Cube->Vector hand-off goes through a GM "
          "workspace (no L0C->UB path).",
)

ASCEND910B4 = AscendTarget(
    name="ascend910b4",
    soc_version="Ascend910B4",
    aic_cores=20,
    aiv_cores=40,
    clock_hz=1.5e9,
    hbm_bytes=32 * GiB,
    hbm_bytes_per_s=0.8e12,
    l2_bytes=96 * MiB,
    l2_bytes_per_s=110 * 20 * 1.5e9,
    **_core_common(),
    sources={
        **_core_sources(),
        "aic_cores": f"{_INI_B4}: ai_core_cnt=20 / cube_core_cnt=20",
        "aiv_cores": f"{_INI_B4}: vector_core_cnt=40; {_ACL_CORES}",
        "clock_hz": f"estimate: {_INI_B4}: cube_freq=1500 (MHz)",
        "hbm_bytes": f"{_INI_B4}: memory_size=34359738368 (32 GiB)",
        "hbm_bytes_per_s": "estimate: ~0.8 TB/s; no public Huawei figure (ini ddr_rate=32 "
                           "B/cycle/core x 20 x 1.5 GHz = 0.96 TB/s is an upper bound)",
        "l2_bytes": "hicann/ops-nn matmul/quant_batch_matmul_v4/op_host/op_tiling/"
                    "quant_batch_matmul_v4_pergroup_tiling.cpp: L2_FAKE_SIZE=96 (MB the "
                    "platform reports for B4; L2_REAL_SIZE=168)",
        "l2_bytes_per_s": f"estimate: {_INI_RATES}: l2_read_rate=110 x 20 AIC x 1.5 GHz",
    },
    notes="Lower-bin 910B part: fewer cores, 32 GB HBM. Figures beyond core counts and buffer "
          "sizes are estimates.",
)

TARGETS = (ASCEND910B2, ASCEND910B4)
