"""The WASI test guest on three hosts: the wasmtime CLI (proof that the guest and its expected output
are right) and wasitls on each engine, held to the same bytes. That is our WASI conformance check.

Flags are written in wasmtime's terms and translated for wasitls: `-S inherit-network` becomes
`--allow-net 127.0.0.1 --allow-net ::1 --allow-listen 0` (addresses, no names), and with
`allow-ip-name-lookup` `--allow-net '*'`. Where the two policies differ by design, the test says so.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading

import pytest

import sys

from engines import ENGINES
from guests import wasmtime_precompiled

NET = ["-S", "inherit-network,allow-ip-name-lookup"]
TIMEOUT = 60
# With RUST_BACKTRACE set, wasmtime appends a backtrace to every error's debug string.
QUIET_ENV = {k: v for k, v in os.environ.items() if k not in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE")}


HOSTS = ["wasmtime", *(f"wasitls-{engine}" for engine in ENGINES)]


@pytest.fixture(scope="module", params=HOSTS)
def probe(request, build_guest, wasmtime_cli):
    """run(*args, flags=NET, dirs={host: guest}, env={}, stdin=b"") -> CompletedProcess of wasi_probe."""
    wasm = build_guest("wasi_probe")
    if request.param == "wasmtime":
        cwasm = wasmtime_precompiled(wasmtime_cli, wasm)

        def command(args, flags, dirs, env):
            return wasmtime_command(wasmtime_cli, cwasm, args, flags, dirs, env)
    else:
        engine = request.param.split("-", 1)[1]

        def command(args, flags, dirs, env):
            return wasitls_command(engine, wasm, args, flags, dirs, env)

    def run(*args, flags=NET, dirs=None, env=None, stdin=b""):
        return subprocess.run(command(args, flags, dirs, env), input=stdin, capture_output=True, timeout=TIMEOUT,
                              env=QUIET_ENV)

    run.command = lambda *args, flags=NET: command(args, flags, None, None)
    run.host = request.param
    return run


# wasmtime-py 50's component API traps ("BUG: deferred host scope has no call context") before calling
# the host when a function takes two borrowed host resources, e.g. tcp-socket.start-connect(self, network),
# poll(list<borrow<pollable>>), descriptor.rename-at(self, ..., new-descriptor). The reference backend
# reports it as that limitation, naming the function (test_reference_engine_names_the_two_borrow_limitation).
# (test_tcp_denied_without_network is not among them: with no network granted the socket is refused at
# create-tcp-socket, before start-connect.)
TWO_BORROW_CALLS = {"test_clocks", "test_poll", "test_filesystem", "test_tcp_connect", "test_tcp_connect_by_name", "test_tcp_listen", "test_tcp_refused",
                    "test_udp", "test_socket_options"}


@pytest.fixture(autouse=True)
def _reference_engine_two_borrow_bug(request):
    if request.node.originalname in TWO_BORROW_CALLS and "wasitls-reference" in request.node.name:
        request.node.add_marker(pytest.mark.xfail(
            strict=True, reason="wasmtime-py 50 traps on host calls with two borrowed host resources: the reference "
                                "engine refuses them with a line naming the limitation"))


def wasmtime_command(wasmtime, cwasm, args, flags, dirs, env):
    cmd = [str(wasmtime), "run", "--allow-precompiled", *flags]
    for host, guest in (dirs or {}).items():
        cmd += ["--dir", f"{host}::{guest}"]
    for key, value in (env or {}).items():
        cmd += ["--env", f"{key}={value}"]
    return cmd + [str(cwasm), *args]


def wasitls_command(engine, wasm, args, flags, dirs, env):
    cmd = [sys.executable, "-m", "wasitls", "run", "--engine", engine]
    wasi_flags = ",".join(flags[1::2]).split(",") if flags else []
    if "allow-ip-name-lookup" in wasi_flags:
        cmd += ["--allow-net", "*", "--allow-listen", "0"]
    elif "inherit-network" in wasi_flags:  # addresses but no names: loopback by IP only
        cmd += ["--allow-net", "127.0.0.1", "--allow-net", "::1", "--allow-listen", "0"]
    for host, guest in (dirs or {}).items():
        cmd += ["--dir", f"{host}::{guest}"]
    for key, value in (env or {}).items():
        cmd += ["--env", f"{key}={value}"]
    return cmd + [str(wasm), *args]


def lines(*text: str) -> bytes:
    return "".join(f"{line}\n" for line in text).encode()


def ok_output(proc) -> str:
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout.decode()


# --- wasi:cli ---------------------------------------------------------------------------------

def test_args(probe):
    out = ok_output(probe("args", "a", "b c", "", "ünïcode"))
    assert out == lines(
        "argc: 6", "arg 1: 'args'", "arg 2: 'a'", "arg 3: 'b c'", "arg 4: ''", "arg 5: 'ünïcode'",
        "sys.argv agrees: yes", "initial-cwd: None",
    ).decode()


def test_env(probe):
    out = ok_output(probe("env", env={"ZED": "last", "EMPTY": "", "A_VAR": "x=y", "UNI": "ü"}))
    assert out == lines(
        "env count: 4", "env A_VAR='x=y'", "env EMPTY=''", "env UNI='ü'", "env ZED='last'", "os.environ agrees: yes",
    ).decode()


def test_stdout_and_stderr(probe):
    proc = probe("stdout-stderr")
    assert proc.returncode == 0
    assert proc.stdout == lines("stdout via wasi:cli/stdout", "stdout via print")
    assert proc.stderr == lines("stderr via wasi:cli/stderr", "stderr via print")


def test_stdout_bulk(probe):
    total = 3_000_017
    proc = probe("stdout-bulk", str(total))
    assert proc.returncode == 0
    pattern = bytes(range(256)) * 256
    assert proc.stdout == (pattern * (total // len(pattern) + 1))[:total]


def test_terminal_is_absent_on_pipes(probe):
    assert ok_output(probe("terminal")) == lines(
        "terminal-stdin: none", "terminal-stdout: none", "terminal-stderr: none").decode()


@pytest.mark.parametrize("mode", ["raw", "stdlib"])
@pytest.mark.parametrize("size", [0, 5, 3 * 1024 * 1024 + 7])
def test_stdin(probe, mode, size):
    data = os.urandom(size)
    args = ["stdin"] + (["stdlib"] if mode == "stdlib" else [])
    assert ok_output(probe(*args, stdin=data)) == lines(
        f"stdin bytes: {size}", f"stdin sha256: {hashlib.sha256(data).hexdigest()}").decode()


@pytest.mark.parametrize("code, status, word", [(0, 0, "ok"), (3, 1, "err")])
def test_exit(probe, code, status, word):
    # wasi:cli/exit takes only ok/err (exit-with-code is unstable and absent from componentize-py 0.25.1).
    proc = probe("exit", str(code))
    assert (proc.returncode, proc.stdout) == (status, lines(f"exiting with {word}"))


def test_run_returning_err_exits_1(probe):
    proc = probe("fail")
    assert (proc.returncode, proc.stdout) == (1, lines("returning err from run"))


def test_uncaught_exception_traps(probe):
    proc = probe("trap")
    assert proc.stdout == lines("raising an uncaught exception")
    # wasmtime reports a trap as 128 + SIGABRT, not as a guest's exit status.
    assert proc.returncode == 134
    stderr = proc.stderr.decode(errors="replace")
    assert "RuntimeError: wasi_probe trap on purpose" in stderr
    assert "wasm trap: wasm `unreachable` instruction executed" in stderr


def test_usage_on_unknown_command(probe):
    proc = probe("no-such-command")
    assert proc.returncode == 1
    assert proc.stdout.startswith(b"usage: wasi_probe {args|env|")


# --- wasi:clocks, wasi:random, wasi:io/poll ----------------------------------------------------

def test_clocks(probe):
    assert ok_output(probe("clocks")) == lines(
        "monotonic non-decreasing: yes",
        "monotonic resolution > 0: yes",
        "wall-clock plausible: yes",
        "wall-clock resolution > 0: yes",
        "time.time agrees: yes",
        "subscribe-duration 50ms blocked >= 50ms: yes",
        "subscribe-instant reached deadline: yes",
        "poll [past instant, 10s] -> [0]",
        "past instant ready after block: yes",
        "subscribe-duration 10s ready now: no",
    ).decode()


def test_random(probe):
    assert ok_output(probe("random")) == lines(
        "get-random-bytes 0: 0 bytes",
        "get-random-bytes 1: 1 bytes",
        "get-random-bytes 16: 16 bytes",
        "get-random-bytes 4096: 4096 bytes",
        "get-random-bytes differ: yes",
        "get-random-u64: int in range yes",
        "get-insecure-random-bytes 32: 32 bytes",
        "get-insecure-random-u64: int in range yes",
        "insecure-seed: tuple of 2 in range yes",
        "os.urandom 8: 8 bytes",
    ).decode()


def test_poll(probe):
    assert ok_output(probe("poll")) == lines(
        "poll [10s, 0s] -> [1]",
        "poll [0s, 0s] -> [0, 1]",
        "poll [10s, 50ms] -> [1] after >= 50ms: yes",
        "10s ready: no",
        "poll [10s, stdout] -> [1]",
    ).decode()


# --- wasi:filesystem --------------------------------------------------------------------------

FS_EXPECTED = lines(
    "preopens: /data",
    "root type: directory",
    "root flags: mutate-directory read",
    "write a.txt: 5",
    "read a.txt: (b'hello, world', False)",
    "read a.txt at 7: (b'wor', False)",
    "read a.txt past end: (b'', True)",
    "stat a.txt: type=regular-file size=12 links=1",
    "stat-at a.txt: type=regular-file size=12 links=1",
    "stat-at .: type=directory",
    "create a.txt exclusive: error exist",
    "open missing.txt: error no-entry",
    "set-size a.txt 5: ok",
    "read a.txt after set-size: (b'hello', False)",
    "set-times a.txt: ok",
    "mtime a.txt: 1000000000",
    "sync a.txt: ok",
    "get-type a.txt: regular-file",
    "create-directory-at sub: ok",
    "create-directory-at sub again: error exist",
    "read-via-stream sub/b.txt: 9000 bytes sha256 " + hashlib.sha256(b"streamed " * 1000).hexdigest(),
    "read-via-stream sub/b.txt at 8995: b'amed '",
    "readdir .: a.txt:regular-file host-link:symbolic-link sub:directory",
    "readdir sub: b.txt:regular-file",
    "metadata-hash same file equal: yes",
    "metadata-hash-at same file equal: yes",
    "metadata-hash different files differ: yes",
    "is-same-object same file: yes",
    "is-same-object different files: no",
    "rename-at a.txt -> sub/c.txt: ok",
    "rename-at missing: error no-entry",
    "readdir sub: b.txt:regular-file c.txt:regular-file",
    "link-at sub/c.txt -> hard.txt: ok",
    "stat-at hard.txt: type=regular-file size=5 links=2",
    "unlink-file-at hard.txt: ok",
    "remove-directory-at sub (not empty): error not-empty",
    "unlink-file-at sub (a directory): error is-directory",
    "unlink-file-at sub/c.txt: ok",
    "unlink-file-at sub/c.txt again: error no-entry",
    "stat-at sub/c.txt: error no-entry",
    "open-at ../escape.txt: error not-permitted",
    "stat-at ..: error not-permitted",
    "stat-at sub/../..: error not-permitted",
    "open-at /etc/passwd: error not-permitted",
    "symlink-at /etc/passwd: error not-permitted",
    "symlink-at ../outside: ok",
    "open-at rel-link follow: error not-permitted",
    "symlink-at sub/b.txt: ok",
    "readlink-at in-link: 'sub/b.txt'",
    "stat-at in-link nofollow: symbolic-link",
    "stat-at in-link follow: type=regular-file size=9000 links=1",
    "unlink-file-at in-link: ok",
    "open-at host-link follow: error not-permitted",
    "stat-at host-link nofollow: symbolic-link",
    "open-at host-link/x follow: error not-permitted",
    "stdlib read: 'written by open()\\nappended\\n'",
    "stdlib listdir: ['host-link', 'rel-link', 'stdlib.txt', 'sub']",
    "stdlib stat size: 27",
    "stdlib isdir sub: yes",
    "stdlib listdir sub: ['b.txt', 'stdlib.txt']",
    "stdlib escape: PermissionError",
    "fs done",
)


def test_filesystem(probe, tmp_path):
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    (outside / "x").mkdir(parents=True)
    (outside / "x" / "secret.txt").write_text("must stay unreadable")
    (root / "host-link").symlink_to(outside)

    proc = probe("fs", "/data", dirs={root: "/data"})
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert proc.stdout == FS_EXPECTED

    # What the guest did is visible from the host, and nothing leaked outside the preopen.
    assert (root / "result.txt").read_text() == "written by wasi_probe\n"
    assert (root / "sub" / "b.txt").read_bytes() == b"streamed " * 1000
    assert (root / "sub" / "stdlib.txt").read_text() == "written by open()\nappended\n"
    assert os.readlink(root / "rel-link") == "../outside"
    assert sorted(p.name for p in root.iterdir()) == ["host-link", "rel-link", "result.txt", "sub"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside", "root"]


def test_filesystem_without_the_preopen(probe):
    proc = probe("fs", "/data")
    assert (proc.returncode, proc.stdout) == (1, lines("preopens: ", "no preopen named /data"))


# --- wasi:sockets -----------------------------------------------------------------------------

class Server(threading.Thread):
    """A one-connection loopback server running `handle(conn)` in a thread."""

    def __init__(self, handle, kind=socket.SOCK_STREAM):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            self.sock.listen(1)
        self.sock.settimeout(TIMEOUT)
        self.port = self.sock.getsockname()[1]
        self.handle = handle
        self.received = None
        self.error = None

    def run(self):
        try:
            if self.sock.type == socket.SOCK_STREAM:
                conn, _ = self.sock.accept()
                with conn:
                    self.received = self.handle(conn)
            else:
                self.received = self.handle(self.sock)
        except Exception as exc:  # surfaced by the test through .error
            self.error = exc
        finally:
            self.sock.close()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:  # the test failed already (an xfail on the reference engine): don't wait for a peer
            return
        self.join(TIMEOUT)
        assert self.error is None, self.error


def recv_to_eof(conn) -> bytes:
    parts = []
    while chunk := conn.recv(65536):
        parts.append(chunk)
    return b"".join(parts)


def test_lookup_localhost_matches_the_host_resolver(probe):
    expected = sorted({info[4][0] for info in socket.getaddrinfo("localhost", None)})
    assert ok_output(probe("lookup", "localhost")) == lines(*(f"address {a}" for a in expected)).decode()


@pytest.mark.parametrize("name, expected", [
    ("127.0.0.1", "address 127.0.0.1"),
    ("::1", "address ::1"),
    ("nonexistent.invalid", "lookup nonexistent.invalid: error name-unresolvable"),
    ("bad name!", "lookup bad name!: error invalid-argument"),
])
def test_lookup(probe, name, expected):
    assert ok_output(probe("lookup", name)) == lines(expected).decode()


def test_lookup_denied_without_permission(probe):
    out = ok_output(probe("lookup", "localhost", flags=["-S", "inherit-network"]))
    # wasmtime refuses all lookups this way; wasitls refuses a name its policy does not allow by name
    code = "permanent-resolver-failure" if probe.host == "wasmtime" else "name-unresolvable"
    assert out == lines(f"lookup localhost: error {code}").decode()


def test_tcp_connect(probe):
    payload = os.urandom(1024 * 1024 + 3)

    def handle(conn):
        got = recv_to_eof(conn)
        conn.sendall(b"echo:" + got + payload)
        return got

    with Server(handle) as server:
        out = ok_output(probe("tcp-connect", "127.0.0.1", str(server.port), "hello from the guest"))
    reply = b"echo:hello from the guest" + payload
    assert server.received == b"hello from the guest"
    assert out == lines(
        f"connected to 127.0.0.1:{server.port}",
        f"remote-address: 127.0.0.1:{server.port}",
        "address-family: ipv4",
        "sent 20 bytes",
        f"reply bytes: {len(reply)}",
        f"reply sha256: {hashlib.sha256(reply).hexdigest()}",
        f"reply head: {reply[:80]!r}",
    ).decode()


def test_tcp_connect_by_name(probe):
    with Server(lambda conn: conn.sendall(b"hi " + recv_to_eof(conn))) as server:
        out = ok_output(probe("tcp-connect", "localhost", str(server.port), "x"))
    assert f"connected to 127.0.0.1:{server.port}\n" in out
    assert "reply head: b'hi x'\n" in out


def test_tcp_listen(probe):
    proc = subprocess.Popen(probe.command("tcp-listen", "0"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=QUIET_ENV)
    try:
        assert proc.stdout.readline() == b"is-listening: yes\n"
        listening = proc.stdout.readline().decode()
        assert listening.startswith("listening on 127.0.0.1:")
        port = int(listening.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
            conn.sendall(b"shout this back")
            conn.shutdown(socket.SHUT_WR)
            echoed = recv_to_eof(conn)
        rest, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode(errors="replace")
    assert echoed == b"SHOUT THIS BACK"
    assert rest == lines("accepted from 127.0.0.1", "got 15 bytes: b'shout this back'", "echoed upper-case and closed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tcp_refused(probe):
    assert ok_output(probe("tcp-refused", "127.0.0.1", str(free_port()))) == lines(
        "connect error: connection-refused").decode()


def test_tcp_denied_without_network(probe):
    assert ok_output(probe("tcp-refused", "127.0.0.1", str(free_port()), flags=[])) == lines(
        "connect error: access-denied").decode()


def test_udp(probe):
    def handle(sock):
        data, peer = sock.recvfrom(65536)
        sock.sendto(data.upper(), peer)
        return data

    with Server(handle, socket.SOCK_DGRAM) as server:
        out = ok_output(probe("udp", "127.0.0.1", str(server.port), "ping"))
    assert server.received == b"ping"
    assert out == lines(
        f"sent 1 datagram of 4 bytes to 127.0.0.1:{server.port}",
        f"received b'PING' from 127.0.0.1:{server.port}",
    ).decode()


def test_socket_options(probe):
    assert ok_output(probe("sockopts")) == lines(
        "tcp address-family: ipv4",
        "tcp is-listening: no",
        "tcp local-address unbound: error invalid-state",
        "tcp remote-address unbound: error invalid-state",
        "tcp shutdown unconnected: error invalid-state",
        "tcp finish-connect not started: error not-in-progress",
        "tcp set-keep-alive-enabled true: ok",
        "tcp keep-alive-enabled: True",
        "tcp set-keep-alive-enabled false: ok",
        "tcp keep-alive-enabled: False",
        "tcp set-keep-alive-idle-time 30s: ok",
        "tcp keep-alive-idle-time: 30000000000",
        "tcp set-keep-alive-idle-time 0: error invalid-argument",
        "tcp set-keep-alive-interval 10s: ok",
        "tcp keep-alive-interval: 10000000000",
        "tcp set-keep-alive-count 5: ok",
        "tcp keep-alive-count: 5",
        "tcp set-hop-limit 42: ok",
        "tcp hop-limit: 42",
        "tcp set-hop-limit 0: error invalid-argument",
        "tcp set-receive-buffer-size 65536: ok",
        "tcp receive-buffer-size >= 65536: True",
        "tcp set-send-buffer-size 65536: ok",
        "tcp send-buffer-size >= 65536: True",
        "tcp set-receive-buffer-size 0: error invalid-argument",
        "tcp set-listen-backlog-size 0: error invalid-argument",
        "tcp set-listen-backlog-size 16: ok",
        "tcp start-listen unbound: error invalid-state",
        "tcp start-bind ipv6 address on ipv4 socket: error invalid-argument",
        "tcp finish-bind not started: error not-in-progress",
        "udp address-family: ipv4",
        "udp local-address unbound: error invalid-state",
        "udp stream unbound: error invalid-state",
        "udp set-unicast-hop-limit 7: ok",
        "udp unicast-hop-limit: 7",
        "udp set-unicast-hop-limit 0: error invalid-argument",
        "udp set-receive-buffer-size 65536: ok",
        "udp receive-buffer-size >= 65536: True",
        "udp set-send-buffer-size 65536: ok",
        "udp send-buffer-size >= 65536: True",
    ).decode()


# --- tls_client: wasmtime's wasi:tls trusts only its built-in roots -------------------------------

def test_tls_client_rejects_a_local_ca_on_wasmtime(build_guest, wasmtime_cli):
    trustme = pytest.importorskip("trustme", reason="pip install trustme")
    import ssl

    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)

    def handle(conn):
        try:
            with context.wrap_socket(conn, server_side=True):
                pass
        except ssl.SSLError:  # the client aborts the handshake, which is the point
            pass

    cwasm = wasmtime_precompiled(wasmtime_cli, build_guest("tls_client"))
    with Server(handle) as server:
        proc = subprocess.run(
            wasmtime_command(wasmtime_cli, cwasm, ["localhost", str(server.port), "/"], ["-S", "tls", *NET], None, None),
            capture_output=True, timeout=TIMEOUT, env=QUIET_ENV)
    out = proc.stdout.decode()
    assert proc.returncode == 1, proc.stderr.decode(errors="replace")
    assert out == "handshake failed: invalid peer certificate: UnknownIssuer\n"


@pytest.mark.skipif("reference" not in ENGINES, reason="the reference engine is not among the tested engines")
@pytest.mark.parametrize("args, flags, function", [
    (["poll"], [], "wasi:io/poll@0.2.9#poll"),
    (["tcp-connect", "127.0.0.1", "9", "x"], ["--allow-net", "127.0.0.1"],
     "wasi:sockets/tcp@0.2.9#[method]tcp-socket.start-connect"),
])
def test_reference_engine_names_the_two_borrow_limitation(build_guest, args, flags, function):
    """What the xfails above hit: one line naming the function and the limitation, not wasmtime's
    "this is a bug" page."""
    proc = subprocess.run([sys.executable, "-m", "wasitls", "run", "--engine", "reference", *flags,
                           str(build_guest("wasi_probe")), *args], capture_output=True, text=True, timeout=TIMEOUT,
                          env=QUIET_ENV)
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1, proc.stderr
    assert err == [f"wasitls: guest trapped: {function}: the reference engine (wasmtime-py "
                   f"{wasmtime_version()}'s component API) cannot make host calls that borrow two resources; "
                   "use the fast engine (--engine fast)"], proc.stderr


def wasmtime_version() -> str:
    from wasitls.component.wasmtime_capi import WASMTIME_VERSION

    return WASMTIME_VERSION
