"""The WasmEdge socket extension to preview 1 (Timecraft's two dialects) and hTLS, over wasi:sockets.

A socket descriptor holds a wasi:sockets `tcp-socket` or `udp-socket` (wasi/sockets/), so every
bind, connect, send and lookup passes the same policy checks and state machine as on the component
host; its connection's bytes move through the same stream backends. hTLS puts a connection of the
one TLS glue (tls_streams.py, what wasi:tls uses) between those backends and the guest's reads and
writes. The ABI, its layouts and constants: docs/preview1.md and shared notes PREVIEW1-SOCKETS.md.

Dialect: V1 when `sock_accept` takes 2 parameters or sock_getlocaladdr/sock_getpeeraddr take 4,
else V2 (Timecraft's rule). They differ in sock_accept, sock_getlocaladdr/peeraddr and
sock_recv_from; addresses are told apart by their buffer length (4/16: V1 raw octets, 128: V2).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Callable

from ..component.values import Err
from ..policy import NetworkUse
from ..wasi.io.poll import Wait, wait_any
from ..wasi.io.streams import StreamClosed, StreamFailed
from ..wasi.sockets.network import (SocketAddress, canonical, get_buffer_size, new_os_socket, set_buffer_size,
                                    socket_address_from_os, socket_address_from_wit)
from ..wasi.sockets.ip_name_lookup import parse_host
from ..wasi.sockets.tcp import CONNECTED, CONNECTING, LISTENING, TcpSocket
from ..wasi.sockets.udp import UdpSocket
from . import witx
from .abi import (Errno, gather, get_bytes, get_u16, get_u32, iovecs, make_adapter, put_bytes, put_u16, put_u32,
                  scatter)
from .fds import Fd

AF_UNSPEC, AF_INET, AF_INET6 = 0, 1, 2
SOCK_ANY, SOCK_DGRAM, SOCK_STREAM = 0, 1, 2
SOL_SOCKET, IPPROTO_TCP = 0, 6
SO_REUSEADDR, SO_TYPE, SO_ERROR, SO_BROADCAST, SO_SNDBUF, SO_RCVBUF, SO_KEEPALIVE = 0, 1, 2, 4, 5, 6, 7
SO_ACCEPTCONN, TCP_NODELAY = 13, 15
AI_PASSIVE, AI_NUMERICHOST, AI_NUMERICSERV = 1, 4, 8

# hTLS: Timecraft's level and option, then ours (docs/preview1.md has the table)
TIMECRAFT_LEVEL = 0x74696D65
HTLS_SERVER_NAME = 1  # Timecraft: set the server name, start a client handshake
HTLS_ALPN = 2  # set: ALPN ids to offer/accept (comma-separated); get: the one chosen
HTLS_IDENTITY = 3  # set: a host-held identity (--identity NAME) to present as a client
HTLS_SERVER = 4  # set on an accepted socket: a host-held identity; the host runs the server handshake
HTLS_VERSION = 5  # get: "TLSv1.3"
HTLS_CIPHER = 6  # get: the IANA cipher suite name
HTLS_REQUEST_CLIENT_CERT = 7  # set to 1 on an accepted socket before HTLS_SERVER: ask for (and verify) one
HTLS_PEER_SUBJECT = 8  # get: the verified peer certificate's subject, RFC 4514

# a failed TLS handshake (or any later TLS failure) is this errno on reads, writes and SO_ERROR
HTLS_FAILED = witx.PROTO

_INT_OPTIONS = {
    (SOL_SOCKET, SO_REUSEADDR): (socket.SOL_SOCKET, socket.SO_REUSEADDR),
    (SOL_SOCKET, SO_BROADCAST): (socket.SOL_SOCKET, socket.SO_BROADCAST),
    (SOL_SOCKET, SO_KEEPALIVE): (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    (IPPROTO_TCP, TCP_NODELAY): (socket.IPPROTO_TCP, socket.TCP_NODELAY),
}

SIGNATURES = {  # dialect-independent ones; the three that differ are chosen in SocketExtension
    "sock_open": "iii", "sock_bind": "iii", "sock_connect": "iii", "sock_listen": "ii",
    "sock_send_to": "iiiiiii", "sock_getsockopt": "iiiii", "sock_setsockopt": "iiiii",
    "sock_getaddrinfo": "iiiiiiii",
}


class SocketExtension:
    """The extension's functions for one guest, in the dialect its imports ask for."""

    def __init__(self, wasi: Any, imports: list[Any], guest_tls: Callable[[], Any]):
        self.wasi = wasi
        self.guest_tls = guest_tls  # the guest's tls_streams.GuestTls, made on first use
        # a guest that can set socket options may ask for hTLS
        self.may_use_tls = any(imp.name == "sock_setsockopt" for imp in imports)
        arity = {imp.name: len(imp.params) for imp in imports if imp.module == "wasi_snapshot_preview1"}
        self.v1 = arity.get("sock_accept") == 2 or arity.get("sock_getlocaladdr") == 4 \
            or arity.get("sock_getpeeraddr") == 4
        self.signatures = dict(SIGNATURES)
        if self.v1:
            self.signatures.update(sock_accept="ii", sock_getlocaladdr="iiii", sock_getpeeraddr="iiii",
                                   sock_recv_from="iiiiiii")
        else:
            self.signatures.update(sock_getlocaladdr="iii", sock_getpeeraddr="iii", sock_recv_from="iiiiiiii")

    def function(self, imp: Any) -> Callable[[Any], None] | None:
        sig = self.signatures.get(imp.name)
        if sig is None or imp.name == "sock_accept" and not self.v1:
            return None  # the standard sock_accept is wasi_snapshot_preview1's
        if imp.params != tuple("i32" if c == "i" else "i64" for c in sig) or imp.results != ("i32",):
            return None
        return make_adapter(getattr(self, imp.name), sig)

    # -- helpers ---------------------------------------------------------------------------------
    def mem(self) -> memoryview:
        return self.wasi.mem()

    def _socket(self, fd: int) -> "Socket":
        entry = self.wasi.fds.get(fd)
        if not isinstance(entry, Socket):
            raise Errno(witx.NOTSOCK)
        return entry

    def _address(self, ptr: int, port: int) -> SocketAddress:
        """The guest's {buf, buf_len} address and a port (host order)."""
        mem = self.mem()
        buf, length = get_u32(mem, ptr), get_u32(mem, ptr + 4)
        if length == 128:  # V2: u16 family, then the octets
            family = get_u16(mem, buf)
            size = {AF_INET: 4, AF_INET6: 16}.get(family)
            if size is None:
                raise Errno(witx.AFNOSUPPORT)
            octets = get_bytes(mem, buf + 2, size)
        elif length in (4, 16):  # V1: the octets alone
            octets = get_bytes(mem, buf, length)
        else:
            raise Errno(witx.INVAL)
        if port > 0xFFFF:
            raise Errno(witx.INVAL)
        return SocketAddress(ipaddress.ip_address(octets), port)

    def _put_address(self, ptr: int, addr: SocketAddress, port_ptr: int | None,
                     type_ptr: int | None = None) -> None:
        mem = self.mem()
        buf, length = get_u32(mem, ptr), get_u32(mem, ptr + 4)
        octets = addr.ip.packed
        family = AF_INET if addr.ip.version == 4 else AF_INET6
        if length == 128:
            put_u16(mem, buf, family)
            put_bytes(mem, buf + 2, octets)
        elif length >= len(octets):
            put_bytes(mem, buf, octets)
            put_u32(mem, ptr + 4, len(octets))
        else:
            raise Errno(witx.INVAL)
        if type_ptr is not None:
            put_u32(mem, type_ptr, family)
        if port_ptr is not None:
            put_u32(mem, port_ptr, addr.port)

    # -- the functions ---------------------------------------------------------------------------
    def sock_open(self, af: int, socktype: int, fd_ptr: int) -> None:
        family = {AF_INET: "ipv4", AF_INET6: "ipv6"}.get(af)
        if family is None:
            raise Errno(witx.AFNOSUPPORT)
        if socktype not in (SOCK_ANY, SOCK_DGRAM, SOCK_STREAM):
            raise Errno(witx.INVAL)
        ctx = self.wasi.ctx
        udp = socktype == SOCK_DGRAM
        # a guest granted no network at all cannot even make a socket (as on the component host)
        if not ctx.policy.check(NetworkUse.CREATE_UDP_SOCKET if udp else NetworkUse.CREATE_TCP_SOCKET, None):
            raise Errno(witx.ACCES)
        if udp:
            sock = Socket(self.wasi, self.guest_tls,
                          udp=UdpSocket(ctx, family, new_os_socket(family, socket.SOCK_DGRAM)))
        else:
            sock = Socket(self.wasi, self.guest_tls,
                          tcp=TcpSocket(ctx, family, new_os_socket(family, socket.SOCK_STREAM)))
        put_u32(self.mem(), fd_ptr, self.wasi.fds.add(sock))

    def sock_bind(self, fd: int, addr_ptr: int, port: int) -> None:
        self._socket(fd).bind(self._address(addr_ptr, port))

    def sock_connect(self, fd: int, addr_ptr: int, port: int) -> None:
        self._socket(fd).connect(self._address(addr_ptr, port))

    def sock_listen(self, fd: int, backlog: int) -> None:
        self._socket(fd).listen(backlog)

    def sock_accept(self, fd: int, fd_ptr: int) -> None:  # V1; V2 uses the standard one
        accepted = self._socket(fd).accept(nonblocking=False)
        put_u32(self.mem(), fd_ptr, self.wasi.fds.add(accepted))

    def sock_getlocaladdr(self, fd: int, addr_ptr: int, *rest: int) -> None:
        addr = self._socket(fd).local_address()
        self._put_address(addr_ptr, addr, rest[-1], rest[0] if len(rest) == 2 else None)

    def sock_getpeeraddr(self, fd: int, addr_ptr: int, *rest: int) -> None:
        addr = self._socket(fd).peer_address()
        self._put_address(addr_ptr, addr, rest[-1], rest[0] if len(rest) == 2 else None)

    def sock_recv_from(self, fd: int, iovs: int, iovs_len: int, addr_ptr: int, riflags: int, *rest: int) -> None:
        sock = self._socket(fd)
        if self.v1:
            port_ptr, (nread_ptr, roflags_ptr) = None, rest
        else:
            port_ptr, nread_ptr, roflags_ptr = rest
        mem = self.mem()
        vecs = iovecs(mem, iovs, iovs_len)
        data, truncated, source = sock.recv_from(sum(n for _, n in vecs), riflags)
        mem = self.mem()
        put_u32(mem, nread_ptr, scatter(mem, vecs, data))
        put_u16(mem, roflags_ptr, witx.ROFLAGS_RECV_DATA_TRUNCATED if truncated else 0)
        if source is not None:
            self._put_address(addr_ptr, source, port_ptr)  # V1 has no port out: the address alone

    def sock_send_to(self, fd: int, iovs: int, iovs_len: int, addr_ptr: int, port: int, siflags: int,
                     nwritten_ptr: int) -> None:
        sock = self._socket(fd)
        data = gather(self.mem(), iovs, iovs_len)
        put_u32(self.mem(), nwritten_ptr, sock.send_to(data, self._address(addr_ptr, port)))

    def sock_getsockopt(self, fd: int, level: int, name: int, value_ptr: int, value_len: int) -> None:
        value = self._socket(fd).getsockopt(level, name)
        mem = self.mem()
        if isinstance(value, int):
            if value_len != 4:
                raise Errno(witx.INVAL)
            put_u32(mem, value_ptr, value & 0xFFFFFFFF)
        else:  # a string: NUL-terminated in the guest's buffer
            raw = value.encode("utf-8") + b"\0"
            if len(raw) > value_len:
                raise Errno(witx.INVAL)
            put_bytes(mem, value_ptr, raw)

    def sock_setsockopt(self, fd: int, level: int, name: int, value_ptr: int, value_len: int) -> None:
        self._socket(fd).setsockopt(level, name, get_bytes(self.mem(), value_ptr, value_len))

    def sock_getaddrinfo(self, node: int, node_len: int, service: int, service_len: int, hints_ptr: int,
                         res_ptr: int, max_res_len: int, res_len_ptr: int) -> None:
        mem = self.mem()
        name = get_bytes(mem, node, node_len).split(b"\0", 1)[0].decode("utf-8", "replace")
        serv = get_bytes(mem, service, service_len).split(b"\0", 1)[0].decode("utf-8", "replace")
        flags, family, socktype = get_u16(mem, hints_ptr), mem[hints_ptr + 2], mem[hints_ptr + 3]
        if serv and not serv.isdigit():
            if flags & AI_NUMERICSERV:
                raise Errno(witx.INVAL)
            try:
                port = socket.getservbyname(serv)
            except OSError:
                raise Errno(witx.NOENT) from None
        else:
            port = int(serv) if serv else 0
        addresses = resolve(self.wasi.ctx, name, family, bool(flags & AI_NUMERICHOST), bool(flags & AI_PASSIVE))
        node_ptr = get_u32(mem, res_ptr)
        written = 0
        for ip in addresses:
            if written >= max_res_len or node_ptr == 0:
                break
            kinds = [socktype] if socktype else [SOCK_STREAM]
            for kind in kinds:
                af = AF_INET if ip.version == 4 else AF_INET6
                mem[node_ptr + 2] = af
                mem[node_ptr + 3] = kind
                put_u32(mem, node_ptr + 4, 6 if kind == SOCK_STREAM else 17)
                sockaddr = get_u32(mem, node_ptr + 12)
                put_u32(mem, sockaddr, af)
                data = port.to_bytes(2, "big") + ip.packed
                put_u32(mem, sockaddr + 4, len(data))
                put_bytes(mem, get_u32(mem, sockaddr + 8), data)
                put_u32(mem, node_ptr + 8, 12)
                written += 1
                last, node_ptr = node_ptr, get_u32(mem, node_ptr + 24)
        if written:
            put_u32(mem, last + 24, 0)  # the chain ends at the last node filled
        put_u32(mem, res_len_ptr, written)


def resolve(ctx: Any, name: str, family: int, numeric: bool, passive: bool) -> list[Any]:
    """getaddrinfo's addresses, as the policy allows them (a refused name is NOENT, like an unknown one)."""
    if not name:  # no node: the wildcard address to bind, or loopback to connect to
        if family == AF_INET6:
            return [ipaddress.ip_address("::" if passive else "::1")]
        return [ipaddress.ip_address("0.0.0.0" if passive else "127.0.0.1")]
    try:
        host = parse_host(name)  # normalised as the component host's lookups are
    except Exception:  # noqa: BLE001 - a name the URL host parser refuses resolves to nothing
        raise Errno(witx.NOENT) from None
    if not isinstance(host, str):
        if not ctx.policy.check(NetworkUse.NAME_LOOKUP, str(host)):
            raise Errno(witx.NOENT)
        addresses = [canonical(host)]
    else:
        if numeric or not ctx.policy.check(NetworkUse.NAME_LOOKUP, host):
            raise Errno(witx.NOENT)
        try:
            infos = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise Errno(witx.NOENT) from None
        addresses = []
        for info in infos:
            ip = canonical(ipaddress.ip_address(info[4][0].split("%", 1)[0]))
            if ip not in addresses:
                addresses.append(ip)
    wanted = {AF_INET: 4, AF_INET6: 6}.get(family)
    found = [ip for ip in addresses if wanted is None or ip.version == wanted]
    if not found:
        raise Errno(witx.NOENT)
    return found


def _net_errno(e: Err) -> int:
    return witx.from_net_code(e.value) if isinstance(e.value, str) else witx.IO


class Socket(Fd):
    """A socket descriptor: a wasi:sockets socket, its streams once connected, and hTLS."""

    def __init__(self, wasi: Any, guest_tls: Callable[[], Any], *, tcp: TcpSocket | None = None,
                 udp: UdpSocket | None = None, streams: tuple[Any, Any] | None = None, nonblocking: bool = False):
        self.wasi = wasi
        self.guest_tls = guest_tls
        self.tcp = tcp
        self.udp = udp
        self.input, self.output = streams if streams is not None else (None, None)
        self.nonblocking = nonblocking
        self.error = 0  # SO_ERROR: a failed connect, read once
        self.io_started = False
        self.eof = False
        self.peeked = b""
        self.tls: Any = None  # the hTLS connection (tls_streams.TlsConnection)
        self.tls_ready = False  # its handshake is done: reads and writes are plaintext from here on
        self.tls_name: str | None = None  # set by the option; the handshake starts once connected
        self.tls_alpn: list[bytes] = []
        self.tls_identity: Any = None
        self.tls_request_client_cert = False
        self.incoming: Any = None  # UDP datagram streams
        self.outgoing: Any = None

    @property
    def filetype(self) -> int:  # type: ignore[override]
        return witx.FILETYPE_SOCKET_DGRAM if self.udp is not None else witx.FILETYPE_SOCKET_STREAM

    def fdstat(self) -> tuple[int, int, int, int]:
        return self.filetype, witx.FDFLAGS_NONBLOCK if self.nonblocking else 0, witx.SOCKET_RIGHTS, 0

    def set_fdflags(self, flags: int) -> None:
        if flags & ~witx.FDFLAGS_NONBLOCK:
            raise Errno(witx.INVAL)
        self.nonblocking = bool(flags & witx.FDFLAGS_NONBLOCK)

    # -- connection setup --------------------------------------------------------------------------
    def bind(self, addr: SocketAddress) -> None:
        target = self.tcp if self.tcp is not None else self.udp
        target.start_bind(None, addr.to_wit())  # the policy is checked here
        target.finish_bind()

    def connect(self, addr: SocketAddress) -> None:
        if self.udp is not None:
            self._udp_streams(addr)
            return
        tcp = self.tcp
        if tcp.state == CONNECTED:
            raise Errno(witx.ISCONN)
        if tcp.state == CONNECTING:
            raise Errno(witx.ALREADY)
        tcp.start_connect(None, addr.to_wit())  # the policy is checked here
        if not self._progress():
            if self.nonblocking:
                raise Errno(witx.INPROGRESS)
            wait_any([_Readiness(self, write=True)])
        if self.error:  # reported by connect itself once it is known here
            error, self.error = self.error, 0
            raise Errno(error)

    def _progress(self) -> bool:
        """Moves a connect in progress on (without blocking); True once it has ended either way."""
        tcp = self.tcp
        if tcp is None or tcp.state != CONNECTING:
            return True
        try:
            self.input, self.output = tcp.finish_connect()
        except Err as e:
            if e.value == "would-block":
                return False
            self.error = _net_errno(e)
            return True
        if self.tls_name is not None:
            self._start_tls()
        return True

    def listen(self, backlog: int) -> None:
        tcp = self._tcp()
        if backlog > 0:
            tcp.set_listen_backlog_size(backlog)
        tcp.start_listen()
        tcp.finish_listen()

    def accept(self, nonblocking: bool) -> "Socket":
        tcp = self._tcp()
        while True:
            try:
                accepted, input_stream, output_stream = tcp.accept()
                return Socket(self.wasi, self.guest_tls, tcp=accepted, streams=(input_stream, output_stream),
                              nonblocking=nonblocking)
            except Err as e:
                if e.value != "would-block":
                    raise
            if self.nonblocking:
                raise Errno(witx.AGAIN)
            wait_any([tcp])

    def _tcp(self) -> TcpSocket:
        if self.tcp is None:
            raise Errno(witx.NOTSUP)
        return self.tcp

    def local_address(self) -> SocketAddress:
        sock = (self.tcp or self.udp).sock
        try:
            return socket_address_from_os(sock.getsockname())
        except OSError as e:
            raise Errno(witx.from_host_errno(e.errno)) from None

    def peer_address(self) -> SocketAddress:
        self._progress()
        sock = (self.tcp or self.udp).sock
        try:
            return socket_address_from_os(sock.getpeername())
        except OSError as e:
            raise Errno(witx.from_host_errno(e.errno)) from None

    # -- TCP data ------------------------------------------------------------------------------------
    def _connected(self) -> None:
        self._progress()
        if self.error:
            raise Errno(self.error)
        if self.input is None:
            raise Errno(witx.NOTCONN if self.tcp is None or self.tcp.state != CONNECTING else witx.AGAIN)

    def read(self, n: int) -> bytes | memoryview:
        if self.udp is not None:
            return self.recv_from(n, 0)[0]
        return self.recv(n, 0)[0]

    def recv(self, n: int, riflags: int) -> tuple[Any, bool]:
        if self.udp is not None:
            data, truncated, _ = self.recv_from(n, riflags)
            return data, truncated
        self.io_started = True
        if self.tcp is not None and self.tcp.state == CONNECTING and not self._progress():
            if self.nonblocking:
                raise Errno(witx.AGAIN)
            wait_any([_Readiness(self, write=True)])
        self._connected()
        peek = bool(riflags & witx.RIFLAGS_RECV_PEEK)
        if self.peeked:
            data = self.peeked[:n]
            if not peek:
                self.peeked = self.peeked[n:]
            return data, False
        data = _blocking_io(self, lambda: self._read_now(n), write=False)
        if peek:
            self.peeked = bytes(data)
        return data, False

    def _read_now(self, n: int) -> Any:
        """Bytes now, b"" at the end, None when a read would block."""
        if self.eof:
            return b""
        if self.tls is not None and not self.tls_ready:  # still shaking hands
            if self._tls_settled():
                return self._read_now(n)
            return None
        source = self.tls if self.tls is not None else self.input.source
        try:
            data = source.read(n)
        except StreamClosed:
            self.eof = True
            return b""
        except StreamFailed as e:
            raise Errno(self._stream_errno(e)) from None
        return data if len(data) or n == 0 else None

    def _stream_errno(self, e: StreamFailed) -> int:
        if self.tls is not None:
            return HTLS_FAILED
        code = getattr(e.error, "net_code", None)
        return witx.from_net_code(code) if code else witx.IO

    def write(self, data: bytes) -> int:
        if self.udp is not None:
            if self.outgoing is None:
                raise Errno(witx.DESTADDRREQ)
            return self._send_datagram(data, None)
        self.io_started = True
        if self.tcp is not None and self.tcp.state == CONNECTING and not self._progress():
            if self.nonblocking:
                raise Errno(witx.AGAIN)
            wait_any([_Readiness(self, write=True)])
        self._connected()
        return _blocking_io(self, lambda: self._write_now(data), write=True)

    def _write_now(self, data: bytes) -> int | None:
        if self.tls is not None and not self.tls_ready:
            if self._tls_settled():
                return self._write_now(data)
            return None
        try:
            if self.tls is not None:
                permit = self.tls.write_permit()
                if not permit:
                    return None
                n = min(permit, len(data))
                self.tls.write(data[:n])
                return n
            sink = self.output.sink
            permit = sink.check_write()
            if not permit:
                return None
            n = min(permit, len(data))
            sink.write(data[:n])
            return n
        except StreamClosed:
            raise Errno(witx.PIPE) from None
        except StreamFailed as e:
            raise Errno(self._stream_errno(e)) from None

    def shutdown(self, how: int) -> None:
        if not how or how & ~(witx.SDFLAGS_RD | witx.SDFLAGS_WR):
            raise Errno(witx.INVAL)
        self.io_started = True
        self._connected()
        if self.tls is not None and how & witx.SDFLAGS_WR and self.tls_ready:
            self.tls.close_output()  # close_notify first, then the FIN
        kind = {witx.SDFLAGS_RD: "receive", witx.SDFLAGS_WR: "send"}.get(how, "both")
        self.tcp.shutdown(kind)

    # -- UDP -------------------------------------------------------------------------------------------
    def _udp_streams(self, remote: SocketAddress | None) -> None:
        udp = self.udp
        if udp.state != "bound":
            any_ip = ipaddress.ip_address("0.0.0.0" if udp.family == "ipv4" else "::")
            udp.start_bind(None, SocketAddress(any_ip, 0).to_wit())
            udp.finish_bind()
        for stream in (self.incoming, self.outgoing):
            if stream is not None:
                stream.drop()
        self.incoming, self.outgoing = udp.stream(None if remote is None else remote.to_wit())

    def _send_datagram(self, data: bytes, to: SocketAddress | None) -> int:
        def attempt() -> int | None:
            if not self.outgoing.check_send():
                return None
            datagram = {"data": data, "remote-address": None if to is None else to.to_wit()}
            return len(data) if self.outgoing.send([datagram]) else None
        return _blocking_io(self, attempt, write=True)

    def send_to(self, data: bytes, to: SocketAddress) -> int:
        if self.udp is None:
            return self.write(data)
        if self.outgoing is None:
            self._udp_streams(None)
        return self._send_datagram(data, to)

    def recv_from(self, n: int, riflags: int) -> tuple[bytes, bool, SocketAddress | None]:
        if self.udp is None:
            data, truncated = self.recv(n, riflags)
            return data, truncated, None
        if self.incoming is None:
            if self.udp.state != "bound":
                raise Errno(witx.NOTCONN)
            self._udp_streams(None)

        def attempt() -> Any:
            got = self.incoming.receive(1)
            return got[0] if got else None
        datagram = _blocking_io(self, attempt, write=False)
        data = datagram["data"]
        return data[:n], len(data) > n, socket_address_from_wit(datagram["remote-address"])

    # -- options ---------------------------------------------------------------------------------------
    def _os_socket(self) -> socket.socket:
        return (self.tcp or self.udp).sock

    def getsockopt(self, level: int, name: int) -> int | str:
        if level == TIMECRAFT_LEVEL:
            return self._get_tls_option(name)
        if (level, name) == (SOL_SOCKET, SO_ERROR):
            self._progress()
            if self.tls is not None and self._tls_failure() is not None:
                return HTLS_FAILED
            error, self.error = self.error, 0
            return error
        if (level, name) == (SOL_SOCKET, SO_TYPE):
            return SOCK_DGRAM if self.udp is not None else SOCK_STREAM
        if (level, name) == (SOL_SOCKET, SO_ACCEPTCONN):
            return int(self.tcp is not None and self.tcp.state == LISTENING)
        try:
            if (level, name) in _INT_OPTIONS:
                return int(bool(self._os_socket().getsockopt(*_INT_OPTIONS[(level, name)])))
            if (level, name) in ((SOL_SOCKET, SO_SNDBUF), (SOL_SOCKET, SO_RCVBUF)):
                option = socket.SO_SNDBUF if name == SO_SNDBUF else socket.SO_RCVBUF
                return get_buffer_size(self._os_socket().getsockopt(socket.SOL_SOCKET, option))
        except OSError as e:
            raise Errno(witx.from_host_errno(e.errno)) from None
        raise Errno(witx.NOPROTOOPT)

    def setsockopt(self, level: int, name: int, value: bytes) -> None:
        if level == TIMECRAFT_LEVEL:
            self._set_tls_option(name, value)
            return
        if len(value) != 4:
            raise Errno(witx.INVAL)
        number = int.from_bytes(value, "little", signed=True)
        try:
            if (level, name) in _INT_OPTIONS:
                self._os_socket().setsockopt(*_INT_OPTIONS[(level, name)], int(bool(number)))
                return
            if (level, name) in ((SOL_SOCKET, SO_SNDBUF), (SOL_SOCKET, SO_RCVBUF)):
                if number <= 0:
                    raise Errno(witx.INVAL)
                set_buffer_size(self._os_socket(), socket.SO_SNDBUF if name == SO_SNDBUF else socket.SO_RCVBUF,
                                number)
                return
        except OSError as e:
            raise Errno(witx.from_host_errno(e.errno)) from None
        raise Errno(witx.NOPROTOOPT)

    # -- hTLS --------------------------------------------------------------------------------------------
    def _set_tls_option(self, name: int, value: bytes) -> None:
        if self.udp is not None or self.tcp is None or self.tcp.state == LISTENING:
            raise Errno(witx.INVAL)
        if self.tls is not None or self.tls_name is not None or self.io_started:
            raise Errno(witx.INVAL)  # one handshake per socket, before its first byte
        if name == HTLS_ALPN:
            ids = [i for i in _text(value).split(",") if i]
            if not ids or any(len(i.encode()) > 255 for i in ids):
                raise Errno(witx.INVAL)
            self.tls_alpn = [i.encode() for i in ids]
        elif name == HTLS_IDENTITY:
            self.tls_identity = self._identity(_text(value))
        elif name == HTLS_REQUEST_CLIENT_CERT:
            if len(value) != 4:
                raise Errno(witx.INVAL)
            self.tls_request_client_cert = bool(int.from_bytes(value, "little"))
        elif name == HTLS_SERVER_NAME:
            server_name = _text(value)
            if not server_name or "\0" in server_name:
                raise Errno(witx.INVAL)
            if self.tcp.state not in (CONNECTING, CONNECTED):
                raise Errno(witx.NOTCONN)
            self.tls_name = server_name
            if self.input is not None:
                self._start_tls()
        elif name == HTLS_SERVER:
            if self.tcp.state != CONNECTED or self.input is None:
                raise Errno(witx.NOTCONN)
            self._start_tls_server(self._identity(_text(value)))
        else:
            raise Errno(witx.NOPROTOOPT)

    def _identity(self, name: str) -> Any:
        identity = self.guest_tls().settings.identities.get(name)
        if identity is None:
            raise Errno(witx.NOENT)  # no identity of that name was given to the host
        return identity

    def _start_tls(self) -> None:
        try:
            self.tls = self.guest_tls().client(self.tls_name, self.input.source, self.output.sink,
                                               alpn_ids=self.tls_alpn, client_identity=self.tls_identity)
        except ValueError:
            self.tls_name = None
            raise Errno(witx.INVAL) from None
        self.tls.advance()  # the ClientHello leaves now

    def _start_tls_server(self, identity: Any) -> None:
        conn = self.guest_tls().server(self.input.source, self.output.sink)
        try:
            conn.configure_server_identities([identity])
            if self.tls_alpn:
                conn.configure_alpn_ids(self.tls_alpn)
            if self.tls_request_client_cert:
                conn.request_client_identity()
        except ValueError:
            conn.release()
            raise Errno(witx.INVAL) from None
        self.tls = conn
        conn.advance()

    def _tls_failure(self) -> str | None:
        return self.tls.failure if self.tls is not None else None

    def _tls_settled(self) -> bool:
        """Drives the handshake without blocking; True once it is done (a failure raises EPROTO)."""
        conn = self.tls
        conn.advance()
        while conn.paused_at is not None:  # a server's ClientHello pause: all was configured up front
            conn.go_on()
            conn.advance()
        if not conn.handshake_settled():
            return False
        if not conn.handshake_complete:
            raise Errno(HTLS_FAILED)
        self.tls_ready = True
        return True

    def _get_tls_option(self, name: int) -> str:
        if name == HTLS_SERVER_NAME:
            return self.tls_name or ""
        if self.tls is None:
            raise Errno(witx.NOTCONN)
        facts = self.tls.facts()
        if name == HTLS_ALPN:
            return (facts.alpn_id or b"").decode("utf-8", "replace") if facts else ""
        if name == HTLS_VERSION:
            return facts.protocol_name if facts else ""
        if name == HTLS_CIPHER:
            return facts.cipher_suite_name if facts else ""
        if name == HTLS_PEER_SUBJECT:
            return _subject(facts.peer_identity) if facts and facts.peer_identity is not None else ""
        raise Errno(witx.NOPROTOOPT)

    # -- readiness and close -------------------------------------------------------------------------
    def readable(self) -> Any:
        return _Readiness(self, write=False)

    def writable(self) -> Any:
        return _Readiness(self, write=True)

    def close(self) -> None:
        conn = self.tls
        if conn is not None:
            if conn.handshake_complete and conn.failure is None:
                try:
                    conn.close_output()  # close_notify
                except Exception:  # noqa: BLE001 - closing must not fail the guest's close
                    pass
            conn.release()
        for stream in (self.incoming, self.outgoing):
            if stream is not None:
                stream.drop()
        (self.tcp or self.udp).close()


def _subject(identity: Any) -> str:
    """The subject of a verified peer's certificate, RFC 4514."""
    from cryptography import x509

    try:
        return x509.load_der_x509_certificate(identity.export_x509_chain()[0]).subject.rfc4514_string()
    except Exception:  # noqa: BLE001 - a name we cannot print is reported as none
        return ""


def _text(value: bytes) -> str:
    if value.endswith(b"\0"):
        value = value[:-1]  # one trailing NUL (C's sizeof("name")) is not part of the value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise Errno(witx.INVAL) from None


def _blocking_io(sock: Socket, attempt: Callable[[], Any], *, write: bool) -> Any:
    """Retries `attempt` (None: would block) until it gives a result; EAGAIN if non-blocking."""
    while True:
        try:
            result = attempt()
        except Err as e:
            raise Errno(_net_errno(e)) from None
        if result is not None:
            return result
        if sock.nonblocking:
            raise Errno(witx.AGAIN)
        wait_any([_Readiness(sock, write=write)])


class _Readiness:
    """poll_oneoff's view of a socket: ready when the next read (or write) would not block.

    While a TLS handshake runs, neither is ready (the handshake is driven here, so a guest that
    only polls still gets it done); a failed handshake or connect is ready, so the guest sees the error.
    """

    def __init__(self, sock: Socket, write: bool):
        self.sock = sock
        self.write = write

    def poll_ready(self) -> bool:
        s = self.sock
        if not s._progress():
            return False
        if s.error:
            return True
        if s.udp is not None:
            if self.write:
                return s.outgoing is None or s.outgoing.poll_ready()
            return s.incoming is not None and s.incoming.poll_ready()
        if s.tcp.state == LISTENING:
            return self.write or s.tcp.poll_ready()
        if s.input is None:
            return True  # not connected: an operation fails at once
        if s.tls is not None:
            if not s.tls_ready:
                try:
                    if not s._tls_settled():
                        return False
                except Errno:
                    return True
            if self.write:
                try:
                    return s.tls.write_permit() > 0
                except (StreamFailed, StreamClosed):
                    return True
            return bool(s.peeked) or s.eof or s.tls.readable()
        if self.write:
            return s.output.sink.poll_ready()
        return bool(s.peeked) or s.eof or s.input.source.poll_ready()

    def wait_on(self) -> Wait:
        s = self.sock
        if s.tcp is not None and s.tcp.state == CONNECTING:
            return Wait(write_fds=(s.tcp.sock.fileno(),))
        if s.udp is not None:
            stream = s.outgoing if self.write else s.incoming
            return stream.wait_on() if stream is not None else Wait()
        if s.tcp.state == LISTENING:
            return s.tcp.wait_on()
        if s.tls is not None:
            if not s.tls_ready or not self.write:
                return s.tls.wait_for_input()
            return s.tls.wait_for_output()
        if s.input is None:
            return Wait()
        return s.output.sink.wait_on() if self.write else s.input.source.wait_on()
