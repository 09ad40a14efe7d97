"""Element types of the tile language and their promotion rules."""
from __future__ import annotations

import ml_dtypes
import numpy as np

FLOATS = ("f16", "bf16", "f32")
INTS = ("i32", "i64")
ALL = FLOATS + INTS + ("bool",)

BITS = {"f16": 16, "bf16": 16, "f32": 32, "i32": 32, "i64": 64, "bool": 8}
NUMPY = {"f16": np.dtype(np.float16), "bf16": np.dtype(ml_dtypes.bfloat16),
         "f32": np.dtype(np.float32), "i32": np.dtype(np.int32), "i64": np.dtype(np.int64),
         "bool": np.dtype(np.bool_)}


def is_float(dt: str) -> bool:
    return dt in FLOATS


def is_int(dt: str) -> bool:
    return dt in INTS


def itemsize(dt: str) -> int:
    return BITS[dt] // 8


def to_numpy(dt: str) -> np.dtype:
    return NUMPY[dt]


def from_numpy(dt) -> str:
    dt = np.dtype(dt)
    for name, nd in NUMPY.items():
        if nd == dt:
            return name
    raise ValueError(f"unsupported array dtype {dt}; tilec handles {', '.join(ALL)}")


def from_torch(dt) -> str:
    import torch
    table = {torch.float16: "f16", torch.bfloat16: "bf16", torch.float32: "f32",
             torch.int32: "i32", torch.int64: "i64", torch.bool: "bool"}
    if dt not in table:
        raise ValueError(f"unsupported tensor dtype {dt}; tilec handles {', '.join(ALL)}")
    return table[dt]


def to_torch(dt: str):
    import torch
    return {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32,
            "i32": torch.int32, "i64": torch.int64, "bool": torch.bool}[dt]


def promote(a: str, b: str) -> str:
    """Result type of a binary op on two *typed* operands (literals adapt instead)."""
    if a == b:
        return a
    if is_float(a) or is_float(b):
        fa, fb = (a if is_float(a) else None), (b if is_float(b) else None)
        if fa and fb:
            return "f32"            # f16 with bf16, or either with f32: compute in f32
        return fa or fb
    if "bool" in (a, b):
        return b if a == "bool" else a
    return "i64" if "i64" in (a, b) else "i32"
