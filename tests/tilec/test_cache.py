"""tilec compile / ls / show / verify / gc and the artifact cache (tilec/cache.py, tilec/variants.py)."""
import hashlib
import json
import multiprocessing
import sys
import types

import pytest
from click.testing import CliRunner

from tilec import cache as C
from tilec.cli import main
from tilec.variants import VariantError, expand, library_variants, load_spaces

def _n_for(kernels, backend="cpu") -> int:
    """Variants of the library kernels the given backend builds (its backend_constraints)."""
    from tilec.variants import backend_allows
    spaces = load_spaces()
    return sum(1 for k, b in library_variants(kernels) if backend_allows(spaces[k], b, backend))


N_RMSNORM = _n_for(["rmsnorm"])      # the same for cpu and triton (h100)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def compile_rmsnorm(out, *extra):
    return run("compile", "--kernel", "rmsnorm", "--target", "cpu,h100", "--out", out, "-j", "1", *extra)


def assert_clean_error(r, *needles):
    assert r.exit_code == 1, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert "Traceback" not in r.output
    lines = [l for l in r.stderr.splitlines() if l.startswith("tilec: error: ")]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module")
def _compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled") / "art"
    r = compile_rmsnorm(out)      # h100 entries hold sm_90 binaries: compile once per module
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture
def art(tmp_path, _compiled):
    import shutil
    out = tmp_path / "art"
    shutil.copytree(_compiled, out)
    return out


def entries(out):
    return json.loads((out / "manifest.json").read_text())["entries"]


# ------------------------------------------------------------------ variant spaces

def test_library_spaces_expand():
    spaces = load_spaces()
    gemm = expand(spaces["smooth_gemm"])
    gemm_t = expand(spaces["smooth_gemm_t"])
    assert len(gemm) == 4 * 3 * 2 * 2 * 2                     # GM 1 (cpu, native, Ascend) and 8 (Triton)
    assert [b for b in gemm_t if b["DT"] != "f32" and b["BM"] >= 16 and b["BK"] <= 64] == gemm
    assert len(gemm_t) == 6 * 3 * 3 * 3 * 2   # f32, BM 1 and 4 and BK 256 too, for CPUs (native backend)
    assert {b["BK"] for b in gemm} == {32, 64} and {b["DT"] for b in gemm} == {"f16", "bf16"}
    att = expand(spaces["meta_attention"])
    assert att and all(b["BM"] % b["G"] == 0 for b in att)
    assert {b["BM"] for b in att} == {16, 48, 64, 128} and {b["G"] for b in att} == {1, 3, 4, 8}
    assert {b["BM"] for b in att if b["G"] == 3} == {48}    # SmolLM2's group: BM a multiple of 3
    assert all(2 * b["HALF"] == b["D"] for b in expand(spaces["rope"]))
    assert {k for k, _ in library_variants()} == set(spaces)


def test_constraints_filter_and_reject_bad_input():
    spec = {"space": {"BM": [16, 64], "G": [1, 32]}, "constraints": ["BM % G == 0 and not G > 32"]}
    assert expand(spec) == [{"BM": 16, "G": 1}, {"BM": 64, "G": 1}, {"BM": 64, "G": 32}]
    for bad in ({"space": {"BM": []}},
                {"space": {"BM": [1]}, "constraints": ["__import__('os')"]},
                {"space": {"BM": [1]}, "constraints": ["BM +"]},
                {"space": {"BM": [1.5]}}):
        with pytest.raises(VariantError):
            expand(bad)
    with pytest.raises(VariantError, match="does not bind"):
        expand({"space": {"BM": [1]}, "constraints": ["BN == 1"]})
    with pytest.raises(VariantError, match="no variant space"):
        library_variants(["nope"])


def test_specialise_matches_the_driver():
    from tilec.compiler import compile_file
    from tilec.ir.printer import print_kernel
    jobs = C.library_jobs([("cpu", "cpu")])
    for j in jobs[::23]:
        got = print_kernel(C._specialise(j.source, j.kernel, j.binding_dict))
        assert got == print_kernel(compile_file(j.source, j.kernel, j.binding_dict)[j.kernel])


# ------------------------------------------------------------------ compile and the cache

def test_compile_then_all_hits(tmp_path):
    out = tmp_path / "art"
    r = compile_rmsnorm(out)
    assert r.exit_code == 0, r.output
    assert f"compiled {2 * N_RMSNORM}, cache hits 0" in r.stdout
    m = json.loads((out / "manifest.json").read_text())
    assert m["format"] == "tilec-artifacts" and len(m["entries"]) == 2 * N_RMSNORM
    for key, e in m["entries"].items():
        assert e["kernel"] == "rmsnorm" and e["compiler_version"] == C.compiler_version()
        assert (e["target"], e["backend"]) in {("cpu", "cpu"), ("h100", "triton")}
        assert e["codegen"] == "ok" or e["codegen"].startswith("unavailable")
        assert set(e["files"]) >= {"kernel.ir", "meta.json"}
        ir_text = (out / "entries" / key / "kernel.ir").read_text()
        assert key == C.cache_key(ir_text, e["backend"], e["target"], e["compiler_version"])
        for name, info in e["files"].items():
            assert hashlib.sha256((out / "entries" / key / name).read_bytes()).hexdigest() == info["sha256"]
    r2 = compile_rmsnorm(out)
    assert r2.exit_code == 0 and f"compiled 0, cache hits {2 * N_RMSNORM}" in r2.stdout
    assert json.loads((out / "manifest.json").read_text()) == m
    # the pool path gives the same answer
    r3 = run("compile", "--kernel", "rmsnorm", "--target", "cpu", "--out", out, "-j", "2")
    assert r3.exit_code == 0 and f"compiled 0, cache hits {N_RMSNORM}" in r3.stdout


def test_compile_a_source_file_with_defines(tmp_path):
    src = tmp_path / "k.tile"
    src.write_text("kernel add1(X: f32[N], Y: f32[N], BN: const = 16):\n"
                   "    grid(cdiv(N, BN))\n"
                   "    n0 = program_id(0) * BN\n"
                   "    store(Y[n0 : n0 + BN], load(X[n0 : n0 + BN]) + 1.0)\n")
    out = tmp_path / "art"
    r = run("compile", src, "-D", "BN=64", "--target", "cpu", "--backend", "reference", "--out", out, "-j", "1")
    assert r.exit_code == 0, r.output
    (e,) = entries(out).values()
    assert e["binding"] == {"BN": 64} and e["backend"] == "reference" and e["codegen"] == "ir-only"
    assert set(e["files"]) == {"kernel.ir", "ir.json", "signature.json", "meta.json"}


def _not_on_ascend(kernel: str, target: str) -> set:
    """Library variants whose Ascend emission raises NOT_APPLICABLE (asked directly)."""
    from codegen.ascend import NOT_APPLICABLE, emit
    from tilec.selftest import specialise
    from tilec.variants import backend_allows
    out = set()
    space = load_spaces()[kernel]
    for name, b in library_variants([kernel]):
        if not backend_allows(space, b, "ascend"):
            continue
        try:
            emit(specialise(name, **b), target)
        except NOT_APPLICABLE:
            out.add(tuple(sorted(b.items())))
    return out


def test_ascend_targets_compile_and_illegal_variants_are_skipped(tmp_path):
    out = tmp_path / "art"
    r = run("compile", "--kernel", "rmsnorm", "--target", "ascend910b2,ascend910b4,cpu", "--out", out, "-j", "1")
    assert r.exit_code == 0, r.output
    es = entries(out).values()
    assert {e["target"] for e in es} == {"cpu", "ascend910b2", "ascend910b4"}
    m = C.read_manifest(out)
    for tgt in ("ascend910b2", "ascend910b4"):
        got = [e for e in es if e["target"] == tgt]
        assert all(e["backend"] == "ascend" and {"rmsnorm.cpp", "rmsnorm_tiling.h", "main.cpp", "program.txt"}
                   <= set(e["files"]) for e in got)
        skipped = [s for s in m.get("skipped", {}).values() if s["target"] == tgt]
        want = _not_on_ascend("rmsnorm", tgt)
        assert want, "expected some rmsnorm variant not to fit the AIV's UB"
        assert {tuple(sorted(s["binding"].items())) for s in skipped} == want
        assert len(got) + len(skipped) == _n_for(["rmsnorm"], "ascend")
        for s in skipped:     # one line, naming the buffer budget it broke
            assert "\n" not in s["reason"] and "bytes" in s["reason"], s["reason"]
            assert f"skipped: rmsnorm {' '.join(f'{k}={v}' for k, v in sorted(s['binding'].items()))} " \
                   f"on {tgt}: {s['reason']}" in r.stderr
    assert f"skipped {len(m['skipped'])} " in r.stdout
    assert run("verify", out).exit_code == 0
    ls = run("ls", out)
    assert ls.exit_code == 0 and f"{len(m['skipped'])} skipped" in ls.stdout
    assert next(iter(m["skipped"].values()))["reason"] in ls.stdout
    # nothing changed: every entry is a hit, the skipped ones are tried (and skipped) again
    r2 = run("compile", "--kernel", "rmsnorm", "--target", "ascend910b2,ascend910b4,cpu", "--out", out, "-j", "1")
    assert r2.exit_code == 0 and "compiled 0, cache hits" in r2.stdout, r2.output
    assert C.read_manifest(out)["skipped"] == m["skipped"]


def test_unknown_target_is_an_error(tmp_path):
    out = tmp_path / "art"
    assert_clean_error(run("compile", "--target", "tpu9", "--out", out), "unknown target", "tpu9")
    assert_clean_error(run("compile", "--kernel", "nope", "--target", "cpu", "--out", out), "nope")
    assert_clean_error(run("compile", "-k", "rmsnorm", "-t", "cpu", "-b", "ascend", "--out", out),
                       "backend 'ascend' does not build for target cpu")


def test_codegen_output_is_stored_and_ir_only_entries_are_upgraded(tmp_path, monkeypatch):
    out = tmp_path / "art"
    monkeypatch.setitem(sys.modules, "codegen.cpu", None)  # import fails: IR only
    monkeypatch.setattr(C, "_CODEGEN", {})
    jobs = C.library_jobs([("cpu", "cpu")], ["rmsnorm"])
    s = C.compile_jobs(jobs, out)
    assert s.compiled == N_RMSNORM
    assert all(e["codegen"].startswith("unavailable") for e in entries(out).values())
    fake = types.ModuleType("codegen.cpu")
    fake.entry_files = lambda k, target: ({"kernel.py": f"# generated for {k.name}\n"}, {})
    monkeypatch.setitem(sys.modules, "codegen.cpu", fake)
    monkeypatch.setattr(C, "_CODEGEN", {})
    s = C.compile_jobs(jobs, out)
    assert (s.compiled, s.hits) == (N_RMSNORM, 0)
    for key, e in entries(out).items():
        assert e["codegen"] == "ok" and "kernel.py" in e["files"]
        assert (out / "entries" / key / "kernel.py").read_text() == "# generated for rmsnorm\n"
    assert C.verify(out) == []
    s = C.compile_jobs(jobs, out)
    assert (s.compiled, s.hits) == (0, N_RMSNORM)


# ------------------------------------------------------------------ ls / show

def test_ls_and_show(art):
    r = run("ls", art)
    assert r.exit_code == 0 and f"{2 * N_RMSNORM} entries" in r.stdout and "rmsnorm" in r.stdout
    key = sorted(entries(art))[0]
    r = run("show", art, key[:10])
    assert r.exit_code == 0, r.output
    assert key in r.stdout and "kernel @rmsnorm" in r.stdout and "kernel.ir" in r.stdout
    assert_clean_error(run("show", art, "zzzz"), "no entry")
    assert_clean_error(run("show", art, ""), "empty key")
    ambiguous = next(c for c in "0123456789abcdef" if sum(k.startswith(c) for k in entries(art)) > 1)
    assert_clean_error(run("show", art, ambiguous), "ambiguous")


# ------------------------------------------------------------------ verify / gc

def test_verify_ok(art):
    r = run("verify", art)
    assert r.exit_code == 0 and f"ok: {2 * N_RMSNORM} entries" in r.stdout


def test_verify_reports_tampered_file(art):
    key = sorted(entries(art))[1]
    p = art / "entries" / key / "kernel.ir"
    p.write_text(p.read_text().replace("rsqrt", "sqrt"))
    r = run("verify", art)
    assert r.exit_code == 1
    assert f"tampered: entries/{key}/kernel.ir" in r.stdout
    # compiling again repairs it
    assert "compiled 1," in compile_rmsnorm(art).stdout
    assert run("verify", art).exit_code == 0


def test_verify_reports_key_mismatch_when_manifest_is_edited_too(art):
    m = json.loads((art / "manifest.json").read_text())
    key = sorted(m["entries"])[0]
    p = art / "entries" / key / "kernel.ir"
    p.write_text(p.read_text() + "\n")
    m["entries"][key]["files"]["kernel.ir"]["sha256"] = hashlib.sha256(p.read_bytes()).hexdigest()
    (art / "manifest.json").write_text(json.dumps(m))
    r = run("verify", art)
    assert r.exit_code == 1 and "key does not match" in r.stdout


def test_verify_reports_missing_and_stray_and_gc_cleans(art):
    import shutil
    keys = sorted(entries(art))
    shutil.rmtree(art / "entries" / keys[0])
    (art / "entries" / keys[1] / "kernel.ir").unlink()
    (art / "entries" / ("f" * 64)).mkdir()
    (art / "entries" / ".tmp-deadbeef.x").mkdir()
    (art / ".tmp-manifest.json.123.tmp").write_text("{")
    r = run("verify", art)
    assert r.exit_code == 1
    out = r.stdout
    assert f"missing: {keys[0]}" in out and f"missing: entries/{keys[1]}/kernel.ir" in out
    assert f"stray: entries/{'f' * 64}" in out and "stray: entries/.tmp-deadbeef.x" in out
    assert "stray: .tmp-manifest.json.123.tmp" in out
    r = run("gc", art)
    assert r.exit_code == 0 and "removed 3 item(s)" in r.stdout
    assert not (art / "entries" / ("f" * 64)).exists() and (art / "entries" / keys[2]).is_dir()
    r = run("verify", art)
    assert r.exit_code == 1 and "stray" not in r.stdout and "missing" in r.stdout
    r = compile_rmsnorm(art)
    assert "compiled 2," in r.stdout
    assert run("verify", art).exit_code == 0


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize("cmd", [["ls"], ["verify"], ["gc"], ["show", "00"]])
def test_corrupted_manifest_is_a_clean_error(art, cmd):
    (art / "manifest.json").write_text('{"format": "tilec-artifacts", "entr')
    assert_clean_error(run(cmd[0], art, *cmd[1:]), "corrupted manifest")


def test_compile_refuses_a_corrupted_manifest(art):
    (art / "manifest.json").write_text("[1, 2")
    assert_clean_error(compile_rmsnorm(art), "corrupted manifest")
    assert (art / "manifest.json").read_text() == "[1, 2"


@pytest.mark.parametrize("cmd", ["ls", "verify", "gc"])
def test_missing_directory_is_a_clean_error(tmp_path, cmd):
    assert_clean_error(run(cmd, tmp_path / "nope"), "no such directory")
    assert_clean_error(run(cmd, tmp_path), "no manifest")


# ------------------------------------------------------------------ concurrency

def _compile_proc(out, kernels):
    C.compile_jobs(_concurrent_jobs(kernels), out, workers=1, batch=3)


def _concurrent_jobs(kernels):
    # two backends per variant (the reference one is IR-only: quick, and no GPU compile)
    return C.library_jobs([("cpu", "cpu"), ("cpu", "reference")], kernels)


def test_concurrent_compiles_leave_a_consistent_directory(tmp_path):
    out = tmp_path / "art"
    ctx = multiprocessing.get_context("spawn" if sys.platform == "darwin" else "fork")
    sets = [["rmsnorm", "silu_mul"], ["silu_mul", "rmsnorm"], ["rope", "rmsnorm"]]
    procs = [ctx.Process(target=_compile_proc, args=(out, ks)) for ks in sets]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    ks = ["rmsnorm", "silu_mul", "rope"]
    n = _n_for(ks, "cpu") + _n_for(ks, "reference")
    m = entries(out)
    assert len(m) == n
    assert sorted(p.name for p in (out / "entries").iterdir()) == sorted(m)
    assert C.verify(out) == []
    s = C.compile_jobs(_concurrent_jobs(ks), out)
    assert (s.compiled, s.hits) == (0, n)


def test_manifest_with_a_path_as_file_name_is_rejected(art):
    m = json.loads((art / "manifest.json").read_text())
    e = next(iter(m["entries"].values()))
    e["files"]["../../x"] = {"sha256": "0" * 64}
    (art / "manifest.json").write_text(json.dumps(m))
    assert_clean_error(run("verify", art), "bad key or file name")


def test_codegen_failure_is_reported_and_not_committed(tmp_path, monkeypatch):
    fake = types.ModuleType("codegen.cpu")

    def entry_files(k, target):
        raise RuntimeError("boom")
    fake.entry_files = entry_files
    monkeypatch.setitem(sys.modules, "codegen.cpu", fake)
    monkeypatch.setattr(C, "_CODEGEN", {})
    out = tmp_path / "art"
    r = run("compile", "--kernel", "rmsnorm", "--target", "cpu,h100", "--out", out, "-j", "1")
    assert r.exit_code == 1 and "cpu codegen failed: RuntimeError: boom" in r.stderr
    assert f"failed {N_RMSNORM}" in r.stdout
    assert {e["target"] for e in entries(out).values()} == {"h100"}
    assert run("verify", out).exit_code == 0


def test_triton_entries_hold_the_compiled_mode_source(art):
    mod, status = C._codegen_module("triton")
    if mod is None:
        pytest.skip(status)
    key, e = next((k, e) for k, e in sorted(entries(art).items()) if e["backend"] == "triton")
    from tilec.kernels import find_kernel
    kernel = C._specialise(str(find_kernel("rmsnorm")), "rmsnorm", e["binding"])
    want = mod.emit(kernel, interpret=False)
    assert (art / "entries" / key / "kernel.py").read_text() == want
