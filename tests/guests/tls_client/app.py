"""tls_client: an HTTPS GET whose TLS is done by the host through wasi:tls/types@0.2.0-draft.

Usage:
    tls_client HOST PORT PATH [SERVER_NAME]        GET PATH, print status line, body size and sha256
    tls_client raw HOST PORT NBYTES [SERVER_NAME]   read NBYTES (or to the end) after the handshake,
                                                    then say how the stream ended and read once more
    tls_client flood HOST PORT NBYTES [SERVER_NAME] write NBYTES as fast as check-write allows (saying
                                                    once if it stays at 0), close-output, read the reply

With TLS_CLIENT_KEEP=1 in its environment, the guest exits without dropping the connection's resources.

Only wasi:tls/types@0.2.0-draft, wasi:sockets, wasi:io and wasi:clocks: a guest for `wasmtime run -S tls`.

A failed handshake prints `handshake failed: <io-error debug string>` and exits through
wasi:cli/exit with err (status 1: componentize-py 0.25.1 cannot import exit-with-code).
"""

import hashlib
import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import environment, exit as wasi_exit, monotonic_clock, poll, streams
from wit_world.imports import wasi_tls_types as tls

import guestnet
from guestnet import CHUNK, read_chunks, write_all


def say(*parts) -> None:
    print(*parts, flush=True)


def fail(message: str) -> None:
    say(message)
    sys.stdout.flush()
    wasi_exit.exit(Err(None))


def handshake(host: str, port: int, server_name: str):
    """Connect and run the TLS handshake; returns (socket, connection, tls input, tls output)."""
    sock, rx, tx, _ = guestnet.connect(host, port)
    # The handshake takes ownership of the TCP streams; only the socket stays ours.
    future = tls.ClientHandshake.finish(tls.ClientHandshake(server_name, rx, tx))
    with future:
        while (result := future.get()) is None:
            guestnet.wait(future.subscribe())
        if isinstance(result, Err):
            fail("handshake failed: future-client-streams.get called twice")
        outcome = result.value
        if isinstance(outcome, Err):
            with outcome.value as error:
                fail(f"handshake failed: {error.to_debug_string()}")
        connection, tls_in, tls_out = outcome.value
        # The streams are handed out once: a second get is an error, not the same streams again.
        again = future.get()
    say(f"handshake ok with {server_name}")
    say("second get: " + ("error" if isinstance(again, Err) else repr(again)))
    return sock, connection, tls_in, tls_out


def split_response(raw: bytearray) -> tuple[str, dict, memoryview]:
    # A view, not a copy: bodies of 64 MiB are tested.
    head_end = raw.find(b"\r\n\r\n")
    lines = raw[:head_end].decode("iso-8859-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, memoryview(raw)[head_end + 4 :]


def dechunk(body: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        end = body.index(b"\r\n", pos)
        size = int(body[pos:end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += body[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2


def stream_error(e: Err) -> str:
    """How a read or write failed: `closed`, or the io-error's debug string."""
    if isinstance(e.value, streams.StreamError_LastOperationFailed):
        with e.value.value as error:
            return f"error: {error.to_debug_string()}"
    return guestnet.err_name(e)


def read_to_end(rx, limit: int | None = None, into: bytearray | None = None):
    """(byte count, sha256, how it ended): `closed`, `limit`, or `error: <debug string>`."""
    h = hashlib.sha256()
    count = 0
    try:
        for chunk in read_chunks(rx, limit=limit):
            h.update(chunk)
            count += len(chunk)
            if into is not None:
                into += chunk
    except Err as e:
        return count, h.hexdigest(), stream_error(e)
    return count, h.hexdigest(), "limit" if limit is not None and count >= limit else "closed"


def cmd_get(host: str, port: int, path: str, server_name: str) -> None:
    sock, connection, tls_in, tls_out = handshake(host, port, server_name)
    request = f"GET {path} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode()
    write_all(tls_out, request)
    raw = bytearray()
    _, _, end = read_to_end(tls_in, into=raw)
    if end != "closed":
        fail(f"read failed after {len(raw)} bytes: {end}")
    status, headers, body = split_response(raw)
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = dechunk(bytes(body))
    say(f"status: {status}")
    say(f"body bytes: {len(body)}")
    say(f"body sha256: {hashlib.sha256(body).hexdigest()}")
    close(sock, connection, tls_in, tls_out)


def cmd_raw(host: str, port: int, nbytes: int, server_name: str) -> None:
    sock, connection, tls_in, tls_out = handshake(host, port, server_name)
    count, digest, end = read_to_end(tls_in, limit=nbytes)
    say(f"received bytes: {count}")
    say(f"received sha256: {digest}")
    say(f"end: {end}")
    if end != "limit":
        # the end is sticky: another read reports it again and never yields more bytes
        try:
            more = tls_in.read(CHUNK)
            say(f"read after end: {len(more)} bytes")
        except Err as e:
            say(f"read after end: {stream_error(e)}")
    if end.startswith("error"):
        with sock, connection, tls_in, tls_out:
            pass
        return
    close(sock, connection, tls_in, tls_out)


STALL_NS = 500_000_000
PATTERN = bytes(i % 251 for i in range(251 * 261))  # 65511 bytes, period 251


def ready_within(pollable, ns: int) -> bool:
    """Whether `pollable` becomes ready before `ns` nanoseconds pass (both pollables dropped)."""
    timer = monotonic_clock.subscribe_duration(ns)
    with pollable, timer:
        return 0 in poll.poll([pollable, timer])


def cmd_flood(host: str, port: int, nbytes: int, server_name: str) -> None:
    """Write nbytes without waiting for the peer to read; say when check-write holds us back."""
    sock, connection, tls_in, tls_out = handshake(host, port, server_name)
    h = hashlib.sha256()
    sent = 0
    stalled = False
    try:
        while sent < nbytes:
            budget = tls_out.check_write()
            if budget == 0:
                if stalled:
                    guestnet.wait(tls_out.subscribe())
                elif not ready_within(tls_out.subscribe(), STALL_NS):
                    say(f"stalled after {sent} bytes")
                    stalled = True
                continue
            offset = sent % 251
            chunk = PATTERN[offset : offset + min(budget, nbytes - sent, len(PATTERN) - 251)]
            tls_out.write(chunk)
            h.update(chunk)
            sent += len(chunk)
        tls_out.blocking_flush()
    except Err as e:
        say(f"write failed after {sent} bytes: {stream_error(e)}")
        with sock, connection, tls_in, tls_out:
            pass
        return
    say(f"sent bytes: {sent}")
    say(f"sent sha256: {h.hexdigest()}")
    connection.close_output()
    say("close-output done")
    try:
        say(f"check-write after close-output: {tls_out.check_write()}")
    except Err as e:
        say(f"check-write after close-output: {stream_error(e)}")
    reply = bytearray()
    _, _, end = read_to_end(tls_in, into=reply)
    say(f"reply: {reply.decode(errors='replace').strip()}")
    say(f"end: {end}")
    with sock, connection, tls_in, tls_out:
        pass


KEPT = []  # with TLS_CLIENT_KEEP=1 in the environment: resources never dropped, as a careless guest does


def keep_resources() -> bool:
    return ("TLS_CLIENT_KEEP", "1") in environment.get_environment()


def close(sock, connection, tls_in, tls_out) -> None:
    # close-output sends close_notify; the streams go before the connection, the socket last.
    connection.close_output()
    say("close-output done")
    if keep_resources():
        KEPT.append((sock, connection, tls_in, tls_out))
        return
    with sock, connection, tls_in, tls_out:
        pass


class Run(exports.Run):
    def run(self) -> None:
        args = environment.get_arguments()[1:]
        if args and args[0] in ("raw", "flood") and len(args) in (4, 5):
            host, port, nbytes = args[1], int(args[2]), int(args[3])
            command = cmd_raw if args[0] == "raw" else cmd_flood
            command(host, port, nbytes, args[4] if len(args) == 5 else host)
        elif len(args) in (3, 4) and args[0] not in ("raw", "flood"):
            host, port, path = args[0], int(args[1]), args[2]
            cmd_get(host, port, path, args[3] if len(args) == 4 else host)
        else:
            fail("usage: tls_client HOST PORT PATH [SERVER_NAME] | raw|flood HOST PORT NBYTES [SERVER_NAME]")
