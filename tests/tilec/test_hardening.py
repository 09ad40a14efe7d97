"""Hostile input at every boundary: one-line errors and no traceback from the command line,
nothing read, written or deleted outside an artifact directory, and recovery after a compile
that was killed half way."""
import json
import os
import shutil

import pytest
from click.testing import CliRunner

from tilec import cache as C
from tilec.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line(r, needle, code=1):
    assert r.exit_code == code, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output and needle in r.output, r.output


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    d = tmp_path_factory.mktemp("h") / "art"
    assert C.compile_jobs(C.library_jobs([("cpu", "cpu")], ["silu_mul"]), d).failed == 0
    return d


@pytest.fixture
def art(tmp_path, compiled):
    d = tmp_path / "art"
    shutil.copytree(compiled, d)
    return d


# ------------------------------------------------------------------ command line

@pytest.mark.parametrize("args,needle", [
    (["ir", "tilec/kernels/layers.tile", "-k", "rmsnorm", "-D", "M=f32"], "a dim is an integer"),
    (["ir", "tilec/kernels/layers.tile", "-k", "rmsnorm", "-D", "M=0"], "a dim is an integer from 1"),
    (["ir", "tilec/kernels/layers.tile", "-k", "rmsnorm", "-D", "BM=1099511627776"], "from 1 to 1048576"),
    (["ir", "tilec/kernels/layers.tile", "-k", "rmsnorm", "-D", "BM=-1"], "from 1 to 1048576"),
    (["check", "tilec/kernels/layers.tile", "-D", "NOPE=3"], "no kernel in this file has a const or dim named 'NOPE'"),
    (["selftest", "--kernel", "nope"], "no library kernel of that name"),
    (["tiles", "-t", "ascend910b2", "-k", "smooth_gemm_t", "--shape", "1099511627776,64,64"], "must be from 1 to"),
    (["tiles", "-t", "ascend910b2", "-k", "meta_attention", "--stage", "decode", "--context", "1099511627776"],
     "Invalid value for '--context'"),
])
def test_bad_invocations_are_one_line(args, needle):
    r = run(*args)
    assert r.exit_code in (1, 2), r.output
    assert "Traceback" not in r.output and needle in r.output, r.output


def test_tune_model_that_is_not_an_object(tmp_path, art):
    cfg = tmp_path / "config.json"
    cfg.write_text("[1, 2, 3]")
    one_line(run("tune", art, "--target", "cpu", "--model", cfg), "expected a JSON object")
    cfg.write_text("[" * 100000 + "]" * 100000)
    one_line(run("tune", art, "--target", "cpu", "--model", cfg), "nests too deeply")
    cfg.write_bytes(b'{"hidden_size": "\xff"}')
    one_line(run("tune", art, "--target", "cpu", "--model", cfg), "not valid JSON")


# ------------------------------------------------------------------ manifests

@pytest.mark.parametrize("edit,needle", [
    (lambda m, e: e.__setitem__("binding", ["BM", 16]), "is malformed"),
    (lambda m, e: e.__setitem__("kernel", {"x": 1}), "is malformed"),
    (lambda m, e: e["files"].__setitem__("a\x00b", {"sha256": "0" * 64}), "bad key or file name"),
])
def test_manifest_fields_of_the_wrong_type(art, edit, needle):
    m = json.loads((art / "manifest.json").read_text())
    e = next(iter(m["entries"].values()))
    edit(m, e)
    (art / "manifest.json").write_text(json.dumps(m))
    for cmd in ("ls", "verify", "gc"):
        one_line(run(cmd, art), needle)
    from runtime.artifacts import ArtifactError, open_artifacts
    with pytest.raises(ArtifactError, match=needle):
        open_artifacts(art)


def test_manifest_that_nests_too_deeply_or_is_not_utf8(art):
    (art / "manifest.json").write_text("[" * 100000 + "]" * 100000)
    one_line(run("verify", art), "nests too deeply")
    (art / "manifest.json").write_bytes(b'{"format": "\xff"}')
    one_line(run("ls", art), "not UTF-8")


# ------------------------------------------------------------------ symlinks and special files

def test_gc_never_deletes_outside_the_directory(art, tmp_path):
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    shutil.rmtree(art / "entries")
    os.symlink(outside, art / "entries")
    one_line(run("gc", art), "a symlink or not a directory; refusing to delete through it")
    assert (outside / "keep.txt").read_text() == "mine"
    r = run("compile", "-k", "silu_mul", "-t", "cpu", "-o", art)
    one_line(r, "refusing to write through it")


def test_verify_does_not_read_through_symlinks_or_special_files(art, tmp_path):
    m = json.loads((art / "manifest.json").read_text())
    key, e = next(iter(m["entries"].items()))
    f = art / "entries" / key / "kernel.py"
    f.unlink()
    os.symlink("/dev/zero", f)                   # would exhaust memory if read
    r = run("verify", art)
    one_line(r, "a symlink", code=1)
    f.unlink()
    os.mkfifo(f)                                 # would hang if opened for reading
    r = run("verify", art)
    one_line(r, "not a regular file", code=1)


# ------------------------------------------------------------------ a compile killed half way

def test_an_interrupted_compile_is_described_and_repaired(tmp_path):
    d = tmp_path / "art"
    d.mkdir()
    (d / ".lock").write_text("")
    (d / "entries").mkdir()
    (d / "entries" / ".tmp-0123456789abcdef.x").mkdir()       # what a kill -9 leaves
    (d / ".tmp-manifest.json.y.tmp").write_text("{")
    r = run("verify", d)
    assert r.exit_code == 1 and "incomplete: an interrupted tilec compile left no manifest" in r.output
    r = run("gc", d)
    assert r.exit_code == 0 and "removed 2 item(s)" in r.output
    (d / "entries" / ".tmp-abcdef.z").mkdir()
    r = run("compile", "-k", "silu_mul", "-t", "cpu", "-o", d)  # the next compile repairs too
    assert r.exit_code == 0, r.output
    assert run("verify", d).exit_code == 0


def test_compiling_again_replaces_what_another_tilec_version_built(tmp_path, monkeypatch):
    # `make demo` after an update: the directory holds entries of the old compiler version; the
    # runtime refuses mixed versions and says to recompile, so the compile must clear them
    import json

    from runtime.artifacts import open_artifacts
    from tilec import cache
    d = tmp_path / "arts"
    jobs = cache.library_jobs([("cpu", "cpu")], ["rmsnorm"])[:2]
    cache.compile_jobs(jobs, d)
    m = json.loads((d / "manifest.json").read_text())
    old_key = next(iter(m["entries"]))
    m["entries"][old_key]["compiler_version"] = "0.0.1+oldoldoldold"
    (d / "manifest.json").write_text(json.dumps(m))
    import pytest
    with pytest.raises(Exception, match="built by tilec 0.0.1"):
        open_artifacts(d, backend="cpu", target="cpu")
    st = cache.compile_jobs(jobs, d)
    assert st.superseded == 1 and st.compiled == 1
    assert not (d / "entries" / old_key).exists() or old_key in json.loads((d / "manifest.json").read_text())["entries"]
    open_artifacts(d, backend="cpu", target="cpu")
    assert cache.verify(d) == []
