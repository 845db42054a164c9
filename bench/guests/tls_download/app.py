"""tls_download: GET a file over wasi:tls/types@0.2.0-draft and count its bytes (no hashing in wasm).

Usage: tls_download HOST PORT PATH [BLOCK]
Reads the response with blocking-read calls of BLOCK bytes (default 1 MiB) until the stream closes,
then prints `status: ...`, `body bytes: N` and `seconds: T`, T measured on wasi:clocks/monotonic-clock
from before the TCP connect to the end of the body (process start-up excluded).
"""

import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import environment, exit as wasi_exit, monotonic_clock, streams
from wit_world.imports import wasi_tls_types as tls

import guestnet


def fail(message: str) -> None:
    print(message, flush=True)
    wasi_exit.exit(Err(None))


def download(host: str, port: int, path: str, block: int) -> None:
    started = monotonic_clock.now()
    sock, rx, tx, _ = guestnet.connect(host, port)
    future = tls.ClientHandshake.finish(tls.ClientHandshake(host, rx, tx))
    with future:
        while (result := future.get()) is None:
            guestnet.wait(future.subscribe())
    outcome = result.value
    if isinstance(outcome, Err):
        with outcome.value as error:
            fail(f"handshake failed: {error.to_debug_string()}")
    connection, tls_in, tls_out = outcome.value
    guestnet.write_all(tls_out, f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    head = b""  # the response until its header ends; after that only lengths are kept
    status = None
    body = 0
    read = tls_in.blocking_read
    while True:
        try:
            chunk = read(block)
        except Err as e:
            if isinstance(e.value, streams.StreamError_Closed):
                break
            raise
        if status is None:
            head += chunk
            end = head.find(b"\r\n\r\n")
            if end >= 0:
                status = head[: head.find(b"\r\n")].decode("latin-1")
                body = len(head) - end - 4
                head = b""
        else:
            body += len(chunk)
    seconds = (monotonic_clock.now() - started) / 1e9
    print(f"status: {status}")
    print(f"body bytes: {body}")
    print(f"seconds: {seconds:.6f}", flush=True)
    connection.close_output()
    with sock, connection, tls_in, tls_out:
        pass


class Run(exports.Run):
    def run(self) -> None:
        args = environment.get_arguments()[1:]
        if len(args) not in (3, 4):
            fail("usage: tls_download HOST PORT PATH [BLOCK]")
        download(args[0], int(args[1]), args[2], int(args[3]) if len(args) == 4 else 1 << 20)
        sys.stdout.flush()
