"""wasi:http/outgoing-handler@0.2.9: `handle` sends a request through the host's HTTP client.

Every request passes the capability policy for the host it connects to (--allow-net), refused
with `destination-IP-prohibited`; HTTPS uses the host's TLS settings (--ca-file, --tls-trace,
--tls-keylog) and, for a host named by --http-client-identity, that host-held identity.
"""

from __future__ import annotations

from typing import Any

from ..component.linker import HostInterface
from ..component.values import Err, Variant
from ..wasi.io.poll import Wait
from ..wasi.io.streams import StreamClosed, StreamFailed
from .client import ClientExchange, RequestHead
from .context import GuestHttp
from .errors import HttpFailure
from .transport import HttpError, Origin, parse_authority
from .types import FutureIncomingResponse, OutgoingRequest, RequestOptions, method_to_bytes, scheme_to_str

class RequestTarget:
    """The outgoing body's target for a request: the exchange's body side."""

    def __init__(self, exchange: ClientExchange):
        self.exchange = exchange

    @property
    def failure(self) -> Variant | None:
        return self.exchange.error

    def room(self) -> int:
        return self.exchange.body_room()

    def write(self, data: bytes) -> None:
        self.exchange.write_body(data)

    def finish(self, trailers: list) -> None:
        self.exchange.finish_body(trailers)

    def abandon(self) -> None:
        self.exchange.abort(Variant("HTTP-request-body-size", self.exchange.body_written),
                            "the request body was dropped before it was finished")

    def poll_ready(self) -> bool:
        self.exchange.progress()
        return self.room() > 0

    def wait_on(self) -> Wait:
        return self.exchange.wait_on()


class ResponseFeed:
    """A response body as incoming-body reads it (see types.py)."""

    def __init__(self, exchange: ClientExchange):
        self.exchange = exchange
        self.failed_once = False

    def read(self, n: int) -> bytes:
        ex = self.exchange
        if not ex.response_body:
            ex.progress()
        if ex.response_body:
            return ex.take_body(n)
        if ex.response_done:
            raise StreamClosed
        if ex.error is not None:
            raise StreamFailed(HttpFailure(ex.error, ex.error_detail))
        return b""

    def poll_ready(self) -> bool:
        ex = self.exchange
        if not ex.response_body and not ex.response_done and ex.error is None:
            ex.progress()
        return bool(ex.response_body) or ex.response_done or ex.error is not None

    def wait_on(self) -> Wait:
        return self.exchange.wait_on()

    def trailers_ready(self) -> bool:
        ex = self.exchange
        if not ex.response_done and ex.error is None:
            ex.progress()
        return ex.response_done or ex.error is not None

    def trailers(self) -> tuple[list | None, Variant | None]:
        ex = self.exchange
        if ex.error is not None and not ex.response_done:
            return None, ex.error
        return (ex.response_trailers or None), None

    def discard(self) -> None:
        self.exchange.discard_response_body()
        self.exchange.discard_body = True

    def close(self) -> None:
        if not self.exchange.response_done:
            self.exchange.drop_response()


class OutgoingHandler(HostInterface):
    wit = "wasi:http/outgoing-handler@0.2.9"

    def __init__(self, http: GuestHttp):
        self.http = http

    def handle(self, request: OutgoingRequest, options: RequestOptions | None) -> FutureIncomingResponse:
        scheme = scheme_to_str(request.scheme())
        if scheme not in ("http", "https"):
            raise Err(Variant("HTTP-protocol-error"))
        authority = request.authority()
        if not authority:
            raise Err(Variant("HTTP-request-URI-invalid"))
        try:
            host, port = parse_authority(authority, scheme)
        except HttpError as e:
            raise Err(e.error_code) from None
        headers = request.headers().wire()
        head = RequestHead(method_to_bytes(request.method()), (request.path_with_query() or "/").encode(),
                           authority, scheme, headers)
        body = request.outgoing_body
        timeouts = options or RequestOptions()
        exchange = ClientExchange(self.http.client, Origin(scheme, host.lower(), port), head,
                                  has_body_stream=body is not None,
                                  connect_timeout_ns=timeouts.connect_timeout(),
                                  first_byte_timeout_ns=timeouts.first_byte_timeout(),
                                  between_bytes_timeout_ns=timeouts.between_bytes_timeout())
        try:
            exchange.progress()  # resolves and checks the policy now: a refused host is handle's error
        except HttpError as e:
            raise Err(e.error_code) from None
        if exchange.error is not None and exchange.channel is None and exchange.dial is None:
            if exchange.error.case == "destination-IP-prohibited":  # "not allowed to be made" (WIT)
                raise Err(exchange.error)
        if body is not None:
            body.attach(RequestTarget(exchange))
        return FutureIncomingResponse(exchange)
