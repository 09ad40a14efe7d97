"""The Ascend lowerings' errors, reported at the op's source as ``file:line:col: error:``."""
from __future__ import annotations


class AscendLoweringError(Exception):
    """The kernel is not (yet) expressible as an Ascend program by this lowering."""


class AscendLegalityError(Exception):
    """The program does not fit the target: capacity or alignment."""


def where(kernel, op=None, loc=None) -> str:
    """``file:line:col`` of ``loc``, else of ``op``; ``?`` for the position when unknown."""
    if loc is None and op is not None:
        loc = getattr(op, "loc", None)
    return f"{kernel.source_file or '<string>'}:{loc if loc is not None else '?'}"


def fail(kernel, op, msg, context=None, loc=None):
    """Raise AscendLoweringError at ``op``; ``context`` replaces "op 'x' in kernel 'k'"."""
    if context is None:
        context = f"op '{op.name if op is not None else '?'}' in kernel '{kernel.name}'"
    raise AscendLoweringError(f"{where(kernel, op, loc)}: error: ascend: {msg} ({context})")
