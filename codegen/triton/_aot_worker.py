"""Run as a script (never imported by the package): compile one Triton source for a GPU target.

Its own process, with ``TRITON_INTERPRET=0`` set before Triton is imported: a process that
runs kernels under Triton's interpreter has built Triton's library functions for it, and
``triton.compile`` fails inside them. Reads a JSON job on stdin, writes ``kernel.cubin`` and
``kernel.ptx`` into the job's ``out`` directory, prints the figures as JSON on stdout.
"""
import importlib.util
import json
import os
import re
import subprocess
import sys
import time

os.environ["TRITON_INTERPRET"] = "0"
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")


def main() -> None:
    job = json.load(sys.stdin)
    out = job["out"]
    path = os.path.join(out, "source.py")
    with open(path, "w") as f:
        f.write(job["source"])
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    spec = importlib.util.spec_from_file_location("tilec_aot_kernel", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    fn = getattr(mod, job["name"])
    names = list(fn.arg_names)
    if len(names) != len(job["types"]):
        raise SystemExit(f"the source takes {len(names)} parameters, the signature describes {len(job['types'])}")
    sig = dict(zip(names, job["types"]))
    constexprs = {names[i]: v for i, v in job["constexprs"]}
    attrs = {(i,): [["tt.divisibility", 16]] for i in job["aligned"]}
    t0 = time.perf_counter()
    k = triton.compile(ASTSource(fn, sig, constexprs=constexprs, attrs=attrs),
                       target=GPUTarget("cuda", job["arch"], 32),
                       options={"num_warps": job["num_warps"], "num_stages": job["num_stages"]})
    seconds = time.perf_counter() - t0
    with open(os.path.join(out, "kernel.cubin"), "wb") as f:
        f.write(k.asm["cubin"])
    with open(os.path.join(out, "kernel.ptx"), "w") as f:
        f.write(k.asm["ptx"])
    stats = {"shared": int(k.metadata.shared), "triton": triton.__version__,
             "wgmma": "wgmma" in k.asm["ptx"], "compile_seconds": round(seconds, 2)}
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if os.path.isfile(tool):
        res = subprocess.run([tool, "-res-usage", os.path.join(out, "kernel.cubin")],
                             capture_output=True, text=True, timeout=120).stdout
        m = re.search(r"REG:(\d+)\s+STACK:(\d+)\s+SHARED:(\d+)\s+LOCAL:(\d+)", res)
        if m:
            reg, stack, shared, local = (int(x) for x in m.groups())
            stats.update(regs=reg, stack_bytes=stack, static_shared=shared, local_bytes=local)
    arch = f"sm_{job['arch']}a" if job["arch"] == 90 else f"sm_{job['arch']}"
    for name in ("ptxas-blackwell", "ptxas"):   # spill stores/loads as ptxas reports them
        ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)
        if not os.path.isfile(ptxas):
            continue
        r = subprocess.run([ptxas, "-v", f"-arch={arch}", os.path.join(out, "kernel.ptx"), "-o", os.devnull],
                           capture_output=True, text=True, timeout=300)
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", r.stderr)
        if r.returncode == 0 and m:
            stats.update(spill_stores=int(m.group(1)), spill_loads=int(m.group(2)))
            break
    json.dump(stats, sys.stdout)


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception as e:   # report Triton's own error as one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        print(f"{type(e).__name__}: {first}", file=sys.stderr)
        sys.exit(1)
