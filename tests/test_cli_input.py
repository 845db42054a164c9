"""Bad capability options on the command line: one clear line, exit 2, never a traceback or `internal error`
(issue 10: F3, F4, F5, F6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import wasmtime

from test_inputfiles import RUN_OK  # the smallest command component



@pytest.fixture(scope="module")
def ok_wasm(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli-input") / "ok.wasm"
    path.write_bytes(wasmtime.wat2wasm(RUN_OK))
    return path


def wasitls(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wasitls", "run", "--no-cache", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120, stdin=subprocess.DEVNULL)


def assert_refused(proc: subprocess.CompletedProcess, *needles: str) -> None:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("wasitls: error: "), proc.stderr
    assert "internal error" not in lines[0] and "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("option, value", [
    ("--allow-net", "a..b:80"),  # F3: was `internal error: UnicodeError`
    ("--allow-net", "x" * 64 + ".example:443"),  # F3: a label over 63 bytes
    ("--allow-listen", "a..b:80"),
    ("--allow-net", "[::1"),  # F5: were accepted, granting something else or nothing
    ("--allow-net", "[::1]:"),
    ("--allow-net", "a:b:c"),
    ("--allow-net", "1.2.3.4:80:90"),
    ("--allow-net", "[garbage]:80"),
    ("--allow-net", "bad name:80"),
    ("--allow-net", "evil\x1bname"),
    ("--allow-listen", "99999"),  # F6: a bare port had no range check
    ("--allow-listen", "127.0.0.1:65536"),
])
def test_malformed_network_options(ok_wasm, option, value):
    assert_refused(wasitls(option, value, str(ok_wasm)), option)


@pytest.mark.parametrize("value", ["", "::/data", "::"])
def test_dir_with_an_empty_host_path(ok_wasm, tmp_path, value):
    # F4: an empty host path (an unset shell variable) used to preopen the current directory read-write
    assert_refused(wasitls("--dir", value, str(ok_wasm), cwd=tmp_path), "--dir", "host directory is empty")


def test_well_formed_options_still_run(ok_wasm, tmp_path):
    proc = wasitls("--allow-net", "[::1]:443", "--allow-net", "localhost", "--allow-net", "*:53",
                   "--allow-listen", "0", "--allow-listen", "127.0.0.1:65535", "--dir", f"{tmp_path}::",
                   str(ok_wasm))
    assert (proc.returncode, proc.stderr) == (0, "")
