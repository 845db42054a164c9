"""The HTTP client under wasi:http/outgoing-handler: exchanges over HTTP/1.1 (h11) or HTTP/2 (h2),
on byte streams from transport.py, with a bounded keep-alive pool per origin.

Nothing here blocks: each `progress()` moves what can move now, and `wait_on()` says what to wait
for, so wasi:io/poll waits on many requests at once. Backpressure both ways: a request body is taken
from the guest only while the connection's outbound queue is short, and response bytes are read from
the network only while the guest's unread body is short (HTTP/2: per-stream flow control windows,
opened as the guest reads).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable

import h11

from ..component.values import Variant
from ..wasi.io.poll import Wait
from . import errors
from .transport import OUT_LIMIT, ByteStream, Dial, HttpError, Origin

BODY_HOLD = 1 << 16  # request body held back before the head goes out: under it, an exact content-length
RESPONSE_BUFFER = 1 << 18  # response body read ahead of the guest
MAX_IDLE_PER_ORIGIN = 4
MAX_IDLE = 32
H2_WINDOW = 1 << 20  # per-stream receive window: what a server may send ahead of the guest's reads
ACK_STEP = 1 << 17  # read bytes gathered into one WINDOW_UPDATE
_NO_BODY_METHODS = {b"GET", b"HEAD", b"DELETE", b"OPTIONS", b"TRACE", b"CONNECT"}


class RequestHead:
    def __init__(self, method: bytes, target: bytes, authority: str, scheme: str, headers: list[tuple[bytes, bytes]]):
        self.method = method
        self.target = target
        self.authority = authority
        self.scheme = scheme
        self.headers = headers

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.headers if n.lower() == name), None)


# -- HTTP/1.1 -------------------------------------------------------------------------------------

class H1Connection:
    """One HTTP/1.1 connection: an h11 engine over a byte stream, one exchange at a time."""

    protocol = "HTTP/1.1"

    def __init__(self, stream: ByteStream, key: Any):
        self.stream = stream
        self.key = key
        self.h11 = h11.Connection(h11.CLIENT)

    def reusable(self) -> bool:
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    def open_channel(self) -> "H1Channel":
        return H1Channel(self)

    def close(self) -> None:
        self.stream.close()


class H1Channel:
    """One exchange on an H1Connection: request events in, response events out."""

    def __init__(self, conn: H1Connection):
        self.conn = conn
        self.stream = conn.stream
        self.chunked = False

    def send_head(self, head: RequestHead, content_length: int | None, has_body: bool) -> None:
        headers = [(b"host", head.authority.encode())] + head.headers
        if has_body and content_length is None and head.header(b"content-length") is None:
            headers.append((b"transfer-encoding", b"chunked"))
            self.chunked = True
        elif content_length is not None and head.header(b"content-length") is None:
            headers.append((b"content-length", str(content_length).encode()))
        self._send(h11.Request(method=head.method, target=head.target or b"/", headers=headers))

    def send_room(self) -> int:
        return max(0, OUT_LIMIT - self.stream.queued)

    def send_data(self, data: bytes) -> None:
        self._send(h11.Data(data=data))

    def send_end(self, trailers: list[tuple[bytes, bytes]]) -> None:
        # trailers go only where chunked framing can carry them
        self._send(h11.EndOfMessage(headers=trailers if self.chunked else []))

    def _send(self, event: Any) -> None:
        try:
            data = self.conn.h11.send(event)
        except h11.LocalProtocolError as e:
            raise HttpError(Variant("HTTP-request-body-size", None) if "Content-Length" in str(e)
                            else errors.internal(str(e)), str(e)) from None
        self.stream.send(data)

    def flush(self) -> None:
        self.stream.flush_out()

    def receive(self, events: list) -> bool:
        """Reads once from the network into `events`; False when nothing came."""
        h = self.conn.h11
        got = self._drain(events)
        if got:
            return True
        if h.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED):
            return False
        data = self.stream.recv(1 << 16)
        if data == b"":
            return False
        h.receive_data(data or b"")
        self._drain(events)
        return True

    def _drain(self, events: list) -> bool:
        h = self.conn.h11
        got = False
        while True:
            before = h.their_state
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as e:
                if self.stream.eof:  # the server closed the connection before the response ended
                    case = "connection-terminated" if before is h11.SEND_RESPONSE else "HTTP-response-incomplete"
                    raise HttpError(Variant(case), str(e)) from None
                raise HttpError(Variant("HTTP-protocol-error"), f"invalid response: {e}") from None
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return got
            got = True
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                events.append(("response", event.status_code, list(event.headers.raw_items())))
            elif isinstance(event, h11.Data):
                events.append(("data", bytes(event.data)))
            elif isinstance(event, h11.EndOfMessage):
                events.append(("end", list(event.headers.raw_items())))
                return True
            elif isinstance(event, h11.ConnectionClosed):
                # closed before any response: the connection ended; inside a response: it is incomplete
                case = "connection-terminated" if before is h11.SEND_RESPONSE else "HTTP-response-incomplete"
                raise HttpError(Variant(case), "the server closed the connection early")

    def consumed(self, n: int) -> None:
        pass

    def wait(self, for_input: bool) -> Wait:
        return self.stream.wait(for_input=for_input)

    def finish(self, pool: "HttpClient", ok: bool) -> None:
        conn = self.conn
        if ok and conn.reusable():
            conn.h11.start_next_cycle()
            pool.give_back(conn)
        else:
            conn.close()


# -- HTTP/2 ---------------------------------------------------------------------------------------

class H2Connection:
    """One HTTP/2 connection: an h2 engine over a byte stream, shared by concurrent exchanges."""

    protocol = "HTTP/2"

    def __init__(self, stream: ByteStream, key: Any):
        import h2.config
        import h2.connection
        import h2.settings

        self.stream = stream
        self.key = key
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.h2.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: H2_WINDOW,
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
        })
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(16 * H2_WINDOW)
        self.channels: dict[int, H2Channel] = {}
        self.error: HttpError | None = None
        self.goaway = False
        self.flush()

    def usable(self) -> bool:
        if self.error is not None or self.goaway or self.stream.closed or self.stream.eof:
            return False
        limit = self.h2.remote_settings.max_concurrent_streams
        return self.h2.open_outbound_streams < min(limit, 100)

    def open_channel(self) -> "H2Channel":
        channel = H2Channel(self, self.h2.get_next_available_stream_id())
        self.channels[channel.stream_id] = channel
        return channel

    def flush(self) -> None:
        data = self.h2.data_to_send()
        self.stream.send(data)

    def receive(self) -> bool:
        """Reads once from the network and hands each event to its stream's channel."""
        import h2.events as ev
        import h2.exceptions

        if self.error is not None:
            raise self.error
        data = self.stream.recv(1 << 16)
        if data == b"":
            return False
        try:
            if data is None:
                raise HttpError(Variant("HTTP-response-incomplete"), "the server closed the connection")
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            self.error = HttpError(Variant("HTTP-protocol-error"), f"HTTP/2: {e}")
        except HttpError as e:
            self.error = e
        if self.error is not None:
            for channel in self.channels.values():
                channel.inbox.append(("error", self.error))
            self.channels.clear()
            raise self.error
        for event in events:
            channel = self.channels.get(getattr(event, "stream_id", 0) or 0)
            if isinstance(event, ev.ConnectionTerminated):
                self.goaway = True
                for sid, ch in list(self.channels.items()):
                    if event.last_stream_id is None or sid > event.last_stream_id:
                        ch.inbox.append(("error", HttpError(Variant("connection-terminated"), "GOAWAY")))
            elif channel is None:
                continue
            elif isinstance(event, ev.ResponseReceived):
                headers = [(n, v) for n, v in event.headers if not n.startswith(b":")]
                status = int(dict(event.headers)[b":status"])
                channel.inbox.append(("response", status, headers))
            elif isinstance(event, ev.DataReceived):
                padding = event.flow_controlled_length - len(event.data)
                if padding:
                    self.h2.acknowledge_received_data(padding, event.stream_id)
                channel.inbox.append(("data", bytes(event.data)))
            elif isinstance(event, ev.TrailersReceived):
                channel.trailers = list(event.headers)
            elif isinstance(event, ev.StreamEnded):
                channel.inbox.append(("end", channel.trailers))
                self.channels.pop(event.stream_id, None)
            elif isinstance(event, ev.StreamReset):
                channel.inbox.append(("error", HttpError(Variant("HTTP-protocol-error"),
                                                         f"stream reset by the server (code {event.error_code})")))
                self.channels.pop(event.stream_id, None)
        self.flush()
        return True

    def close(self) -> None:
        try:
            self.h2.close_connection()
            self.flush()
        except Exception:
            pass
        self.stream.close()


class _h2_errors:
    """h2's exceptions as error-codes: a stream the server closed early, a request h2 finds invalid."""

    def __enter__(self) -> None:
        pass

    def __exit__(self, kind: Any, e: Any, tb: Any) -> bool:
        import h2.exceptions

        if isinstance(e, h2.exceptions.StreamClosedError):
            raise HttpError(Variant("connection-terminated"), "the server closed the HTTP/2 stream") from None
        if isinstance(e, h2.exceptions.ProtocolError):
            raise HttpError(Variant("HTTP-request-denied"), f"HTTP/2: {e}") from None
        return False


class H2Channel:
    def __init__(self, conn: H2Connection, stream_id: int):
        self.conn = conn
        self.stream_id = stream_id
        self.inbox: deque = deque()
        self.trailers: list = []
        self.ended_send = False
        self.unacked = 0  # bytes the guest read that the window has not been reopened for yet

    def send_head(self, head: RequestHead, content_length: int | None, has_body: bool) -> None:
        headers = [(b":method", head.method), (b":scheme", head.scheme.encode()),
                   (b":authority", head.authority.encode()), (b":path", head.target or b"/")]
        headers += [(n.lower(), v) for n, v in head.headers]
        if content_length is not None and head.header(b"content-length") is None and has_body:
            headers.append((b"content-length", str(content_length).encode()))
        with _h2_errors():
            self.conn.h2.send_headers(self.stream_id, headers, end_stream=not has_body)
        self.ended_send = not has_body
        self.conn.flush()

    def send_room(self) -> int:
        if self.conn.stream.queued >= OUT_LIMIT:
            return 0
        try:
            window = self.conn.h2.local_flow_control_window(self.stream_id)
        except Exception:
            return 0
        return min(window, self.conn.h2.max_outbound_frame_size)

    def send_data(self, data: bytes) -> None:
        with _h2_errors():
            self.conn.h2.send_data(self.stream_id, data)
        self.conn.flush()

    def send_end(self, trailers: list[tuple[bytes, bytes]]) -> None:
        if self.ended_send:
            return
        with _h2_errors():
            if trailers:
                self.conn.h2.send_headers(self.stream_id, [(n.lower(), v) for n, v in trailers], end_stream=True)
            else:
                self.conn.h2.end_stream(self.stream_id)
        self.ended_send = True
        self.conn.flush()

    def flush(self) -> None:
        self.conn.stream.flush_out()

    def receive(self, events: list) -> bool:
        """This stream's events, reading once from the network if it has none; False when nothing came
        (a read that brought only other streams' frames or a WINDOW_UPDATE still counts: more may wait
        behind it, in the socket or in TLS's buffers)."""
        read = False
        if not self.inbox:
            read = self.conn.receive()
        got = bool(self.inbox)
        while self.inbox:
            event = self.inbox.popleft()
            if event[0] == "error":
                raise event[1]
            events.append(event)
        return got or read

    def consumed(self, n: int) -> None:
        """The guest read n bytes: reopen the window by as much, in steps of ACK_STEP (a WINDOW_UPDATE
        per small read would cost more than the read)."""
        self.unacked += n
        if self.unacked >= ACK_STEP or self.stream_id not in self.conn.channels:  # ended: no more to gather
            self._acknowledge()

    def _acknowledge(self) -> None:
        # also after the stream ended: the connection's window must get every byte back
        if self.unacked and self.conn.error is None:
            try:
                self.conn.h2.acknowledge_received_data(self.unacked, self.stream_id)
                self.conn.flush()
            except Exception:  # a connection that is going away
                pass
        self.unacked = 0

    def wait(self, for_input: bool) -> Wait:
        if self.inbox:
            return Wait(deadline_ns=0)
        return self.conn.stream.wait(for_input=True)

    def finish(self, pool: "HttpClient", ok: bool) -> None:
        conn = self.conn
        self._acknowledge()
        if self.stream_id in conn.channels:
            conn.channels.pop(self.stream_id, None)
            try:
                import h2.errors
                conn.h2.reset_stream(self.stream_id, h2.errors.ErrorCodes.CANCEL)
                conn.flush()
            except Exception:
                pass
        if not ok and conn.error is not None:
            pool.forget(conn)


# -- one request and its response -----------------------------------------------------------------

class ClientExchange:
    """One outgoing request and its response, driven by `progress()`."""

    def __init__(self, client: "HttpClient", origin: Origin, head: RequestHead, *, has_body_stream: bool,
                 connect_timeout_ns: int | None, first_byte_timeout_ns: int | None,
                 between_bytes_timeout_ns: int | None):
        self.client = client
        self.origin = origin
        self.head = head
        self.connect_timeout_ns = connect_timeout_ns
        self.first_byte_timeout_ns = first_byte_timeout_ns
        self.between_bytes_timeout_ns = between_bytes_timeout_ns
        self.dial: Dial | None = None
        self.channel: Any = None
        # request body, as the guest writes it
        self.body_taken = has_body_stream
        self.body = bytearray()
        self.body_written = 0
        self.body_done = not has_body_stream
        self.body_trailers: list[tuple[bytes, bytes]] = []
        self.head_sent = False
        self.end_sent = False
        # response
        self.response: tuple[int, list] | None = None
        self.response_body = _Chunks()  # received, not yet read by the guest
        self.response_done = False
        self.response_trailers: list | None = None
        self.discard_body = False
        self.error: Variant | None = None
        self.error_detail = ""
        self.deadline_ns: int | None = None
        self.finished = False

    # -- the guest's side ----------------------------------------------------------------------
    def body_room(self) -> int:
        if self.error is not None:
            return 1  # let the write go through and fail
        return max(0, BODY_HOLD - len(self.body))

    def write_body(self, data: bytes) -> None:
        self.body += data
        self.body_written += len(data)
        self.progress()

    def finish_body(self, trailers: list[tuple[bytes, bytes]]) -> None:
        declared = self.head.header(b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) != self.body_written:
            raise HttpError(Variant("HTTP-request-body-size", self.body_written),
                            f"content-length {int(declared)} but {self.body_written} bytes written")
        self.body_trailers = trailers
        self.body_done = True
        self.progress()

    def abort(self, code: Variant, detail: str) -> None:
        self._fail(HttpError(code, detail))

    # -- driving -------------------------------------------------------------------------------
    def progress(self) -> None:
        if self.finished:
            return
        try:
            if self.channel is None:
                self.channel = self.client.channel_for(self)
                if self.channel is None:
                    return
            self._send()
            self._receive()
            self._send()  # what came in may have reopened the peer's flow-control window (HTTP/2)
            self._check_deadline()
        except HttpError as e:
            self._fail(e)

    def _send(self) -> None:
        ch = self.channel
        if not self.head_sent:
            declared = self.head.header(b"content-length")
            has_body = self.body_taken and (declared is None or declared.strip() != b"0")
            if self.body_done:
                length = len(self.body)
                if length == 0 and self.head.method in _NO_BODY_METHODS:
                    has_body = False
                ch.send_head(self.head, length if has_body or self.head.method not in _NO_BODY_METHODS else None,
                             has_body)
            elif len(self.body) >= BODY_HOLD or declared is not None:
                ch.send_head(self.head, None, has_body)
            else:
                return
            self.head_sent = True
            if self.first_byte_timeout_ns is not None:
                self.deadline_ns = time.monotonic_ns() + self.first_byte_timeout_ns
        while self.body and not self.end_sent:
            room = ch.send_room()
            if room <= 0:
                break
            n = min(room, len(self.body), 1 << 16)
            ch.send_data(bytes(self.body[:n]))
            del self.body[:n]
        if self.body_done and not self.body and not self.end_sent:
            ch.send_end(self.body_trailers)
            self.end_sent = True
        ch.flush()

    def _receive(self) -> None:
        events: list = []
        while not self.response_done:
            if self.response is not None and self.response_body.size >= RESPONSE_BUFFER and not self.discard_body:
                break
            if not self.channel.receive(events):
                break
            for event in events:
                self._on(event)
            events.clear()
            if self.discard_body:
                self.discard_response_body()
        self._maybe_finish()

    def _on(self, event: tuple) -> None:
        kind = event[0]
        if kind == "response":
            self.response = (event[1], event[2])
            self._arm_between_bytes()
        elif kind == "data":
            self.response_body.append(event[1])
            self._arm_between_bytes()
        elif kind == "end":
            self.response_done = True
            self.response_trailers = event[1]
            self.deadline_ns = None

    def _arm_between_bytes(self) -> None:
        self.deadline_ns = (None if self.between_bytes_timeout_ns is None
                            else time.monotonic_ns() + self.between_bytes_timeout_ns)

    def _check_deadline(self) -> None:
        if self.deadline_ns is not None and not self.response_done and time.monotonic_ns() >= self.deadline_ns:
            if self.response is None:
                raise HttpError(Variant("connection-read-timeout"), "no response before the first-byte timeout")
            if not self.response_body:
                raise HttpError(Variant("connection-read-timeout"), "the body stalled past the between-bytes timeout")

    def _maybe_finish(self) -> None:
        if self.response_done and self.end_sent and not self.finished:
            self.finished = True
            self.channel.finish(self.client, ok=True)

    def _fail(self, e: HttpError) -> None:
        if self.error is None:
            self.error = e.error_code
            self.error_detail = str(e)
        if not self.finished:
            self.finished = True
            if self.dial is not None and self.channel is None:
                self.dial.abandon()
            if self.channel is not None:
                if isinstance(self.channel, H1Channel):
                    self.channel.conn.close()
                else:
                    self.channel.finish(self.client, ok=False)

    def discard_response_body(self) -> None:
        dropped = self.response_body.size
        self.response_body.clear()
        if dropped and self.channel is not None:
            self.channel.consumed(dropped)

    def take_body(self, n: int) -> bytes:
        data = self.response_body.take(n)
        if data and self.channel is not None:
            self.channel.consumed(len(data))
        return data

    def drop_response(self) -> None:
        """The guest is done with the response before its end: the connection cannot be reused."""
        if not self.finished:
            self._fail(HttpError(Variant("HTTP-response-incomplete"), "dropped by the guest"))

    def wait_on(self) -> Wait:
        if self.finished or self.error is not None:
            return Wait(deadline_ns=0)
        if self.channel is None:
            if self.dial is not None:
                return self.dial.wait_on()
            return Wait(deadline_ns=0)
        w = self.channel.wait(for_input=True)
        return Wait(also=w.also, read_fds=w.read_fds, write_fds=w.write_fds,
                    deadline_ns=_earliest(w.deadline_ns, self.deadline_ns))


class _Chunks:
    """Bytes in the order they came, taken from the front without moving the rest (a guest reading
    8 KiB at a time from a 256 KiB read-ahead would otherwise shift it all at every read)."""

    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        self.offset = 0  # into chunks[0]
        self.size = 0

    def __bool__(self) -> bool:
        return self.size > 0

    def append(self, data: bytes) -> None:
        if data:
            self.chunks.append(data)
            self.size += len(data)

    def take(self, n: int) -> bytes:
        """At most n bytes, from one chunk (a read may return less than it asked for)."""
        if not self.chunks or n <= 0:
            return b""
        head = self.chunks[0]
        start = self.offset
        end = min(len(head), start + n)
        if start == 0 and end == len(head):
            data = head
        else:
            data = head[start:end]
        if end == len(head):
            self.chunks.popleft()
            self.offset = 0
        else:
            self.offset = end
        self.size -= len(data)
        return data

    def clear(self) -> None:
        self.chunks.clear()
        self.offset = self.size = 0


def _earliest(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


# -- the pool -------------------------------------------------------------------------------------

class HttpClient:
    """One guest's outgoing HTTP: its policy, TLS settings, client identities and connection pool."""

    def __init__(self, policy: Any, guest_tls: Callable[[], Any], *, client_identities: dict[str, str] | None = None):
        self.policy = policy
        self.guest_tls = guest_tls  # the guest's tls_streams.GuestTls, made on first use
        self.client_identities = client_identities or {}  # host -> identity name (--http-client-identity)
        self.idle: dict[Any, list[H1Connection]] = {}
        self.shared: dict[Any, H2Connection] = {}

    def identity_for(self, host: str) -> tuple[str | None, Any]:
        name = self.client_identities.get(host.lower()) or self.client_identities.get("*")
        if name is None:
            return None, None
        return name, self.guest_tls().settings.identities.get(name)

    def channel_for(self, exchange: ClientExchange) -> Any:
        origin = exchange.origin
        identity_name, identity = self.identity_for(origin.host) if origin.scheme == "https" else (None, None)
        key = (origin, identity_name)
        if exchange.dial is None:
            shared = self.shared.get(key)
            if shared is not None:
                if shared.usable():
                    return shared.open_channel()
                if not shared.channels:
                    self.forget(shared)
            idle = self.idle.get(key, [])
            while idle:
                conn = idle.pop()
                if conn.stream.alive():
                    return conn.open_channel()
                conn.close()
            exchange.dial = Dial(self.policy, self.guest_tls, origin,
                                 connect_timeout_ns=exchange.connect_timeout_ns, client_identity=identity)
        stream = exchange.dial.step()
        if stream is None:
            return None
        exchange.dial = None
        if stream.alpn == "h2":
            conn = H2Connection(stream, key)
            self.shared[key] = conn
            return conn.open_channel()
        return H1Connection(stream, key).open_channel()

    def give_back(self, conn: H1Connection) -> None:
        idle = self.idle.setdefault(conn.key, [])
        if len(idle) >= MAX_IDLE_PER_ORIGIN or sum(map(len, self.idle.values())) >= MAX_IDLE:
            conn.close()
            return
        idle.append(conn)

    def forget(self, conn: H2Connection) -> None:
        if self.shared.get(conn.key) is conn:
            del self.shared[conn.key]
        conn.close()

    def close(self) -> None:
        for idle in self.idle.values():
            for conn in idle:
                conn.close()
        self.idle.clear()
        for conn in list(self.shared.values()):
            conn.close()
        self.shared.clear()
