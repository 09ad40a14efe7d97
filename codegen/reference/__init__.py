"""Reference backend: a numpy interpreter of tile IR, one program instance at a time."""
from .interp import run

__all__ = ["run"]
