"""Located diagnostics: ``FILE:LINE:COL: error: MESSAGE`` plus the source line and a caret.

Every error a user can cause in DSL source is reported through this module, so the format is
defined once. Positions are 1-based, as editors and compilers print them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tilec.ir.core import Loc, render_diagnostic   # positions are part of the IR (ops carry one)

__all__ = ["Loc", "Diagnostic", "Source", "DiagnosticSink", "CompileError"]


@dataclass(frozen=True)
class Diagnostic:
    loc: Loc | None
    message: str
    hint: str | None = None
    severity: str = "error"


@dataclass
class Source:
    """A source text and the name it is reported under."""
    text: str
    filename: str = "<string>"
    _lines: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._lines = self.text.splitlines()

    def line(self, n: int) -> str:
        return self._lines[n - 1] if 1 <= n <= len(self._lines) else ""

    def render(self, d: Diagnostic) -> str:
        return render_diagnostic(self.filename, d.loc, d.message,
                                 self.line(d.loc.line) if d.loc else "", d.severity, d.hint)


class CompileError(Exception):
    """One or more diagnostics for one source. ``str()`` renders all of them."""

    def __init__(self, source: Source, diagnostics: list[Diagnostic]):
        self.source = source
        self.diagnostics = list(diagnostics)
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(self.source.render(d) for d in self.diagnostics)


class DiagnosticSink:
    """Collects diagnostics so analysis can go on and report every error of a file."""

    def __init__(self, source: Source):
        self.source = source
        self.items: list[Diagnostic] = []

    def error(self, loc: Loc | None, message: str, hint: str | None = None) -> None:
        d = Diagnostic(loc, message, hint)
        if d not in self.items:      # one mistake reached twice is reported once
            self.items.append(d)

    def raise_if_any(self) -> None:
        if self.items:
            raise CompileError(self.source, sorted(self.items, key=_order))


def _order(d: Diagnostic) -> tuple[int, int]:
    return (d.loc.line, d.loc.col) if d.loc else (0, 0)
