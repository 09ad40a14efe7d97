"""The artifact directory written by ``tilec compile`` (see DESIGN.md "Runtime").

Layout of DIR::

    manifest.json            JSON (never pickle): every committed entry
    .lock                    filelock.FileLock guarding every write
    entries/<key>/kernel.ir  specialised tile IR (tilec.ir.printer.print_kernel)
    entries/<key>/kernel.py  generated source (backend "cpu"/"triton", when codegen exists)
    entries/<key>/*.cpp, *.h, program.txt
                             backend "ascend": Ascend C kernel, tiling header and launcher for
                             the entry's target, and the lowered AIC/AIV program's dump
    entries/<key>/meta.json  the entry's metadata
    tuning/<name>.json       selection tables written by ``tilec tune`` (tilec/tune.py); the
                             manifest's ``tuning`` table records their sha256 for ``verify``

``key`` is the sha256 of the specialised IR text, the backend, the target and the compiler
version, so a second compile with nothing changed finds every entry (a cache hit). Every
file is written to a temporary name in its final directory and moved into place with
``os.replace``; entry directories are built under a temporary name and renamed. Commits
happen under the lock and re-read the manifest first, so concurrent compiles into one
directory neither corrupt the manifest nor duplicate an entry.

A variant its target cannot take (the Ascend lowering rejects it: not lowerable, over a
buffer's capacity, misaligned) is *skipped*, not failed: the manifest's ``skipped`` table
records it with the one-line reason (no files, so ``verify`` has nothing to check), and every
compile tries it again (a fixed lowering then builds it).

    jobs = library_jobs(["cpu"], kernels=["rmsnorm"])
    stats = compile_jobs(jobs, "out/", workers=4)       # -> CompileStats
    problems = verify("out/")                            # [] when intact
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import filelock

from tilec import safefs

MANIFEST = "manifest.json"
LOCK = ".lock"
ENTRIES = "entries"
TUNING = "tuning"
TMP_PREFIX = ".tmp-"
FORMAT = "tilec-artifacts"
FORMAT_VERSION = 1
BACKENDS = ("reference", "cpu", "native", "triton", "ascend")
# backend -> module exposing ``entry_files(kernel, target) -> (files, info)`` (an entry's backend
# files, and figures for the manifest) and ``NOT_APPLICABLE``, the exceptions meaning "this
# variant does not exist on this target"
CODEGEN_MODULES = {"cpu": "codegen.cpu", "native": "codegen.native", "triton": "codegen.triton",
                   "ascend": "codegen.ascend"}
LOCK_TIMEOUT_S = 600.0

__all__ = ["CacheError", "Job", "JobResult", "CompileStats", "compiler_version", "cache_key",
           "library_jobs", "source_jobs", "backend_for_target", "compile_jobs", "read_manifest",
           "find_entry", "verify", "gc", "write_tuning"]


class CacheError(Exception):
    """An artifact directory problem, reported by the CLI as one line."""


_VERSION: list[str] = []


def compiler_version() -> str:
    """The package version plus a hash of the compiler's own sources (frontend, tilec,
    codegen): artifacts built by different code never share a key, even between releases."""
    if not _VERSION:
        try:
            from importlib.metadata import version
            base = version("tilec")
        except Exception:  # not installed (running from a checkout)
            base = "0+unknown"
        h = hashlib.sha256()
        root = Path(__file__).resolve().parents[1]
        for pkg in ("frontend", "tilec", "codegen"):
            for f in sorted((root / pkg).rglob("*")):
                if f.suffix in (".py", ".lark", ".h", ".tile", ".json") and "__pycache__" not in f.parts:
                    h.update(str(f.relative_to(root)).encode())
                    h.update(f.read_bytes())
        _VERSION.append(f"{base}+{h.hexdigest()[:12]}")
    return _VERSION[0]


def cache_key(ir_text: str, backend: str, target: str, version: str) -> str:
    h = hashlib.sha256()
    for part in ("tilec-artifact-v1", ir_text, backend, target, version):
        b = part.encode()
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- jobs

@dataclass(frozen=True)
class Job:
    """One (kernel, binding, backend, target) to compile from ``source`` (a .tile path)."""
    source: str
    kernel: str
    binding: tuple  # sorted ((name, value), ...): hashable and picklable
    backend: str
    target: str
    label: str = ""  # how the manifest names the source

    @property
    def binding_dict(self) -> dict:
        return dict(self.binding)


class SkipTarget(Exception):
    """A target whose backend is not built yet (the message says so)."""


def backend_for_target(target: str, backend: str | None = None) -> tuple[str, str]:
    """``(canonical target name, backend)``; raises CacheError for an unknown target and
    SkipTarget for a target whose backend is not built yet."""
    from tilec import targets
    try:
        t = targets.get(target)
    except targets.UnknownTargetError as e:
        raise CacheError(str(e)) from None
    if backend is not None:
        if backend not in BACKENDS:
            raise CacheError(f"unknown backend '{backend}'; known: {', '.join(BACKENDS)}")
        if backend == "ascend" and t.backend != "ascend":   # Ascend C is per Ascend target only
            raise CacheError(f"backend '{backend}' does not build for target {t.name} "
                             f"(the ascend backend is for ascend910b2 / ascend910b4 only)")
        return t.name, backend
    if t.backend not in BACKENDS:
        raise SkipTarget(f"{t.name}: {t.backend} backend not built yet, skipping")
    return t.name, t.backend


def _binding_key(binding: dict) -> tuple:
    return tuple(sorted(binding.items()))


def library_jobs(target_backends: Iterable[tuple[str, str]], kernels=None,
                 variants_path=None) -> list[Job]:
    """A job per (library variant, (target, backend))."""
    from tilec.kernels import find_kernel
    from tilec.variants import backend_allows, library_variants, load_spaces
    files: dict[str, Path] = {}
    jobs = []
    tbs = list(target_backends)
    spaces = load_spaces(variants_path)
    for name, binding in library_variants(kernels, variants_path):
        if name not in files:
            try:
                files[name] = find_kernel(name)
            except KeyError as e:
                raise CacheError(e.args[0]) from None
        for target, backend in tbs:
            if not backend_allows(spaces[name], binding, backend):
                continue   # e.g. a tile extent this backend cannot generate
            jobs.append(Job(str(files[name]), name, _binding_key(binding), backend, target,
                            f"<library>/{files[name].name}"))
    return jobs


def source_jobs(paths: Iterable[str | Path], target_backends: Iterable[tuple[str, str]],
                binding: dict | None = None, kernels=None) -> list[Job]:
    """A job per (kernel of each file, (target, backend)), all with ``binding``.
    Raises CompileError for a file that does not parse."""
    from frontend.diagnostics import CompileError, Diagnostic, Source
    from frontend.parser import parse
    tbs = list(target_backends)
    jobs = []
    from tilec.compiler import read_source
    for p in paths:
        text = read_source(p)
        for k in parse(text, str(p)).kernels:
            if kernels and k.name not in kernels:
                continue
            for target, backend in tbs:
                jobs.append(Job(str(p), k.name, _binding_key(binding or {}), backend, target, str(p)))
    return jobs


# --------------------------------------------------------------------------- compiling (workers)

@dataclass
class JobResult:
    job: Job
    key: str = ""
    hit: bool = False
    files: dict = field(default_factory=dict)   # name -> bytes (only on a miss)
    codegen: str = ""                            # "ir-only", "ok", or "unavailable: why"
    error: str = ""                              # rendered diagnostic on failure
    skipped: str = ""                            # why the target cannot take this variant
    info: dict = field(default_factory=dict)     # backend figures for the manifest (e.g. "gpu")
    binding: dict = field(default_factory=dict)  # every const of the specialisation (defaults too)


_KNOWN: dict[str, str] = {}   # key -> codegen status of the intact entries, set per worker


def _init_worker(known: dict[str, str]) -> None:
    global _KNOWN
    _KNOWN = known


_CODEGEN: dict[str, tuple] = {}  # backend -> (module or None, status), per process


def _codegen_module(backend: str):
    """``(module or None, status)`` for a backend's code generator (looked up once per process)."""
    if backend not in _CODEGEN:
        _CODEGEN[backend] = _find_codegen(backend)
    return _CODEGEN[backend]


def _find_codegen(backend: str):
    modname = CODEGEN_MODULES.get(backend)
    if modname is None:
        return None, "ir-only"
    try:
        mod = importlib.import_module(modname)
    except ModuleNotFoundError as e:
        return None, f"unavailable: {modname} not importable ({e})"
    if not callable(getattr(mod, "entry_files", None)):
        return None, f"unavailable: {modname} has no entry_files(kernel, target)"
    return mod, "ok"


def _safe_name(name) -> bool:
    """A plain file name inside an entry directory (no path, not hidden, no control
    characters, not absurdly long)."""
    return (isinstance(name, str) and 0 < len(name) <= 255 and "/" not in name and "\\" not in name
            and not name.startswith(".") and all(ord(c) >= 32 and c != "\x7f" for c in name))


# files every entry holds, whatever its backend: the IR text (hashed into the key), the IR as
# JSON (for launchers that run IR: reference, ascend-sim) and the launch signature
COMMON_FILES = ("kernel.ir", "ir.json", "signature.json", "meta.json")


def _emit_files(mod, kernel, target: str = "") -> tuple[dict[str, bytes], dict]:
    """(files, info) of a backend's part of an entry: ``mod.entry_files(kernel, target)``."""
    out, info = mod.entry_files(kernel, target)
    if not isinstance(out, dict) or not isinstance(info, dict):
        raise TypeError(f"entry_files() returned {type(out).__name__}, {type(info).__name__}; expected dicts")
    files = {}
    for name, data in out.items():
        if not _safe_name(name) or name in COMMON_FILES:
            raise ValueError(f"entry_files() returned a bad file name {name!r}")
        files[name] = data.encode() if isinstance(data, str) else bytes(data)
    return files, info


def _common_files(kernel, ir_text: str) -> dict[str, bytes]:
    from codegen.signature import Signature
    from tilec.ir.serial import to_json
    return {"kernel.ir": ir_text.encode(),
            "ir.json": json.dumps(to_json(kernel), sort_keys=True).encode(),
            "signature.json": (json.dumps(Signature.of(kernel).to_json(), indent=1, sort_keys=True) + "\n").encode()}


_PARSED: dict[tuple[str, str], object] = {}   # (path, sha256 of text) -> parsed module, per process


def _specialise(path: str, kernel: str, binding: dict):
    """``compile_file(path, kernel, binding)[kernel]``, parsing each file once per process
    (parsing dominates compile time). Any error falls back to ``compile_file`` itself, so
    diagnostics are exactly the driver's."""
    import copy

    from frontend.diagnostics import CompileError, DiagnosticSink, Source
    from frontend.parser import parse
    from frontend.sema import lower_kernel
    from tilec.compiler import compile_file
    from tilec.ir.verifier import verify as verify_ir
    from tilec.passes import run_default_passes
    try:
        text = Path(path).read_text()
        ck = (str(path), _sha256(text.encode()))
        if ck not in _PARSED:
            _PARSED[ck] = parse(text, str(path))
        module = _PARSED[ck]
        ks = [k for k in module.kernels if k.name == kernel]
        if len(ks) != 1:
            raise LookupError(kernel)
        sink = DiagnosticSink(Source(text if text.endswith("\n") else text + "\n", str(path)))
        ir = lower_kernel(copy.deepcopy(ks[0]), dict(binding), sink, str(path))
        sink.raise_if_any()
        if ir is None:
            raise LookupError(kernel)
        run_default_passes(ir)
        verify_ir(ir)
        return ir
    except (CompileError, LookupError, OSError, ValueError, RecursionError):
        return compile_file(path, kernel, binding)[kernel]


def run_group(jobs: list[Job], version: str) -> list[JobResult]:
    """Compile jobs that share (source, kernel, binding): specialise once, then per job hash
    and, unless the key is known, generate the files."""
    from frontend.diagnostics import CompileError
    from tilec.ir.printer import print_kernel
    j0 = jobs[0]
    try:
        kernel = _specialise(j0.source, j0.kernel, j0.binding_dict)
    except CompileError as e:
        return [JobResult(j, error=e.render()) for j in jobs]
    ir_text = print_kernel(kernel)
    out = []
    for job in jobs:
        res = JobResult(job, binding=dict(kernel.consts))
        res.key = cache_key(ir_text, job.backend, job.target, version)
        mod, status = _codegen_module(job.backend)
        known = _KNOWN.get(res.key)
        # a hit, unless the entry was stored IR-only and the backend's codegen exists now
        if known is not None and not (known.startswith("unavailable") and status == "ok"):
            res.hit = True
        else:
            res.codegen = status
            res.files = _common_files(kernel, ir_text)
            if mod is not None:
                try:
                    files, res.info = _emit_files(mod, kernel, job.target)
                    res.files.update(files)
                except getattr(mod, "NOT_APPLICABLE", ()) as e:
                    res.files = {}
                    res.skipped = (str(e).splitlines() or [type(e).__name__])[0]
                except Exception as e:  # a backend bug: report it for this variant, go on
                    res.error = (f"{job.label or job.source}: {job.kernel} {_fmt_binding(job.binding_dict)}: "
                                 f"error: {job.backend} codegen failed: {type(e).__name__}: {e}")
        out.append(res)
    return out


def run_job(job: Job, version: str) -> JobResult:
    return run_group([job], version)[0]


def _run_group_star(args) -> list[JobResult]:
    return run_group(*args)


def _fmt_binding(b: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(b.items()))


# --------------------------------------------------------------------------- the directory

def _write_atomic(path: Path, data: bytes, sync: bool = False) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX + path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@contextlib.contextmanager
def _lock(d: Path):
    lock = filelock.FileLock(str(d / LOCK), timeout=LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise CacheError(f"{d / LOCK}: still locked by another process after {LOCK_TIMEOUT_S:.0f}s") from None
    except OSError as e:
        raise CacheError(f"{d / LOCK}: cannot lock: {e.strerror or e}") from None
    try:
        yield
    finally:
        lock.release()


def _empty_manifest() -> dict:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "entries": {}}


def read_manifest(d: str | Path, must_exist: bool = True) -> dict:
    """The manifest of DIR, checked for shape; CacheError on anything wrong."""
    d = Path(d)
    if not d.exists():
        raise CacheError(f"{d}: no such directory")
    if not d.is_dir():
        raise CacheError(f"{d}: not a directory")
    p = d / MANIFEST
    try:
        text = safefs.read_bytes(d, MANIFEST, MAX_MANIFEST_BYTES).decode("utf-8")
    except FileNotFoundError:
        if must_exist:
            if _interrupted(d):
                raise CacheError(f"{p}: no manifest: an interrupted tilec compile left this directory "
                                 f"incomplete; run the compile again (or tilec gc {d})") from None
            raise CacheError(f"{p}: no manifest (not a tilec artifact directory?)") from None
        return _empty_manifest()
    except UnicodeDecodeError as e:
        raise CacheError(f"{p}: corrupted manifest: not UTF-8 (byte offset {e.start})") from None
    except OSError as e:
        raise CacheError(f"{p}: cannot read manifest: {e.strerror or e}") from None
    try:
        m = json.loads(text)
    except json.JSONDecodeError as e:
        raise CacheError(f"{p}: corrupted manifest: invalid JSON ({e})") from None
    except RecursionError:
        raise CacheError(f"{p}: corrupted manifest: JSON nests too deeply") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise CacheError(f"{p}: corrupted manifest: not a {FORMAT} manifest")
    if m.get("format_version") != FORMAT_VERSION:
        raise CacheError(f"{p}: manifest format version {m.get('format_version')!r} is not supported "
                         f"(this tilec reads {FORMAT_VERSION})")
    entries = m.get("entries")
    if not isinstance(entries, dict):
        raise CacheError(f"{p}: corrupted manifest: 'entries' is not an object")
    for key, e in entries.items():
        if (not isinstance(e, dict) or e.get("key") != key or not isinstance(e.get("files"), dict)
                or not all(isinstance(f, dict) and isinstance(f.get("sha256"), str)
                           for f in e["files"].values())
                or not all(isinstance(e.get(f), str) for f in ("kernel", "backend", "target", "compiler_version"))
                or not isinstance(e.get("binding"), dict)
                or not all(isinstance(k, str) and isinstance(v, (int, str)) and not isinstance(v, bool)
                           for k, v in e["binding"].items())):
            raise CacheError(f"{p}: corrupted manifest: entry '{str(key)[:16]}' is malformed")
        if (len(key) != 64 or any(c not in "0123456789abcdef" for c in key)
                or any(not _safe_name(n) for n in e["files"])):
            raise CacheError(f"{p}: corrupted manifest: entry '{key[:16]}' has a bad key or file name")
    tuning = m.get("tuning", {})
    if not isinstance(tuning, dict) or not all(
            _safe_name(n) and isinstance(r, dict) and isinstance(r.get("sha256"), str)
            for n, r in tuning.items()):
        raise CacheError(f"{p}: corrupted manifest: 'tuning' is malformed")
    skipped = m.get("skipped", {})
    if not isinstance(skipped, dict) or not all(
            isinstance(r, dict) and isinstance(r.get("reason"), str) for r in skipped.values()):
        raise CacheError(f"{p}: corrupted manifest: 'skipped' is malformed")
    return m


MAX_MANIFEST_BYTES = 256 << 20


def _interrupted(d: Path) -> bool:
    """DIR looks like an artifact directory a killed compile left before its first commit."""
    try:
        names = safefs.list_dir(d)
    except OSError:
        return False
    return LOCK in names or ENTRIES in names or any(n.startswith(TMP_PREFIX) for n in names)


def write_tuning(d: str | Path, name: str, data: bytes) -> Path:
    """Write DIR/tuning/NAME atomically and record its sha256 in the manifest, under the lock
    (so ``verify`` re-hashes it like an entry). Returns the file's path."""
    d = Path(d)
    if not _safe_name(name):
        raise CacheError(f"bad tuning table name {name!r}")
    read_manifest(d)   # only into an artifact directory
    (d / TUNING).mkdir(exist_ok=True)
    with _lock(d):
        m = read_manifest(d)
        _write_atomic(d / TUNING / name, data, sync=True)
        m.setdefault("tuning", {})[name] = {"sha256": _sha256(data), "size": len(data)}
        m["tuning"] = dict(sorted(m["tuning"].items()))
        _write_atomic(d / MANIFEST, (json.dumps(m, indent=1, sort_keys=True) + "\n").encode(), sync=True)
    return d / TUNING / name


def _read_checked(d: Path, rel: str, sha: str, what: str = "") -> tuple[str | None, bytes | None]:
    """(problem line or None, the file's bytes or None) for a file the manifest records with
    ``sha``: missing, unreadable or tampered."""
    try:
        data = safefs.read_bytes(d, rel)
    except FileNotFoundError:
        return f"missing: {rel}{what}", None
    except safefs.UnsafePath as err:
        return f"unsafe: {err.strerror}", None
    except OSError as err:
        return f"unreadable: {rel}: {err.strerror or err}", None
    if _sha256(data) != sha:
        return f"tampered: {rel} (sha256 does not match the manifest)", data
    return None, data


def _tuning_problems(d: Path, m: dict) -> list[str]:
    out = []
    recorded = m.get("tuning", {})
    for name, info in sorted(recorded.items()):
        problem, _ = _read_checked(d, f"{TUNING}/{name}", info["sha256"],
                                   " (tuning table in the manifest)")
        if problem:
            out.append(problem)
    for name in _listing(d, TUNING, out):
        if name not in recorded:
            what = "temporary file" if name.startswith(TMP_PREFIX) else "not in the manifest"
            out.append(f"stray: {TUNING}/{name} ({what})")
    return out


def _listing(d: Path, rel: str, problems: list) -> list[str]:
    """Names in DIR/rel, a real directory (no symlink on the way); [] when absent; a symlink
    or special file there is reported in ``problems``."""
    try:
        return safefs.list_dir(d, rel)
    except FileNotFoundError:
        return []
    except safefs.UnsafePath as e:
        problems.append(f"unsafe: {e.strerror}")
        return []
    except OSError as e:
        problems.append(f"unreadable: {rel}: {e.strerror or e}")
        return []


def _entry_problems(d: Path, e: dict) -> list[str]:
    """Problems of one manifest entry's files, as report lines (empty when intact)."""
    key = e["key"]
    out: list[str] = []
    names = _listing(d, f"{ENTRIES}/{key}", out)
    if out:
        return out
    if not safefs.is_plain_dir(d, f"{ENTRIES}/{key}"):
        return [f"missing: {key} ({e.get('kernel')} {e.get('target')}): entry directory {ENTRIES}/{key} is gone"]
    for name, info in sorted(e["files"].items()):
        problem, data = _read_checked(d, f"{ENTRIES}/{key}/{name}", info["sha256"])
        if problem:
            out.append(problem)
        elif name == "kernel.ir":
            want = cache_key(data.decode(errors="replace"), e.get("backend", ""), e.get("target", ""),
                             e.get("compiler_version", ""))
            if want != key:
                out.append(f"tampered: {ENTRIES}/{key}: key does not match its IR, backend, target and version")
    for name in names:
        if name not in e["files"]:
            out.append(f"stray: {ENTRIES}/{key}/{name} (not in the manifest)")
    return out


def _intact_keys(d: Path, m: dict) -> dict[str, str]:
    return {k: e.get("codegen", "") for k, e in m["entries"].items() if not _entry_problems(d, e)}


def _commit(d: Path, results: list[JobResult], version: str) -> tuple[int, int]:
    """Write the entries of ``results`` (misses) and add them to the manifest, under the lock.
    Returns (written, already there): an entry another compile committed meanwhile is a hit."""
    written = already = 0
    (d / ENTRIES).mkdir(exist_ok=True)
    with _lock(d):
        m = read_manifest(d, must_exist=False)
        skipped = m.setdefault("skipped", {})
        for r in results:
            job = r.job
            if r.skipped:   # recorded (no files) so `tilec ls` can say why it is absent
                skipped[r.key] = {"kernel": job.kernel, "binding": job.binding_dict,
                                  "backend": job.backend, "target": job.target,
                                  "compiler_version": version, "reason": r.skipped,
                                  "source": job.label or job.source}
                continue
            skipped.pop(r.key, None)
            old = m["entries"].get(r.key)
            if old is not None and not _entry_problems(d, old) and not (
                    old.get("codegen", "").startswith("unavailable") and r.codegen == "ok"):
                already += 1
                continue
            meta = {"key": r.key, "kernel": job.kernel, "binding": r.binding or job.binding_dict,
                    "backend": job.backend, "target": job.target, "compiler_version": version,
                    "codegen": r.codegen, "source": job.label or job.source, **r.info}
            files = dict(r.files)
            files["meta.json"] = (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()
            tmp = Path(tempfile.mkdtemp(dir=d / ENTRIES, prefix=TMP_PREFIX + r.key[:16] + "."))
            try:
                for name, data in files.items():
                    (tmp / name).write_bytes(data)
                final = d / ENTRIES / r.key
                if final.exists():  # a stale or damaged copy: we hold the lock, replace it
                    shutil.rmtree(final)
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            meta["files"] = {n: {"sha256": _sha256(b), "size": len(b)} for n, b in sorted(files.items())}
            m["entries"][r.key] = meta
            written += 1
        m["entries"] = dict(sorted(m["entries"].items()))
        m["skipped"] = dict(sorted(skipped.items()))
        if not m["skipped"]:
            del m["skipped"]
        _write_atomic(d / MANIFEST, (json.dumps(m, indent=1, sort_keys=True) + "\n").encode(), sync=True)
    return written, already


def _drop_other_versions(d: Path, version: str) -> int:
    """Remove the entries (and skip records) another compiler version built: this version can
    never use them (its keys differ) and the runtime refuses a directory that mixes versions,
    so compiling into the directory again is what brings it up to date. Tuned tables stay:
    the runtime names a stale one and the tune command that replaces it."""
    with _lock(d):
        m = read_manifest(d, must_exist=False)
        stale = [k for k, e in m["entries"].items() if e.get("compiler_version") != version]
        stale_skip = [k for k, e in m.get("skipped", {}).items() if e.get("compiler_version") != version]
        if not (stale or stale_skip):
            return 0
        for k in stale:
            del m["entries"][k]
        for k in stale_skip:
            del m["skipped"][k]
        _write_atomic(d / MANIFEST, (json.dumps(m, indent=1, sort_keys=True) + "\n").encode(), sync=True)
        for k in stale:
            p = d / ENTRIES / k
            if p.exists() or p.is_symlink():
                _remove(d, f"{ENTRIES}/{k}")
    return len(stale)


def _repair(d: Path) -> None:
    """Remove what a killed compile left: temporaries only ever exist while a process holds
    the lock, so under the lock any that remain are a dead process's."""
    with _lock(d):
        for rel in [n for n in safefs.list_dir(d) if n.startswith(TMP_PREFIX)] + \
                [f"{sub}/{n}" for sub in (ENTRIES, TUNING) for n in _listing(d, sub, [])
                 if n.startswith(TMP_PREFIX)]:
            _remove(d, rel)


@dataclass
class CompileStats:
    total: int = 0
    compiled: int = 0
    hits: int = 0
    failed: int = 0
    errors: list = field(default_factory=list)
    skipped: list = field(default_factory=list)   # "kernel binding on target: reason"
    seconds: float = 0.0
    superseded: int = 0     # entries of another compiler version removed from the directory


def compile_jobs(jobs: list[Job], out: str | Path, workers: int = 1,
                 progress: Callable[[JobResult], None] | None = None,
                 batch: int = 64) -> CompileStats:
    """Compile ``jobs`` into the artifact directory ``out`` (created if needed), ``workers``
    processes at a time (1: in this process). Entries are committed in batches of ``batch``."""
    t0 = time.perf_counter()
    d = Path(out)
    if d.exists() and not d.is_dir():
        raise CacheError(f"{d}: not a directory")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CacheError(f"{d}: cannot create directory: {e.strerror}") from None
    for sub in (ENTRIES, TUNING):
        if (d / sub).is_symlink() or ((d / sub).exists() and not safefs.is_plain_dir(d, sub)):
            raise CacheError(f"{d / sub}: a symlink or not a directory; refusing to write through it")
    _repair(d)
    version = compiler_version()
    superseded = _drop_other_versions(d, version)
    known = _intact_keys(d, read_manifest(d, must_exist=False))
    stats = CompileStats(total=len(jobs), superseded=superseded)
    pending: list[JobResult] = []

    def flush():
        if pending:
            w, a = _commit(d, pending, version)
            stats.compiled += w
            stats.hits += a
            pending.clear()

    def take(r: JobResult):
        if r.error:
            stats.failed += 1
            stats.errors.append(r.error)
        elif r.hit:
            stats.hits += 1
        elif r.skipped:
            stats.skipped.append(f"{r.job.kernel} {_fmt_binding(r.job.binding_dict)} on {r.job.target}: "
                                 f"{r.skipped}")
            pending.append(r)
        else:
            pending.append(r)
            if len(pending) >= batch:
                flush()
        if progress:
            progress(r)

    jobs = list(dict.fromkeys(jobs))  # a duplicated job would only be compiled twice
    stats.total = len(jobs)
    groups: dict[tuple, list[Job]] = {}
    for j in jobs:
        groups.setdefault((j.source, j.kernel, j.binding), []).append(j)
    if workers <= 1 or len(groups) <= 1:
        _init_worker(known)
        for g in groups.values():
            for r in run_group(g, version):
                take(r)
    else:
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                                 initargs=(known,)) as ex:
            futs = [ex.submit(_run_group_star, (g, version)) for g in groups.values()]
            for f in as_completed(futs):
                for r in f.result():
                    take(r)
    flush()
    stats.seconds = time.perf_counter() - t0
    return stats


# --------------------------------------------------------------------------- inspecting

def find_entry(d: str | Path, prefix: str) -> dict:
    m = read_manifest(d)
    prefix = prefix.strip().lower()
    if not prefix:
        raise CacheError("empty key")
    found = [e for k, e in m["entries"].items() if k.startswith(prefix)]
    if not found:
        raise CacheError(f"no entry with key {prefix!r} in {d}")
    if len(found) > 1:
        raise CacheError(f"key prefix {prefix!r} is ambiguous: {len(found)} entries match "
                         f"({', '.join(e['key'][:16] for e in found[:4])}{', ...' if len(found) > 4 else ''})")
    return found[0]


def verify(d: str | Path) -> list[str]:
    """Re-hash every file of DIR; one line per tampered, missing, stray or unsafe thing (empty:
    ok). A directory an interrupted compile left without a manifest is described as such.
    Nothing is read through a symlink or from a special file."""
    d = Path(d)
    try:
        m = read_manifest(d)
    except CacheError:
        if not (d.is_dir() and not (d / MANIFEST).exists() and _interrupted(d)):
            raise
        left = [n for n in safefs.list_dir(d) if n.startswith(TMP_PREFIX)]
        return [f"incomplete: an interrupted tilec compile left no manifest"
                + (f" and {len(left)} temporary item(s)" if left else "")
                + f"; run the compile again or tilec gc {d}"]
    out: list[str] = []
    for e in m["entries"].values():
        out += _entry_problems(d, e)
    for name in _listing(d, ENTRIES, out):
        if name not in m["entries"]:
            what = "temporary file" if name.startswith(TMP_PREFIX) else "entry not in the manifest"
            out.append(f"stray: {ENTRIES}/{name} ({what})")
    out += _tuning_problems(d, m)
    for name in safefs.list_dir(d):
        if name.startswith(TMP_PREFIX):
            out.append(f"stray: {name} (temporary file)")
    return out


def _remove(d: Path, rel: str) -> None:
    """Delete DIR/rel, never following a symlink (a link is removed, not its target)."""
    p = d / rel
    if p.is_symlink() or not p.is_dir():
        p.unlink()
    else:
        shutil.rmtree(p)


def gc(d: str | Path) -> list[str]:
    """Remove entries not in the manifest and leftover temporary files; returns what went.
    Refuses a directory whose entries/ or tuning/ is a symlink (nothing outside DIR is ever
    deleted), and cleans up after a compile that was killed before its first commit."""
    d = Path(d)
    if not (d.is_dir() and not (d / MANIFEST).exists() and _interrupted(d)):
        read_manifest(d)  # refuse to touch a directory whose manifest is unreadable
    for sub in (ENTRIES, TUNING):
        if (d / sub).is_symlink() or ((d / sub).exists() and not safefs.is_plain_dir(d, sub)):
            raise CacheError(f"{d / sub}: a symlink or not a directory; refusing to delete through it")
    removed = []
    with _lock(d):
        m = read_manifest(d, must_exist=False)
        cands = [f"{ENTRIES}/{n}" for n in _listing(d, ENTRIES, []) if n not in m["entries"]]
        cands += [n for n in safefs.list_dir(d) if n.startswith(TMP_PREFIX)]
        cands += [f"{TUNING}/{n}" for n in _listing(d, TUNING, []) if n not in m.get("tuning", {})]
        for rel in cands:
            _remove(d, rel)
            removed.append(rel)
    return removed
