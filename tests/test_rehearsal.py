"""The acceptance check rehearsed: a stdlib-first guest (tests/guests/rehearsal) on `wasitls run` and on
`wasmtime run`, with each host's own flags, must print the same stdout and stderr and exit alike.

Unlike test_wasi_guests.py (one host per parameter, exact expected text), every case here runs both
hosts and compares them, so a difference shows even where we did not think to write the expectation.
Both hosts are handed a file named `rehearsal.wasm` (wasmtime a precompiled one), so argv[0] agrees.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from guests import wasmtime_precompiled

TIMEOUT = 60
QUIET_ENV = {k: v for k, v in os.environ.items() if k not in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE")}
SRC = str(Path(__file__).resolve().parent.parent / "src")
QUIET_ENV["PYTHONPATH"] = SRC + os.pathsep + QUIET_ENV.get("PYTHONPATH", "")

# The same grant in each host's terms.
NONE = ([], [])
NET = (["-S", "inherit-network,allow-ip-name-lookup"], ["--allow-net", "*", "--allow-listen", "0"])
LISTEN_ONLY = (["-S", "inherit-network"], ["--allow-listen", "0"])


@dataclass
class Guest:
    wasmtime_cmd: list[str]
    wasitls_cmd: list[str]

    def commands(self, args, grant=NONE, dirs=(), env=()):
        extra = []
        for spec in dirs:
            extra += ["--dir", spec]
        for item in env:
            extra += ["--env", item]
        wasmtime_flags, wasitls_flags = grant
        wt = self.wasmtime_cmd[:3] + wasmtime_flags + extra + self.wasmtime_cmd[3:] + list(args)
        wl = self.wasitls_cmd[:-1] + wasitls_flags + extra + self.wasitls_cmd[-1:] + list(args)
        return {"wasmtime": wt, "wasitls": wl}


@pytest.fixture(scope="module")
def guest(build_guest, wasmtime_cli, tmp_path_factory):
    wasm = build_guest("rehearsal")
    cwasm = wasmtime_precompiled(wasmtime_cli, wasm)
    base = tmp_path_factory.mktemp("rehearsal")
    (base / "wasmtime").mkdir()
    (base / "wasitls").mkdir()
    (base / "wasmtime" / "rehearsal.wasm").symlink_to(cwasm)
    (base / "wasitls" / "rehearsal.wasm").symlink_to(wasm)
    g = Guest([str(wasmtime_cli), "run", "--allow-precompiled", str(base / "wasmtime" / "rehearsal.wasm")],
              [sys.executable, "-m", "wasitls", "run", str(base / "wasitls" / "rehearsal.wasm")])
    # The first start compiles the guest and says so on stderr; do that once, outside the comparisons.
    subprocess.run(g.commands(["exit", "normal"])["wasitls"], capture_output=True, env=QUIET_ENV, timeout=300)
    return g


def run_both(guest, args, grant=NONE, dirs=(), env=(), stdin=b"", before_each=None, host_env=None):
    results = {}
    for host, cmd in guest.commands(args, grant, dirs, env).items():
        if before_each is not None:
            before_each(host)
        results[host] = subprocess.run(cmd, input=stdin, capture_output=True, timeout=TIMEOUT,
                                       env={**QUIET_ENV, **(host_env or {})})
    return results["wasmtime"], results["wasitls"]


def same(guest, *args, **kw):
    """Run on both hosts, require identical stdout, stderr and exit status; return wasmtime's."""
    wt, wl = run_both(guest, *args, **kw)
    assert wl.stdout.decode(errors="replace") == wt.stdout.decode(errors="replace")
    assert wl.stderr.decode(errors="replace") == wt.stderr.decode(errors="replace")
    assert wl.returncode == wt.returncode
    return wt


# --- cli -----------------------------------------------------------------------------------------

def test_cli(guest):
    out = same(guest, ["cli", "a", "b c", "", "ünï"], env=["B=2", "A=x=y", "EMPTY="], stdin=b"line1\nline2\n")
    text = out.stdout.decode(errors="replace")
    assert "argv[0] = 'rehearsal.wasm'\n" in text  # the file's name, without its directories
    assert "environ A = 'x=y'\n" in text and "stdin: 12 chars, 2 lines" in text
    assert out.stderr.decode() == "to stderr, line 1\nto stderr, line 2 ünï\n"


def test_env_name_alone_passes_the_hosts_value(guest):
    env = ["FROM_HOST", "NOT_ON_HOST", "DUP=1", "DUP=2"]
    out = same(guest, ["cli"], env=env, host_env={"FROM_HOST": "host value"}).stdout.decode(errors="replace")
    assert "environ FROM_HOST = 'host value'\n" in out and "NOT_ON_HOST" not in out
    assert "environ DUP = '2'\n" in out


@pytest.mark.parametrize("closed", ["stdin", "stdout"])
def test_closed_stdio(guest, closed):
    # A closed stdin reads as empty; output to a closed stdout is dropped (Rust's std does both for wasmtime).
    # Neither may reach a file the host opens later under the freed descriptor number.
    fd = {"stdin": 0, "stdout": 1}[closed]
    results = {}
    for host, cmd in guest.commands(["cli"]).items():
        results[host] = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT,
                                       env=QUIET_ENV, preexec_fn=lambda: os.close(fd))
    wt, wl = results["wasmtime"], results["wasitls"]
    assert (wl.returncode, wl.stdout, wl.stderr) == (wt.returncode, wt.stdout, wt.stderr)
    assert wt.returncode == 0
    if closed == "stdin":
        assert wt.stdout.endswith(b"stdin: 0 chars, 0 lines, first ''\n")
    else:
        assert wt.stdout == b"" and wt.stderr == "to stderr, line 1\nto stderr, line 2 ünï\n".encode()


@pytest.mark.parametrize("how, code, status", [
    ("sys.exit", "0", 0), ("sys.exit", "1", 1), ("sys.exit", "3", 1), ("sys.exit", "256", 1),
    ("sys.exit-str", None, 1), ("os._exit", "7", 1), ("err", None, 1), ("normal", None, 0),
])
def test_exit(guest, how, code, status):
    # componentize-py 0.25.1 has no exit-with-code: any failure is wasi:cli/exit's err, status 1 on both.
    out = same(guest, ["exit", how] + ([code] if code else []))
    assert out.returncode == status


def test_uncaught_exception(guest):
    wt, wl = run_both(guest, ["exit", "raise"])
    assert wl.returncode == wt.returncode == 134
    assert wl.stdout == wt.stdout
    # wasmtime adds its own backtrace after the guest's traceback; the guest's part is the same
    assert wl.stderr.split(b"wasitls: guest trapped")[0] == wt.stderr.split(b"Error: failed to run")[0]


def test_an_error_raised_by_a_host_call_exits_1(guest):
    # blocking-write-and-flush of more than 4096 bytes: wasmtime ends with an error (status 1), not a trap
    wt, wl = run_both(guest, ["exit", "host-error"])
    assert wl.returncode == wt.returncode == 1
    assert wl.stdout == wt.stdout == b"exit via host-error\n"


def test_usage_error(guest):
    assert same(guest, []).returncode == 1


# --- clocks, random ------------------------------------------------------------------------------

def test_time_and_random(guest):
    text = same(guest, ["time-random"]).stdout.decode()
    assert "False" not in text.replace("adjustable -> False", "")


# --- files ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("guest_dir", ["/data", ".", "sub/dir", None])
def test_files(guest, tmp_path, guest_dir):
    root = tmp_path / "root"

    def fresh(host):
        if root.exists():
            subprocess.run(["rm", "-rf", str(root)], check=True)
        root.mkdir()
        (root / "given.txt").write_text("given by the host\n")

    spec = str(root) if guest_dir is None else f"{root}::{guest_dir}"
    out = same(guest, ["files", guest_dir or str(root)], dirs=[spec], before_each=fresh)
    text = out.stdout.decode()
    assert "escape ../ -> PermissionError EPERM" in text
    assert sorted(os.listdir(root)) == ["d", "given.txt", "hard", "ln", "up"]
    assert sorted(os.listdir(tmp_path)) == ["root"]  # nothing escaped


def test_directory_order_is_the_os_order(guest, tmp_path):
    # unsorted, as the OS lists it: a guest printing os.listdir as-is sees the same order on both
    for i in range(40):
        (tmp_path / f"f{(i * 7919) % 1000:03d}").write_text(str(i))
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to("f000")
    out = same(guest, ["ls", "/d"], dirs=[f"{tmp_path}::/d"]).stdout.decode()
    assert out.startswith(f"listdir: {os.listdir(tmp_path)}\n")


def test_files_without_the_preopen(guest):
    out = same(guest, ["files", "/data"])
    assert (out.returncode, out.stdout) == (1, b"listdir at start -> FileNotFoundError ENOENT\n")


# --- sockets -------------------------------------------------------------------------------------

class EchoHash(threading.Thread):
    """Serves one connection per host run: reads to EOF, answers sha256(data) * 5000."""

    def __init__(self, family=socket.AF_INET, address="127.0.0.1"):
        super().__init__(daemon=True)
        self.sock = socket.socket(family)
        self.sock.bind((address, 0))
        self.sock.listen(2)
        self.sock.settimeout(TIMEOUT)
        self.port = self.sock.getsockname()[1]
        self.errors = []

    def run(self):
        for _ in range(2):
            try:
                conn, _ = self.sock.accept()
                with conn:
                    data = b""
                    while chunk := conn.recv(65536):
                        data += chunk
                    conn.sendall(hashlib.sha256(data).digest() * 5000)
            except Exception as e:  # reported by the test
                self.errors.append(e)


@pytest.mark.parametrize("target", ["localhost", "127.0.0.1", "::1"])
def test_tcp_client(guest, target):
    server = EchoHash(socket.AF_INET6, "::1") if target == "::1" else EchoHash()
    server.start()
    text = same(guest, ["client", target, str(server.port)], grant=NET).stdout.decode()
    server.join(TIMEOUT)
    assert not server.errors
    assert text.endswith("reply 160000 bytes sha256 a28cf073ac0f7f85\n")


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_tcp_server(guest, address):
    outputs = {}
    for host, cmd in guest.commands(["server", address], LISTEN_ONLY).items():
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=QUIET_ENV)
        try:
            line = proc.stderr.readline().decode()
            assert line.startswith("PORT "), line
            with socket.create_connection((address, int(line.split()[1])), timeout=TIMEOUT) as conn:
                conn.sendall(b"hello server")
                conn.shutdown(socket.SHUT_WR)
                got = b""
                while chunk := conn.recv(100):
                    got += chunk
            out, err = proc.communicate(timeout=TIMEOUT)
        finally:
            proc.kill()
        outputs[host] = (proc.returncode, got, out.decode(), err.decode())
    assert outputs["wasitls"] == outputs["wasmtime"]
    assert outputs["wasitls"][:2] == (0, b"revres olleh")


def test_lookup(guest):
    names = ["localhost", "LOCALHOST", "127.0.0.1", "::1", "[::1]", "0x7f.1", "nonexistent.invalid", "bad name!", ""]
    text = same(guest, ["lookup", *names], grant=NET).stdout.decode()
    assert "lookup nonexistent.invalid: Err(name-unresolvable)\n" in text
    assert "lookup bad name!: Err(invalid-argument)\n" in text


def test_tcp_both_ends_in_the_guest(guest):
    # wasmtime allows any listen port; --allow-listen names ports, so only a bind of the listener's own
    # port (address-in-use on wasmtime) is refused by our policy first
    wt, wl = run_both(guest, ["self"], grant=(NET[0], ["--allow-net", "127.0.0.1", "--allow-listen", "127.0.0.1:0"]))
    assert wl.returncode == wt.returncode == 0
    assert wl.stderr == wt.stderr == b""
    policy_line = "self: bind the listener's port -> Err({})\n"
    assert wt.stdout.decode().endswith(policy_line.format("address-in-use"))
    assert wl.stdout.decode() == wt.stdout.decode().replace(policy_line.format("address-in-use"),
                                                            policy_line.format("access-denied"))
    assert "self: client read 12000 bytes\n" in wl.stdout.decode()


def test_connection_reset_by_the_peer(guest):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(2)
    server.settimeout(TIMEOUT)

    def reset_each():
        for _ in range(2):
            conn, _ = server.accept()
            conn.recv(10)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    threading.Thread(target=reset_each, daemon=True).start()
    out = same(guest, ["reset", "127.0.0.1", str(server.getsockname()[1])], grant=NET)
    server.close()
    # the debug string is wasmtime's name for the error; a write after the reset finds the stream closed
    assert out.stdout == (b"reset: read -> last-operation-failed\nreset: debug string 'ConnectionReset'\n"
                          b"reset: write -> closed\n")


def test_socket_option_values(guest):
    # defaults as the OS reports them, and what a set value reads back as (rounded, clamped)
    text = same(guest, ["opts"], grant=NET).stdout.decode()
    assert "ipv4 then keep_alive_idle_time -> 2000000000\n" in text  # 1.5 s: whole seconds, rounded up
    assert "ipv4 then keep_alive_count -> 127\n" in text and "Err" not in text


def test_stream_plumbing_zeroes_skip_splice_and_poll(guest):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(2)
    server.settimeout(TIMEOUT)
    reply = b"AB" + b"line of reply text\n" * 300

    def serve_each():
        for _ in range(2):
            conn, _ = server.accept()
            data = b""
            while chunk := conn.recv(100):
                data += chunk
            conn.sendall(reply[:2] + repr(data).encode() + b"\n" + reply[2:])
            conn.close()

    threading.Thread(target=serve_each, daemon=True).start()
    out = same(guest, ["splice", "127.0.0.1", str(server.getsockname()[1])], grant=NET).stdout.decode()
    server.close()
    assert out.startswith("skip 2 -> 2\nb'\\x00\\x00\\x00\\x00\\x00'\nline of reply text\n")
    assert out.endswith("\nsplice ended: closed after 5724 bytes\nsplice from a closed stream -> Err(closed)\n")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connect_to_a_closed_port(guest):
    text = same(guest, ["refused", "127.0.0.1", str(closed_port())], grant=NET).stdout.decode()
    assert text.endswith(": Err(connection-refused)\n")


@pytest.mark.parametrize("address", ["0.0.0.0", "255.255.255.255", "224.0.0.1"])
def test_connect_to_an_unconnectable_address(guest, address):
    assert same(guest, ["refused", address, "80"], grant=NET).stdout.decode().endswith(": Err(invalid-argument)\n")


def test_no_network_at_all(guest):
    # Without a grant, both hosts refuse to make a socket: access-denied from create-tcp-socket.
    port = str(closed_port())
    assert same(guest, ["refused", "127.0.0.1", port]).stdout.decode() == f"connect 127.0.0.1:{port}: Err(access-denied)\n"
    # `bind` makes its socket outside its try: the Err escapes run, which then ends with err, status 1
    out = same(guest, ["bind", "127.0.0.1", "0"])
    assert (out.returncode, out.stdout) == (1, b"")


def test_policy_outside_the_allowed_set(guest):
    """wasmtime cannot grant part of the network, so these are wasitls alone."""
    allowed, other = closed_port(), closed_port()
    cmd = guest.commands(["refused", "127.0.0.1", str(other)], ([], ["--allow-net", f"127.0.0.1:{allowed}"]))
    out = subprocess.run(cmd["wasitls"], capture_output=True, timeout=TIMEOUT, env=QUIET_ENV)
    assert out.stdout.decode() == f"connect 127.0.0.1:{other}: Err(access-denied)\n"
    cmd = guest.commands(["bind", "127.0.0.1", "0"], ([], ["--allow-net", "127.0.0.1"]))
    out = subprocess.run(cmd["wasitls"], capture_output=True, timeout=TIMEOUT, env=QUIET_ENV)
    assert out.stdout.decode() == "bind 127.0.0.1:0: Err(access-denied)\n"
    cmd = guest.commands(["lookup", "localhost"], ([], ["--allow-net", "127.0.0.1"]))
    out = subprocess.run(cmd["wasitls"], capture_output=True, timeout=TIMEOUT, env=QUIET_ENV)
    assert out.stdout.decode() == "lookup localhost: Err(name-unresolvable)\n"
