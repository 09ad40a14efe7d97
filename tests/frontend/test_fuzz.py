"""Property: any program, however mangled, ends in diagnostics or a successful compile —
never an uncaught exception."""
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from frontend.diagnostics import CompileError
from tilec.compiler import compile_source
from tilec.kernels import library_files

SOURCES = [p.read_text() for p in library_files()]
TOKENS = ["(", ")", "[", "]", ":", ",", "=", "+", "-", "*", "//", "%", "None", "0", "1.5", "x",
          "BM", "load(", "store(", "dot(", "\n", "\n    ", "    ", "for i in range(0, 4):",
          "if x:", "else:", "zeros((4,), f32)", "arange(0, 16)", "[:, None]", "#", "kernel",
          "const", "f16", "True", "not", "and", "~", "&", "cast(", "max(", "where(", "grid(1)"]


def _compiles_or_diagnoses(text: str) -> None:
    try:
        compile_source(text, "fuzz.tile")
    except CompileError as e:
        assert e.diagnostics
        out = e.render()
        assert "fuzz.tile" in out


@st.composite
def mutated(draw):
    src = draw(st.sampled_from(SOURCES))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "insert", "replace", "swap_lines", "dup_line"]))
        if not src:
            break
        i = draw(st.integers(0, len(src) - 1))
        if kind == "delete":
            j = min(len(src), i + draw(st.integers(1, 8)))
            src = src[:i] + src[j:]
        elif kind == "insert":
            src = src[:i] + draw(st.sampled_from(TOKENS)) + src[i:]
        elif kind == "replace":
            src = src[:i] + draw(st.sampled_from(TOKENS)) + src[i + 1:]
        else:
            lines = src.split("\n")
            a = draw(st.integers(0, len(lines) - 1))
            b = draw(st.integers(0, len(lines) - 1))
            if kind == "swap_lines":
                lines[a], lines[b] = lines[b], lines[a]
            else:
                lines.insert(b, lines[a])
            src = "\n".join(lines)
    return src


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated())
def test_mutated_library_sources(src):
    _compiles_or_diagnoses(src)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=30))
def test_random_token_soup_in_a_kernel(tokens):
    body = " ".join(tokens)
    _compiles_or_diagnoses(f"kernel k(A: f16[M], x: f32, BM: const = 16):\n    grid(M)\n    {body}\n")


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text(text):
    _compiles_or_diagnoses(text)


# ------------------------------------------------------------------ the mutation fuzzer (CI part)

CORPUS = __import__("pathlib").Path(__file__).with_name("fuzz_corpus")


def test_fuzzer_finds_no_traceback_or_hang():
    """A few hundred mutants through compile + a small run on reference and cpu (the long run
    is benchmarks/fuzz_frontend.py): diagnostics, runs, or clean launch refusals only."""
    import random

    from tilec.testing.fuzz import check, mutants
    kinds = {}
    for src in mutants(random.Random(1234), 250):
        o = check(src, limit=10.0)
        assert not o.finding, f"{o.kind}: {o.detail}\n--- input ---\n{src!r:.2000}"
        kinds[o.kind] = kinds.get(o.kind, 0) + 1
    assert kinds.get("diagnostic", 0) > 50 and kinds.get("ran", 0) + kinds.get("refused", 0) > 5, kinds


def test_fuzz_corpus_regressions():
    """Every input a fuzz run ever found a crash or hang with stays fixed."""
    from tilec.testing.fuzz import check
    files = sorted(CORPUS.glob("*.tile")) if CORPUS.is_dir() else []
    for f in files:
        data = f.read_bytes()
        try:
            src = data.decode("utf-8")
        except UnicodeDecodeError:
            src = data
        o = check(src, limit=10.0)
        assert not o.finding, f"{f.name}: {o.kind}: {o.detail}"


@pytest.mark.parametrize("src,needle", [
    ("kernel k(X: f32[N]):\n    grid(1)\n    y = " + "(" * 200 + "1" + ")" * 200 + "\n", "brackets nest more than 64"),
    ("kernel k(X: f32[N]):\n    grid(1)\n    y = " + "x + " * 500 + "1\n", "more than 256 operators"),
    ("kernel k(X: f32[N]):\n    grid(1)\n    y = " + "-" * 500 + "1\n", "more than 256 operators"),
    ("kernel k(X: f32[N]):\n    grid(1)\n    y = " + "1" * 20000 + "\n", "the limit is 10000"),
    ("".join(f"kernel k{i}(X: f32[N]):\n    grid(1)\n" for i in range(300)), "more than 256 kernels"),
])
def test_limits_are_diagnostics(src, needle):
    with pytest.raises(CompileError) as e:
        compile_source(src, "big.tile")
    assert needle in e.value.render() and "big.tile:" in e.value.render()


def test_non_utf8_source_is_located(tmp_path):
    from tilec.compiler import read_source
    p = tmp_path / "bad.tile"
    p.write_bytes(b"kernel k(X: f32[N]):\n    grid(1)  # caf\xe9\n")
    with pytest.raises(CompileError) as e:
        read_source(p)
    assert "bad.tile:2:19: error: file is not UTF-8: byte 0xe9 at offset 39" in e.value.render()
