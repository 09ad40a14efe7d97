"""A grammar-aware mutation fuzzer for the front end and the backends behind it.

    for src in mutants(random.Random(0), 100): outcome = check(src)

``mutants`` starts from the kernel library and applies token-level edits (delete, insert,
replace, duplicate and swap lines), numeric edits (0, -1, huge and unbounded literals), deep
nesting, long expressions, long lines and non-UTF-8 bytes. ``check`` compiles a source (within
a time limit) and classifies the result: a located diagnostic, or an accepted program that is
then specialised and run on small random arguments on the reference and cpu backends, where
a launch-time refusal (a one-line LaunchError, an integer division by zero) is a fine outcome.
Anything else — a traceback, a wrong exception type, more than the time limit — is a finding.
"""
from __future__ import annotations

import random
import signal
import time
from dataclasses import dataclass

import numpy as np

__all__ = ["mutants", "check", "Outcome", "TOKENS"]

TOKENS = ["(", ")", "[", "]", ":", ",", "=", "+", "-", "*", "//", "%", "0", "1", "-1", "1.5", "x", "BM", "BN",
          "load(", "store(", "dot(", "trans(", "\n", "\n    ", "    ", "for i in range(0, 4):", "if x:", "else:",
          "zeros((4,), f32)", "arange(0, 16)", "[:, None]", "#", "kernel", "const", "f16", "bf16", "i64", "True",
          "not", "and", "~", "&", "cast(", "max(", "where(", "grid(1)", "program_id(0)", "static_assert(",
          "1099511627776", "2147483648", "-2147483649", "None", "mask=", "other=", "num_programs(0)", "exp(",
          "sum(", "reshape(", "full((4, 4), 0.0, f32)"]


@dataclass
class Outcome:
    kind: str            # "diagnostic", "ran", "refused", or a finding: "crash", "hang"
    detail: str = ""
    seconds: float = 0.0

    @property
    def finding(self) -> bool:
        return self.kind in ("crash", "hang")


def mutants(rng: random.Random, n: int, sources: list[str] | None = None):
    """n mutated programs (strings, or bytes for the non-UTF-8 ones)."""
    if sources is None:
        from tilec.kernels import library_files
        sources = [p.read_text() for p in library_files()]
    for _ in range(n):
        src = rng.choice(sources)
        for _ in range(rng.randint(1, 4)):
            src = _mutate(rng, src)
        r = rng.random()
        if r < 0.003:            # inputs up to 1 MiB (the source limit is 128 KiB): copies, or a long line
            if rng.random() < 0.5:
                size = rng.choice([(1 << 17) - 8192, (1 << 17) + 4096, 1 << 18, (1 << 20) - 16384])
                src = (src + "\n") * max(1, size // (len(src) + 1))
            else:
                src = src + "\n# " + "x" * rng.choice([1 << 16, (1 << 20) - 16384 - len(src)]) + "\n"
        if rng.random() < 0.01:
            b = bytearray(src.encode())
            b[rng.randrange(len(b))] = rng.choice([0xff, 0xfe, 0xc3, 0x80])
            yield bytes(b)
        else:
            yield src


def _mutate(rng: random.Random, src: str) -> str:
    if not src:
        return rng.choice(TOKENS)
    kind = rng.choice(["delete", "insert", "replace", "swap", "dup", "number", "number", "deep", "long"])
    i = rng.randrange(len(src))
    if kind == "delete":
        return src[:i] + src[min(len(src), i + rng.randint(1, 12)):]
    if kind == "insert":
        return src[:i] + rng.choice(TOKENS) + src[i:]
    if kind == "replace":
        return src[:i] + rng.choice(TOKENS) + src[i + 1:]
    if kind == "number":
        import re
        nums = list(re.finditer(r"\b\d+\b", src))
        if nums:
            m = rng.choice(nums)
            v = rng.choice(["0", "-1", "1", "3", "1099511627776", "2147483648", "65536", "48", str(rng.randint(2, 300))])
            return src[:m.start()] + v + src[m.end():]
        return src
    if kind == "deep":
        d = rng.choice([10, 70, 300])
        return src[:i] + "(" * d + "1" + ")" * d + src[i:]
    if kind == "long":
        return src[:i] + " + ".join(["x"] * rng.choice([10, 300, 600])) + src[i:]
    lines = src.split("\n")
    a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
    if kind == "swap":
        lines[a], lines[b] = lines[b], lines[a]
    else:
        lines.insert(b, lines[a])
    return "\n".join(lines)


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def check(src, limit: float = 2.0, run: bool = True) -> Outcome:
    """Compile ``src`` (and run what compiles); the outcome."""
    from frontend.diagnostics import CompileError
    from tilec.compiler import compile_source
    t0 = time.perf_counter()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        if isinstance(src, bytes):
            import tempfile
            from pathlib import Path

            from tilec.compiler import read_source
            with tempfile.TemporaryDirectory() as d:
                p = Path(d) / "fuzz.tile"
                p.write_bytes(src)
                text = read_source(p)
        else:
            text = src
        kernels = compile_source(text, "fuzz.tile")
        if not run:
            return Outcome("ran", "compiled", time.perf_counter() - t0)
        refused = []
        for k in kernels.values():
            why = _run_small(k)
            if why:
                refused.append(why)
        return Outcome("refused" if refused else "ran", "; ".join(refused)[:200], time.perf_counter() - t0)
    except CompileError as e:
        out = e.render()
        if "fuzz.tile" not in out or "Traceback" in out:
            return Outcome("crash", "a diagnostic without its location", time.perf_counter() - t0)
        return Outcome("diagnostic", out.splitlines()[0][:200], time.perf_counter() - t0)
    except _Timeout:
        return Outcome("hang", f"over {limit}s", time.perf_counter() - t0)
    except Exception as e:      # noqa: BLE001  (every other exception is a finding)
        import traceback
        return Outcome("crash", f"{type(e).__name__}: {e}\n{traceback.format_exc()[-1500:]}",
                       time.perf_counter() - t0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _run_small(k) -> str:
    """Run kernel k on small random arguments on the reference and cpu backends; "" when both
    ran and agree in shape, else a launch-time refusal's message (fine). Other exceptions
    propagate (findings)."""
    from codegen import cpu, reference
    from codegen.signature import LaunchError, Signature
    from tilec.ir import dtypes as D
    sig = Signature.of(k)
    rng = np.random.default_rng(0)
    dims = {d: int(rng.choice([1, 3, 17])) for d in sig.dims}
    args = {}
    for t in sig.tensors:
        shape = tuple(x if isinstance(x, int) else dims[x] for x in t.dims)
        if np.prod(shape, dtype=np.int64) > (1 << 22):
            return "arguments too large to try"
        if D.is_float(t.dtype):
            a = rng.standard_normal(shape).astype(D.to_numpy(t.dtype))
        elif t.dtype == "bool":
            a = rng.random(shape) < 0.5
        else:
            a = rng.integers(0, 4, shape).astype(D.to_numpy(t.dtype))
        args[t.name] = a
    for name, dt in sig.scalars:
        args[name] = 1.0 if D.is_float(dt) else 1
    try:
        grid = sig.bind(args).grid
    except LaunchError as e:
        return f"refused: {e}"
    if np.prod(grid, dtype=np.int64) > 4096:
        return "grid too large to try"
    for backend in (reference, cpu):
        a = {n: (v.copy() if isinstance(v, np.ndarray) else v) for n, v in args.items()}
        try:
            backend.run(k, a)
        except (LaunchError, ZeroDivisionError) as e:
            return f"refused at launch: {type(e).__name__}: {e}"
    return ""
