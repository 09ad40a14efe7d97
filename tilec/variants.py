"""Variant spaces: the const/dtype bindings of each library kernel worth precompiling.

``tilec/kernels/variants.json`` maps a kernel name to a ``space`` (name -> list of values) and
optional ``constraints`` (small expressions over those names). A space expands to the
cartesian product of its values, minus the combinations a constraint rejects:

    >>> from tilec.variants import expand
    >>> expand({"space": {"BM": [16, 64], "G": [1, 32]}, "constraints": ["BM % G == 0"]})
    [{'BM': 16, 'G': 1}, {'BM': 64, 'G': 1}, {'BM': 64, 'G': 32}]

Optional ``backend_constraints`` (backend -> constraints) hold only for that backend's
entries: e.g. Triton needs power-of-2 tile extents, so a BM = 48 variant is built for cpu but
not for triton (``backend_allows``). An optional ``backends`` list builds the kernel for those
backends only (split-KV attention has no Ascend lowering).

Plain JSON only; constraints are evaluated by a tiny interpreter (never ``eval``).
"""
from __future__ import annotations

import ast
import itertools
import json
import operator
from importlib import resources
from pathlib import Path

__all__ = ["VariantError", "default_path", "load_spaces", "expand", "library_variants",
           "backend_allows"]


class VariantError(ValueError):
    """A variant file that cannot be read or is malformed; the message says where."""


def default_path() -> Path:
    return Path(str(resources.files("tilec") / "kernels" / "variants.json"))


def load_spaces(path: str | Path | None = None) -> dict[str, dict]:
    """The ``kernels`` table of a variant file (default: the library's), validated."""
    p = Path(path) if path is not None else default_path()
    try:
        data = json.loads(p.read_text())
    except OSError as e:
        raise VariantError(f"{p}: cannot read variant file: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VariantError(f"{p}: not valid JSON: {e}") from None
    except RecursionError:
        raise VariantError(f"{p}: JSON nests too deeply") from None
    if not isinstance(data, dict) or not isinstance(data.get("kernels"), dict):
        raise VariantError(f"{p}: expected an object with a 'kernels' table")
    for name, spec in data["kernels"].items():
        _check_spec(spec, f"{p}: kernel '{name}'")
    return data["kernels"]


def _check_spec(spec, where: str) -> None:
    if not isinstance(spec, dict) or not isinstance(spec.get("space"), dict):
        raise VariantError(f"{where}: expected an object with a 'space' table")
    for n, values in spec["space"].items():
        if not n.isidentifier():
            raise VariantError(f"{where}: '{n}' is not a name")
        if not isinstance(values, list) or not values:
            raise VariantError(f"{where}: '{n}' must list at least one value")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                raise VariantError(f"{where}: value {v!r} of '{n}' is not an integer or a dtype name")
    cons = spec.get("constraints", [])
    if not isinstance(cons, list) or not all(isinstance(c, str) for c in cons):
        raise VariantError(f"{where}: 'constraints' must be a list of strings")
    bks = spec.get("backends", [])
    if not isinstance(bks, list) or not all(isinstance(b, str) for b in bks):
        raise VariantError(f"{where}: 'backends' must be a list of backend names")
    bcons = spec.get("backend_constraints", {})
    if not isinstance(bcons, dict) or not all(
            isinstance(v, list) and all(isinstance(c, str) for c in v) for v in bcons.values()):
        raise VariantError(f"{where}: 'backend_constraints' must map backends to lists of strings")
    acc = spec.get("accepted_spills", [])
    if not isinstance(acc, list) or not all(
            isinstance(a, dict) and isinstance(a.get("when"), str) and isinstance(a.get("why"), str)
            and a["why"].strip() for a in acc):
        raise VariantError(f"{where}: 'accepted_spills' must list objects with a 'when' constraint "
                           f"and a non-empty 'why'")
    for c in cons + [c for v in bcons.values() for c in v] + [a["when"] for a in acc]:
        try:
            _compile(c)
        except VariantError as e:
            raise VariantError(f"{where}: {e}") from None


_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_CMP = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
        ast.Gt: operator.gt, ast.GtE: operator.ge}


def _compile(text: str) -> ast.AST:
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise VariantError(f"constraint '{text}' is not an expression") from None
    for node in ast.walk(tree):
        ok = isinstance(node, (ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub,
                               ast.BinOp, ast.Compare, ast.Name, ast.Load, ast.Constant,
                               *_BIN, *_CMP))
        if not ok or (isinstance(node, ast.Constant) and not isinstance(node.value, (int, str))):
            raise VariantError(f"constraint '{text}': unsupported syntax '{ast.unparse(node)}'")
    return tree


def _eval(node: ast.AST, env: dict, text: str):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise VariantError(f"constraint '{text}' uses '{node.id}', which the space does not bind")
        return env[node.id]
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, env, text)
        return (not v) if isinstance(node.op, ast.Not) else -v
    if isinstance(node, ast.BoolOp):
        vals = (_eval(v, env, text) for v in node.values)
        return all(vals) if isinstance(node.op, ast.And) else any(vals)
    if isinstance(node, ast.BinOp):
        a, b = _eval(node.left, env, text), _eval(node.right, env, text)
        try:
            return _BIN[type(node.op)](a, b)
        except (TypeError, ZeroDivisionError) as e:
            raise VariantError(f"constraint '{text}': {e}") from None
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env, text)
        for op, right_node in zip(node.ops, node.comparators):
            right = _eval(right_node, env, text)
            try:
                if not _CMP[type(op)](left, right):
                    return False
            except TypeError as e:
                raise VariantError(f"constraint '{text}': {e}") from None
            left = right
        return True
    raise VariantError(f"constraint '{text}': unsupported syntax")  # pragma: no cover


def expand(spec: dict) -> list[dict]:
    """Every binding of one kernel's space that satisfies all its constraints, in the order
    of the cartesian product (names in declaration order, values in listed order)."""
    _check_spec(spec, "variant space")
    names = list(spec["space"])
    cons = [(c, _compile(c)) for c in spec.get("constraints", [])]
    out = []
    for combo in itertools.product(*(spec["space"][n] for n in names)):
        b = dict(zip(names, combo))
        if all(_eval(tree, b, text) for text, tree in cons):
            out.append(b)
    return out


def backend_allows(spec: dict, binding: dict, backend: str) -> bool:
    """Whether ``binding`` passes ``spec``'s constraints for ``backend`` (if it has any), and
    the kernel is built for ``backend`` at all (``backends``, when the spec lists them)."""
    if "backends" in spec and backend not in spec["backends"]:
        return False
    return all(_eval(_compile(c), binding, c)
               for c in spec.get("backend_constraints", {}).get(backend, []))


def accepted_spill(kernel: str, binding: dict, path: str | Path | None = None) -> str | None:
    """Why a GPU variant of ``kernel`` may spill registers (the variant file's
    ``accepted_spills`` entry whose ``when`` holds for ``binding``), or None: a spilling variant
    without such an entry fails the sm_90 check (tests/codegen/test_triton_sm90.py)."""
    spec = load_spaces(path).get(kernel) or {}
    for a in spec.get("accepted_spills", []):
        try:
            if _eval(_compile(a["when"]), binding, a["when"]):
                return a["why"]
        except VariantError:
            continue          # names this binding does not bind: not this variant
    return None


def library_variants(kernels=None, path: str | Path | None = None) -> list[tuple[str, dict]]:
    """``(kernel, binding)`` for every variant of the variant file (default: the library's),
    optionally only for the kernel names in ``kernels``; unknown names raise VariantError."""
    spaces = load_spaces(path)
    if kernels:
        unknown = [k for k in kernels if k not in spaces]
        if unknown:
            raise VariantError(f"no variant space for kernel(s) {', '.join(unknown)}; "
                               f"known: {', '.join(spaces)}")
    return [(name, b) for name, spec in spaces.items()
            if not kernels or name in kernels for b in expand(spec)]
