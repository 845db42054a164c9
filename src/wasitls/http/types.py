"""wasi:http/types@0.2.9: fields, requests, responses, bodies and futures, in the WIT's order.

Bodies are wasi:io streams. An incoming body reads from a *feed* (the client's response, the
server's request):
    read(n) / poll_ready() / wait_on()   the io source protocol (wasi/io/streams.py); a failure is
                                         StreamFailed(HttpFailure(error-code))
    trailers_ready() / trailers()        (list of (name, value) or None, error-code or None)
    discard()                            the guest finished the body without reading all of it
An outgoing body writes to a *target* (the client's request, the server's response), which may be
attached after the guest already wrote (then up to HOLD bytes wait here):
    room() / write(data) / finish(trailers) / abandon() / poll_ready() / wait_on()
"""

from __future__ import annotations

import re
from typing import Any

from ..component.linker import HostInterface
from ..component.values import Err, Ok, Trap, Variant
from ..wasi.io.error import IoError
from ..wasi.io.poll import Pollable, Wait, When
from ..wasi.io.streams import InputStream, OutputStream, StreamClosed, StreamFailed
from .errors import HttpFailure
from .transport import HttpError

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_METHOD_CASES = ("get", "head", "post", "put", "delete", "connect", "options", "trace", "patch")
# hop-by-hop and framing headers the host sets itself (wasmtime forbids the same set)
FORBIDDEN = frozenset([b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
                       b"proxy-connection", b"te", b"transfer-encoding", b"upgrade", b"host", b"http2-settings"])
HOLD = 1 << 16  # body bytes kept while no target is attached yet


def method_to_bytes(method: Variant) -> bytes:
    if method.case == "other":
        return method.value.encode()
    return method.case.upper().encode()


def method_from_bytes(raw: bytes) -> Variant:
    name = raw.decode("latin-1")
    lower = name.lower()
    if lower in _METHOD_CASES and name == name.upper():
        return Variant(lower)
    return Variant("other", name)


def scheme_to_str(scheme: Variant | None) -> str:
    if scheme is None:
        return "https"
    if scheme.case == "HTTP":
        return "http"
    if scheme.case == "HTTPS":
        return "https"
    return scheme.value.lower()


def _valid_name(name: str) -> bool:
    try:
        return bool(_TOKEN.match(name.encode("ascii")))
    except UnicodeEncodeError:
        return False


def _valid_value(value: bytes) -> bool:
    return not any(c in value for c in (0, 10, 13)) and value == value.strip(b" \t")


class Fields:
    """The `fields` resource: names compared without case, entries kept in order and casing."""

    def __init__(self, entries: list[tuple[str, bytes]] | None = None, *, immutable: bool = False):
        self.items: list[tuple[str, bytes]] = entries or []
        self.immutable = immutable

    @staticmethod
    def check(name: str, value: bytes | None = None) -> None:
        if not _valid_name(name) or (value is not None and not _valid_value(bytes(value))):
            raise Err(Variant("invalid-syntax"))
        if name.lower().encode() in FORBIDDEN:
            raise Err(Variant("forbidden"))

    def _mutable(self) -> None:
        if self.immutable:
            raise Err(Variant("immutable"))

    def get(self, name: str) -> list[bytes]:
        key = name.lower()
        return [v for n, v in self.items if n.lower() == key]

    def has(self, name: str) -> bool:
        key = name.lower()
        return any(n.lower() == key for n, _ in self.items)

    def set(self, name: str, value: list[bytes]) -> None:
        self._mutable()
        for v in value:
            self.check(name, v)
        self.check(name)
        key = name.lower()
        self.items = [(n, v) for n, v in self.items if n.lower() != key] + [(name, bytes(v)) for v in value]

    def delete(self, name: str) -> None:
        self._mutable()
        self.check(name)
        key = name.lower()
        self.items = [(n, v) for n, v in self.items if n.lower() != key]

    def append(self, name: str, value: bytes) -> None:
        self._mutable()
        self.check(name, value)
        self.items.append((name, bytes(value)))

    def entries(self) -> list[tuple[str, bytes]]:
        return list(self.items)

    def clone(self) -> "Fields":
        return Fields(list(self.items))

    def view(self) -> "Fields":
        """The headers of an outgoing request or response as `headers()` gives them: immutable (WIT)."""
        return Fields(self.items, immutable=True)

    def wire(self) -> list[tuple[bytes, bytes]]:
        return [(n.encode(), v) for n, v in self.items]

    @classmethod
    def received(cls, raw: list[tuple[bytes, bytes]]) -> "Fields":
        """Fields that came off the wire: immutable, names as sent (HTTP/2 sends them lowercase)."""
        return cls([(n.decode("latin-1"), bytes(v)) for n, v in raw], immutable=True)


class IncomingRequest:
    """The `incoming-request` resource (wasitls serve hands these to the guest)."""

    def __init__(self, method: Variant, path_with_query: str | None, scheme: Variant | None,
                 authority: str | None, headers: Fields, feed: Any):
        self._method = method
        self._path = path_with_query
        self._scheme = scheme
        self._authority = authority
        self._headers = headers
        self._feed = feed
        self._consumed = False

    def method(self) -> Variant:
        return self._method

    def path_with_query(self) -> str | None:
        return self._path

    def scheme(self) -> Variant | None:
        return self._scheme

    def authority(self) -> str | None:
        return self._authority

    def headers(self) -> Fields:
        return self._headers

    def consume(self) -> "IncomingBody":
        if self._consumed:
            raise Err(None)
        self._consumed = True
        return IncomingBody(self._feed)


class OutgoingRequest:
    """The `outgoing-request` resource."""

    def __init__(self, headers: Fields):
        self._headers = headers
        self._method = Variant("get")
        self._path: str | None = None
        self._scheme: Variant | None = None
        self._authority: str | None = None
        self.outgoing_body: OutgoingBody | None = None

    def body(self) -> "OutgoingBody":
        if self.outgoing_body is not None:
            raise Err(None)
        self.outgoing_body = OutgoingBody()
        return self.outgoing_body

    def method(self) -> Variant:
        return self._method

    def set_method(self, method: Variant) -> None:
        if method.case == "other" and not _valid_name(method.value):
            raise Err(None)
        self._method = method

    def path_with_query(self) -> str | None:
        return self._path

    def set_path_with_query(self, path_with_query: str | None) -> None:
        if path_with_query is not None and any(c in path_with_query for c in " \r\n\x00#"):
            raise Err(None)
        self._path = path_with_query

    def scheme(self) -> Variant | None:
        return self._scheme

    def set_scheme(self, scheme: Variant | None) -> None:
        if scheme is not None and scheme.case == "other" and not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*$", scheme.value):
            raise Err(None)
        self._scheme = scheme

    def authority(self) -> str | None:
        return self._authority

    def set_authority(self, authority: str | None) -> None:
        if authority is not None and (not authority or any(c in authority for c in " /?#@\r\n\x00")):
            raise Err(None)
        self._authority = authority

    def headers(self) -> Fields:
        return self._headers.view()


class RequestOptions:
    """The `request-options` resource: transport timeouts in nanoseconds."""

    def __init__(self) -> None:
        self._connect: int | None = None
        self._first_byte: int | None = None
        self._between_bytes: int | None = None

    def connect_timeout(self) -> int | None:
        return self._connect

    def set_connect_timeout(self, duration: int | None) -> None:
        self._connect = duration

    def first_byte_timeout(self) -> int | None:
        return self._first_byte

    def set_first_byte_timeout(self, duration: int | None) -> None:
        self._first_byte = duration

    def between_bytes_timeout(self) -> int | None:
        return self._between_bytes

    def set_between_bytes_timeout(self, duration: int | None) -> None:
        self._between_bytes = duration


class ResponseOutparam:
    """The `response-outparam` resource: `deliver` receives Ok(outgoing-response) or Err(error-code)."""

    def __init__(self, deliver: Any):
        self.deliver = deliver
        self.used = False

    def drop(self) -> None:
        if not self.used:
            self.used = True
            self.deliver(None)  # never set: the server answers with an error on the guest's behalf


class IncomingResponse:
    """The `incoming-response` resource."""

    def __init__(self, status: int, headers: Fields, feed: Any):
        self._status = status
        self._headers = headers
        self._feed = feed
        self._consumed = False

    def status(self) -> int:
        return self._status

    def headers(self) -> Fields:
        return self._headers

    def consume(self) -> "IncomingBody":
        if self._consumed:
            raise Err(None)
        self._consumed = True
        return IncomingBody(self._feed)

    def drop(self) -> None:
        if not self._consumed:
            self._feed.close()


class IncomingBody:
    """The `incoming-body` resource: its contents as one input-stream, then its trailers."""

    def __init__(self, feed: Any):
        self.feed = feed
        self.stream_taken = False
        self.stream_open = False
        self.finished = False

    def stream(self) -> InputStream:
        if self.stream_taken:
            raise Err(None)
        self.stream_taken = self.stream_open = True
        return InputStream(_FeedSource(self))

    def drop(self) -> None:
        if not self.finished:
            self.feed.close()


class _FeedSource:
    """The input-stream backend of an incoming body."""

    def __init__(self, body: IncomingBody):
        self.body = body
        self.feed = body.feed

    def read(self, n: int) -> bytes:
        return self.feed.read(n)

    def poll_ready(self) -> bool:
        return self.feed.poll_ready()

    def wait_on(self) -> Wait:
        return self.feed.wait_on()

    def close(self) -> None:
        self.body.stream_open = False


class FutureTrailers:
    """The `future-trailers` resource."""

    def __init__(self, feed: Any):
        self.feed = feed
        self.taken = False
        feed.discard()

    def subscribe(self) -> Pollable:
        return Pollable(When(self.feed.trailers_ready, self.feed.wait_on))

    def get(self) -> Any:
        if self.taken:
            return Err(None)
        if not self.feed.trailers_ready():
            return None
        self.taken = True
        trailers, error = self.feed.trailers()
        if error is not None:
            return Ok(Err(error))
        return Ok(Ok(None if trailers is None else Fields.received(trailers)))

    def drop(self) -> None:
        self.feed.close()


class OutgoingResponse:
    """The `outgoing-response` resource."""

    def __init__(self, headers: Fields):
        self._status = 200
        self._headers = headers
        self.outgoing_body: OutgoingBody | None = None
        self.target: Any = None  # the server's writer, once the response is set: a later body() attaches to it

    def status_code(self) -> int:
        return self._status

    def set_status_code(self, status_code: int) -> None:
        if not 100 <= status_code <= 999:
            raise Err(None)
        self._status = status_code

    def headers(self) -> Fields:
        return self._headers.view()

    def body(self) -> "OutgoingBody":
        if self.outgoing_body is not None:
            raise Err(None)
        self.outgoing_body = OutgoingBody()
        if self.target is not None:
            self.outgoing_body.attach(self.target)
        return self.outgoing_body


class OutgoingBody:
    """The `outgoing-body` resource: one output-stream, then `finish` with optional trailers."""

    def __init__(self) -> None:
        self.target: Any = None  # attached when the request is handed over / the response is set
        self.held = bytearray()  # written before a target was attached
        self.written = 0
        self.stream_taken = False
        self.stream_open = False
        self.finished_trailers: list | None = None  # finish() came before a target was attached
        self.done = False

    def write(self) -> OutputStream:
        if self.stream_taken:
            raise Err(None)
        self.stream_taken = self.stream_open = True
        return OutputStream(_BodySink(self))

    def attach(self, target: Any) -> None:
        self.target = target
        if self.held:
            target.write(bytes(self.held))
            self.held.clear()
        if self.finished_trailers is not None:
            target.finish(self.finished_trailers)
        elif self.done:
            target.abandon()

    # the body sink's side
    def room(self) -> int:
        if self.target is None:
            return max(0, HOLD - len(self.held))
        return self.target.room()

    def put(self, data: bytes) -> None:
        self.written += len(data)
        if self.target is None:
            self.held += data
        else:
            self.target.write(data)

    def drop(self) -> None:
        if not self.done:  # dropped without finish: the body is incomplete
            self.done = True
            if self.target is not None:
                self.target.abandon()


class _BodySink:
    """The output-stream backend of an outgoing body."""

    def __init__(self, body: OutgoingBody):
        self.body = body

    def check_write(self) -> int:
        if self.body.done:
            raise StreamClosed
        failure = getattr(self.body.target, "failure", None)
        if failure is not None:
            raise StreamFailed(HttpFailure(failure))
        return self.body.room()

    def write(self, data: bytes) -> None:
        self.body.put(bytes(data))

    def flush(self) -> None:
        pass

    def poll_ready(self) -> bool:
        try:
            room = self.check_write()
        except (StreamClosed, StreamFailed):
            return True
        # room opens only when the target drives its connection (reads a WINDOW_UPDATE, sends what it
        # holds), which its poll_ready does; without it the guest would poll a readable socket forever
        return room > 0 or (self.body.target is not None and self.body.target.poll_ready())

    def wait_on(self) -> Wait:
        if self.body.target is None:
            return Wait()
        return self.body.target.wait_on()

    def close(self) -> None:
        self.body.stream_open = False


class FutureIncomingResponse:
    """The `future-incoming-response` resource, over a client exchange (or an immediate error)."""

    def __init__(self, exchange: Any = None, error: Variant | None = None):
        self.exchange = exchange
        self.error = error
        self.taken = False

    def subscribe(self) -> Pollable:
        return Pollable(When(self.ready, lambda: self.exchange.wait_on()))

    def ready(self) -> bool:
        if self.error is not None or self.exchange is None:
            return True
        ex = self.exchange
        if ex.response is None and ex.error is None:
            ex.progress()
        return ex.response is not None or ex.error is not None

    def get(self) -> Any:
        if self.taken:
            return Err(None)
        if not self.ready():
            return None
        self.taken = True
        if self.error is not None:
            return Ok(Err(self.error))
        ex = self.exchange
        if ex.response is None:
            return Ok(Err(ex.error))
        from .outgoing_handler import ResponseFeed

        status, raw_headers = ex.response
        return Ok(Ok(IncomingResponse(status, Fields.received(raw_headers), ResponseFeed(ex))))

    def drop(self) -> None:
        if not self.taken and self.exchange is not None:
            self.exchange.drop_response()


class Types(HostInterface):
    wit = "wasi:http/types@0.2.9"
    resources = {
        "fields": Fields,
        "incoming-request": IncomingRequest,
        "outgoing-request": OutgoingRequest,
        "request-options": RequestOptions,
        "response-outparam": ResponseOutparam,
        "incoming-response": IncomingResponse,
        "incoming-body": IncomingBody,
        "future-trailers": FutureTrailers,
        "outgoing-response": OutgoingResponse,
        "outgoing-body": OutgoingBody,
        "future-incoming-response": FutureIncomingResponse,
    }

    def __init__(self, http: Any = None):
        self.http = http  # the guest's GuestHttp (context.py); types need nothing of it

    def http_error_code(self, err: IoError) -> Variant | None:
        return getattr(err, "error_code", None)

    # fields
    def new_fields(self) -> Fields:
        return Fields()

    def fields_from_list(self, entries: list[tuple[str, bytes]]) -> Fields:
        for name, value in entries:
            Fields.check(name, value)
        return Fields([(n, bytes(v)) for n, v in entries])

    # outgoing-request
    def new_outgoing_request(self, headers: Fields) -> OutgoingRequest:
        return OutgoingRequest(headers)

    # request-options
    def new_request_options(self) -> RequestOptions:
        return RequestOptions()

    # response-outparam
    def response_outparam_set(self, param: ResponseOutparam, response: Any) -> None:
        if param.used:
            raise Trap("response-outparam.set called twice")
        param.used = True
        param.deliver(response)

    # incoming-body
    def incoming_body_finish(self, this: IncomingBody) -> FutureTrailers:
        if this.stream_open:
            raise Trap("incoming-body.finish while its input-stream is still alive")
        this.finished = True
        return FutureTrailers(this.feed)

    # outgoing-response
    def new_outgoing_response(self, headers: Fields) -> OutgoingResponse:
        return OutgoingResponse(headers)

    # outgoing-body
    def outgoing_body_finish(self, this: OutgoingBody, trailers: Fields | None) -> None:
        if this.stream_open:
            raise Trap("outgoing-body.finish while its output-stream is still alive")
        this.done = True
        wire = [] if trailers is None else trailers.wire()
        if this.target is None:
            this.finished_trailers = wire
            return
        try:
            this.target.finish(wire)
        except HttpError as e:
            raise Err(e.error_code) from None


__all__ = ["Types", "Fields", "HttpError"]
