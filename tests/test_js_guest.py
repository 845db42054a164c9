"""A JavaScript guest (tests/guests/js_hello, built with jco componentize / componentize-js) on wasitls and
on the wasmtime CLI: same stdout, stderr and exit status.

componentize-js embeds StarlingMonkey (SpiderMonkey): a ~14 MB component whose own imports name WASI
0.2.10 and 0.2.12 (newer than the 0.2.9 we serve: linked by semver) beside the guest's 0.2.9 ones.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from engines import ENGINES
from guests import build_js_guest, find_jco, JS_INSTALL_HINT, wasmtime_precompiled

TIMEOUT = 120
QUIET_ENV = {k: v for k, v in os.environ.items() if k not in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE")}


@pytest.fixture(scope="module")
def js_hello(tmp_path_factory):
    if find_jco() is None:
        pytest.skip(JS_INSTALL_HINT)
    wasm = build_js_guest("js_hello")
    link = tmp_path_factory.mktemp("js") / "js-hello.wasm"  # argv[0] is the file name on both hosts
    link.symlink_to(wasm)
    return link


@pytest.fixture(scope="module")
def js_hello_wasmtime(js_hello, wasmtime_cli, tmp_path_factory):
    link = tmp_path_factory.mktemp("js-wasmtime") / "js-hello.wasm"
    link.symlink_to(wasmtime_precompiled(wasmtime_cli, js_hello.resolve()))
    return link


CASES = {
    "args-env-file": dict(args=["a b", "", "ünï", "read", "/data/hello.txt", "read", "/data/missing.txt",
                                "write", "out.txt"],
                          env=["B=2", "A=x=y"], dirs=True),
    "timers": dict(args=["timers"], dirs=False),
    "exit-ok": dict(args=["exit", "0", "not reached"], dirs=False),
    "exit-err": dict(args=["exit", "3"], dirs=False),
    "throw": dict(args=["throw"], dirs=False),
}


# Every case on the default engine; the reference engine (seconds a start for this guest) runs one.
ENGINE_CASES = [(ENGINES[0], case) for case in CASES] + [(engine, "args-env-file") for engine in ENGINES[1:]]


@pytest.mark.parametrize("engine, case", ENGINE_CASES)
def test_js_guest_matches_wasmtime(engine, case, js_hello, js_hello_wasmtime, wasmtime_cli, tmp_path):
    spec = CASES[case]
    data = tmp_path / "data"
    data.mkdir()
    (data / "hello.txt").write_text("hello from the host ü\n")
    dirs = [f"{data}::/data"] if spec["dirs"] else []
    results = {}
    for host, prefix, wasm in (
        ("wasmtime", [str(wasmtime_cli), "run", "--allow-precompiled"], js_hello_wasmtime),
        ("wasitls", [sys.executable, "-m", "wasitls", "run", "--engine", engine], js_hello),
    ):
        cmd = list(prefix)
        for d in dirs:
            cmd += ["--dir", d]
        for e in spec.get("env", []):
            cmd += ["--env", e]
        results[host] = subprocess.run(cmd + [str(wasm), *spec["args"]], capture_output=True, timeout=TIMEOUT,
                                       env=QUIET_ENV)
    wt, wl = results["wasmtime"], results["wasitls"]
    # the first start on wasitls compiles and says so on stderr: compare the guest's own lines
    wl_err = b"".join(l for l in wl.stderr.splitlines(keepends=True) if not l.startswith(b"wasitls: compiling"))
    assert (wl.returncode, wl.stdout.decode(), wl_err.decode()) == (wt.returncode, wt.stdout.decode(), wt.stderr.decode())
    out = wt.stdout.decode()
    assert out.startswith(f"argc: {len(spec['args']) + 1}\n")
    assert wt.stderr == b"to stderr\nconsole.error reaches stderr\n"
    if case == "args-env-file":
        assert wt.returncode == 0
        assert 'env A="x=y"\nenv B="2"\n' in out
        assert 'read /data/hello.txt: "hello from the host ü\\n"\n' in out
        assert "read /data/missing.txt: error no-entry\n" in out
        assert "crypto.getRandomValues: 32 bytes, not all zero: true\nMath.random in [0, 1): true\n" in out
        assert "Date.now plausible: true\nperformance.now non-decreasing: true\n" in out
        assert (data / "out.txt").read_text() == "written by js_hello to /data/out.txt\n"
    elif case == "timers":
        assert wt.returncode == 0
        assert out.endswith("timers: 50 ms timeout then 3 interval ticks, >= 80 ms: true\n"
                            "sha256(\"abc\"): ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n")
    elif case == "exit-ok":
        assert (wt.returncode, out.endswith("exiting with ok\n")) == (0, True)
    else:
        assert wt.returncode == 1
