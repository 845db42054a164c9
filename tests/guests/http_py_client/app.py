"""http_py_client: wasi:http/outgoing-handler from Python, every step by hand.

Usage: http_py_client COMMAND ... (several commands may follow each other)
  get URL                 GET; print status, headers x-test/content-type, body length, sha256, trailers
  post URL SIZE           POST SIZE bytes of the pattern (byte i is i % 251) in 64 KiB writes, then the reply
  timeout URL MS          GET with first-byte and between-bytes timeouts of MS milliseconds
  connect-timeout URL MS  GET with a connect timeout
  drop URL                GET, read 1 byte of the body, drop the rest (the connection cannot be reused)
A failure prints `error CASE PAYLOAD` with the error-code the host gave.
"""

import hashlib
import sys
from urllib.parse import urlsplit

from wit_world import exports
from wit_world.imports import environment, outgoing_handler, poll, streams
from wit_world.imports import wasi_http_types as types
from componentize_py_types import Err, Ok


def say(line: str) -> None:
    print(line, flush=True)


def error_text(code) -> str:
    name = type(code).__name__
    value = getattr(code, "value", None)
    if value is None:
        return f"{name}"
    if hasattr(value, "__dict__"):
        inner = ",".join(f"{k}={v!r}" for k, v in sorted(vars(value).items()))
        return f"{name} {inner}"
    return f"{name} {value!r}"


class Failure(Exception):
    def __init__(self, code):
        self.code = code


def request(method, url: str, headers=(), options=None):
    parts = urlsplit(url)
    req = types.OutgoingRequest(types.Fields.from_list([(n, v) for n, v in headers]))
    req.set_method(method)
    req.set_scheme(types.Scheme_Https() if parts.scheme == "https" else types.Scheme_Http())
    req.set_authority(parts.netloc)
    req.set_path_with_query(parts.path + (f"?{parts.query}" if parts.query else ""))
    return req


def send(req, options=None):
    try:
        future = outgoing_handler.handle(req, options)
    except Err as e:
        raise Failure(e.value) from None
    while True:
        got = future.get()
        if got is not None:
            break
        poll.poll([future.subscribe()])
    inner = got.value  # outer result: ok on the first get
    if isinstance(inner, Err):
        raise Failure(inner.value)
    return inner.value


def read_body(response):
    body = response.consume()
    stream = body.stream()
    h, total = hashlib.sha256(), 0
    try:
        while True:
            try:
                data = stream.blocking_read(1 << 16)
            except Err as e:
                if isinstance(e.value, streams.StreamError_Closed):
                    break
                code = types.http_error_code(e.value.value)
                raise Failure(code) from None
            h.update(data)
            total += len(data)
    finally:
        stream.__exit__(None, None, None)
    future = types.IncomingBody.finish(body)
    while (got := future.get()) is None:
        poll.poll([future.subscribe()])
    trailers = got.value
    if isinstance(trailers, Err):
        raise Failure(trailers.value)
    fields = trailers.value
    names = sorted(f"{n}={v.decode()}" for n, v in fields.entries()) if fields is not None else []
    return total, h.hexdigest()[:16], names


def show(response) -> None:
    headers = response.headers()
    wanted = []
    for name in ("content-type", "x-test"):
        values = headers.get(name)
        wanted.append(f"{name}={values[0].decode() if values else '-'}")
    headers.__exit__(None, None, None)
    total, digest, trailers = read_body(response)
    say(f"status {response.status()} {' '.join(wanted)} body {total} sha256 {digest} trailers {trailers}")


def pattern_chunk(offset: int, size: int) -> bytes:
    base = bytes(i % 251 for i in range(251))
    start = offset % 251
    reps = (start + size) // 251 + 1
    return (base * reps)[start:start + size]


def post(url: str, size: int) -> None:
    req = request(types.Method_Post(), url, [("content-type", b"application/octet-stream")])
    body = req.body()
    future_response = None
    out = body.write()
    sent = 0
    try:
        future_response = outgoing_handler.handle(req, None)
    except Err as e:
        raise Failure(e.value) from None
    while sent < size:
        permit = out.check_write()
        if permit == 0:
            poll.poll([out.subscribe()])
            continue
        n = min(permit, size - sent, 1 << 16)
        out.write(pattern_chunk(sent, n))
        sent += n
    out.blocking_flush()
    out.__exit__(None, None, None)
    types.OutgoingBody.finish(body, None)
    while (got := future_response.get()) is None:
        poll.poll([future_response.subscribe()])
    if isinstance(got.value, Err):
        raise Failure(got.value.value)
    show(got.value.value)


class Run(exports.Run):
    def run(self) -> None:
        args = environment.get_arguments()[1:]
        i = 0
        while i < len(args):
            cmd, url = args[i], args[i + 1]
            i += 2
            try:
                if cmd == "get":
                    show(send(request(types.Method_Get(), url)))
                elif cmd == "post":
                    size = int(args[i]); i += 1
                    post(url, size)
                elif cmd in ("timeout", "connect-timeout"):
                    ms = int(args[i]); i += 1
                    options = types.RequestOptions()
                    if cmd == "timeout":
                        options.set_first_byte_timeout(ms * 1_000_000)
                        options.set_between_bytes_timeout(ms * 1_000_000)
                    else:
                        options.set_connect_timeout(ms * 1_000_000)
                    show(send(request(types.Method_Get(), url), options))
                elif cmd == "drop":
                    response = send(request(types.Method_Get(), url))
                    body = response.consume()
                    stream = body.stream()
                    data = stream.blocking_read(1)
                    say(f"status {response.status()} first byte {len(data)}; dropped")
                    stream.__exit__(None, None, None)
                    body.__exit__(None, None, None)
                    response.__exit__(None, None, None)
                else:
                    say(f"unknown command {cmd}")
                    sys.exit(2)
            except Failure as f:
                say(f"error {error_text(f.code)}")
