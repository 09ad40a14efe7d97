"""Settle Triton's mode before any test imports triton: without a CUDA GPU, kernels run under
Triton's interpreter (TRITON_INTERPRET must be set before triton is first imported)."""
import os

try:
    import torch
    _cuda = torch.cuda.is_available()
except ImportError:
    _cuda = False
if not _cuda:
    os.environ.setdefault("TRITON_INTERPRET", "1")
