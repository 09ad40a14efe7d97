"""The host CPU target (torch backend). Only the core count is described; it is read at
import time from the machine the compiler runs on."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import ClassVar


def _host_cores() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True, kw_only=True)
class CpuTarget:
    kind: ClassVar[str] = "cpu"

    name: str = "cpu"
    backend: str = "cpu"
    cores: int = field(default_factory=_host_cores)
    sources: dict[str, str] = field(hash=False, repr=False, default_factory=lambda: {
        "cores": "os.cpu_count() of the host, read when tilec.targets is imported"})
    notes: str = ("The host CPU as seen by the Python process; kernels run as torch code "
                  "vectorised over the grid.")


CPU = CpuTarget()

TARGETS = (CPU,)
