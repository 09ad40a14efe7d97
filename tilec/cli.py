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
    """Parse and type-check FILES (default: the kernel library). Exit 1 on any error."""
    from tilec.compiler import compile_file
    from tilec.kernels import library_files
    binding = _parse_defines(defines)
    bad = False
    for f in files or library_files():
        try:
            compile_file(f, binding=binding)
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
            ks = compile_source(Path(file).read_text(), str(file), kernel, _parse_defines(defines), passes=False)
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
@click.option("--backend", "-b", default="reference", show_default=True,
              type=click.Choice(["reference", "cpu", "triton"]), help="backend to test")
@click.option("--quick", is_flag=True, help="a smaller case set")
@click.option("--seed", default=0, show_default=True)
@click.option("--kernel", "only", default=None, help="only this library kernel")
def selftest(backend, quick, seed, only):
    """Run every library kernel on the standard cases against independent oracles."""
    from tilec.selftest import runner, selftest as run
    try:
        runner(backend)
    except KeyError as e:
        click.echo(f"tilec selftest: error: {e.args[0]}", err=True)
        sys.exit(1)
    n = failed = 0
    click.echo(f"{'kernel':<16} {'case':<58} {'max err':>10} {'time':>8}  result")
    for r in run(backend, quick=quick, seed=seed, only=only):
        n += 1
        failed += not r.ok
        click.echo(f"{r.kernel:<16} {r.case:<58} {r.max_err:>10.2e} {r.seconds:>7.2f}s  "
                   + ("pass" if r.ok else click.style("FAIL", fg="red")))
    click.echo(f"{backend}: {n - failed} passed, {failed} failed")
    sys.exit(1 if failed or n == 0 else 0)


if __name__ == "__main__":
    main()
