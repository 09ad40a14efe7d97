"""Data flows one way: frontend -> tilec IR -> codegen -> artifacts -> runtime -> serve.

Every import in a layer's sources (function-level ones included) is read with ``ast`` and
checked against what that layer may use; codegen's own modules must not import each other in a
circle (a backend module importing its sibling's emitter and back ties them into one unit)."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# layer -> prefixes of project modules it may import (anything not a project module is free)
ALLOWED = {
    "tilec/ir": ("tilec.ir",),
    "frontend": ("frontend", "tilec.ir", "tilec.diagnostics", "tilec.limits"),
    "codegen": ("codegen", "tilec.ir", "tilec.targets"),
    "runtime": ("runtime", "codegen", "tilec.ir", "tilec.targets", "tilec.cache", "tilec.safefs"),
}
PROJECT = ("tilec", "frontend", "codegen", "runtime", "serve")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``path``."""
    mod = _module(path)
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            for a in node.names:    # `from pkg import sub` imports pkg.sub where sub is a module
                sub = f"{name}.{a.name}"
                out.append((node.lineno, sub if _project_module(sub) else name))
    return out


def _project_module(name: str) -> bool:
    """Whether ``name`` (or a prefix of it) is a module or package of this project."""
    parts = name.split(".")
    if parts[0] not in PROJECT:
        return False
    for i in range(len(parts), 0, -1):
        p = ROOT.joinpath(*parts[:i])
        if p.with_suffix(".py").is_file() or (p / "__init__.py").is_file():
            return i == len(parts)
    return False


def _sources(layer: str):
    return sorted((ROOT / layer).rglob("*.py"))


def _allowed(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_never_imports_a_higher_one(layer):
    bad = []
    for f in _sources(layer):
        for line, name in _imports(f):
            if _project_module(name) and not _allowed(name, ALLOWED[layer]):
                bad.append(f"{f.relative_to(ROOT)}:{line}: imports {name}")
    assert not bad, "\n".join(bad)


def test_codegen_modules_import_no_circle():
    mods = {_module(f): f for f in _sources("codegen")}
    graph = {m: {n for _, n in _imports(f) if n in mods and n != m
                 and not f.name == "__init__.py" and not mods[n].name == "__init__.py"}
             for m, f in mods.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(m, stack):
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(" -> ".join(stack[stack.index(n):] + [n]))
            elif n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    """The scan itself: a function-level upward import in a codegen-like file is found."""
    f = ROOT / "codegen" / "ascend" / "errors.py"
    names = [n for _, n in _imports(f)]
    assert all(not n.startswith("runtime") for n in names)
    src = tmp_path / "x.py"
    src.write_text("def f():\n    from runtime.plan import plan\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _imports(src) == [(2, "runtime.plan")]
