"""http_py_handler: a wasi:http/incoming-handler in Python, for `wasitls serve`.

    GET  /                 a greeting naming the method, path, scheme and authority it saw
    POST /echo             the request body streamed back, then a trailer x-received with its length
    POST /splice           the request body streamed back by output-stream.splice: it never enters the
                           guest (componentize-py's bindings keep each list<u8> argument, so a guest
                           that copies 1 GiB through itself grows by 1 GiB, on any host)
    GET  /stream/N         N bytes of the pattern (byte i is i % 251), in 64 KiB writes
    GET  /sleep/MS         answers after MS milliseconds (a request in flight when the server stops)
    GET  /client-cert      the client-cert header the host set (RFC 9440), or "none"
    GET  /trap             traps
    GET  /no-response      returns without setting the response
"""

from wit_world import exports
from wit_world.imports import monotonic_clock, poll, streams
from wit_world.imports import types
from componentize_py_types import Err, Ok

PATTERN = bytes(i % 251 for i in range(251))


def pattern(offset: int, size: int) -> bytes:
    start = offset % 251
    return (PATTERN * ((start + size) // 251 + 1))[start:start + size]


def respond(outparam, status: int, body: bytes, headers=(), trailers=None) -> None:
    response = types.OutgoingResponse(types.Fields.from_list([("content-type", b"text/plain"), *headers]))
    response.set_status_code(status)
    out_body = response.body()
    types.ResponseOutparam.set(outparam, Ok(response))
    stream = out_body.write()
    write_all(stream, body)
    stream.__exit__(None, None, None)
    types.OutgoingBody.finish(out_body, trailers)


def write_all(stream, data: bytes) -> None:
    view = memoryview(data)
    while view:
        permit = stream.check_write()
        if not permit:
            poll.poll([stream.subscribe()])
            continue
        n = min(permit, len(view))
        stream.write(bytes(view[:n]))
        view = view[n:]
    stream.blocking_flush()


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request, response_out) -> None:
        path = request.path_with_query() or "/"
        method = type(request.method()).__name__.removeprefix("Method_").upper()
        if path == "/":
            scheme = request.scheme()
            scheme_name = type(scheme).__name__.removeprefix("Scheme_").lower() if scheme is not None else "-"
            respond(response_out, 200, f"hello from a Python handler: {method} {path} {scheme_name} "
                                       f"{request.authority()}\n".encode())
        elif path == "/echo":
            body = request.consume()
            stream = body.stream()
            response = types.OutgoingResponse(types.Fields.from_list([("content-type", b"application/octet-stream")]))
            out_body = response.body()
            types.ResponseOutparam.set(response_out, Ok(response))
            out = out_body.write()
            total = 0
            while True:
                try:
                    data = stream.blocking_read(1 << 16)
                except Err as e:
                    if isinstance(e.value, streams.StreamError_Closed):
                        break
                    raise
                total += len(data)
                write_all(out, data)
            stream.__exit__(None, None, None)
            types.IncomingBody.finish(body)
            out.__exit__(None, None, None)
            types.OutgoingBody.finish(out_body, types.Fields.from_list([("x-received", str(total).encode())]))
        elif path == "/splice":
            body = request.consume()
            stream = body.stream()
            response = types.OutgoingResponse(types.Fields.from_list([("content-type", b"application/octet-stream")]))
            out_body = response.body()
            types.ResponseOutparam.set(response_out, Ok(response))
            out = out_body.write()
            while True:
                try:
                    out.blocking_splice(stream, 1 << 20)
                except Err as e:
                    if isinstance(e.value, streams.StreamError_Closed):
                        break
                    raise
            stream.__exit__(None, None, None)
            types.IncomingBody.finish(body)
            out.__exit__(None, None, None)
            types.OutgoingBody.finish(out_body, None)
        elif path.startswith("/stream/"):
            size = int(path.split("/")[2])
            response = types.OutgoingResponse(types.Fields.from_list([("content-length", str(size).encode())]))
            out_body = response.body()
            types.ResponseOutparam.set(response_out, Ok(response))
            out = out_body.write()
            chunk = pattern(0, 251 * 256)
            sent = 0
            while sent < size:
                n = min(len(chunk), size - sent)
                write_all(out, chunk[:n])
                sent += n
            out.__exit__(None, None, None)
            types.OutgoingBody.finish(out_body, None)
        elif path.startswith("/sleep/"):
            ms = int(path.split("/")[2])
            print(f"sleeping {ms} ms", flush=True)
            poll.poll([monotonic_clock.subscribe_duration(ms * 1_000_000)])
            respond(response_out, 200, f"slept {ms} ms\n".encode())
        elif path == "/client-cert":
            values = request.headers().get("client-cert")
            respond(response_out, 200, values[0] + b"\n" if values else b"none\n")
        elif path == "/trap":
            raise RuntimeError("this handler traps on purpose")
        elif path == "/no-response":
            return
        else:
            respond(response_out, 404, b"not found\n")
