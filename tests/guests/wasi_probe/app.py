"""wasi_probe: one sub-command per part of wasi:cli/imports@0.2.9, printing deterministic lines.

Usage: wasi_probe SUB-COMMAND [ARGS...]; see COMMANDS at the bottom.  Two hosts that implement
WASI alike print the same bytes for the same sub-command.
"""

import hashlib
import os
import sys
import time

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import (
    environment,
    exit as wasi_exit,
    insecure,
    insecure_seed,
    instance_network,
    monotonic_clock,
    network,
    poll,
    preopens,
    random,
    stderr,
    stdin,
    stdout,
    tcp,
    tcp_create_socket,
    terminal_stderr,
    terminal_stdin,
    terminal_stdout,
    udp,
    udp_create_socket,
    wall_clock,
)
from wit_world.imports import types as fs  # named wasi_filesystem_types only when another `types` is imported
from wit_world.imports.network import ErrorCode, IpAddressFamily

import guestnet
from guestnet import code_name, err_name, fmt_ip, fmt_sockaddr, read_chunks, wait, write_all

MS = 1_000_000  # nanoseconds


def say(*parts) -> None:
    print(*parts, flush=True)


def yes(flag: bool) -> str:
    return "yes" if flag else "no"


def attempt(label: str, fn, show=repr):
    """Run fn, print `label: <result>` or `label: error <code>`; return the result or None."""
    try:
        result = fn()
    except Err as e:
        say(f"{label}: error {err_name(e)}")
        return None
    say(f"{label}: {show(result) if show else 'ok'}")
    return result


def exit_now(ok: bool) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    wasi_exit.exit(Ok(None) if ok else Err(None))


# --- wasi:cli ---------------------------------------------------------------------------------

def cmd_args(argv):
    args = environment.get_arguments()
    say(f"argc: {len(args)}")
    for i, arg in enumerate(args[1:], 1):
        say(f"arg {i}: {arg!r}")
    say(f"sys.argv agrees: {yes(sys.argv[1:] == args[1:])}")
    say(f"initial-cwd: {environment.initial_cwd()!r}")


def cmd_env(argv):
    env = environment.get_environment()
    say(f"env count: {len(env)}")
    for key, value in sorted(env):
        say(f"env {key}={value!r}")
    say(f"os.environ agrees: {yes(dict(os.environ) == dict(env))}")


def cmd_stdout_stderr(argv):
    stdout.get_stdout().blocking_write_and_flush(b"stdout via wasi:cli/stdout\n")
    stderr.get_stderr().blocking_write_and_flush(b"stderr via wasi:cli/stderr\n")
    print("stdout via print", flush=True)
    print("stderr via print", file=sys.stderr, flush=True)


def cmd_stdout_bulk(argv):
    # A large write through check-write/write/flush, in a pattern the test can recompute.
    total = int(argv[0])
    pattern = bytes(range(256)) * 256
    out = stdout.get_stdout()
    sent = 0
    while sent < total:
        piece = pattern[: min(len(pattern), total - sent)]
        write_all(out, piece)
        sent += len(piece)


def cmd_terminal(argv):
    for name, getter in (
        ("terminal-stdin", terminal_stdin.get_terminal_stdin),
        ("terminal-stdout", terminal_stdout.get_terminal_stdout),
        ("terminal-stderr", terminal_stderr.get_terminal_stderr),
    ):
        say(f"{name}: {'none' if getter() is None else 'present'}")


def cmd_stdin(argv):
    h = hashlib.sha256()
    count = 0
    if argv and argv[0] == "stdlib":
        data = sys.stdin.buffer.read()
        h.update(data)
        count = len(data)
    else:
        for chunk in read_chunks(stdin.get_stdin()):
            h.update(chunk)
            count += len(chunk)
    say(f"stdin bytes: {count}")
    say(f"stdin sha256: {h.hexdigest()}")


def cmd_exit(argv):
    code = int(argv[0])
    say(f"exiting with {'ok' if code == 0 else 'err'}")
    exit_now(code == 0)
    say("not reached")


def cmd_fail(argv):
    say("returning err from run")
    raise Err(None)


def cmd_trap(argv):
    say("raising an uncaught exception")
    raise RuntimeError("wasi_probe trap on purpose")


# --- wasi:clocks, wasi:random, wasi:io/poll ----------------------------------------------------

def cmd_clocks(argv):
    first = monotonic_clock.now()
    second = monotonic_clock.now()
    say(f"monotonic non-decreasing: {yes(second >= first)}")
    say(f"monotonic resolution > 0: {yes(monotonic_clock.resolution() > 0)}")
    wall = wall_clock.now()
    # 2020-01-01 .. 2100-01-01: a clock outside that is broken, not just skewed.
    say(f"wall-clock plausible: {yes(1577836800 <= wall.seconds < 4102444800 and 0 <= wall.nanoseconds < 10**9)}")
    res = wall_clock.resolution()
    say(f"wall-clock resolution > 0: {yes(res.seconds > 0 or res.nanoseconds > 0)}")
    say(f"time.time agrees: {yes(abs(time.time() - wall.seconds) < 5)}")
    start = monotonic_clock.now()
    wait(monotonic_clock.subscribe_duration(50 * MS))
    say(f"subscribe-duration 50ms blocked >= 50ms: {yes(monotonic_clock.now() - start >= 50 * MS)}")
    deadline = monotonic_clock.now() + 20 * MS
    wait(monotonic_clock.subscribe_instant(deadline))
    say(f"subscribe-instant reached deadline: {yes(monotonic_clock.now() >= deadline)}")
    # poll, not ready(): wasmtime's ready() says no for a timer never polled, even one long past.
    with monotonic_clock.subscribe_instant(0) as past, monotonic_clock.subscribe_duration(10_000 * MS) as far:
        say(f"poll [past instant, 10s] -> {poll.poll([past, far])}")
        past.block()
        say(f"past instant ready after block: {yes(past.ready())}")
    with monotonic_clock.subscribe_duration(10_000 * MS) as far:
        say(f"subscribe-duration 10s ready now: {yes(far.ready())}")


def cmd_random(argv):
    for n in (0, 1, 16, 4096):
        say(f"get-random-bytes {n}: {len(random.get_random_bytes(n))} bytes")
    say(f"get-random-bytes differ: {yes(random.get_random_bytes(32) != random.get_random_bytes(32))}")
    u = random.get_random_u64()
    say(f"get-random-u64: {type(u).__name__} in range {yes(0 <= u < 2**64)}")
    say(f"get-insecure-random-bytes 32: {len(insecure.get_insecure_random_bytes(32))} bytes")
    u = insecure.get_insecure_random_u64()
    say(f"get-insecure-random-u64: {type(u).__name__} in range {yes(0 <= u < 2**64)}")
    seed = insecure_seed.insecure_seed()
    in_range = all(0 <= part < 2**64 for part in seed)
    say(f"insecure-seed: {type(seed).__name__} of {len(seed)} in range {yes(in_range)}")
    say(f"os.urandom 8: {len(os.urandom(8))} bytes")


def cmd_poll(argv):
    with monotonic_clock.subscribe_duration(10_000 * MS) as far, monotonic_clock.subscribe_duration(0) as now:
        say(f"poll [10s, 0s] -> {poll.poll([far, now])}")
        say(f"poll [0s, 0s] -> {poll.poll([now, now])}")
        start = monotonic_clock.now()
        with monotonic_clock.subscribe_duration(50 * MS) as soon:
            ready = poll.poll([far, soon])
        say(f"poll [10s, 50ms] -> {ready} after >= 50ms: {yes(monotonic_clock.now() - start >= 50 * MS)}")
        say(f"10s ready: {yes(far.ready())}")
        out = stdout.get_stdout()
        with out.subscribe() as writable:
            say(f"poll [10s, stdout] -> {poll.poll([far, writable])}")


# --- wasi:filesystem --------------------------------------------------------------------------

RW = fs.DescriptorFlags.READ | fs.DescriptorFlags.WRITE
NOFOLLOW = fs.PathFlags(0)
FOLLOW = fs.PathFlags.SYMLINK_FOLLOW


def show_stat(st) -> str:
    return f"type={code_name(st.type)} size={st.size} links={st.link_count}"


def show_entries(d) -> str:
    entries = []
    with d.read_directory() as stream:
        while (entry := stream.read_directory_entry()) is not None:
            entries.append(f"{entry.name}:{code_name(entry.type)}")
    return " ".join(sorted(entries)) or "(empty)"


def find_preopen(name: str):
    found = None
    for desc, path in preopens.get_directories():
        if path == name:
            found = desc
    return found


def cmd_fs(argv):
    where = argv[0]
    names = sorted(path for _, path in preopens.get_directories())
    say(f"preopens: {' '.join(names)}")
    root = find_preopen(where)
    if root is None:
        say(f"no preopen named {where}")
        exit_now(False)
    say(f"root type: {code_name(root.get_type())}")
    say(f"root flags: {' '.join(sorted(code_name(f) for f in fs.DescriptorFlags if f in root.get_flags()))}")

    f = root.open_at(NOFOLLOW, "a.txt", fs.OpenFlags.CREATE | fs.OpenFlags.TRUNCATE, RW)
    attempt("write a.txt", lambda: f.write(b"hello", 0))
    with f.append_via_stream() as tail:
        write_all(tail, b", world")
    attempt("read a.txt", lambda: f.read(100, 0))
    attempt("read a.txt at 7", lambda: f.read(3, 7))
    attempt("read a.txt past end", lambda: f.read(10, 100))
    attempt("stat a.txt", f.stat, show_stat)
    attempt("stat-at a.txt", lambda: root.stat_at(NOFOLLOW, "a.txt"), show_stat)
    attempt("stat-at .", lambda: root.stat_at(NOFOLLOW, "."), lambda st: f"type={code_name(st.type)}")
    attempt("create a.txt exclusive",
            lambda: root.open_at(NOFOLLOW, "a.txt", fs.OpenFlags.CREATE | fs.OpenFlags.EXCLUSIVE, RW), None)
    attempt("open missing.txt", lambda: root.open_at(NOFOLLOW, "missing.txt", fs.OpenFlags(0), RW), None)
    attempt("set-size a.txt 5", lambda: f.set_size(5), None)
    attempt("read a.txt after set-size", lambda: f.read(100, 0))
    stamp = fs.NewTimestamp_Timestamp(wall_clock.Datetime(1_000_000_000, 5000))
    attempt("set-times a.txt", lambda: f.set_times(stamp, stamp), None)
    attempt("mtime a.txt", lambda: f.stat().data_modification_timestamp.seconds)
    attempt("sync a.txt", f.sync, None)
    attempt("get-type a.txt", f.get_type, code_name)

    attempt("create-directory-at sub", lambda: root.create_directory_at("sub"), None)
    attempt("create-directory-at sub again", lambda: root.create_directory_at("sub"), None)
    g = root.open_at(NOFOLLOW, "sub/b.txt", fs.OpenFlags.CREATE, RW)
    with g.write_via_stream(0) as w:
        write_all(w, b"streamed " * 1000)
    with g.read_via_stream(0) as r:
        data = b"".join(read_chunks(r, 4096))
    say(f"read-via-stream sub/b.txt: {len(data)} bytes sha256 {hashlib.sha256(data).hexdigest()}")
    with g.read_via_stream(8995) as r:
        say(f"read-via-stream sub/b.txt at 8995: {b''.join(read_chunks(r))!r}")
    say(f"readdir .: {show_entries(root)}")
    sub = root.open_at(NOFOLLOW, "sub", fs.OpenFlags.DIRECTORY, fs.DescriptorFlags.READ)
    say(f"readdir sub: {show_entries(sub)}")

    same = root.open_at(NOFOLLOW, "a.txt", fs.OpenFlags(0), fs.DescriptorFlags.READ)
    say(f"metadata-hash same file equal: {yes(f.metadata_hash() == same.metadata_hash())}")
    say(f"metadata-hash-at same file equal: {yes(f.metadata_hash() == root.metadata_hash_at(NOFOLLOW, 'a.txt'))}")
    say(f"metadata-hash different files differ: {yes(f.metadata_hash() != g.metadata_hash())}")
    say(f"is-same-object same file: {yes(f.is_same_object(same))}")
    say(f"is-same-object different files: {yes(f.is_same_object(g))}")

    attempt("rename-at a.txt -> sub/c.txt", lambda: root.rename_at("a.txt", root, "sub/c.txt"), None)
    attempt("rename-at missing", lambda: root.rename_at("a.txt", root, "d.txt"), None)
    say(f"readdir sub: {show_entries(sub)}")
    attempt("link-at sub/c.txt -> hard.txt", lambda: root.link_at(NOFOLLOW, "sub/c.txt", root, "hard.txt"), None)
    attempt("stat-at hard.txt", lambda: root.stat_at(NOFOLLOW, "hard.txt"), show_stat)
    attempt("unlink-file-at hard.txt", lambda: root.unlink_file_at("hard.txt"), None)
    attempt("remove-directory-at sub (not empty)", lambda: root.remove_directory_at("sub"), None)
    attempt("unlink-file-at sub (a directory)", lambda: root.unlink_file_at("sub"), None)
    attempt("unlink-file-at sub/c.txt", lambda: root.unlink_file_at("sub/c.txt"), None)
    attempt("unlink-file-at sub/c.txt again", lambda: root.unlink_file_at("sub/c.txt"), None)
    attempt("stat-at sub/c.txt", lambda: root.stat_at(NOFOLLOW, "sub/c.txt"), show_stat)

    # The sandbox: nothing outside the preopen may be reached, by any spelling.
    attempt("open-at ../escape.txt", lambda: root.open_at(NOFOLLOW, "../escape.txt", fs.OpenFlags.CREATE, RW), None)
    attempt("stat-at ..", lambda: root.stat_at(NOFOLLOW, ".."), show_stat)
    attempt("stat-at sub/../..", lambda: root.stat_at(NOFOLLOW, "sub/../.."), show_stat)
    attempt("open-at /etc/passwd", lambda: root.open_at(NOFOLLOW, "/etc/passwd", fs.OpenFlags(0), fs.DescriptorFlags.READ), None)
    attempt("symlink-at /etc/passwd", lambda: root.symlink_at("/etc/passwd", "abs-link"), None)
    attempt("symlink-at ../outside", lambda: root.symlink_at("../outside", "rel-link"), None)
    attempt("open-at rel-link follow", lambda: root.open_at(FOLLOW, "rel-link", fs.OpenFlags(0), fs.DescriptorFlags.READ), None)
    attempt("symlink-at sub/b.txt", lambda: root.symlink_at("sub/b.txt", "in-link"), None)
    attempt("readlink-at in-link", lambda: root.readlink_at("in-link"))
    attempt("stat-at in-link nofollow", lambda: root.stat_at(NOFOLLOW, "in-link"), lambda st: code_name(st.type))
    attempt("stat-at in-link follow", lambda: root.stat_at(FOLLOW, "in-link"), show_stat)
    attempt("unlink-file-at in-link", lambda: root.unlink_file_at("in-link"), None)
    # host-link is made by the test: a symlink inside the preopen that points outside it.
    attempt("open-at host-link follow", lambda: root.open_at(FOLLOW, "host-link", fs.OpenFlags(0), fs.DescriptorFlags.READ), None)
    attempt("stat-at host-link nofollow", lambda: root.stat_at(NOFOLLOW, "host-link"), lambda st: code_name(st.type))
    attempt("open-at host-link/x follow", lambda: root.open_at(FOLLOW, "host-link/x", fs.OpenFlags(0), fs.DescriptorFlags.READ), None)

    # The same tree through Python's os module, which componentize-py maps onto wasi-libc.
    with open(f"{where}/stdlib.txt", "w") as out:
        out.write("written by open()\n")
    with open(f"{where}/stdlib.txt", "a") as out:
        out.write("appended\n")
    with open(f"{where}/stdlib.txt") as src:
        say(f"stdlib read: {src.read()!r}")
    say(f"stdlib listdir: {sorted(os.listdir(where))}")
    say(f"stdlib stat size: {os.stat(f'{where}/stdlib.txt').st_size}")
    say(f"stdlib isdir sub: {yes(os.path.isdir(f'{where}/sub'))}")
    os.rename(f"{where}/stdlib.txt", f"{where}/sub/stdlib.txt")
    say(f"stdlib listdir sub: {sorted(os.listdir(f'{where}/sub'))}")
    try:
        open(f"{where}/../escape.txt", "w")
        say("stdlib escape: opened")
    except OSError as e:
        say(f"stdlib escape: {type(e).__name__}")

    # Leave one file for the test to read from the host side.
    with root.open_at(NOFOLLOW, "result.txt", fs.OpenFlags.CREATE | fs.OpenFlags.TRUNCATE, RW) as out:
        out.write(b"written by wasi_probe\n", 0)
    say("fs done")


# --- wasi:sockets -----------------------------------------------------------------------------

def cmd_lookup(argv):
    net = instance_network.instance_network()
    try:
        addrs = guestnet.resolve(net, argv[0])
    except Err as e:
        say(f"lookup {argv[0]}: error {err_name(e)}")
        return
    for text in sorted({fmt_ip(a) for a in addrs}):
        say(f"address {text}")


def cmd_tcp_connect(argv):
    host, port, message = argv[0], int(argv[1]), argv[2].encode()
    sock, rx, tx, remote = guestnet.connect(host, port)
    # Leaving the block drops the streams before their socket.
    with sock, rx, tx:
        say(f"connected to {fmt_sockaddr(remote)}")
        say(f"remote-address: {fmt_sockaddr(sock.remote_address())}")
        say(f"address-family: {code_name(sock.address_family())}")
        write_all(tx, message)
        sock.shutdown(tcp.ShutdownType.SEND)
        say(f"sent {len(message)} bytes")
        reply = b"".join(read_chunks(rx))
        say(f"reply bytes: {len(reply)}")
        say(f"reply sha256: {hashlib.sha256(reply).hexdigest()}")
        say(f"reply head: {reply[:80]!r}")


def cmd_tcp_listen(argv):
    net = instance_network.instance_network()
    sock = tcp_create_socket.create_tcp_socket(IpAddressFamily.IPV4)
    sock.start_bind(net, guestnet.sockaddr(network.IpAddress_Ipv4((127, 0, 0, 1)), int(argv[0])))
    sock.finish_bind()
    sock.start_listen()
    sock.finish_listen()
    say(f"is-listening: {yes(sock.is_listening())}")
    # The test reads this line to learn the port when it asked for port 0.
    say(f"listening on {fmt_sockaddr(sock.local_address())}")
    while True:
        try:
            client, rx, tx = sock.accept()
            break
        except Err as e:
            if e.value != ErrorCode.WOULD_BLOCK:
                raise
            wait(sock.subscribe())
    with sock, client, rx, tx:
        say(f"accepted from {fmt_ip(network.IpAddress_Ipv4(client.remote_address().value.address))}")
        got = b"".join(read_chunks(rx))
        say(f"got {len(got)} bytes: {got[:80]!r}")
        write_all(tx, got.upper())
        client.shutdown(tcp.ShutdownType.BOTH)
        say("echoed upper-case and closed")


def cmd_tcp_refused(argv):
    try:
        guestnet.connect(argv[0], int(argv[1]))
    except Err as e:
        say(f"connect error: {err_name(e)}")
        return
    say("connect error: none, connected")


def cmd_udp(argv):
    host, port, message = argv[0], int(argv[1]), argv[2].encode()
    net = instance_network.instance_network()
    ip = guestnet.parse_ip(host) or guestnet.pick_address(guestnet.resolve(net, host))
    sock = udp_create_socket.create_udp_socket(guestnet.family_of(ip))
    unspecified = (network.IpAddress_Ipv4((0, 0, 0, 0)) if guestnet.family_of(ip) == IpAddressFamily.IPV4
                   else network.IpAddress_Ipv6((0,) * 8))
    sock.start_bind(net, guestnet.sockaddr(unspecified, 0))
    sock.finish_bind()
    incoming, outgoing = sock.stream(None)
    remote = guestnet.sockaddr(ip, port)
    with sock, incoming, outgoing:
        while outgoing.check_send() == 0:
            wait(outgoing.subscribe())
        sent = outgoing.send([udp.OutgoingDatagram(message, remote)])
        say(f"sent {sent} datagram of {len(message)} bytes to {fmt_sockaddr(remote)}")
        while not (got := incoming.receive(4)):
            wait(incoming.subscribe())
        for dgram in got:
            say(f"received {dgram.data!r} from {fmt_sockaddr(dgram.remote_address)}")


def cmd_sockopts(argv):
    sock = tcp_create_socket.create_tcp_socket(IpAddressFamily.IPV4)
    say(f"tcp address-family: {code_name(sock.address_family())}")
    say(f"tcp is-listening: {yes(sock.is_listening())}")
    attempt("tcp local-address unbound", sock.local_address, fmt_sockaddr)
    attempt("tcp remote-address unbound", sock.remote_address, fmt_sockaddr)
    attempt("tcp shutdown unconnected", lambda: sock.shutdown(tcp.ShutdownType.BOTH), None)
    attempt("tcp finish-connect not started", sock.finish_connect, None)
    attempt("tcp set-keep-alive-enabled true", lambda: sock.set_keep_alive_enabled(True), None)
    attempt("tcp keep-alive-enabled", sock.keep_alive_enabled)
    attempt("tcp set-keep-alive-enabled false", lambda: sock.set_keep_alive_enabled(False), None)
    attempt("tcp keep-alive-enabled", sock.keep_alive_enabled)
    attempt("tcp set-keep-alive-idle-time 30s", lambda: sock.set_keep_alive_idle_time(30_000 * MS), None)
    attempt("tcp keep-alive-idle-time", sock.keep_alive_idle_time)
    attempt("tcp set-keep-alive-idle-time 0", lambda: sock.set_keep_alive_idle_time(0), None)
    attempt("tcp set-keep-alive-interval 10s", lambda: sock.set_keep_alive_interval(10_000 * MS), None)
    attempt("tcp keep-alive-interval", sock.keep_alive_interval)
    attempt("tcp set-keep-alive-count 5", lambda: sock.set_keep_alive_count(5), None)
    attempt("tcp keep-alive-count", sock.keep_alive_count)
    attempt("tcp set-hop-limit 42", lambda: sock.set_hop_limit(42), None)
    attempt("tcp hop-limit", sock.hop_limit)
    attempt("tcp set-hop-limit 0", lambda: sock.set_hop_limit(0), None)
    attempt("tcp set-receive-buffer-size 65536", lambda: sock.set_receive_buffer_size(65536), None)
    attempt("tcp receive-buffer-size >= 65536", lambda: sock.receive_buffer_size() >= 65536)
    attempt("tcp set-send-buffer-size 65536", lambda: sock.set_send_buffer_size(65536), None)
    attempt("tcp send-buffer-size >= 65536", lambda: sock.send_buffer_size() >= 65536)
    attempt("tcp set-receive-buffer-size 0", lambda: sock.set_receive_buffer_size(0), None)
    attempt("tcp set-listen-backlog-size 0", lambda: sock.set_listen_backlog_size(0), None)
    attempt("tcp set-listen-backlog-size 16", lambda: sock.set_listen_backlog_size(16), None)
    attempt("tcp start-listen unbound", sock.start_listen, None)
    net = instance_network.instance_network()
    v6 = guestnet.sockaddr(network.IpAddress_Ipv6((0,) * 7 + (1,)), 0)
    attempt("tcp start-bind ipv6 address on ipv4 socket", lambda: sock.start_bind(net, v6), None)
    attempt("tcp finish-bind not started", sock.finish_bind, None)

    u = udp_create_socket.create_udp_socket(IpAddressFamily.IPV4)
    say(f"udp address-family: {code_name(u.address_family())}")
    attempt("udp local-address unbound", u.local_address, fmt_sockaddr)
    attempt("udp stream unbound", lambda: u.stream(None), None)
    attempt("udp set-unicast-hop-limit 7", lambda: u.set_unicast_hop_limit(7), None)
    attempt("udp unicast-hop-limit", u.unicast_hop_limit)
    attempt("udp set-unicast-hop-limit 0", lambda: u.set_unicast_hop_limit(0), None)
    attempt("udp set-receive-buffer-size 65536", lambda: u.set_receive_buffer_size(65536), None)
    attempt("udp receive-buffer-size >= 65536", lambda: u.receive_buffer_size() >= 65536)
    attempt("udp set-send-buffer-size 65536", lambda: u.set_send_buffer_size(65536), None)
    attempt("udp send-buffer-size >= 65536", lambda: u.send_buffer_size() >= 65536)


COMMANDS = {
    "args": cmd_args,
    "env": cmd_env,
    "stdout-stderr": cmd_stdout_stderr,
    "stdout-bulk": cmd_stdout_bulk,
    "terminal": cmd_terminal,
    "stdin": cmd_stdin,
    "exit": cmd_exit,
    "fail": cmd_fail,
    "trap": cmd_trap,
    "clocks": cmd_clocks,
    "random": cmd_random,
    "poll": cmd_poll,
    "fs": cmd_fs,
    "lookup": cmd_lookup,
    "tcp-connect": cmd_tcp_connect,
    "tcp-listen": cmd_tcp_listen,
    "tcp-refused": cmd_tcp_refused,
    "udp": cmd_udp,
    "sockopts": cmd_sockopts,
}


class Run(exports.Run):
    def run(self) -> None:
        argv = environment.get_arguments()
        if len(argv) < 2 or argv[1] not in COMMANDS:
            say(f"usage: wasi_probe {{{'|'.join(COMMANDS)}}} [ARGS...]")
            exit_now(False)
        COMMANDS[argv[1]](argv[2:])
