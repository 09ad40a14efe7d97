"""The standard kernel library, written in the tile language and shipped as package data."""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def library_files() -> list[Path]:
    root = resources.files("tilec") / "kernels"
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith(".tile"))


def find_kernel(name: str) -> Path:
    for f in library_files():
        if f"kernel {name}(" in f.read_text():
            return f
    raise KeyError(f"no library kernel named '{name}'")
