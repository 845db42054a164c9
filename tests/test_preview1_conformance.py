"""WASI preview 1 programs (C via zig's wasi-libc, Go via GOOS=wasip1) give the same output on
`wasitls run` as on the wasmtime CLI: args, environ, clocks, random, files in a preopen,
directories, symlinks, stdin/stdout/stderr and exit statuses. Also the embedding API."""

from __future__ import annotations

import subprocess
import sys

import pytest

from wasitls.devtools.preview1_build import build_c, build_go


@pytest.fixture(scope="module")
def programs():
    return {"c": build_c("conformance"), "go": build_go("conformance")}


def _data_dir(tmp_path, name):
    d = tmp_path / name
    d.mkdir()
    (d / "input.txt").write_text("hello from the host\n")
    (d / "existing").mkdir()
    return d


def _run(cmd, stdin=b"some stdin bytes\n"):
    proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=120)
    # the progress line of a first compile is not the program's
    err = "".join(line for line in proc.stderr.decode().splitlines(keepends=True)
                  if not line.startswith("wasitls: compiling"))
    return proc.returncode, proc.stdout.decode(), err


def _wasitls(module, data, *args, extra=()):
    return [sys.executable, "-m", "wasitls", "run", "--dir", f"{data}::/data", "--env", "GREETING=hi there",
            *extra, str(module), *args]


def _wasmtime(cli, module, data, *args):
    return [str(cli), "run", "--dir", f"{data}::/data", "--env", "GREETING=hi there", str(module), *args]


@pytest.mark.parametrize("lang", ["c", "go"])
def test_same_output_as_wasmtime(programs, wasmtime_cli, tmp_path, lang):
    module = programs[lang]
    ours = _run(_wasitls(module, _data_dir(tmp_path, "ours"), "first arg", "ünïcode", "7"))
    theirs = _run(_wasmtime(wasmtime_cli, module, _data_dir(tmp_path, "theirs"), "first arg", "ünïcode", "7"))
    assert ours[0] == theirs[0] == 7
    assert ours[1] == theirs[1]
    assert "arg 2: ünïcode" in ours[1] and "stdin bytes: 17" in ours[1]
    assert "ls /data/sub: [link moved.txt]" in ours[1] or "ls /data/sub: . .. link moved.txt" in ours[1]
    assert ours[2] == theirs[2] == "to stderr\n"
    # the files the program left behind are the same too
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == sorted(p.name for p in (tmp_path / "theirs").iterdir())


@pytest.mark.parametrize("how, status", [("return", 0), ("exit 42", 42), ("exit 125", 125), ("exit 126", 1)])
def test_exit_status(wasmtime_cli, how, status):
    module = build_c("exit_trap")
    ours = _run([sys.executable, "-m", "wasitls", "run", str(module), *how.split()])
    theirs = _run([str(wasmtime_cli), "run", str(module), *how.split()])
    assert ours[0] == theirs[0] == status
    assert ours[1] == theirs[1] == f"doing {how.split()[0]}\n"


def test_trap_is_one_line_and_134(wasmtime_cli):
    module = build_c("exit_trap")
    code, out, err = _run([sys.executable, "-m", "wasitls", "run", str(module), "trap"])
    assert code == _run([str(wasmtime_cli), "run", str(module), "trap"])[0] == 134
    assert out == "doing trap\n"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wasitls: guest trapped: wasm trap:"), err


def test_embedding_api_runs_a_module(programs, tmp_path):
    from wasitls import Host

    data = _data_dir(tmp_path, "api")
    out = tmp_path / "stdout"
    with open(out, "wb") as stdout:
        status = Host(dirs=[f"{data}::/data"], env={"GREETING": "hi there"}, stdin=b"abc", stdout=stdout,
                      stderr=stdout).run(str(programs["c"]), ["x", "5"])
    assert status == 5
    text = out.read_text()
    assert "arg 1: x" in text and "stdin bytes: 3" in text and "to stderr" in text
    assert "input.txt: hello from the host" in text


def test_unknown_imports_listed_in_one_line(tmp_path):
    wat = b"""(module
      (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
      (import "env" "mystery" (func $m))
      (import "wasi_snapshot_preview1" "no_such_call" (func (param i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")))"""
    import wasmtime

    module = tmp_path / "unknown.wasm"
    module.write_bytes(wasmtime.wat2wasm(wat))
    code, out, err = _run([sys.executable, "-m", "wasitls", "run", str(module)])
    assert code == 0
    assert err.count("\n") == 1
    assert "env.mystery" in err and "wasi_snapshot_preview1.no_such_call" in err


def test_not_a_command(tmp_path):
    import wasmtime

    module = tmp_path / "lib.wasm"
    module.write_bytes(wasmtime.wat2wasm("(module (func (export \"f\")))"))
    code, out, err = _run([sys.executable, "-m", "wasitls", "run", str(module)])
    assert code == 2
    assert err.strip().splitlines() == [f"wasitls: error: {module}: not a command: a core WebAssembly module that exports no _start function"]


def test_the_calls_libc_hides_match_wasmtime(wasmtime_cli, tmp_path):
    """fd_readdir cookies and cut entries, fd_renumber, poll_oneoff (clocks, files, a bad descriptor,
    no subscriptions), timestamps, hard links, sizes, sync, advise, fdstat and prestat."""
    module = build_c("fsdetail")
    (tmp_path / "ours").mkdir()
    (tmp_path / "theirs").mkdir()
    ours = _run([sys.executable, "-m", "wasitls", "run", "--dir", f"{tmp_path / 'ours'}::/data", str(module)])
    theirs = _run([str(wasmtime_cli), "run", "--dir", f"{tmp_path / 'theirs'}::/data", str(module)])
    assert ours == theirs
    assert "readdir: 6 entries, 4 regular files" in ours[1] and "after renumber reads: alpha" in ours[1]


HOSTILE = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    ;; guest-chosen sizes far beyond its memory: FAULT (21) at once, nothing built
    (if (i32.ne (call $write (i32.const 1) (i32.const 0) (i32.const -1) (i32.const 0)) (i32.const 21))
      (then (call $exit (i32.const 1))))
    (if (i32.ne (call $random (i32.const 0) (i32.const -1)) (i32.const 21)) (then (call $exit (i32.const 2))))
    (if (i32.ne (call $poll (i32.const 0) (i32.const 0) (i32.const -1) (i32.const 0)) (i32.const 21))
      (then (call $exit (i32.const 3))))
    (call $exit (i32.const 0))))
"""


def test_guest_chosen_sizes_beyond_memory_are_fault(tmp_path):
    import wasmtime

    module = tmp_path / "hostile.wasm"
    module.write_bytes(wasmtime.wat2wasm(HOSTILE))
    assert _run([sys.executable, "-m", "wasitls", "run", str(module)]) == (0, "", "")


def test_embedding_api_runs_module_bytes(programs, tmp_path):
    from wasitls import Host

    out = tmp_path / "stdout"
    data = _data_dir(tmp_path, "bytes")
    with open(out, "wb") as stdout:
        status = Host(dirs=[f"{data}::/data"], stdin=b"", stdout=stdout, stderr=stdout).run(
            programs["c"].read_bytes(), ["3"])
    assert status == 3
    assert "env GREETING=(unset)" in out.read_text()


BAD_WHENCE = """(module
  (import "wasi_snapshot_preview1" "fd_seek" (func $seek (param i32 i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (drop (call $seek (i32.const 0) (i64.const 0) (i32.const 7) (i32.const 0)))))
"""


def test_a_value_outside_a_witx_enum_fails_the_run_as_on_wasmtime(wasmtime_cli, tmp_path):
    import wasmtime

    module = tmp_path / "whence.wasm"
    module.write_bytes(wasmtime.wat2wasm(BAD_WHENCE))
    code, out, err = _run([sys.executable, "-m", "wasitls", "run", str(module)])
    assert code == _run([str(wasmtime_cli), "run", str(module)])[0] == 1
    assert err.strip().splitlines() == ["wasitls: guest trapped: invalid enum value 7 for whence"]
