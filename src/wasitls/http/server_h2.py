"""`wasitls serve` over HTTP/2 (chosen by ALPN): an h2 engine on the connection's byte stream.

The streams of one connection are handled one after another, in the order their requests arrive
(concurrency comes from connections); a request body is read from its stream's flow-control window,
opened only as the guest reads, and a response body waits for the client's window.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import h2.config
import h2.connection
import h2.events as ev
import h2.exceptions
import h2.settings

from ..component.values import Variant
from .server import Exchange, RequestBody, Timeout, block_until
from .transport import ByteStream, HttpError

WINDOW = 1 << 20


class _Stream:
    def __init__(self, headers: list):
        self.headers = headers
        self.data: deque[tuple[bytes, int]] = deque()
        self.ended = False
        self.reset = False
        self.trailers: list = []
        self.received = 0


class H2Server:
    """One connection's h2 engine and what its streams received."""

    def __init__(self, stream: ByteStream, idle_timeout: float):
        self.stream = stream
        self.idle_timeout = idle_timeout
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW,
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
        })
        self.h2.initiate_connection()
        self.streams: dict[int, _Stream] = {}
        self.pending: deque[int] = deque()
        self.closed = False
        self.flush()

    def flush(self) -> None:
        self.stream.send(self.h2.data_to_send())

    def receive(self) -> bool:
        """Reads once; False when nothing came."""
        data = self.stream.recv(1 << 16)
        if data == b"":
            return False
        if data is None:
            self.closed = True
            return True
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            self.flush()
            return True
        for event in events:
            sid = getattr(event, "stream_id", None)
            if isinstance(event, ev.RequestReceived):
                self.streams[sid] = _Stream(list(event.headers))
                self.pending.append(sid)
                if event.stream_ended is not None:
                    self.streams[sid].ended = True
            elif isinstance(event, ev.DataReceived) and sid in self.streams:
                self.streams[sid].data.append((bytes(event.data), event.flow_controlled_length))
            elif isinstance(event, ev.TrailersReceived) and sid in self.streams:
                self.streams[sid].trailers = list(event.headers)
            elif isinstance(event, ev.StreamEnded) and sid in self.streams:
                self.streams[sid].ended = True
            elif isinstance(event, ev.StreamReset) and sid in self.streams:
                self.streams[sid].reset = True
            elif isinstance(event, ev.ConnectionTerminated):
                self.closed = True
        self.flush()
        return True

    def wait_readable(self, deadline: float) -> None:
        block_until(self.stream.readable, lambda: self.stream.wait(for_input=True), deadline)


class H2RequestSource:
    def __init__(self, server: H2Server, sid: int):
        self.server = server
        self.sid = sid
        self.record = server.streams[sid]

    def read_some(self) -> bytes | None:
        record = self.record
        if not record.data and not record.ended and not record.reset:
            self.server.receive()
        if record.data:
            data, flow = record.data.popleft()
            record.received += len(data)
            try:
                self.server.h2.acknowledge_received_data(flow, self.sid)  # the window opens as the guest reads
                self.server.flush()
            except h2.exceptions.ProtocolError:
                pass
            return data
        if record.reset or (self.server.closed and not record.ended):
            raise HttpError(Variant("HTTP-request-body-size", record.received), "the client reset the stream")
        if record.ended:
            return None
        return b""

    def readable(self) -> bool:
        return bool(self.record.data) or self.record.ended or self.server.stream.readable()

    def wait(self) -> Any:
        return self.server.stream.wait(for_input=True)

    def trailers(self) -> list:
        return self.record.trailers


class H2Exchange(Exchange):
    def __init__(self, server: H2Server, sid: int):
        super().__init__(server.stream)
        self.server = server
        self.sid = sid

    def _guard(self, fn: Any, *args: Any, **kw: Any) -> None:
        try:
            fn(*args, **kw)
        except h2.exceptions.StreamClosedError:
            raise HttpError(Variant("connection-terminated"), "the client closed the stream") from None
        except h2.exceptions.ProtocolError as e:
            raise HttpError(Variant("HTTP-protocol-error"), str(e)) from None
        self.server.flush()

    def send_head(self, status: int, headers: list) -> None:
        self.sent_head = True
        wire = [(b":status", str(status).encode()), (b"server", b"wasitls")]
        wire += [(n.lower(), v) for n, v in headers if n.lower() not in (b"connection", b"transfer-encoding",
                                                                         b"keep-alive", b"upgrade")]
        self._guard(self.server.h2.send_headers, self.sid, wire)

    def send_data(self, data: bytes) -> None:
        self.bytes_out += len(data)
        view = memoryview(data)
        h = self.server.h2
        while view:
            try:
                window = min(h.local_flow_control_window(self.sid), h.max_outbound_frame_size)
            except h2.exceptions.StreamClosedError:
                raise HttpError(Variant("connection-terminated"), "the client closed the stream") from None
            if window <= 0:
                # the client's window is shut: read its WINDOW_UPDATE (and anything else) off the wire
                if self.server.closed or self.server.streams[self.sid].reset:
                    raise HttpError(Variant("connection-terminated"), "the client went away")
                self.server.stream.flush_out()
                if not self.server.receive():
                    try:
                        self.server.wait_readable(time.monotonic() + self.server.idle_timeout)
                    except Timeout:
                        raise HttpError(Variant("connection-write-timeout"), "the client stopped reading") from None
                continue
            n = min(window, len(view))
            self._guard(h.send_data, self.sid, bytes(view[:n]))
            view = view[n:]

    def send_end(self, trailers: list) -> None:
        self.ended = True
        if trailers:
            self._guard(self.server.h2.send_headers, self.sid, [(n.lower(), v) for n, v in trailers], end_stream=True)
        else:
            self._guard(self.server.h2.end_stream, self.sid)


def serve_h2(server: Any, stream: ByteStream, peer: Any) -> None:
    conn = H2Server(stream, server.options.idle_timeout)
    while True:
        idle_until = time.monotonic() + server.options.idle_timeout
        while not conn.pending:
            if conn.closed:
                return
            if server.stopping.is_set() or time.monotonic() >= idle_until:
                conn.h2.close_connection()
                conn.flush()
                block_until(lambda: not stream.queued, lambda: stream.wait(for_input=False), time.monotonic() + 2)
                return
            if not conn.receive():
                try:
                    # wake up now and then to notice a shutdown
                    conn.wait_readable(min(time.monotonic() + 0.25, idle_until))
                except Timeout:
                    pass
        sid = conn.pending.popleft()
        record = conn.streams[sid]
        start = time.monotonic()
        pseudo = {n: v for n, v in record.headers if n.startswith(b":")}
        headers = [(n, v) for n, v in record.headers
                   if not n.startswith(b":") and n.lower() not in (b"client-cert", b"client-cert-chain")]
        method = pseudo.get(b":method", b"GET")
        path = pseudo.get(b":path", b"/").decode("latin-1")
        authority = pseudo.get(b":authority")
        exchange = H2Exchange(conn, sid)
        body = RequestBody(H2RequestSource(conn, sid))
        server.run_handler(exchange, method, path, authority.decode("latin-1") if authority else None,
                           headers, body, stream)
        if not exchange.ended:
            try:
                conn.h2.reset_stream(sid)
                conn.flush()
            except h2.exceptions.ProtocolError:
                pass
        conn.streams.pop(sid, None)
        try:
            stream.flush_out()
        except HttpError:
            return
        server._log(peer, f"{method.decode()} {path} HTTP/2", exchange.status or 500, exchange.bytes_out, start)
        server.handlers.refill()
