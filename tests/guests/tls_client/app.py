"""tls_client: an HTTPS GET whose TLS is done by the host through wasi:tls/types@0.2.0-draft.

Usage:
    tls_client HOST PORT PATH [SERVER_NAME]      GET PATH, print status line, body size and sha256
    tls_client raw HOST PORT NBYTES [SERVER_NAME] read NBYTES (or to EOF) after the handshake

A failed handshake prints `handshake failed: <io-error debug string>` and exits through
wasi:cli/exit with err (status 1: componentize-py 0.25.1 cannot import exit-with-code).
"""

import hashlib
import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import environment, exit as wasi_exit
from wit_world.imports import wasi_tls_types as tls

import guestnet
from guestnet import read_chunks, write_all


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
    say(f"handshake ok with {server_name}")
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


def cmd_get(host: str, port: int, path: str, server_name: str) -> None:
    sock, connection, tls_in, tls_out = handshake(host, port, server_name)
    request = f"GET {path} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode()
    write_all(tls_out, request)
    raw = bytearray()
    for chunk in read_chunks(tls_in):
        raw += chunk
    status, headers, body = split_response(raw)
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = dechunk(bytes(body))
    say(f"status: {status}")
    say(f"body bytes: {len(body)}")
    say(f"body sha256: {hashlib.sha256(body).hexdigest()}")
    close(sock, connection, tls_in, tls_out)


def cmd_raw(host: str, port: int, nbytes: int, server_name: str) -> None:
    sock, connection, tls_in, tls_out = handshake(host, port, server_name)
    h = hashlib.sha256()
    count = 0
    for chunk in read_chunks(tls_in, limit=nbytes):
        h.update(chunk)
        count += len(chunk)
    say(f"received bytes: {count}")
    say(f"received sha256: {h.hexdigest()}")
    close(sock, connection, tls_in, tls_out)


def close(sock, connection, tls_in, tls_out) -> None:
    # close-output sends close_notify; the streams go before the connection, the socket last.
    connection.close_output()
    say("close-output done")
    with sock, connection, tls_in, tls_out:
        pass


class Run(exports.Run):
    def run(self) -> None:
        args = environment.get_arguments()[1:]
        if args and args[0] == "raw" and len(args) in (4, 5):
            host, port, nbytes = args[1], int(args[2]), int(args[3])
            cmd_raw(host, port, nbytes, args[4] if len(args) == 5 else host)
        elif len(args) in (3, 4) and args[0] != "raw":
            host, port, path = args[0], int(args[1]), args[2]
            cmd_get(host, port, path, args[3] if len(args) == 4 else host)
        else:
            fail("usage: tls_client HOST PORT PATH [SERVER_NAME] | raw HOST PORT NBYTES [SERVER_NAME]")
