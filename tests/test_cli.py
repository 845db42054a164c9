"""The command line's contract: exit statuses, one-line errors, semver linking, on every engine.

These use tiny components written in the component text format, so they run in milliseconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import wasmtime

from engines import ENGINES

EXIT_WITH_CODE = """
(component
  (import "wasi:cli/exit@{version}" (instance $exit (export "exit-with-code" (func (param "status-code" u8)))))
  (core func $exit_lowered (canon lower (func $exit "exit-with-code")))
  (core module $m
    (import "host" "exit" (func $exit (param i32)))
    (func (export "run") (result i32) (call $exit (i32.const {code})) unreachable))
  (core instance $host (export "exit" (func $exit_lowered)))
  (core instance $i (instantiate $m (with "host" (instance $host))))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $r (export "run" (func $run)))
  (export "wasi:cli/run@{version}" (instance $r)))
"""

RUN_RETURNS = """
(component
  (core module $m (func (export "run") (result i32) i32.const {tag}))
  (core instance $i (instantiate $m))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $r (export "run" (func $run)))
  (export "wasi:cli/run@0.2.9" (instance $r)))
"""

TRAP = """
(component
  (core module $m (func (export "run") (result i32) unreachable))
  (core instance $i (instantiate $m))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $r (export "run" (func $run)))
  (export "wasi:cli/run@0.2.9" (instance $r)))
"""

UNSERVED = """
(component
  (import "example:db/query@1.0.0" (instance $db (export "ping" (func))))
  (import "wasi:cli/environment@0.2.9" (instance $env (export "no-such-function" (func))))
  (core module $m (func (export "run") (result i32) i32.const 0))
  (core instance $i (instantiate $m))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $r (export "run" (func $run)))
  (export "wasi:cli/run@0.2.9" (instance $r)))
"""


def component(tmp_path: Path, name: str, wat: str) -> Path:
    path = tmp_path / name
    path.write_bytes(wasmtime.wat2wasm(wat))
    return path


def wasitls(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wasitls", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, stdin=subprocess.DEVNULL)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("version", ["0.2.0", "0.2.3", "0.2.9"])
def test_exit_code_and_semver_linking(tmp_path, engine, version):
    wasm = component(tmp_path, "exit.wasm", EXIT_WITH_CODE.format(version=version, code=42))
    proc = wasitls("run", "--engine", engine, str(wasm))
    assert proc.returncode == 42, proc.stderr


@pytest.mark.parametrize("engine", ENGINES)
def test_run_result_sets_status(tmp_path, engine):
    ok = component(tmp_path, "ok.wasm", RUN_RETURNS.format(tag=0))
    err = component(tmp_path, "err.wasm", RUN_RETURNS.format(tag=1))
    assert wasitls("run", "--engine", engine, str(ok)).returncode == 0
    assert wasitls("run", "--engine", engine, str(err)).returncode == 1


@pytest.mark.parametrize("engine", ENGINES)
def test_trap_is_one_line_and_nonzero(tmp_path, engine):
    wasm = component(tmp_path, "trap.wasm", TRAP)
    proc = wasitls("run", "--engine", engine, str(wasm))
    assert proc.returncode == 134
    assert_one_line_error(proc, "unreachable")


@pytest.mark.parametrize("engine", ENGINES)
def test_an_error_raised_by_the_host_exits_1(tmp_path, engine):
    # Not a trap in wasm code but a canonical ABI violation the host finds (a result with case 7):
    # `wasmtime run` reports such errors with status 1, keeping 134 for wasm traps.
    wasm = component(tmp_path, "bad.wasm", RUN_RETURNS.format(tag=7))
    proc = wasitls("run", "--engine", engine, str(wasm))
    assert proc.returncode == 1
    assert_one_line_error(proc, "discriminant 7")


@pytest.mark.parametrize("engine", ENGINES)
def test_unserved_imports_are_all_listed(tmp_path, engine):
    wasm = component(tmp_path, "unserved.wasm", UNSERVED)
    proc = wasitls("run", "--engine", engine, str(wasm))
    assert proc.returncode == 2
    assert_one_line_error(proc, "example:db/query@1.0.0", "wasi:cli/environment@0.2.9#no-such-function")


def test_missing_file(tmp_path):
    proc = wasitls("run", str(tmp_path / "nope.wasm"))
    assert proc.returncode == 2
    assert_one_line_error(proc, "no such file", "nope.wasm")


def test_not_a_component(tmp_path):
    core = tmp_path / "core.wasm"
    core.write_bytes(wasmtime.wat2wasm("(module)"))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    truncated = tmp_path / "cut.wasm"
    truncated.write_bytes(wasmtime.wat2wasm(TRAP)[:40])
    for path, needle in [(core, "core WebAssembly module"), (text, "not a WebAssembly file"), (truncated, "invalid")]:
        proc = wasitls("run", str(path))
        assert proc.returncode == 2
        assert_one_line_error(proc, needle)


def test_bad_options_are_one_line(tmp_path):
    wasm = component(tmp_path, "ok.wasm", RUN_RETURNS.format(tag=0))
    proc = wasitls("run", "--dir", str(tmp_path / "missing"), str(wasm))
    assert proc.returncode == 2
    assert_one_line_error(proc, "not a directory")
    proc = wasitls("run", "--env", "=value", str(wasm))
    assert proc.returncode == 2
    assert_one_line_error(proc, "NAME=VALUE")
    proc = wasitls("run", "--allow-listen", "127.0.0.1:notaport", str(wasm))
    assert proc.returncode == 2
    assert_one_line_error(proc, "port")


def test_stdio_on_descriptors_that_cannot_be_used(tmp_path):
    # stdout open read-only (as a shell wrapper can leave it) swallows output; a bad stdin is at its end
    from wasitls.wasi.ctx import FdSource, WriterSink
    from wasitls.wasi.io.streams import StreamClosed

    path = tmp_path / "read-only"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)
    try:
        WriterSink(fd).write(b"dropped")
    finally:
        os.close(fd)
    assert path.read_bytes() == b""
    fd = os.open(path, os.O_WRONLY)
    source = FdSource(fd)
    with pytest.raises(StreamClosed):
        source.read(10)
    os.close(fd)


def test_bad_tls_files_fail_before_the_guest_runs(tmp_path):
    """TLS settings are built on first TLS use, but a CA file that cannot be read, or holds no
    certificate, still stops the host with one line before the guest starts."""
    wasm = component(tmp_path, "ok.wasm", RUN_RETURNS.format(tag=0))
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    cases = [
        (["--ca-file", str(tmp_path / "missing.pem")], ["--ca-file", "missing.pem", "No such file"]),
        (["--ca-file", str(empty)], ["--ca-file", "empty.pem", "no PEM certificate"]),
        (["--ca-file", str(tmp_path)], ["--ca-file", "directory"]),
        (["--client-ca-file", str(tmp_path / "missing.pem")], ["--client-ca-file", "missing.pem"]),
        (["--identity", "noequals"], ["--identity", "NAME=KEY.pem,CERT.pem"]),
        (["--identity", f"s={tmp_path / 'k.pem'},{tmp_path / 'c.pem'}"], ["identity 's'", "k.pem"]),
    ]
    for options, needles in cases:
        proc = wasitls("run", *options, str(wasm))
        assert proc.returncode == 2, (options, proc.stderr)
        assert_one_line_error(proc, *needles)


def test_tls_settings_are_built_on_first_use(tmp_path):
    """Only the system trust store waits for the first TLS use; a file the person named is parsed
    at once (issue 10 F8: a damaged one used to surface as a bare error value in the guest)."""
    from wasitls.tls.config import TlsConfigError, build_tls_config

    damaged = tmp_path / "damaged.pem"
    damaged.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    with pytest.raises(TlsConfigError, match="--ca-file .*damaged.pem.*damaged"):
        build_tls_config(ca_file=str(damaged), lazy=True)
    system = build_tls_config(lazy=True)
    assert "trust" not in vars(system)
    assert "system" in system.trust.description or "certifi" in system.trust.description
    assert system.client_config is system.client_config and system.client_trust is None
    assert system.identities == {}


def test_damaged_tls_files_fail_before_the_guest_runs(tmp_path):
    """Issue 10 F8: a CA file with a PEM marker but a broken body, a good block followed by a broken
    one, a key that does not match its certificate and a wrong passphrase each stop the host with one
    line naming the file or identity, exit 2, before the guest runs (even under --tls-trace)."""
    import trustme
    from cryptography.hazmat.primitives import serialization

    wasm = component(tmp_path, "ok.wasm", RUN_RETURNS.format(tag=0))
    ca = trustme.CA()
    leaf, other = ca.issue_cert("localhost"), ca.issue_cert("other.test")
    good = ca.cert_pem.bytes()
    (tmp_path / "broken.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A\n"
                                          b"-----END CERTIFICATE-----\n")
    (tmp_path / "second.pem").write_bytes(good + b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")
    leaf.private_key_pem.write_to_path(str(tmp_path / "leaf.key"))
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "leaf.pem"))
    other.private_key_pem.write_to_path(str(tmp_path / "other.key"))
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    (tmp_path / "locked.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"right")))
    (tmp_path / "wrong.pass").write_text("wrong\n")
    t = str(tmp_path)
    cases = [
        (["--ca-file", f"{t}/broken.pem"], ["--ca-file", "broken.pem", "damaged"]),
        (["--client-ca-file", f"{t}/broken.pem"], ["--client-ca-file", "broken.pem", "damaged"]),
        (["--ca-file", f"{t}/second.pem"], ["--ca-file", "second.pem", "block 2 of 2"]),
        (["--identity", f"s={t}/other.key,{t}/leaf.pem"], ["identity 's'", "match"]),
        (["--identity", f"s={t}/leaf.key,{t}/second.pem"], ["identity 's'", "damaged"]),
        (["--identity", f"s={t}/locked.key,{t}/leaf.pem,{t}/wrong.pass"], ["identity 's'", "passphrase"]),
    ]
    for options, needles in cases:
        proc = wasitls("run", "--tls-trace", *options, str(wasm))
        assert proc.returncode == 2, (options, proc.stderr)
        assert_one_line_error(proc, *needles)


NOT_A_COMMAND = """
(component
  (core module $m (func (export "f") (result i32) i32.const 0))
  (core instance $i (instantiate $m))
  (func $f (result u32) (canon lift (core func $i "f")))
  (instance $r (export "run" (func $f)))
  (export "example:not/run@0.2.9" (instance $r)))
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_exported_interfaces_and_not_a_command(tmp_path, engine):
    from wasitls.component.compile_cache import CompileCache
    from wasitls.host import make_backend

    ok = wasmtime.wat2wasm(EXIT_WITH_CODE.format(version="0.2.3", code=0))
    assert make_backend(engine).load(ok, cache=CompileCache(None)).exported_interfaces() == ["wasi:cli/run@0.2.3"]
    wasm = component(tmp_path, "lib.wasm", NOT_A_COMMAND)
    proc = wasitls("run", "--engine", engine, str(wasm))
    assert proc.returncode == 2
    assert_one_line_error(proc, "not a command", "wasi:cli/run")


# -- start-up caches: what lets a second start skip work must never serve stale answers -------------


def test_interface_table_matches_the_classes(tmp_path):
    from wasitls.served import all_interfaces, interface_table

    expected = [(c.__module__, c.__qualname__, (c.wit, *c.aliases)) for c in all_interfaces()]
    assert interface_table(tmp_path) == expected  # computed and written
    assert len(list(tmp_path.glob("interfaces-*.txt"))) == 1
    assert interface_table(tmp_path) == expected  # read back
    assert interface_table(None) == expected


def test_digest_memo_follows_the_file(tmp_path, monkeypatch):
    import hashlib
    import time

    from wasitls.component import compile_cache as cache_module
    from wasitls.component.compile_cache import CompileCache, WasmFile

    cache = CompileCache(tmp_path / "cache")
    path = tmp_path / "guest.wasm"
    path.write_bytes(b"\0asm first")
    with WasmFile(path) as f:
        assert cache.digest(f) == hashlib.sha256(b"\0asm first").hexdigest()
    assert not (tmp_path / "cache" / "digests").exists()  # just written: not settled, not remembered
    monkeypatch.setattr(cache_module, "_SETTLED_NS", -1)
    with WasmFile(path) as f:
        cache.digest(f)
    assert len(list((tmp_path / "cache" / "digests").iterdir())) == 1
    with WasmFile(path) as f:
        monkeypatch.setattr(f, "read", lambda: pytest.fail("a remembered digest must not read the file"))
        assert cache.digest(f) == hashlib.sha256(b"\0asm first").hexdigest()
    time.sleep(0.02)
    path.write_bytes(b"\0asm other")  # same size, same inode: only mtime/ctime tell
    with WasmFile(path) as f:
        assert cache.digest(f) == hashlib.sha256(b"\0asm other").hexdigest()
