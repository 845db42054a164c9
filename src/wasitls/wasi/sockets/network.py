"""wasi:sockets/network@0.2.9: the `network` capability, error codes and IP addresses.

The helpers here are what the WIT types of this interface mean on the host: `error-code` from an
errno, `ip-socket-address` to and from a Python socket address, and wasmtime's address checks (the
observable rules every socket call applies before it reaches the OS).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys
from typing import Any, NamedTuple

from ...component.linker import HostInterface
from ...component.values import Err, Variant
from ..io.error import IoError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class NetworkCapability:
    """The `network` resource: holding one is what lets a guest use the network at all.

    What it may reach is the context's policy (consulted by every call that needs it), so the
    resource itself carries nothing.
    """


# -- error-code ---------------------------------------------------------------------------------

# wasmtime's mapping; errno names this platform lacks are skipped
_ERRNO_NAMES = [
    (("EWOULDBLOCK", "EAGAIN", "EINTR"), "would-block"),
    (("EPERM", "EACCES"), "access-denied"),
    (("EADDRINUSE",), "address-in-use"),
    (("EADDRNOTAVAIL",), "address-not-bindable"),
    (("EALREADY",), "concurrency-conflict"),
    (("ETIMEDOUT",), "timeout"),
    (("ECONNREFUSED",), "connection-refused"),
    (("ECONNRESET",), "connection-reset"),
    (("ECONNABORTED",), "connection-aborted"),
    (("EINVAL",), "invalid-argument"),
    (("EHOSTUNREACH", "EHOSTDOWN", "ENETDOWN", "ENETUNREACH", "ENONET"), "remote-unreachable"),
    (("EISCONN", "ENOTCONN", "EDESTADDRREQ"), "invalid-state"),
    (("ENFILE", "EMFILE"), "new-socket-limit"),
    (("EMSGSIZE",), "datagram-too-large"),
    (("ENOMEM", "ENOBUFS"), "out-of-memory"),
    (("EOPNOTSUPP", "ENOPROTOOPT", "EPFNOSUPPORT", "EPROTONOSUPPORT", "EPROTOTYPE", "ESOCKTNOSUPPORT",
      "EAFNOSUPPORT"), "not-supported"),
]
_ERRNO_CODES = {getattr(errno, name): code for names, code in reversed(_ERRNO_NAMES)
                for name in names if hasattr(errno, name)}


def error_code(err: OSError | int | None) -> str:
    """The `error-code` for an OS error, as wasmtime maps it ("unknown" for the rest)."""
    n = err if isinstance(err, int) or err is None else err.errno
    return _ERRNO_CODES.get(n, "unknown") if n is not None else "unknown"


def fail(err: OSError | int) -> Err:
    """An `error-code` result for an OS error: `raise fail(e)`."""
    return Err(error_code(err))



def new_os_socket(address_family: str, kind: int) -> socket.socket:
    """A non-blocking OS socket, IPv6 ones IPv6-only, as wasmtime makes them for create-*-socket."""
    try:
        sock = socket.socket(FAMILIES[address_family], kind)
    except OSError as e:
        raise fail(e) from None
    try:
        sock.setblocking(False)
        if address_family == "ipv6":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    except OSError as e:
        sock.close()
        raise fail(e) from None
    return sock


def os_bind(sock: socket.socket, addr: "SocketAddress") -> None:
    try:
        sock.bind(addr.sockaddr())
    except OverflowError:
        raise Err("invalid-argument") from None
    except OSError as e:
        # EAFNOSUPPORT: a family mismatch the WIT-level checks missed
        raise (Err("invalid-argument") if e.errno == errno.EAFNOSUPPORT else fail(e)) from None


# The names wasmtime's socket streams give a failed read or write in `to-debug-string`: its own socket
# error-code enum, printed as Rust prints it (CamelCase); errors it does not name are "Other".
_WASMTIME_STREAM_ERRORS = {
    "access-denied": "AccessDenied", "not-supported": "NotSupported", "invalid-argument": "InvalidArgument",
    "out-of-memory": "OutOfMemory", "timeout": "Timeout", "invalid-state": "InvalidState",
    "address-not-bindable": "AddressNotBindable", "address-in-use": "AddressInUse",
    "remote-unreachable": "RemoteUnreachable", "connection-refused": "ConnectionRefused",
    "connection-reset": "ConnectionReset", "connection-aborted": "ConnectionAborted",
    "datagram-too-large": "DatagramTooLarge",
}


def stream_error(err: OSError) -> IoError:
    """The `error` resource a socket stream's failed operation reports; `network-error-code` reads it.

    Its debug string is wasmtime's, e.g. "ConnectionReset" for ECONNRESET.
    """
    n = err.errno if err.errno is not None else 0
    code = error_code(n)
    name = "ConnectionBroken" if n == errno.EPIPE else _WASMTIME_STREAM_ERRORS.get(code, "Other")
    return IoError(name, net_code=code)


# -- ip-address, ip-socket-address ---------------------------------------------------------------

FAMILIES = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}


class SocketAddress(NamedTuple):
    """An `ip-socket-address` on the host side; tuples compare like Rust's SocketAddr."""

    ip: IPAddress
    port: int
    flow_info: int = 0
    scope_id: int = 0

    @property
    def family(self) -> str:
        return "ipv4" if self.ip.version == 4 else "ipv6"

    def sockaddr(self) -> tuple:
        """The address as Python's socket calls take it."""
        if self.ip.version == 4:
            return (str(self.ip), self.port)
        return (str(self.ip), self.port, self.flow_info, self.scope_id)

    def to_wit(self) -> Variant:
        if self.ip.version == 4:
            return Variant("ipv4", {"port": self.port, "address": tuple(self.ip.packed)})
        return Variant("ipv6", {"port": self.port, "flow-info": self.flow_info,
                                "address": _segments(self.ip), "scope-id": self.scope_id})


def _segments(ip: ipaddress.IPv6Address) -> tuple[int, ...]:
    n = int(ip)
    return tuple((n >> (112 - 16 * i)) & 0xFFFF for i in range(8))


def ip_from_wit(addr: Variant) -> IPAddress:
    """An `ip-address` (or the address tuple of either case) as an ipaddress object."""
    case, value = addr
    if case == "ipv4":
        return ipaddress.IPv4Address(bytes(value))
    if case == "ipv6":
        n = 0
        for segment in value:
            n = (n << 16) | segment
        return ipaddress.IPv6Address(n)
    raise ValueError(f"unknown ip-address case {case!r}")


def ip_to_wit(ip: IPAddress) -> Variant:
    if ip.version == 4:
        return Variant("ipv4", tuple(ip.packed))
    return Variant("ipv6", _segments(ip))


def socket_address_from_wit(addr: Variant) -> SocketAddress:
    case, value = addr
    if case == "ipv4":
        return SocketAddress(ip_from_wit(Variant("ipv4", value["address"])), value["port"])
    return SocketAddress(ip_from_wit(Variant("ipv6", value["address"])), value["port"],
                         value.get("flow-info", 0), value.get("scope-id", 0))


def socket_address_from_os(sockaddr: tuple) -> SocketAddress:
    """What getsockname/getpeername/recvfrom return, as a SocketAddress."""
    host = sockaddr[0].split("%", 1)[0]  # a link-local address carries its scope twice
    if len(sockaddr) == 2:
        return SocketAddress(ipaddress.IPv4Address(host), sockaddr[1])
    return SocketAddress(ipaddress.IPv6Address(host), sockaddr[1], sockaddr[2], sockaddr[3])


def os_address_to_wit(get: Any) -> Any:
    """`get()` (a socket's getsockname or getpeername) as a WIT ip-socket-address; errors as WASI's."""
    try:
        return socket_address_from_os(get()).to_wit()
    except OSError as e:
        raise fail(e) from None


def canonical(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address as the IPv4 address it maps (Rust's to_canonical)."""
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


# The checks wasmtime makes before a socket call reaches the OS (failing ones are invalid-argument).

def is_valid_unicast_address(ip: IPAddress) -> bool:
    ip = canonical(ip)
    if ip.version == 4:
        return not ip.is_multicast and ip != ipaddress.IPv4Address("255.255.255.255")
    return not ip.is_multicast


def is_valid_remote_address(addr: SocketAddress) -> bool:
    return not canonical(addr.ip).is_unspecified and addr.port != 0


def is_valid_address_family(ip: IPAddress, family: str) -> bool:
    if family == "ipv4":
        return ip.version == 4
    if ip.version != 6:
        return False
    # IPv4-mapped and the deprecated IPv4-compatible (::a.b.c.d) addresses are refused on IPv6 sockets
    compatible = int(ip) >> 32 == 0 and int(ip) not in (0, 1)
    return not compatible and ip.ipv4_mapped is None


# -- socket options tcp and udp share (normalised as wasmtime does) ------------------------------

def hop_limit_option(family: str) -> tuple[int, int]:
    if family == "ipv4":
        return socket.IPPROTO_IP, socket.IP_TTL
    return socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS


def get_buffer_size(value: int) -> int:
    # Linux reports twice what was asked for (room for its bookkeeping); wasmtime halves it back
    return value // 2 if sys.platform.startswith("linux") else value


def set_buffer_size(sock: socket.socket, option: int, value: int) -> None:
    if value == 0:
        raise Err("invalid-argument")
    try:
        sock.setsockopt(socket.SOL_SOCKET, option, min(value, 2**31 - 1))
    except OSError as e:
        if e.errno != errno.ENOBUFS:  # a size the system cannot give is a hint it clamps, not an error
            raise fail(e) from None


# -- the sockets one guest has open ------------------------------------------------------------

def track(ctx: Any, resource: Any) -> None:
    """Remembers a resource holding OS sockets so the host closes it when the guest ends."""
    if ctx is not None:
        ctx.open_sockets[id(resource)] = resource


def untrack(ctx: Any, resource: Any) -> None:
    if ctx is not None:
        ctx.open_sockets.pop(id(resource), None)


def open_resources(ctx: Any) -> list[Any]:
    """The socket resources of a guest not yet closed (for tests and diagnostics)."""
    return list(ctx.open_sockets.values()) if ctx is not None else []


class Network(HostInterface):
    wit = "wasi:sockets/network@0.2.9"
    resources = {"network": NetworkCapability}

    def __init__(self, ctx: Any = None):
        self.ctx = ctx

    def network_error_code(self, err: IoError) -> str | None:
        return getattr(err, "net_code", None)
