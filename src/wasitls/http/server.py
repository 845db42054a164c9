"""The server under `wasitls serve`: a wasi:http/incoming-handler component behind HTTP, TLS done by the host.

    listener ⇄ (TLS engine, identity chosen by SNI, client certificates) ⇄ h11 / h2 ⇄ incoming-request,
    response-outparam ⇄ the guest's `handle`

One thread per connection, so a slow client (a slowloris trickling its headers) holds only its own
thread, and is cut off at --header-timeout. Requests run in at most --max-concurrent guest
instances at a time, each request in a fresh instance as on `wasmtime serve` (--reuse-instances keeps
them for the next request, unless one trapped); a trap gives the client a 500 and the server goes on.
SIGTERM stops accepting, lets requests in flight finish (up to --grace seconds), then exits. --workers N runs N such processes on one port
(SO_REUSEPORT), the kernel spreading connections among them.

A verified client certificate (with --client-ca-file) reaches the guest as the `client-cert` request
header (RFC 9440: the DER certificate, base64, between colons); the host removes any `client-cert`
or `client-cert-chain` header a client sends itself.
"""

from __future__ import annotations

import base64
import socket
import sys
import threading
import time
from http import HTTPStatus
from typing import Any

import h11

from ..component.values import Err, Ok, Variant
from ..wasi.io.poll import Wait, wait_any
from ..wasi.io.streams import StreamClosed, StreamFailed
from ..wasi.sockets.tcp import TcpSink, TcpSource
from . import errors
from .errors import HttpFailure
from .transport import OUT_LIMIT, ByteStream, HttpError
from .types import Fields, IncomingRequest, OutgoingResponse, ResponseOutparam, method_from_bytes

CLIENT_CERT_HEADERS = (b"client-cert", b"client-cert-chain")
SPARE_INSTANCES = 2  # fresh instances kept ready when each request gets its own
SERVER_NAME = b"wasitls"


class ServeOptions:
    def __init__(self, *, addr: str = "0.0.0.0:8080", max_concurrent: int = 16, header_timeout: float = 10.0,
                 idle_timeout: float = 30.0, grace: float = 30.0, max_connections: int = 1024):
        host, _, port = addr.rpartition(":")
        self.host = host.strip("[]") or "0.0.0.0"
        self.port = int(port)
        self.max_concurrent = max_concurrent  # requests in guest code at once
        self.header_timeout = header_timeout  # for a request's head, once its first byte came
        self.idle_timeout = idle_timeout  # a keep-alive connection waiting for its next request
        self.grace = grace  # after SIGTERM, for the requests in flight
        self.max_connections = max_connections  # open at once; more are closed as they come


class Timeout(Exception):
    pass


class _Until:
    """A readiness source for wait_any: ready when `predicate()` holds or the deadline passed."""

    def __init__(self, predicate: Any, wait: Any, deadline: float | None):
        self.predicate = predicate
        self.wait = wait
        self.deadline = deadline

    def poll_ready(self) -> bool:
        return self.predicate() or (self.deadline is not None and time.monotonic() >= self.deadline)

    def wait_on(self) -> Wait:
        w = self.wait()
        return Wait(read_fds=w.read_fds, write_fds=w.write_fds, also=w.also,
                    deadline_ns=None if self.deadline is None else int(self.deadline * 1e9))


def block_until(predicate: Any, wait: Any, deadline: float | None) -> None:
    while not predicate():
        if deadline is not None and time.monotonic() >= deadline:
            raise Timeout
        wait_any([_Until(predicate, wait, deadline)])


# -- guest instances ------------------------------------------------------------------------------

class Handlers:
    """Instances of the handler component: at most `limit` handling requests at once."""

    def __init__(self, new_instance: Any, interface: str, limit: int, reuse: bool = False):
        self.new_instance = new_instance  # () -> (instance, lifetime): a fresh instance of the component
        self.interface = interface
        # as wasmtime serve: a fresh instance per request, unless the guest is known to allow reuse
        # (StarlingMonkey's fetch event, for one, answers once per instance)
        self.reuse = reuse
        self.slots = threading.BoundedSemaphore(limit)
        self.idle: list[tuple[Any, Any]] = []
        self.lock = threading.Lock()

    def _new(self) -> tuple[Any, Any]:
        return self.new_instance()

    def _take(self) -> tuple[Any, Any]:
        with self.lock:
            pair = self.idle.pop() if self.idle else None
        return pair if pair is not None else self._new()

    def refill(self) -> None:
        """After a response went out: the instance a next request will take, made by this connection's
        thread while the client reads (a thread of its own would contend with the requests for the
        interpreter lock, and each host call would wait out a switch interval)."""
        if self.reuse:
            return
        with self.lock:
            if len(self.idle) >= SPARE_INSTANCES:
                return
        try:
            pair = self._new()
        except Exception:  # the next request meets the same error and reports it
            return
        with self.lock:
            self.idle.append(pair)

    def handle(self, request: IncomingRequest, outparam: ResponseOutparam) -> None:
        """Runs the guest's handle; raises GuestTrap after a trap (the instance is then discarded)."""
        with self.slots:
            pair = self._take()
            instance, lifetime = pair
            try:
                instance.call(self.interface, "handle", request, outparam)
            except BaseException:
                lifetime.end()  # a trapped instance is not used again: its sockets and TLS end now
                instance.close()
                raise
            if self.reuse:
                with self.lock:
                    self.idle.append(pair)
            else:
                lifetime.end()
                instance.close()  # goes now, by reference counting, not in a garbage collection later

    def warm(self) -> None:
        """Instantiate one now, so a component that cannot start fails before the port opens."""
        pair = self._new()
        self.idle.append(pair)


# -- one request on the guest's side ----------------------------------------------------------------

class ResponseWriter:
    """What the guest's response-outparam and outgoing-body write to: an HTTP engine's response."""

    def __init__(self, exchange: "Exchange"):
        self.exchange = exchange
        self.failure: Variant | None = None

    def room(self) -> int:
        stream = self.exchange.stream
        try:
            stream.flush_out()
        except HttpError as e:
            self.failure = e.error_code
            return 1
        return max(0, OUT_LIMIT - stream.queued)

    def write(self, data: bytes) -> None:
        try:
            self.exchange.send_data(data)
        except HttpError as e:
            self.failure = e.error_code

    def finish(self, trailers: list) -> None:
        self.exchange.send_end(trailers)

    def abandon(self) -> None:
        self.exchange.body_abandoned = True

    def poll_ready(self) -> bool:
        return self.room() > 0

    def wait_on(self) -> Wait:
        return self.exchange.stream.wait(for_input=False)


class Exchange:
    """One request and its response, on an HTTP/1.1 or HTTP/2 connection (see H1/H2 below)."""

    def __init__(self, stream: ByteStream):
        self.stream = stream
        self.status: int | None = None
        self.sent_head = False
        self.ended = False
        self.body_abandoned = False
        self.bytes_out = 0
        self.response: OutgoingResponse | None = None

    def deliver(self, result: Any) -> None:
        """response-outparam.set (or its drop, result None)."""
        if isinstance(result, Ok):
            result = result.value
        if isinstance(result, OutgoingResponse):
            self.response = result
            self.status = result.status_code()
            headers = [(n, v) for n, v in result.headers().wire() if n.lower() not in (b"date", b"server")]
            self.send_head(self.status, headers)
            writer = ResponseWriter(self)
            result.target = writer
            if result.outgoing_body is not None:
                result.outgoing_body.attach(writer)
            return
        code = result.value if isinstance(result, Err) else None
        self.error_response(500, f"the handler failed: {errors.describe(code)}\n" if code is not None
                            else "the handler set no response\n")

    def error_response(self, status: int, text: str) -> None:
        if self.sent_head:
            return
        body = text.encode()
        self.status = status
        self.send_head(status, [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())])
        self.send_data(body)
        self.send_end([])

    def complete(self) -> bool:
        """After the guest returned: end what it left open; False if the connection must close."""
        if not self.sent_head:
            self.error_response(500, "the handler set no response\n")
        if not self.ended:
            response = self.response
            if response is not None and response.outgoing_body is None:
                self.send_end([])  # no body was ever asked for: an empty one
            else:
                return False  # a body dropped unfinished: the response cannot end cleanly
        return True


class H1Exchange(Exchange):
    def __init__(self, stream: ByteStream, conn: h11.Connection):
        super().__init__(stream)
        self.conn = conn

    def _send(self, event: Any) -> None:
        try:
            data = self.conn.send(event)
        except h11.LocalProtocolError as e:
            raise HttpError(Variant("HTTP-protocol-error"), str(e)) from None
        self.stream.send(data)

    def send_head(self, status: int, headers: list) -> None:
        self.sent_head = True
        self._send(h11.Response(status_code=status, headers=[(b"server", SERVER_NAME), *headers],
                                reason=_reason(status)))

    def send_data(self, data: bytes) -> None:
        self.bytes_out += len(data)
        self._send(h11.Data(data=data))

    def send_end(self, trailers: list) -> None:
        self.ended = True
        chunked = self.conn.their_http_version == b"1.1" and not any(
            n.lower() == b"content-length" for n, _ in (self.response.headers().wire() if self.response else []))
        self._send(h11.EndOfMessage(headers=trailers if chunked else []))
        self.stream.flush_out()


class RequestBody:
    """A request body as incoming-body reads it (the feed protocol of types.py), read on demand."""

    def __init__(self, source: Any):
        self.source = source  # read_some() -> bytes | None (end); failed() ; trailers()
        self.buffer = bytearray()
        self.done = False
        self.error: Variant | None = None
        self.discarding = False

    def _fill(self) -> None:
        if self.done or self.error is not None or self.buffer:
            return
        try:
            data = self.source.read_some()
        except HttpError as e:
            self.error = e.error_code
            return
        if data is None:
            self.done = True
        elif data:
            self.buffer += data

    def read(self, n: int) -> bytes:
        self._fill()
        if self.buffer:
            data = bytes(self.buffer[:n])
            del self.buffer[:n]
            return data
        if self.error is not None:
            raise StreamFailed(HttpFailure(self.error))
        if self.done:
            raise StreamClosed
        return b""

    def poll_ready(self) -> bool:
        self._fill()
        return bool(self.buffer) or self.done or self.error is not None

    def wait_on(self) -> Wait:
        return self.source.wait()

    def trailers_ready(self) -> bool:
        """The body read to its end (what the guest left is discarded): the trailers are known."""
        while not self.done and self.error is None:
            self.buffer.clear()
            self._fill()
            if not self.buffer and not self.done and self.error is None:
                return False  # nothing more has arrived yet
        return True

    def trailers(self) -> tuple[list | None, Variant | None]:
        if self.error is not None:
            return None, self.error
        return self.source.trailers() or None, None

    def discard(self) -> None:
        self.discarding = True

    def close(self) -> None:
        pass

    def drain(self, deadline: float) -> bool:
        """Reads what the guest left of the body, so the connection can carry the next request."""
        while not self.done and self.error is None:
            self.buffer.clear()
            self._fill()
            if not self.buffer and not self.done and self.error is None:
                try:
                    block_until(lambda: self.source.readable(), self.source.wait, deadline)
                except Timeout:
                    return False
        return self.error is None


class H1RequestSource:
    def __init__(self, conn: h11.Connection, stream: ByteStream):
        self.conn = conn
        self.stream = stream
        self.trailer_fields: list = []
        self.received = 0

    def read_some(self) -> bytes | None:
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as e:
                raise HttpError(Variant("HTTP-protocol-error"), str(e)) from None
            if isinstance(event, h11.Data):
                self.received += len(event.data)
                return bytes(event.data)
            if isinstance(event, h11.EndOfMessage):
                self.trailer_fields = list(event.headers.raw_items())
                return None
            if isinstance(event, h11.ConnectionClosed):
                raise HttpError(Variant("HTTP-request-body-size", self.received), "the client closed early")
            if event is h11.PAUSED:
                return None
            # NEED_DATA
            data = self.stream.recv(1 << 16)
            if data == b"":
                return b""
            self.conn.receive_data(data or b"")

    def readable(self) -> bool:
        return self.stream.readable()

    def wait(self) -> Wait:
        return self.stream.wait(for_input=True)

    def trailers(self) -> list:
        return self.trailer_fields


# -- connections ----------------------------------------------------------------------------------

class Server:
    def __init__(self, options: ServeOptions, handlers: Handlers, tls: Any | None, log: Any):
        self.options = options
        self.handlers = handlers
        self.tls = tls  # ServerTls or None
        self.log = log
        self.stopping = threading.Event()
        self.active = 0
        self.active_lock = threading.Lock()
        self.connections = threading.BoundedSemaphore(options.max_connections)
        self.listener: socket.socket | None = None

    def bind(self, *, reuse_port: bool = False) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.options.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:  # --workers: one port, many processes (only then: a second server is an error)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((self.options.host, self.options.port))
        sock.listen(1024)
        self.listener = sock
        return sock

    def serve_forever(self) -> None:
        listener = self.listener
        listener.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                client, peer = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                if self.stopping.is_set():
                    break
                continue
            if not self.connections.acquire(blocking=False):
                client.close()  # over the connection limit
                continue
            threading.Thread(target=self._connection, args=(client, peer), daemon=True).start()
        listener.close()
        deadline = time.monotonic() + self.options.grace
        while time.monotonic() < deadline:
            with self.active_lock:
                if not self.active:
                    break
            time.sleep(0.02)

    def stop(self) -> None:
        self.stopping.set()

    def _connection(self, sock: socket.socket, peer: Any) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream = None
        try:
            source, sink = TcpSource(sock), TcpSink(sock)
            if self.tls is None:
                stream = ByteStream(source, sink, sock=sock)
            else:
                stream = self.tls.accept(sock, source, sink, time.monotonic() + self.options.header_timeout)
                if stream is None:
                    return
            if stream.alpn == "h2":
                from .server_h2 import serve_h2

                serve_h2(self, stream, peer)
            else:
                self._serve_h1(stream, peer)
        except (HttpError, Timeout, OSError):
            pass
        finally:
            if stream is not None:
                stream.close()
            else:
                sock.close()
            self.connections.release()

    def _serve_h1(self, stream: ByteStream, peer: Any) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        first = True
        while not self.stopping.is_set() or first:
            first = False
            # the head of the next request: an idle connection waits idle_timeout for its first byte,
            # then the whole head must arrive within header_timeout (a slowloris is cut off)
            start = time.monotonic()
            deadline = start + self.options.idle_timeout
            event = None
            while event is None:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as e:
                    self._bad_request(stream, conn, peer, e)
                    return
                if event is h11.NEED_DATA:
                    event = None
                    data = stream.recv(1 << 16)
                    if data is None:
                        conn.receive_data(b"")
                        continue
                    if data:
                        if conn.their_state is h11.IDLE and not conn.trailing_data[0]:
                            deadline = min(deadline, time.monotonic() + self.options.header_timeout)
                        conn.receive_data(data)
                        continue
                    try:
                        block_until(stream.readable, lambda: stream.wait(for_input=True), deadline)
                    except Timeout:
                        if conn.their_state is not h11.IDLE or conn.trailing_data[0]:
                            self._log(peer, "-", 408, 0, start)
                        return
                elif event is h11.PAUSED:
                    return
            if isinstance(event, h11.ConnectionClosed):
                return
            if not isinstance(event, h11.Request):
                return
            if not self._h1_request(stream, conn, event, peer, time.monotonic()):
                return
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    def _bad_request(self, stream: ByteStream, conn: h11.Connection, peer: Any, e: Exception) -> None:
        status = getattr(e, "error_status_hint", 400)
        try:
            body = b"bad request\n"
            stream.send(conn.send(h11.Response(status_code=status, headers=[
                (b"content-length", str(len(body)).encode()), (b"connection", b"close")])))
            stream.send(conn.send(h11.Data(data=body)))
            stream.send(conn.send(h11.EndOfMessage()))
            block_until(lambda: not stream.queued, lambda: stream.wait(for_input=False), time.monotonic() + 2)
        except Exception:
            pass
        self._log(peer, "-", status, 0, time.monotonic())

    def _h1_request(self, stream: ByteStream, conn: h11.Connection, req: h11.Request, peer: Any,
                    start: float) -> bool:
        headers = [(n, v) for n, v in req.headers.raw_items() if n.lower() not in CLIENT_CERT_HEADERS]
        authority = next((v.decode("latin-1") for n, v in headers if n.lower() == b"host"), None)
        if conn.client_is_waiting_for_100_continue:
            # the body is welcome (as http.server answers `Expect: 100-continue` at once)
            stream.send(conn.send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")))
        exchange = H1Exchange(stream, conn)
        source = H1RequestSource(conn, stream)
        body = RequestBody(source)
        line = f"{req.method.decode()} {req.target.decode('latin-1')} HTTP/{req.http_version.decode()}"
        ok = self.run_handler(exchange, req.method, req.target.decode("latin-1"), authority, headers, body, stream)
        try:
            if ok:
                ok = body.drain(time.monotonic() + self.options.header_timeout)
            stream.flush_out()
            block_until(lambda: not stream.queued, lambda: stream.wait(for_input=False),
                        time.monotonic() + self.options.idle_timeout)
        except (HttpError, Timeout):
            ok = False
        self._log(peer, line, exchange.status or 500, exchange.bytes_out, start)
        self.handlers.refill()
        return ok and not self.stopping.is_set()

    def run_handler(self, exchange: Exchange, method: bytes, target: str, authority: str | None, headers: list,
                    body: RequestBody, stream: ByteStream) -> bool:
        """Calls the guest for one request; False if the connection cannot carry another."""
        from ..component.errors import GuestTrap

        if self.tls is not None and stream.tls is not None:
            cert = self.tls.client_cert_header(stream.tls)
            if cert is not None:
                headers = headers + [(b"client-cert", cert)]
        request = IncomingRequest(method_from_bytes(method), target,
                                  Variant("HTTPS") if stream.tls is not None else Variant("HTTP"),
                                  authority, Fields.received(headers), body)
        outparam = ResponseOutparam(exchange.deliver)
        with self.active_lock:
            self.active += 1
        try:
            self.handlers.handle(request, outparam)
        except GuestTrap as e:
            print(f"wasitls serve: the handler trapped: {e}", file=sys.stderr, flush=True)
            exchange.error_response(500, "the handler trapped\n")
            return exchange.ended and not exchange.body_abandoned
        except HttpError:
            return False
        finally:
            with self.active_lock:
                self.active -= 1
        try:
            return exchange.complete() and not exchange.body_abandoned
        except HttpError:
            return False

    def _log(self, peer: Any, line: str, status: int, size: int, start: float) -> None:
        if self.log is None:
            return
        when = time.strftime("%d/%b/%Y:%H:%M:%S %z")
        host = peer[0] if isinstance(peer, tuple) else "-"
        self.log(f'{host} - - [{when}] "{line}" {status} {size} {time.monotonic() - start:.4f}')


# -- TLS termination ------------------------------------------------------------------------------

class ServerTls:
    """The server side of TLS: identities chosen by SNI, ALPN h2/http/1.1, client certificates."""

    def __init__(self, guest_tls: Any, identity_names: list[str], require_client_cert: bool):
        self.guest_tls = guest_tls  # a tls_streams.GuestTls for the server's own connections
        self.require_client_cert = require_client_cert
        identities = guest_tls.settings.identities
        self.identities = [(name, identities[name]) for name in identity_names]
        self.names = {name: _dns_names(identity) for name, identity in self.identities}

    def choose(self, server_name: str | None) -> list[Any]:
        """The identities whose certificate names the SNI host; the first identity when none does."""
        if server_name:
            host = server_name.lower().rstrip(".")
            matching = [i for name, i in self.identities if any(_name_matches(p, host) for p in self.names[name])]
            if matching:
                return matching
        return [self.identities[0][1]]

    def accept(self, sock: socket.socket, source: TcpSource, sink: TcpSink, deadline: float) -> ByteStream | None:
        conn = self.guest_tls.server(source, sink)
        try:
            block_until(lambda: (conn.advance(), conn.settled_or_paused())[1], conn.wait_for_input, deadline)
            if conn.paused_at == "client-hello":
                conn.configure_server_identities(self.choose(conn.client_hello.server_name))
                conn.configure_alpn_ids([b"h2", b"http/1.1"])
                if self.require_client_cert:
                    conn.request_client_identity()
                conn.go_on()
                block_until(lambda: (conn.advance(conn.handshake_settled), conn.handshake_settled())[1],
                            conn.wait_for_input, deadline)
        except Timeout:
            conn.release()
            return None
        if conn.failure is not None:
            conn.release()
            return None
        if self.require_client_cert and (not conn.client_identities or conn.client_identities[-1] is None):
            conn.abort()  # verified against --client-ca-file, but none was sent
            try:
                block_until(lambda: conn.when_sent().poll_ready(), conn.wait_for_input, time.monotonic() + 1)
            except Timeout:
                pass
            conn.release()
            return None
        alpn_id = conn.facts().alpn_id
        return ByteStream(conn.plaintext_source(), conn.plaintext_sink(), sock=sock, tls=conn,
                          alpn=alpn_id.decode() if alpn_id else None)

    def client_cert_header(self, conn: Any) -> bytes | None:
        if not conn.client_identities or conn.client_identities[-1] is None:
            return None
        leaf = conn.client_identities[-1].export_x509_chain()[0]
        return b":" + base64.b64encode(leaf) + b":"


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _dns_names(identity: Any) -> list[str]:
    from cryptography import x509

    cert = x509.load_der_x509_certificate(identity.public_identity().export_x509_chain()[0])
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        return [a.value.lower() for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]


def _name_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host.count(".") == pattern.count(".") and host.endswith(pattern[1:])
    return pattern == host


# -- the command ----------------------------------------------------------------------------------
