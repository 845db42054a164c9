"""The socket extension for preview-1 modules, against real loopback peers: TCP and UDP both ways,
non-blocking connect, an accept loop, getaddrinfo, and the policy's refusals (EACCES for a connect,
bind or send it does not allow; a name it does not allow resolves to nothing)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest

from wasitls.devtools.preview1_build import build_c

EACCES, ECONNREFUSED = 2, 14
TIMEOUT = 30


@pytest.fixture(scope="module")
def socktool():
    return build_c("socktool", sdk=True)


def wasitls(module, *args, policy=()):
    return [sys.executable, "-m", "wasitls", "run", *policy, str(module), *args]


def run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    return proc.returncode, proc.stdout, proc.stderr


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ReverseServer(threading.Thread):
    """Answers each TCP connection with what it received, reversed, after the client's FIN."""

    def __init__(self, family=socket.AF_INET, host="127.0.0.1"):
        super().__init__(daemon=True)
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen()
        self.sock.settimeout(TIMEOUT)
        self.port = self.sock.getsockname()[1]

    def run(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
            conn.sendall(data[::-1])

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.sock.close()


@pytest.mark.parametrize("family, host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_tcp_client(socktool, family, host):
    with ReverseServer(family, host) as server:
        code, out, err = run(wasitls(socktool, "echo-client", host, str(server.port), "hello, peer",
                                     policy=("--allow-net", f"[{host}]:{server.port}" if ":" in host else
                                             f"{host}:{server.port}")))
    assert code == 0, err
    assert f"peer {host} {server.port}" in out
    assert 'reply: 11 bytes, first line "reep ,olleh"' in out and "end eof" in out


def test_tcp_server_accept_loop(socktool):
    port = free_port()
    proc = subprocess.Popen(wasitls(socktool, "server", "127.0.0.1", str(port), "3",
                                    policy=("--allow-listen", f"127.0.0.1:{port}")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "bind: ok\n"
        assert proc.stdout.readline() == "listen: ok\n"
        for message in (b"one", b"two two", b"x" * 100_000):
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as c:
                c.sendall(message)
                c.shutdown(socket.SHUT_WR)
                got = b""
                while chunk := c.recv(65536):
                    got += chunk
            assert got == message.upper()
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert out.count("accept: ok") == 3 and "served 100000 bytes" in out


def test_udp_both_ways(socktool):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(TIMEOUT)
        port = peer.getsockname()[1]

        def answer():
            data, addr = peer.recvfrom(2048)
            peer.sendto(data.upper(), addr)
        t = threading.Thread(target=answer, daemon=True)
        t.start()
        code, out, err = run(wasitls(socktool, "udp", "127.0.0.1", str(port), "ping",
                                     policy=("--allow-net", f"127.0.0.1:{port}")))
        t.join(TIMEOUT)
    assert code == 0, err
    assert f'datagram "PING" from port {port}' in out

    port = free_port(socket.SOCK_DGRAM)
    proc = subprocess.Popen(wasitls(socktool, "udp-server", "127.0.0.1", str(port),
                                    policy=("--allow-listen", f"127.0.0.1:{port}", "--allow-net", "127.0.0.1")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "bind: ok\n"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(TIMEOUT)
            c.sendto(b"hey", ("127.0.0.1", port))
            assert c.recvfrom(100)[0] == b"HEY"
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert "sendto: ok" in out, err


def test_nonblocking_connect(socktool):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        code, out, err = run(wasitls(socktool, "nonblocking-connect", "127.0.0.1", str(port),
                                     policy=("--allow-net", "127.0.0.1")))
    assert code == 0, err
    assert out.splitlines()[0] in ("connect: ok", "connect: in progress")
    assert "so_error: 0" in out and "nonblocking read: EAGAIN" in out
    # nobody listening: the refusal is the connect's own result or SO_ERROR's
    code, out, err = run(wasitls(socktool, "nonblocking-connect", "127.0.0.1", str(free_port()),
                                 policy=("--allow-net", "127.0.0.1")))
    assert out.splitlines()[0] == "connect: failed" or f"so_error: {ECONNREFUSED}" in out


def test_socket_options(socktool):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        code, out, err = run(wasitls(socktool, "options", "127.0.0.1", str(listener.getsockname()[1]),
                                     policy=("--allow-net", "127.0.0.1")))
    assert out.splitlines() == ["keepalive: ok", "keepalive now 1", "nodelay: ok", "nodelay now 1", "rcvbuf: ok",
                                "rcvbuf at least asked 1", "type stream 1", "wrong size: errno 28",
                                "unknown: errno 50"], out + err


def test_getaddrinfo_of_localhost(socktool):
    code, out, err = run(wasitls(socktool, "resolve", "localhost", policy=("--allow-net", "localhost")))
    assert code == 0, err
    assert "address 127.0.0.1 port 80" in out or "address ::1 port 80" in out


@pytest.mark.parametrize("case", ["connect", "bind", "bind udp", "sendto", "lookup"])
def test_the_policy_refuses(socktool, case):
    """Nothing is allowed by default: each attempt fails with its documented errno, never performed."""
    port = free_port()
    with socket.create_server(("127.0.0.1", port)) as listener:
        listener.settimeout(0.5)
        args = {"connect": ["connect", "127.0.0.1", str(port)], "bind": ["bind", "127.0.0.1", str(free_port())],
                "bind udp": ["bind", "127.0.0.1", str(free_port()), "udp"],
                "sendto": ["sendto", "127.0.0.1", str(port)], "lookup": ["resolve", "localhost"]}[case]
        code, out, err = run(wasitls(socktool, *args, policy=("--allow-net", "192.0.2.1:1")))
        if case == "connect":
            with pytest.raises(TimeoutError):
                listener.accept()  # the connect was never made
    if case == "lookup":
        assert "getaddrinfo: name does not resolve" in out
    else:
        assert f": errno {EACCES}" in out, out


V1_PROBE = """(module
  (import "wasi_snapshot_preview1" "sock_open" (func $open (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_bind" (func $bind (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_accept" (func $accept (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_getlocaladdr" (func $local (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  ;; the V1 address at 100: {buf 200, buf_len 4}; 127.0.0.1 at 200
  (data (i32.const 100) "\\c8\\00\\00\\00\\04\\00\\00\\00")
  (data (i32.const 200) "\\7f\\00\\00\\01")
  (func (export "_start")
    (if (call $open (i32.const 1) (i32.const 2) (i32.const 0)) (then (call $exit (i32.const 10))))
    (if (call $bind (i32.load (i32.const 0)) (i32.const 100) (i32.const PORT)) (then (call $exit (i32.const 11))))
    (if (call $local (i32.load (i32.const 0)) (i32.const 100) (i32.const 300) (i32.const 304))
      (then (call $exit (i32.const 12))))
    ;; exit 0 only if: the address type is INET (1), the octets 127.0.0.1, the port ours
    (if (i32.ne (i32.load (i32.const 300)) (i32.const 1)) (then (call $exit (i32.const 13))))
    (if (i32.ne (i32.load (i32.const 200)) (i32.const 0x0100007f)) (then (call $exit (i32.const 14))))
    (if (i32.ne (i32.load (i32.const 304)) (i32.const PORT)) (then (call $exit (i32.const 15))))
    (call $exit (i32.const 0))))
"""


def test_v1_dialect_is_chosen_from_the_import_signatures(tmp_path):
    """sock_accept with 2 parameters and sock_getlocaladdr with 4 make the module V1: raw 4-byte
    addresses and an address-type out parameter."""
    import wasmtime

    port = free_port()
    module = tmp_path / "v1.wasm"
    module.write_bytes(wasmtime.wat2wasm(V1_PROBE.replace("PORT", str(port))))
    code, out, err = run(wasitls(module, policy=("--allow-listen", f"127.0.0.1:{port}")))
    assert (code, err) == (0, "")
