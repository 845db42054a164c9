"""The layers under HTTP: a TCP connection (through the capability policy), TLS over it when the
scheme asks for it, handed up as one byte stream. HTTP engines see only `ByteStream`; they never
know whether TLS is under it.

    Dial(...).step()     non-blocking: resolve, check the policy, connect, TLS handshake (through
                         tls_streams, the glue every TLS front end uses); a
                         ByteStream when done, HttpError with the error-code when it failed
    ByteStream           send / recv / readiness over a source and sink (wasi/io/streams.py's
                         backend protocol): the TCP socket's, or the TLS connection's plaintext ones
"""

from __future__ import annotations

import errno as E
import ipaddress
import select
import socket
import time
from typing import Any, Callable, NamedTuple

from ..component.values import Err, Variant
from ..policy import NetworkUse
from ..wasi.io.poll import Wait
from ..wasi.io.streams import StreamClosed, StreamFailed
from ..wasi.sockets.ip_name_lookup import parse_host
from ..wasi.sockets.network import SocketAddress
from ..wasi.sockets.tcp import TcpSink, TcpSource
from . import errors

OUT_LIMIT = 1 << 18  # bytes an HTTP engine may queue before its writers are held back
ALPN_IDS = (b"h2", b"http/1.1")


class HttpError(Exception):
    """A failure with the `error-code` the guest sees."""

    def __init__(self, error_code: Variant, detail: str | None = None):
        self.error_code = error_code
        super().__init__(detail or errors.describe(error_code))


class Origin(NamedTuple):
    scheme: str  # "http" or "https"
    host: str  # a name or an IP literal (no brackets)
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


class ByteStream:
    """A connected byte stream with an outbound queue: HTTP engines' bytes go out as the sink allows."""

    def __init__(self, source: Any, sink: Any, *, sock: socket.socket, tls: Any = None, alpn: str | None = None):
        self.source = source
        self.sink = sink
        self.sock = sock
        self.tls = tls  # the TLS connection, if any (its facts, its trace line at release)
        self.alpn = alpn  # the protocol ALPN chose ("h2", "http/1.1"), None without TLS or ALPN
        self.out = bytearray()
        self.eof = False
        self.closed = False

    # -- out -----------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if data:
            self.out += data
        self.flush_out()

    def flush_out(self) -> None:
        while self.out and not self.closed:
            try:
                permit = self.sink.check_write()
            except StreamClosed:
                raise HttpError(Variant("connection-terminated"), "the peer closed the connection") from None
            except StreamFailed as e:
                raise HttpError(_failure_code(e, self.tls), e.error.message) from None
            if not permit:
                return
            n = min(permit, len(self.out))
            try:
                self.sink.write(bytes(self.out[:n]))
                del self.out[:n]
                if not self.out:
                    self.sink.flush()
            except StreamClosed:
                raise HttpError(Variant("connection-terminated"), "the peer closed the connection") from None
            except StreamFailed as e:
                raise HttpError(_failure_code(e, self.tls), e.error.message) from None

    @property
    def queued(self) -> int:
        return len(self.out)

    # -- in ------------------------------------------------------------------------------------
    def recv(self, n: int = 1 << 16) -> bytes | None:
        """What has arrived (b"" when nothing now), None at the end of the stream."""
        if self.eof:
            return None
        try:
            data = self.source.read(n)
        except StreamClosed:
            self.eof = True
            return None
        except StreamFailed as e:
            self.eof = True
            raise HttpError(_failure_code(e, self.tls), e.error.message) from None
        return bytes(data) if data else b""

    def readable(self) -> bool:
        return self.eof or bool(self.source.poll_ready())

    def wait(self, *, for_input: bool = True) -> Wait:
        also = []
        if for_input and not self.eof:
            also.append(self.source)
        if self.out:
            also.append(self.sink)
        return Wait(also=tuple(also))

    def alive(self) -> bool:
        """For reuse from the pool: nothing arrived while idle (an idle peer sends nothing but its end)."""
        if self.closed or self.eof:
            return False
        try:
            return not self.source.poll_ready()
        except Exception:
            return False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.tls is not None:
            self.tls.release()  # HTTP frames its own messages: no close_notify to wait for
        try:
            self.sink.detach()
        except AttributeError:
            pass
        self.sock.close()


def _failure_code(e: StreamFailed, tls: Any) -> Variant:
    if tls is not None and tls.failure is not None:
        return errors.from_tls_failure(tls.failure)
    net = getattr(e.error, "net_code", None)
    if net in ("connection-reset", "connection-aborted"):
        return Variant("connection-terminated")
    if net == "timeout":
        return Variant("connection-read-timeout")
    return errors.internal(e.error.message)


def parse_authority(authority: str, scheme: str) -> tuple[str, int]:
    """'example.com:8443' -> ('example.com', 8443); the scheme's port when none is given."""
    default = 443 if scheme == "https" else 80
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port_s = rest[1:] if rest.startswith(":") else ""
    elif authority.count(":") == 1:
        host, port_s = authority.split(":")
    else:
        host, port_s = authority, ""
    if "@" in host or not host:
        raise HttpError(Variant("HTTP-request-URI-invalid"), f"invalid authority {authority!r}")
    if port_s:
        if not port_s.isdigit() or not 0 < int(port_s) < 65536:
            raise HttpError(Variant("HTTP-request-URI-invalid"), f"invalid port in {authority!r}")
        return host, int(port_s)
    return host, default


class Dial:
    """Connecting to an origin without blocking: resolve, policy, TCP connect, TLS handshake."""

    def __init__(self, policy: Any, guest_tls: Callable[[], Any], origin: Origin, *,
                 connect_timeout_ns: int | None, client_identity: Any = None, alpn: tuple[bytes, ...] = ALPN_IDS):
        self.policy = policy
        self.guest_tls = guest_tls  # the guest's tls_streams.GuestTls, made on the first HTTPS request
        self.origin = origin
        self.client_identity = client_identity
        self.alpn = list(alpn)
        self.deadline_ns = None if connect_timeout_ns is None else time.monotonic_ns() + connect_timeout_ns
        self.sock: socket.socket | None = None
        self.addresses = self._resolve()
        self.tls: Any = None
        self.done: ByteStream | None = None
        self._connect_next()

    def _resolve(self) -> list[tuple[int, tuple]]:
        """The addresses to try, those the policy lets the guest reach (as wasi:sockets would ask it)."""
        port = self.origin.port
        try:
            host = parse_host(self.origin.host)
        except Err:
            raise HttpError(Variant("HTTP-request-URI-invalid"), f"invalid host {self.origin.host!r}") from None
        if not self.policy.check(NetworkUse.NAME_LOOKUP, str(host)):
            raise HttpError(Variant("destination-IP-prohibited"), f"--allow-net does not allow {host}")
        try:
            infos = socket.getaddrinfo(str(host), port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except socket.gaierror as e:
            raise HttpError(errors.from_gaierror(e), f"{host}: {e.strerror}") from None
        allowed = []
        for family, _, _, _, sockaddr in infos:
            addr = SocketAddress(ipaddress.ip_address(sockaddr[0].split("%")[0]), port)
            if self.policy.check(NetworkUse.TCP_CONNECT, addr):
                allowed.append((family, sockaddr))
        if not allowed:
            raise HttpError(Variant("destination-IP-prohibited"), f"--allow-net does not allow {host}:{port}")
        return allowed

    def _connect_next(self) -> None:
        last = E.ECONNREFUSED
        while self.addresses:
            family, sockaddr = self.addresses.pop(0)
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = sock.connect_ex(sockaddr)
            if code in (0, E.EINPROGRESS, E.EAGAIN):
                self.sock = sock
                return
            sock.close()
            last = code
        raise HttpError(errors.from_connect_errno(last), f"connect to {self.origin}: {E.errorcode.get(last, last)}")

    def _timed_out(self) -> bool:
        return self.deadline_ns is not None and time.monotonic_ns() >= self.deadline_ns

    def step(self) -> ByteStream | None:
        """Moves on as far as it can now; the stream once connected (and TLS established)."""
        if self.done is not None:
            return self.done
        if self.tls is None:
            poller = select.poll()
            poller.register(self.sock.fileno(), select.POLLOUT)
            if not poller.poll(0):
                if self._timed_out():
                    self.abandon()
                    raise HttpError(Variant("connection-timeout"), f"connect to {self.origin} timed out")
                return None
            code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self.sock.close()
                self.sock = None
                if self.addresses:
                    self._connect_next()
                    return self.step()
                raise HttpError(errors.from_connect_errno(code), f"connect to {self.origin}: {E.errorcode.get(code, code)}")
            source, sink = TcpSource(self.sock), TcpSink(self.sock)
            if self.origin.scheme != "https":
                self.done = ByteStream(source, sink, sock=self.sock)
                return self.done
            self._start_tls(source, sink)
        conn = self.tls
        conn.advance(conn.handshake_settled)
        if conn.failure is not None:
            failure = conn.failure
            conn.release()
            self.sock.close()
            raise HttpError(errors.from_tls_failure(failure), f"TLS with {self.origin.host}: {failure}")
        if not conn.handshake_complete:
            if self._timed_out():
                self.abandon()
                raise HttpError(Variant("connection-timeout"), f"TLS handshake with {self.origin} timed out")
            return None
        alpn_id = conn.facts().alpn_id
        self.done = ByteStream(conn.plaintext_source(), conn.plaintext_sink(), sock=self.sock, tls=conn,
                               alpn=alpn_id.decode() if alpn_id else None)
        return self.done

    def _start_tls(self, source: TcpSource, sink: TcpSink) -> None:
        try:
            conn = self.guest_tls().client(self.origin.host, source, sink, alpn_ids=self.alpn,
                                           client_identity=self.client_identity)
        except ValueError:
            raise HttpError(Variant("HTTP-request-URI-invalid"), f"invalid host name {self.origin.host!r}") from None
        self.tls = conn
        conn.advance(conn.handshake_settled)  # the ClientHello goes out now

    def wait_on(self) -> Wait:
        if self.tls is None:
            return Wait(write_fds=(self.sock.fileno(),), deadline_ns=self.deadline_ns)
        w = self.tls.wait_for_input()
        return Wait(also=w.also, deadline_ns=self.deadline_ns)

    def abandon(self) -> None:
        if self.tls is not None:
            self.tls.release()
        if self.sock is not None:
            self.sock.close()
