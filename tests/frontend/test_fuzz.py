"""Property: any program, however mangled, ends in diagnostics or a successful compile —
never an uncaught exception."""
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
