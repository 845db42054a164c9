"""Files named on the command line (issue 10, F2): a character device, a FIFO or a directory where a
file is expected, or a file larger than its kind allows, is refused at once with one line and exit 2,
for the component and for every option that names a file; nothing is read without bound."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trustme
import wasmtime

from wasitls import Host, HostError
from wasitls.inputfiles import COMPONENT_LIMIT, CREDENTIAL_LIMIT, InputFileError, open_input, read_bounded

RUN_OK = """
(component
  (core module $m (func (export "run") (result i32) i32.const 0))
  (core instance $i (instantiate $m))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $r (export "run" (func $run)))
  (export "wasi:cli/run@0.2.9" (instance $r)))
"""
# reading /dev/zero for the length of the timeout would take gigabytes; a refusal needs ~60 MiB
MAX_RSS_KIB = 300 * 1024
TIMEOUT = 60


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A runnable component, a key, a certificate, a passphrase file, and the bad inputs: a FIFO (no
    writer ever opens it), a directory, oversized sparse files of each kind."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "ok.wasm").write_bytes(wasmtime.wat2wasm(RUN_OK))
    leaf = trustme.CA().issue_cert("localhost")
    leaf.private_key_pem.write_to_path(str(root / "key.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
    (root / "pass.txt").write_bytes(b"secret\n")
    os.mkfifo(root / "fifo")
    (root / "dir").mkdir()
    for name, size in (("big.wasm", COMPONENT_LIMIT + 1), ("big.pem", CREDENTIAL_LIMIT + 1)):
        with open(root / name, "wb") as f:
            f.truncate(size)  # sparse: costs no disk
    return {p.name: p for p in root.iterdir()}


# Runs the command and prints "status peak-RSS-KiB". A child of this small process, not of pytest: a
# process's peak RSS counts the memory of the process it was forked from, which would be pytest's own.
SPAWN = """
import os, sys, time
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ,
                     file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
deadline = time.monotonic() + float(sys.argv[1])
while not (done := os.wait4(pid, os.WNOHANG))[0]:
    if time.monotonic() > deadline:
        os.kill(pid, 9)
        done = os.wait4(pid, 0)
        break
    time.sleep(0.02)
print(os.waitstatus_to_exitcode(done[1]), done[2].ru_maxrss)
"""


def wasitls(*args: str) -> tuple[int, str, int]:
    """(exit status, stderr, peak RSS in KiB) of `wasitls run --no-cache ARGS` as a program."""
    proc = subprocess.run([sys.executable, "-c", SPAWN, str(TIMEOUT), sys.executable, "-m", "wasitls", "run",
                           "--no-cache", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=TIMEOUT + 30)
    status, rss = proc.stdout.split()
    assert int(status) != -9, f"wasitls {' '.join(args)} still running after {TIMEOUT} s"
    return int(status), proc.stderr, int(rss)


def assert_refused(status: int, stderr: str, rss: int, *needles: str) -> None:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert status == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("wasitls: error: "), stderr
    assert "internal error" not in stderr and "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert rss < MAX_RSS_KIB, f"peak RSS {rss} KiB: the input was read"


BAD = {  # bad input -> what the line says
    "/dev/zero": "not a regular file",
    "fifo": "not a regular file",
    "dir": "directory",
}


def bad_path(files: dict[str, Path], name: str) -> str:
    return name if name.startswith("/") else str(files[name])


@pytest.mark.parametrize("bad", [*BAD, "big.wasm"])
def test_component_must_be_a_regular_file_of_bounded_size(files, bad):
    why = BAD.get(bad, "larger than 1 GiB")
    path = bad_path(files, bad)
    assert_refused(*wasitls(path), path, why)


@pytest.mark.parametrize("bad", [*BAD, "big.pem"])
@pytest.mark.parametrize("option", ["--ca-file", "--client-ca-file"])
def test_ca_files_must_be_regular_files_of_bounded_size(files, option, bad):
    why = BAD.get(bad, "larger than 8 MiB")
    path = bad_path(files, bad)
    assert_refused(*wasitls(option, path, str(files["ok.wasm"])), f"{option} {path}: ", why)


@pytest.mark.parametrize("bad", [*BAD, "big.pem"])
@pytest.mark.parametrize("part", ["key", "cert", "passphrase"])
def test_identity_files_must_be_regular_files_of_bounded_size(files, part, bad):
    why = BAD.get(bad, "larger than 8 MiB")
    path = bad_path(files, bad)
    parts = {"key": str(files["key.pem"]), "cert": str(files["cert.pem"]), "passphrase": str(files["pass.txt"])}
    parts[part] = path
    spec = f"web={parts['key']},{parts['cert']},{parts['passphrase']}"
    assert_refused(*wasitls("--identity", spec, str(files["ok.wasm"])), "identity 'web'", path, why)


def test_good_inputs_still_run(files):
    """The same options with proper files start the guest: what the refusals above refuse is the input."""
    status, stderr, _ = wasitls("--ca-file", str(files["cert.pem"]), "--client-ca-file", str(files["cert.pem"]),
                                "--identity", f"web={files['key.pem']},{files['cert.pem']}", str(files["ok.wasm"]))
    assert status == 0, stderr


# --tls-keylog is written, not read: a regular file, a character device (/dev/null, /dev/stderr) or a
# FIFO someone reads are fine; a directory, or a FIFO nobody reads (the start would hang), are not
@pytest.mark.parametrize("bad, why", [("dir", "directory"), ("fifo", "a FIFO with no reader")])
def test_keylog_refuses_what_cannot_take_lines(files, bad, why):
    path = str(files[bad])
    assert_refused(*wasitls("--tls-keylog", path, str(files["ok.wasm"])), f"--tls-keylog {path}: ", why)


def test_keylog_takes_a_character_device_and_a_read_fifo(files):
    assert wasitls("--tls-keylog", "/dev/null", str(files["ok.wasm"]))[0] == 0
    reader = os.open(files["fifo"], os.O_RDONLY | os.O_NONBLOCK)
    try:
        status, stderr, _ = wasitls("--tls-keylog", str(files["fifo"]), str(files["ok.wasm"]))
    finally:
        os.close(reader)
    assert status == 0, stderr


def test_embedding_api_gets_host_error(files):
    with pytest.raises(HostError, match="/dev/zero: not a regular file"):
        Host(cache=False).run("/dev/zero")
    with pytest.raises(HostError, match="--ca-file /dev/zero: not a regular file"):
        Host(cache=False, ca_file="/dev/zero").run(files["ok.wasm"])
    with pytest.raises(HostError, match="larger than 8 MiB"):
        Host(cache=False, identities={"web": (files["big.pem"], files["cert.pem"])}).run(files["ok.wasm"])


def test_a_file_that_grows_after_it_was_opened_is_refused(tmp_path):
    """The size checked at open is not trusted for the read: never more than the bound is read."""
    path = tmp_path / "growing"
    path.write_bytes(b"x" * 10)
    file, st = open_input(path, 16)
    with file:
        assert st.st_size == 10
        path.write_bytes(b"x" * 17)
        with pytest.raises(InputFileError, match="larger than 16 bytes"):
            read_bounded(file, str(path), 16)
