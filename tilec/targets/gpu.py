"""NVIDIA GPU targets (compiled through Triton).

Peak figures come from NVIDIA's datasheets and the Hopper whitepaper; dense tensor-core rates
are the datasheets' "with sparsity" figures halved. The ``measured_*`` fields are what this
project measured on the lent machines, not vendor figures.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

KiB = 1024
MiB = 1024 * KiB

_H100_DS = ("NVIDIA H100 Tensor Core GPU datasheet, H100 SXM column, "
            "https://www.nvidia.com/en-us/data-center/h100/")
_H200_DS = ("NVIDIA H200 Tensor Core GPU datasheet, H200 SXM column, "
            "https://www.nvidia.com/en-us/data-center/h200/")
_HOPPER_WP = ("NVIDIA H100 Tensor Core GPU Architecture whitepaper (Hopper), H100 SXM5: "
              "132 SMs, 50 MB L2, 228 KB shared memory per SM")
_CUDA_GUIDE = ("CUDA C++ Programming Guide, 'Compute Capabilities' table, compute capability 9.0: "
               "228 KB shared memory per SM, 227 KB per thread block")
_MEASURED = "measured by this project on the lent machine"


@dataclass(frozen=True, kw_only=True)
class GpuTarget:
    """One NVIDIA GPU. Bytes, bytes/s and FLOP/s (dense) throughout."""

    kind: ClassVar[str] = "gpu"

    name: str
    backend: str = "triton"
    arch: str                               # e.g. "sm_90"
    sm_count: int
    warp_size: int
    smem_bytes_per_sm: int
    smem_bytes_per_block: int
    l2_bytes: int
    hbm_bytes: int
    hbm_bytes_per_s: float                  # datasheet
    tensor_flops_per_s: dict[str, float] = field(hash=False)   # dense, by input dtype
    measured_copy_bytes_per_s: float        # device-to-device copy
    measured_bf16_matmul_flops_per_s: float # bf16 8192^3 matmul
    sources: dict[str, str] = field(hash=False, repr=False)
    notes: str = ""

    def peak_flops_per_s(self, dtype: str = "f16") -> float:
        try:
            return self.tensor_flops_per_s[dtype]
        except KeyError:
            raise ValueError(f"no tensor-core rate for {dtype} on {self.name}; known: "
                             f"{', '.join(self.tensor_flops_per_s)}") from None

    @property
    def mem_bytes_per_s(self) -> float:
        return self.hbm_bytes_per_s


_HOPPER_FLOPS = {"f16": 989.4e12, "bf16": 989.4e12, "f32": 494.7e12}   # f32 runs as TF32
_HOPPER_FLOPS_SRC = ("dense = half the 'with sparsity' figures: BF16/FP16 Tensor Core 1,979 "
                     "TFLOPS, TF32 Tensor Core 989 TFLOPS (f32 inputs run as TF32)")

H100 = GpuTarget(
    name="h100",
    arch="sm_90",
    sm_count=132,
    warp_size=32,
    smem_bytes_per_sm=228 * KiB,
    smem_bytes_per_block=227 * KiB,
    l2_bytes=50 * MiB,
    hbm_bytes=80 * 10**9,
    hbm_bytes_per_s=3.35e12,
    tensor_flops_per_s=dict(_HOPPER_FLOPS),
    measured_copy_bytes_per_s=3.0e12,
    measured_bf16_matmul_flops_per_s=798e12,
    sources={
        "sm_count": _HOPPER_WP,
        "warp_size": _CUDA_GUIDE,
        "smem_bytes_per_sm": f"{_HOPPER_WP}; {_CUDA_GUIDE}",
        "smem_bytes_per_block": _CUDA_GUIDE,
        "l2_bytes": _HOPPER_WP,
        "hbm_bytes": f"{_H100_DS}: GPU memory 80GB (HBM3)",
        "hbm_bytes_per_s": f"{_H100_DS}: GPU memory bandwidth 3.35TB/s",
        "tensor_flops_per_s": f"{_H100_DS}: {_HOPPER_FLOPS_SRC}",
        "measured_copy_bytes_per_s": f"{_MEASURED} (nvidia-h100-x1): ~3.0 TB/s device copy",
        "measured_bf16_matmul_flops_per_s": f"{_MEASURED} (nvidia-h100-x1): ~798 TFLOP/s, "
                                            "torch bf16 8192x8192x8192 matmul",
    },
    notes="H100 SXM5 80GB.",
)

H200 = GpuTarget(
    name="h200",
    arch="sm_90",
    sm_count=132,
    warp_size=32,
    smem_bytes_per_sm=228 * KiB,
    smem_bytes_per_block=227 * KiB,
    l2_bytes=50 * MiB,
    hbm_bytes=141 * 10**9,
    hbm_bytes_per_s=4.8e12,
    tensor_flops_per_s=dict(_HOPPER_FLOPS),
    measured_copy_bytes_per_s=4.3e12,
    measured_bf16_matmul_flops_per_s=788e12,
    sources={
        "sm_count": f"{_HOPPER_WP} (H200 is the same GH100 GPU with HBM3e)",
        "warp_size": _CUDA_GUIDE,
        "smem_bytes_per_sm": f"{_HOPPER_WP}; {_CUDA_GUIDE}",
        "smem_bytes_per_block": _CUDA_GUIDE,
        "l2_bytes": f"{_HOPPER_WP} (same GH100 GPU)",
        "hbm_bytes": f"{_H200_DS}: GPU memory 141GB (HBM3e)",
        "hbm_bytes_per_s": f"{_H200_DS}: GPU memory bandwidth 4.8TB/s",
        "tensor_flops_per_s": f"{_H200_DS}: {_HOPPER_FLOPS_SRC}",
        "measured_copy_bytes_per_s": f"{_MEASURED} (nvidia-h200): ~4.3 TB/s device copy",
        "measured_bf16_matmul_flops_per_s": f"{_MEASURED} (nvidia-h200): ~788 TFLOP/s, "
                                            "torch bf16 8192x8192x8192 matmul",
    },
    notes="H200 SXM 141GB; same compute as H100 SXM, faster and larger memory.",
)

TARGETS = (H100, H200)
