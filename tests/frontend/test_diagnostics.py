"""Golden diagnostics: each tests/frontend/golden/X.tile reports exactly X.err.

Regenerate after an intended message change with: TILEC_REGEN=1 pytest tests/frontend
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from frontend.diagnostics import CompileError
from tilec.compiler import compile_source

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.stem for p in GOLDEN.glob("*.tile"))


def diagnostics_for(name: str) -> str:
    src = (GOLDEN / f"{name}.tile").read_text()
    with pytest.raises(CompileError) as e:
        compile_source(src, f"{name}.tile")
    return e.value.render() + "\n"


@pytest.mark.parametrize("name", CASES)
def test_golden(name):
    got = diagnostics_for(name)
    exp_file = GOLDEN / f"{name}.err"
    if os.environ.get("TILEC_REGEN"):
        exp_file.write_text(got)
    assert got == exp_file.read_text()


def test_every_error_is_located_with_a_caret():
    for name in CASES:
        lines = diagnostics_for(name).splitlines()
        heads = [i for i, l in enumerate(lines) if ": error: " in l]
        assert heads
        for i in heads:
            assert lines[i].startswith(f"{name}.tile:")
            assert lines[i + 2].strip().startswith("^")


def test_semantic_errors_are_all_reported():
    # one file, nine independent mistakes: analysis goes on after each
    assert diagnostics_for("semantic_errors").count(": error: ") == 9


@pytest.mark.parametrize("snippet, message", [
    ("x = 1 +", "unexpected end of line"),
    ("x = foo(1)", "unknown function 'foo'"),
    ("x = dot(zeros((16, 16)), zeros((8, 16)))", "shape mismatch in dot()"),
    ("x = exp(1, 2)", "exp() takes at most 1 argument"),
    ("x = zeros((16, 16)) + zeros((16, 8))", "shape mismatch"),
    ("x = arange(0, M)", "arange end must be a compile-time constant"),
    ("x = load(A[0 : M])", "slice extent is not static"),
    ("x = zeros((M, 2))", "tile shape is not static"),
    ("x = load(A[0 : 16], mask=zeros((16,), i32))", "mask must be bool"),
    ("x = where(zeros((4,)), 1, 2)", "where() condition must be bool"),
    ("store(A[0 : 16], zeros((8,)))", "stored value has shape [8]"),
    ("x = load(A[arange(0, 16), 0 : 4])", "tensor 'A' has 1 dims"),
    ("for i in range(0, M, M):\n        pass", "range step must be a positive compile-time constant"),
    ("x = y", "unknown name 'y'"),
    ("A = 1", "cannot assign to 'A'"),
    ("M = 1", "cannot assign to 'M': it is a tensor dim"),
    ("x = (A[0 : 4], 1)", "a tensor access must be read with load(...)"),
    ("x = program_id(2)", "program_id(2) but the grid has 1 dims"),
    ("x = 1 // 0", "division by zero"),
    ("load(A[0 : 16])", "expression statement has no effect"),
    ("grid(2)", "grid() must be the first statement"),
])
def test_single_errors(snippet, message):
    src = f"kernel k(A: f16[M]):\n    grid(M)\n    {snippet}\n"
    with pytest.raises(CompileError) as e:
        compile_source(src, "s.tile")
    text = e.value.render()
    assert message in text, text
    assert text.startswith("s.tile:")


def test_cli_check_exits_1_without_traceback(tmp_path):
    f = tmp_path / "bad.tile"
    f.write_text((GOLDEN / "semantic_errors.tile").read_text())
    p = subprocess.run([sys.executable, "-m", "tilec.cli", "check", str(f)], capture_output=True, text=True)
    assert p.returncode == 1
    assert "Traceback" not in p.stderr
    assert f"{f}:5:16: error: slice extent is not static" in p.stderr


def test_cli_check_library_is_clean():
    p = subprocess.run([sys.executable, "-m", "tilec.cli", "check"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "" and p.stderr == ""


def test_cli_missing_file(tmp_path):
    p = subprocess.run([sys.executable, "-m", "tilec.cli", "check", str(tmp_path / "nope.tile")],
                       capture_output=True, text=True)
    assert p.returncode == 1 and "cannot read file" in p.stderr and "Traceback" not in p.stderr
