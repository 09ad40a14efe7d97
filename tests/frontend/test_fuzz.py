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


def test_found_by_the_long_fuzz_run():
    """The classes benchmarks/fuzz_frontend.py found (2026-12-02, 10,000 inputs): a literal
    loop bound past i32 wrapped the i32 counter (range(2**31, K) ran from -2**31), huge tile
    consts (BM=65536 x BN=1024) ran for minutes, a dim named like a Python keyword or a runtime
    name broke the generated torch code, and a loop whose body was all dead code emitted an
    empty Python block."""
    import numpy as np
    import pytest

    from codegen import cpu, reference
    big = ("kernel k(X: f32[M, N], Y: f32[M, N], BM: const = 65536, BN: const = 1024):\n"
           "    grid(cdiv(M, BM))\n    m0 = program_id(0) * BM\n"
           "    store(Y[m0 : m0 + BM, 0 : BN], load(X[m0 : m0 + BM, 0 : BN]))\n")
    with pytest.raises(CompileError, match=r"fuzz\.tile:4:\d+: error: a tile of shape \[65536, 1024\] has "
                                           r"67108864 elements; tiles hold at most 1048576"):
        compile_source(big, "fuzz.tile")
    loop = ("kernel k(X: f32[K], Y: f32[K], BK: const = 4):\n    grid(1)\n    acc = zeros((BK,), f32)\n"
            "    for k in range(2147483648, K, BK):\n        acc += load(X[k : k + BK])\n"
            "    store(Y[0 : BK], acc)\n")
    kern = compile_source(loop, "fuzz.tile")["k"]
    for run in (reference.run, cpu.run):          # no iteration: 2**31 > K, counted in i64
        y = np.full(8, 7.0, np.float32)
        run(kern, {"X": np.ones(8, np.float32), "Y": y})
        assert (y[:4] == 0).all() and (y[4:] == 7).all()
    names = ("kernel k(X: f32[and, rt], Y: f32[and, rt], BM: const = 4, BN: const = 8):\n"
             "    grid(cdiv(and, BM))\n    m0 = program_id(0) * BM\n"
             "    for i in range(0, 2):\n        unused = load(X[m0 : m0 + BM, 0 : BN])\n"
             "    store(Y[m0 : m0 + BM, 0 : BN], load(X[m0 : m0 + BM, 0 : BN]) * 2.0)\n")
    kern = compile_source(names, "fuzz.tile")["k"]
    x = np.random.default_rng(0).random((9, 8), dtype=np.float32)
    for run in (reference.run, cpu.run):
        y = np.zeros_like(x)
        run(kern, {"X": x, "Y": y})
        np.testing.assert_allclose(y, 2 * x)


def test_source_size_limit_is_checked_before_parsing():
    """Over 128 KiB the source is refused at once (lark needs ~1 s per 100 KiB here); under it,
    a file of many copies of a kernel says which is defined twice without lowering any."""
    import time

    import pytest
    one = SOURCES[0] + "\n"
    for copies, needle in (((1 << 17) // len(one) + 2, "source is over 131072 bytes (128 KiB)"),
                           ((1 << 17) // len(one) - 1, "is defined twice")):
        t0 = time.perf_counter()
        with pytest.raises(CompileError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            compile_source(one * copies, "fuzz.tile")
        assert time.perf_counter() - t0 < 10
