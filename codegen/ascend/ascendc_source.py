"""What every Ascend C emitter produces: the kernel, tiling header and host launcher of one
kernel (shared by the GEMM, vector and attention emitters so none imports another)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AscendCSource:
    name: str
    kernel: str          # device .cpp
    tiling: str          # host/device tiling struct header
    launcher: str        # host .cpp

    def files(self) -> dict[str, str]:
        return {f"{self.name}.cpp": self.kernel, f"{self.name}_tiling.h": self.tiling,
                "main.cpp": self.launcher}


def camel(name: str) -> str:
    """snake_case kernel name -> the CamelCase of its C++ class and tiling struct."""
    return "".join(p[:1].upper() + p[1:] for p in name.split("_"))
