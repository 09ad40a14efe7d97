"""The Ascend lowerings' errors, in the project's diagnostic format:

    FILE:LINE:COL: error: ascend910b2: WHAT IS NOT SUPPORTED, AND WHAT TO WRITE INSTEAD
        the source line
        ^

The target is filled in by the entry points (``dispatch.lower``) that know it; the source line
is read from the kernel's file when it is there.
"""
from __future__ import annotations

from tilec.ir.core import Loc, render_diagnostic

# IR op names -> what the user wrote, so a message talks about the program, not the compiler
_CONSTRUCT = {
    "splat": "a scalar used where a tile is needed (implicit broadcast)",
    "broadcast": "a tile broadcast to a larger shape",
    "expand_dims": "indexing with None (x[:, None])",
    "reshape": "reshape()",
    "trans": "trans()",
    "load": "load()",
    "store": "store()",
    "dot": "dot()",
    "reduce": "a reduction (sum/max/min)",
    "arange": "arange()",
    "full": "zeros()/full()",
    "constant": "a constant",
    "program_id": "program_id()",
    "for": "a for loop",
    "if": "an if statement",
    "select": "where()",
    "cmp": "a comparison",
    "cast": "cast()",
    "binary": "an arithmetic operator",
    "unary": "a math function",
    "not": "a logical not",
}


def construct(op) -> str:
    """The language construct an IR op came from, in the user's words."""
    if op is None:
        return "this construct"
    name = getattr(op, "name", str(op))
    what = _CONSTRUCT.get(name, f"'{name}'")
    sub = getattr(op, "attrs", {}).get("op") if name in ("binary", "unary", "reduce", "cmp") else None
    return f"{what} ('{sub}')" if sub else what


class _Located(Exception):
    """An error at a kernel's source position; ``str()`` renders it with the source line."""

    def __init__(self, message: str, file: str | None = None, loc: Loc | None = None,
                 hint: str | None = None, target: str | None = None):
        self.message, self.file, self.loc, self.hint, self.target = message, file, loc, hint, target
        super().__init__(message)

    def __str__(self) -> str:
        line = None
        if self.file and self.loc is not None:
            try:
                with open(self.file, encoding="utf-8", errors="replace") as f:
                    for i, text in enumerate(f, 1):
                        if i == self.loc.line:
                            line = text
                            break
            except OSError:
                line = None
        return render_diagnostic(self.file or "<string>", self.loc,
                                 f"{self.target or 'ascend'}: {self.message}", line, hint=self.hint)


class AscendLoweringError(_Located):
    """The kernel is not (yet) expressible as an Ascend program by this lowering."""


class AscendLegalityError(Exception):
    """The program does not fit the target: capacity or alignment."""


def _first_loc(kernel):
    for op in kernel.walk():
        if getattr(op, "loc", None) is not None:
            return op.loc
    return None


def fail(kernel, op, msg, context=None, loc=None, hint=None):
    """Raise AscendLoweringError at ``op`` (or ``loc``; the kernel's first located op when
    neither is known). ``context`` is appended as a sentence about the kernel as a whole."""
    if loc is None and op is not None:
        loc = getattr(op, "loc", None)
    if loc is None:
        loc = _first_loc(kernel)
    text = f"{msg}; {context}" if context else msg
    raise AscendLoweringError(f"{text} (kernel '{kernel.name}')", kernel.source_file, loc, hint)


def with_target(e: AscendLoweringError, target) -> AscendLoweringError:
    """``e`` naming ``target`` (a name or a Target), for entry points that know the target."""
    if e.target is None:
        e.target = target if isinstance(target, str) else getattr(target, "name", str(target))
    return e


def where(kernel, op=None) -> str:
    """``file:line:col`` of ``op`` (or of the kernel's first located op), for records."""
    loc = getattr(op, "loc", None) if op is not None else None
    loc = loc or _first_loc(kernel)
    return f"{kernel.source_file or '<string>'}" + (f":{loc}" if loc is not None else "")


def targeted(lowering):
    """Decorate a lowering ``f(kernel, target, ...)`` so its errors name the target."""
    import functools

    @functools.wraps(lowering)
    def run(kernel, target="ascend910b2", *args, **kw):
        try:
            return lowering(kernel, target, *args, **kw)
        except AscendLoweringError as e:
            raise with_target(e, target) from None
    return run
