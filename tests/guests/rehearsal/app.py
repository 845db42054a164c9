"""rehearsal: a guest written like a third party's, mostly plain Python stdlib.

Each step prints one line that does not depend on the host (no ports, times or random values), so
two hosts that implement WASI alike print the same bytes.  Usage: rehearsal STEP [ARGS...].
"""

import datetime
import errno
import hashlib
import io
import ipaddress
import os
import random as pyrandom
import secrets
import sys
import time
import uuid

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import instance_network, ip_name_lookup, network, poll, streams, tcp, tcp_create_socket
from wit_world.imports import monotonic_clock, udp_create_socket
from wit_world.imports import stdout as wasi_stdout


def out(line):
    print(line)
    sys.stdout.flush()


def step(label, fn):
    """Print `label -> value` or `label -> ExceptionName [errno name]`."""
    try:
        value = fn()
    except Err as e:
        out(f"{label} -> Err({wit_name(e.value)})")
        return None
    except Exception as e:
        code = getattr(e, "errno", None)
        extra = f" {errno.errorcode.get(code, code)}" if code is not None else ""
        out(f"{label} -> {type(e).__name__}{extra}")
        return None
    out(f"{label} -> {value!r}" if value is not None else f"{label} -> ok")
    return value


def wit_name(value):
    if value is None:
        return "none"
    if isinstance(value, streams.StreamError_Closed):
        return "closed"
    if isinstance(value, streams.StreamError_LastOperationFailed):
        return "last-operation-failed"
    return value.name.lower().replace("_", "-")


# --- cli -----------------------------------------------------------------------------------------

def cli(args):
    out(f"argv[1:] = {sys.argv[1:]!r}")
    out(f"argv[0] = {sys.argv[0]!r}")
    for key in sorted(os.environ):
        out(f"environ {key} = {os.environ[key]!r}")
    out(f"getenv MISSING = {os.getenv('MISSING', '<default>')!r}")
    out(f"cwd = {os.getcwd()!r}")
    print("to stderr, line 1", file=sys.stderr)
    sys.stderr.write("to stderr, line 2 ünï\n")
    sys.stderr.flush()
    sys.stdout.write("partial line, ")
    sys.stdout.write("finished\n")
    sys.stdout.buffer.write(b"raw bytes \xff\xfe\n")
    sys.stdout.flush()
    out(f"stdin isatty: {sys.stdin.isatty()}  stdout isatty: {sys.stdout.isatty()}")
    data = sys.stdin.read()
    out(f"stdin: {len(data)} chars, {data.count(chr(10))} lines, first {data[:20]!r}")


def time_and_random(args):
    t = time.time()
    out(f"time.time in 2020..2100: {1577836800 < t < 4102444800}")
    out(f"time.time_ns agrees: {abs(time.time_ns() / 1e9 - t) < 2}")
    now = datetime.datetime.now(datetime.timezone.utc)
    out(f"datetime.now year plausible: {2020 <= now.year < 2100}")
    out(f"gmtime agrees: {time.gmtime(t).tm_year == now.year}")
    m1 = time.monotonic()
    time.sleep(0.05)
    m2 = time.monotonic()
    out(f"sleep(0.05) took >= 0.05s by monotonic: {m2 - m1 >= 0.049}")
    p1 = time.perf_counter_ns()
    p2 = time.perf_counter_ns()
    out(f"perf_counter non-decreasing: {p2 >= p1}")
    step("monotonic clock info adjustable", lambda: time.get_clock_info("monotonic").adjustable)
    step("process_time is float", lambda: isinstance(time.process_time(), float))
    out(f"os.urandom(0..5) lengths: {[len(os.urandom(n)) for n in range(6)]}")
    out(f"os.urandom(64) differs: {os.urandom(64) != os.urandom(64)}")
    out(f"secrets.token_hex(16) length: {len(secrets.token_hex(16))}")
    out(f"uuid4 version: {uuid.uuid4().version}")
    r = pyrandom.Random()
    out(f"random.random in [0,1): {0 <= r.random() < 1}")
    out(f"SystemRandom.getrandbits(200) < 2**200: {pyrandom.SystemRandom().getrandbits(200) < 2**200}")
    rng = pyrandom.Random(1234)
    out(f"seeded random is deterministic: {rng.randint(0, 10**9)}")


# --- files ---------------------------------------------------------------------------------------

def files(args):
    root = args[0]
    j = lambda *p: os.path.join(root, *p)  # noqa: E731
    if step("listdir at start", lambda: sorted(os.listdir(root))) is None:
        sys.exit(1)
    step("read given.txt", lambda: open(j("given.txt")).read())
    step("stat given.txt size", lambda: os.stat(j("given.txt")).st_size)
    step("isdir root", lambda: os.path.isdir(root))
    with open(j("notes.txt"), "w", encoding="utf-8") as f:
        f.write("alpha\nbeta\n")
    with open(j("notes.txt"), "a", encoding="utf-8") as f:
        f.write("gamma ü\n")
    step("readlines notes.txt", lambda: open(j("notes.txt"), encoding="utf-8").readlines())
    step("size notes.txt", lambda: os.path.getsize(j("notes.txt")))
    with open(j("notes.txt"), "r+b") as f:
        f.seek(6)
        f.write(b"BETA")
        f.seek(0, io.SEEK_END)
        out(f"seek end tell: {f.tell()}")
        f.seek(0)
        out(f"after r+b: {f.read()!r}")
        f.truncate(5)
    step("after truncate", lambda: open(j("notes.txt"), "rb").read())
    blob = bytes(range(256)) * 4099
    with open(j("blob.bin"), "wb") as f:
        f.write(blob)
    with open(j("blob.bin"), "rb") as f:
        got = f.read()
    out(f"blob roundtrip: {len(got)} bytes, equal {got == blob}")
    step("mkdir d", lambda: os.mkdir(j("d")))
    step("mkdir d again", lambda: os.mkdir(j("d")))
    step("makedirs d/e/f", lambda: os.makedirs(j("d", "e", "f")))
    step("rename notes.txt -> d/notes.txt", lambda: os.rename(j("notes.txt"), j("d", "notes.txt")))
    step("replace blob.bin -> d/e/blob.bin", lambda: os.replace(j("blob.bin"), j("d", "e", "blob.bin")))
    step("rename missing", lambda: os.rename(j("nope"), j("nope2")))
    step("exists notes.txt", lambda: os.path.exists(j("notes.txt")))
    walked = []
    for dirpath, dirnames, filenames in os.walk(root):
        walked.append((os.path.relpath(dirpath, root), sorted(dirnames), sorted(filenames)))
    out(f"walk: {sorted(walked)}")
    step("scandir d", lambda: sorted((e.name, e.is_dir(), e.is_file()) for e in os.scandir(j("d"))))
    step("utime + mtime", lambda: (os.utime(j("given.txt"), (1_000_000, 2_000_000)), int(os.stat(j("given.txt")).st_mtime))[1])
    step("remove d/notes.txt", lambda: os.remove(j("d", "notes.txt")))
    step("remove d/notes.txt again", lambda: os.remove(j("d", "notes.txt")))
    step("remove d (a dir)", lambda: os.remove(j("d")))
    step("rmdir d (not empty)", lambda: os.rmdir(j("d")))
    step("rmdir d/e/f", lambda: os.rmdir(j("d", "e", "f")))
    step("open dir for reading", lambda: open(j("d")).read())
    step("listdir given.txt", lambda: os.listdir(j("given.txt")))
    step("open x/y in a file", lambda: open(j("given.txt", "y")))
    step("open missing", lambda: open(j("missing.txt")))
    step("exclusive create given.txt", lambda: open(j("given.txt"), "x"))
    step("symlink + readlink", lambda: (os.symlink("given.txt", j("ln")), os.readlink(j("ln")))[1])
    step("read through symlink", lambda: open(j("ln")).read())
    step("islink", lambda: os.path.islink(j("ln")))
    step("lstat is link", lambda: os.lstat(j("ln")).st_size > 0)
    step("hard link nlink", lambda: (os.link(j("given.txt"), j("hard")), os.stat(j("hard")).st_nlink)[1])
    step("escape ../", lambda: open(j("..", "escape.txt"), "w"))
    step("escape listdir ..", lambda: os.listdir(j("..")))
    step("escape absolute /etc/passwd", lambda: open("/etc/passwd").read())
    step("escape symlink to /etc", lambda: (os.symlink("/etc", j("etc")), os.listdir(j("etc")))[1])
    step("escape symlink ../..", lambda: (os.symlink("../..", j("up")), os.listdir(j("up")))[1])
    out(f"listdir at end: {sorted(os.listdir(root))}")


def listing(args):
    """Directory order as the host hands it out (not sorted), by two stdlib paths."""
    out(f"listdir: {os.listdir(args[0])}")
    out(f"scandir: {[(e.name, e.is_dir(follow_symlinks=False), e.is_symlink()) for e in os.scandir(args[0])]}")


# --- net (raw wasi:sockets bindings) -------------------------------------------------------------

def block_on(pollable):
    try:
        poll.poll([pollable])
    finally:
        pollable.__exit__(None, None, None)


def fmt_addr(sa):
    v = sa.value
    if isinstance(sa, network.IpSocketAddress_Ipv4):
        return ".".join(map(str, v.address))
    return ":".join(f"{x:x}" for x in v.address)


def to_ip(text):
    ipaddress.ip_address(text)  # ValueError for a name
    if ":" in text:
        packed = ipaddress.IPv6Address(text).packed
        return network.IpAddress_Ipv6(tuple(int.from_bytes(packed[i:i + 2], "big") for i in range(0, 16, 2)))
    return network.IpAddress_Ipv4(tuple(int(x) for x in text.split(".")))


def sockaddr(ip, port):
    if isinstance(ip, network.IpAddress_Ipv4):
        return network.IpSocketAddress_Ipv4(network.Ipv4SocketAddress(port, ip.value))
    return network.IpSocketAddress_Ipv6(network.Ipv6SocketAddress(port, 0, ip.value, 0))


def lookup(name):
    net = instance_network.instance_network()
    stream = ip_name_lookup.resolve_addresses(net, name)
    found = []
    while True:
        try:
            a = stream.resolve_next_address()
        except Err as e:
            if e.value == network.ErrorCode.WOULD_BLOCK:
                block_on(stream.subscribe())
                continue
            raise
        if a is None:
            break
        found.append(a)
    return found


def family(ip):
    return network.IpAddressFamily.IPV4 if isinstance(ip, network.IpAddress_Ipv4) else network.IpAddressFamily.IPV6


def connect(ip, port):
    net = instance_network.instance_network()
    s = tcp_create_socket.create_tcp_socket(family(ip))
    s.start_connect(net, sockaddr(ip, port))
    while True:
        try:
            rx, tx = s.finish_connect()
            return s, rx, tx
        except Err as e:
            if e.value != network.ErrorCode.WOULD_BLOCK:
                raise
            block_on(s.subscribe())


def send(tx, data):
    while data:
        n = tx.check_write()
        if n == 0:
            block_on(tx.subscribe())
            continue
        tx.write(data[:n])
        data = data[n:]
    tx.flush()
    block_on(tx.subscribe())


def recv_all(rx):
    parts = []
    while True:
        try:
            chunk = rx.read(65536)
        except Err as e:
            if isinstance(e.value, streams.StreamError_Closed):
                return b"".join(parts)
            raise
        if chunk:
            parts.append(chunk)
        else:
            block_on(rx.subscribe())


def net_lookup(args):
    for name in args:
        try:
            addrs = lookup(name)
        except Err as e:
            out(f"lookup {name}: Err({wit_name(e.value)})")
            continue
        out(f"lookup {name}: {[fmt_addr(sockaddr(a, 0)) for a in addrs]}")


def net_client(args):
    """Look the server up by name, connect, send, half-close, read to EOF."""
    host, port = args[0], int(args[1])
    try:
        addrs = [to_ip(host)]
    except ValueError:  # a name: look it up, take the first IPv4 address
        addrs = [a for a in lookup(host) if isinstance(a, network.IpAddress_Ipv4)]
    s, rx, tx = connect(addrs[0], port)
    out(f"connected, remote {fmt_addr(s.remote_address())}, local {fmt_addr(s.local_address())}")
    out(f"keep-alive default: {s.keep_alive_enabled()}")
    payload = b"".join(i.to_bytes(4, "big") for i in range(100_000))
    send(tx, payload)
    s.shutdown(tcp.ShutdownType.SEND)
    reply = recv_all(rx)
    out(f"reply {len(reply)} bytes sha256 {hashlib.sha256(reply).hexdigest()[:16]}")
    rx.__exit__(None, None, None)
    tx.__exit__(None, None, None)
    s.__exit__(None, None, None)


def net_server(args):
    """Listen on an ephemeral loopback port, print it on stderr, serve one connection."""
    net = instance_network.instance_network()
    ip = to_ip(args[0] if args else "127.0.0.1")
    s = tcp_create_socket.create_tcp_socket(family(ip))
    s.start_bind(net, sockaddr(ip, 0))
    s.finish_bind()
    s.start_listen()
    s.finish_listen()
    port = s.local_address().value.port
    print(f"PORT {port}", file=sys.stderr, flush=True)
    out(f"listening: {s.is_listening()}")
    while True:
        try:
            client, rx, tx = s.accept()
            break
        except Err as e:
            if e.value != network.ErrorCode.WOULD_BLOCK:
                raise
            block_on(s.subscribe())
    out(f"accepted from {fmt_addr(client.remote_address())}, same local port: {client.local_address().value.port == port}")
    data = recv_all(rx)
    out(f"server got {data!r}")
    send(tx, data[::-1])
    client.shutdown(tcp.ShutdownType.BOTH)
    out("server done")


def net_refused(args):
    """A connect the host or the peer refuses."""
    ip, port = to_ip(args[0]), int(args[1])
    try:
        connect(ip, port)
        out("connect: ok?!")
    except Err as e:
        out(f"connect {args[0]}:{port}: Err({wit_name(e.value)})")


def net_bind(args):
    net = instance_network.instance_network()
    s = tcp_create_socket.create_tcp_socket(network.IpAddressFamily.IPV4)
    try:
        s.start_bind(net, sockaddr(to_ip(args[0]), int(args[1])))
        s.finish_bind()
        out("bind: ok")
    except Err as e:
        out(f"bind {args[0]}:{args[1]}: Err({wit_name(e.value)})")


def net_self(args):
    """Both ends in the guest: listen, connect to ourselves, accept, talk both ways, over poll lists."""
    net = instance_network.instance_network()
    lst = tcp_create_socket.create_tcp_socket(network.IpAddressFamily.IPV4)
    lst.start_bind(net, sockaddr(to_ip("127.0.0.1"), 0))
    lst.finish_bind()
    lst.start_listen()
    lst.finish_listen()
    port = lst.local_address().value.port
    cli = tcp_create_socket.create_tcp_socket(network.IpAddressFamily.IPV4)
    cli.start_connect(net, sockaddr(to_ip("127.0.0.1"), port))
    accepted = connected = None
    rounds = 0
    while accepted is None or connected is None:
        rounds += 1
        pollables = []
        if accepted is None:
            pollables.append(lst.subscribe())
        if connected is None:
            pollables.append(cli.subscribe())
        ready = poll.poll(pollables)
        for p in pollables:
            p.__exit__(None, None, None)
        out_ready = sorted(set(ready))
        if accepted is None:
            try:
                accepted = lst.accept()
            except Err as e:
                if e.value != network.ErrorCode.WOULD_BLOCK:
                    raise
        if connected is None:
            try:
                connected = cli.finish_connect()
            except Err as e:
                if e.value != network.ErrorCode.WOULD_BLOCK:
                    raise
    out(f"self: accepted and connected, poll said ready indexes are valid: {all(0 <= i < 2 for i in out_ready)}")
    srv_sock, srv_rx, srv_tx = accepted
    cli_rx, cli_tx = connected
    out(f"self: server sees client port == client local port: "
        f"{srv_sock.remote_address().value.port == cli.local_address().value.port}")
    cli_tx.blocking_write_and_flush(b"ping")
    out(f"self: server read {srv_rx.blocking_read(100)!r}")
    for _ in range(3):
        srv_tx.blocking_write_and_flush(b"pong" * 1000)
    got = b""
    while len(got) < 12000:
        got += cli_rx.blocking_read(65536)
    out(f"self: client read {len(got)} bytes")
    step("self: read with nothing pending", lambda: cli_rx.read(10))
    cli.shutdown(tcp.ShutdownType.SEND)
    step("self: server read after client shut down", lambda: srv_rx.blocking_read(10))
    step("self: server skip after close", lambda: srv_rx.skip(10))
    step("self: shutdown receive", lambda: srv_sock.shutdown(tcp.ShutdownType.RECEIVE))
    step("self: accept again, nothing pending", lambda: lst.accept())
    step("self: second listen", lambda: lst.start_listen())
    step("self: bind a bound socket", lambda: lst.start_bind(net, sockaddr(to_ip("127.0.0.1"), 0)))
    step("self: connect a listener", lambda: lst.start_connect(net, sockaddr(to_ip("127.0.0.1"), port)))
    again = tcp_create_socket.create_tcp_socket(network.IpAddressFamily.IPV4)
    step("self: bind the listener's port", lambda: (again.start_bind(net, sockaddr(to_ip("127.0.0.1"), port)),
                                                     again.finish_bind()))


def net_reset(args):
    """The peer resets the connection: what reads and writes then report."""
    s, rx, tx = connect(to_ip(args[0]), int(args[1]))
    tx.blocking_write_and_flush(b"x")
    try:
        while True:
            data = rx.blocking_read(100)
            out(f"reset: read {data!r}")
    except Err as e:
        v = e.value
        out(f"reset: read -> {wit_name(v)}")
        if isinstance(v, streams.StreamError_LastOperationFailed):
            out(f"reset: debug string {v.value.to_debug_string()!r}")
    for i in range(50):
        try:
            n = tx.check_write()
            tx.write(b"y" * min(n, 1000))
            tx.blocking_flush()
        except Err as e:
            v = e.value
            out(f"reset: write -> {wit_name(v)}")
            if isinstance(v, streams.StreamError_LastOperationFailed):
                out(f"reset: debug string {v.value.to_debug_string()!r}")
            break


def net_splice(args):
    """Stream plumbing: zeroes and a splice to the peer, the reply spliced straight onto stdout."""
    s, rx, tx = connect(to_ip(args[0]), int(args[1]))
    tx.blocking_write_zeroes_and_flush(3)
    while tx.check_write() == 0:
        block_on(tx.subscribe())
    tx.write_zeroes(2)
    tx.blocking_flush()
    s.shutdown(tcp.ShutdownType.SEND)
    step("skip 2", lambda: rx.blocking_skip(2))
    out_stream = wasi_stdout.get_stdout()
    total = 0
    while True:
        timer = monotonic_clock.subscribe_duration(5_000_000_000)
        readable = rx.subscribe()
        ready = poll.poll([timer, readable])
        timer.__exit__(None, None, None)
        readable.__exit__(None, None, None)
        if ready == [0]:
            out("timed out")
            break
        try:
            total += out_stream.splice(rx, 1000)
        except Err as e:
            out_stream.blocking_flush()
            print(f"\nsplice ended: {wit_name(e.value)} after {total} bytes", flush=True)
            break
    step("splice from a closed stream", lambda: out_stream.blocking_splice(rx, 10))


def net_opts(args):
    """Socket option values as the host reports them (defaults, and after setting)."""
    for fam in (network.IpAddressFamily.IPV4, network.IpAddressFamily.IPV6):
        s = tcp_create_socket.create_tcp_socket(fam)
        name = wit_name(fam)
        for opt in ("keep_alive_enabled", "keep_alive_idle_time", "keep_alive_interval", "keep_alive_count",
                    "hop_limit", "receive_buffer_size", "send_buffer_size"):
            step(f"{name} default {opt}", getattr(s, opt))
        for opt, value in (("receive_buffer_size", 65536), ("send_buffer_size", 100000), ("receive_buffer_size", 1),
                           ("keep_alive_idle_time", 1_500_000_000), ("keep_alive_interval", 999_999_999),
                           ("keep_alive_count", 300), ("hop_limit", 255), ("keep_alive_idle_time", 2**63 - 1)):
            if step(f"{name} set {opt} {value}", lambda: getattr(s, "set_" + opt)(value)) is None:
                step(f"{name} then {opt}", getattr(s, opt))
        step(f"{name} set listen backlog 1000000", lambda: s.set_listen_backlog_size(1000000))
        u = udp_create_socket.create_udp_socket(fam)
        for opt in ("unicast_hop_limit", "receive_buffer_size", "send_buffer_size"):
            step(f"{name} udp default {opt}", getattr(u, opt))


def stdlib_socket(args):
    """What the stdlib socket module does on this build (componentize-py's CPython)."""
    try:
        import socket
    except Exception as e:
        out(f"import socket: {type(e).__name__}")
        return
    step("getaddrinfo localhost", lambda: sorted({i[4][0] for i in socket.getaddrinfo("localhost", 80, socket.AF_INET)}))
    if args:
        def talk():
            with socket.create_connection((args[0], int(args[1])), timeout=10) as c:
                c.sendall(b"stdlib hello")
                c.shutdown(socket.SHUT_WR)
                return c.recv(100)
        step("create_connection", talk)


# --- exit ----------------------------------------------------------------------------------------

def exiting(args):
    how = args[0]
    out(f"exit via {how}")
    print("stderr before exit", file=sys.stderr)
    if how == "sys.exit":
        sys.exit(int(args[1]))
    if how == "sys.exit-str":
        sys.exit("a message for stderr")
    if how == "os._exit":
        sys.stdout.flush()
        os._exit(int(args[1]))
    if how == "host-error":  # a broken precondition: more than blocking-write-and-flush may take
        wasi_stdout.get_stdout().blocking_write_and_flush(b"x" * 5000)
    if how == "raise":
        raise ValueError("uncaught")
    if how == "err":
        raise Err(None)
    out("returning normally")


STEPS = {
    "cli": cli, "ls": listing, "time-random": time_and_random, "files": files, "lookup": net_lookup, "client": net_client,
    "server": net_server, "refused": net_refused, "bind": net_bind, "stdlib-socket": stdlib_socket,
    "self": net_self, "opts": net_opts, "splice": net_splice, "reset": net_reset, "exit": exiting,
}


class Run(exports.Run):
    def run(self):
        if len(sys.argv) < 2 or sys.argv[1] not in STEPS:
            print(f"usage: rehearsal {'|'.join(STEPS)} ...", file=sys.stderr)
            sys.exit(2)
        STEPS[sys.argv[1]](sys.argv[2:])
