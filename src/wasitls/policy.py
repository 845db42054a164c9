"""Capability policy: what a guest may reach, built once from the command line or the Python API.

Every WASI call that touches the network asks one question, `policy.check(use, address)`, with a
`NetworkUse` saying what the guest is about to do; nothing else decides. The filesystem reads the
preopens listed here. By default a guest reaches no address, binds nothing, resolves no name and
sees no directory.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import socket
from pathlib import Path
from typing import Any, Callable

from .records import FrozenRecord, Record

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class PolicyError(ValueError):
    """A malformed option (bad address, missing directory): one line for the person who typed it."""


class NetworkUse(enum.Enum):
    """What a guest is about to do, as wasmtime's `SocketAddrUse` names it (plus lookups and sockets).

    The address that comes with each: an object with `.ip` (an `ipaddress` address) and `.port` for
    the socket uses; the name as the guest gave it, normalised (lower case, IDNA), or the text of an
    IP literal for NAME_LOOKUP; None for the two CREATE_* uses, asked before any address is known.
    """

    TCP_BIND = "tcp-bind"  # local address a TCP socket binds (and then listens or connects from)
    TCP_CONNECT = "tcp-connect"  # remote address a TCP socket connects to
    UDP_BIND = "udp-bind"  # local address a UDP socket binds to receive from anyone
    UDP_CONNECT = "udp-connect"  # remote address a UDP socket is connected to by `stream`
    UDP_OUTGOING_DATAGRAM = "udp-outgoing-datagram"  # peer an unconnected UDP socket exchanges datagrams with
    NAME_LOOKUP = "name-lookup"  # name passed to resolve-addresses
    CREATE_TCP_SOCKET = "create-tcp-socket"  # whether the guest may make a TCP socket at all
    CREATE_UDP_SOCKET = "create-udp-socket"  # whether the guest may make a UDP socket at all


_CREATE = (NetworkUse.CREATE_TCP_SOCKET, NetworkUse.CREATE_UDP_SOCKET)
_CONNECT = (NetworkUse.TCP_CONNECT, NetworkUse.UDP_CONNECT, NetworkUse.UDP_OUTGOING_DATAGRAM)
_BIND = (NetworkUse.TCP_BIND, NetworkUse.UDP_BIND)

Decide = Callable[[NetworkUse, Any], bool]


class NetRule(FrozenRecord):
    _fields = ("host", "port", "addresses")
    host: str  # '*' for any, a name, or an IP literal
    port: int | None  # None: any port
    addresses: frozenset[IPAddress]  # what `host` stood for when the policy was built

    def __init__(self, host: str, port: int | None, addresses: frozenset[IPAddress]):
        self._set(host=host, port=port, addresses=addresses)


class ListenRule(FrozenRecord):
    _fields = ("address", "port")
    address: IPAddress | None  # None: any local address
    port: int  # 0: a port the OS picks

    def __init__(self, address: IPAddress | None, port: int):
        self._set(address=address, port=port)


class Preopen(FrozenRecord):
    _fields = ("host_path", "guest_path")
    host_path: Path
    guest_path: str

    def __init__(self, host_path: Path, guest_path: str):
        self._set(host_path=host_path, guest_path=guest_path)


# -- parsing the options ---------------------------------------------------------------------------

_NUMBER = re.compile(r"(?:[0-9]+|0x[0-9a-f]*)\Z")  # what inet_aton and the URL standard read as a number
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")  # one DNS label (underscores as seen in SRV-style names)


def _port(text: str, option: str, spec: str, lowest: int) -> int:
    if not (text.isascii() and text.isdigit()):  # not int(): it takes ' 80', '+80' and other scripts' digits
        raise PolicyError(f"{option} {spec!r}: {text!r} is not a port number")
    port = int(text)
    if not lowest <= port <= 65535:
        raise PolicyError(f"{option} {spec!r}: port {port} is out of range ({lowest}-65535)")
    return port


def _host(text: str, option: str, spec: str) -> str | IPAddress:
    """'*', an IP address, or a host name in its ASCII (IDNA) form; PolicyError for anything else."""
    if text == "*":
        return text
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if ":" in text:
        raise PolicyError(f"{option} {spec!r}: {text!r} is not an IPv6 address")
    name = text[:-1] if text.endswith(".") else text  # a fully qualified name's final dot
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise PolicyError(f"{option} {spec!r}: {text!r} is not a valid host name") from None
    name = name.lower()
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise PolicyError(f"{option} {spec!r}: {text!r} is not a valid host name")
    if _NUMBER.match(labels[-1]):  # a numeric last label makes an IPv4 address (inet_aton's), not a valid one
        raise PolicyError(f"{option} {spec!r}: {text!r} is not a valid IPv4 address")
    return name


def _split(spec: str, option: str, *, port_required: bool, lowest_port: int) -> tuple[str | IPAddress, int | None]:
    """HOST, HOST:PORT, [IPv6] or [IPv6]:PORT, or a bare IPv6 address (which cannot carry a port)."""
    if not spec:
        raise PolicyError(f"{option} '': names no host")
    if spec.startswith("["):
        inner, bracket, rest = spec[1:].partition("]")
        if not bracket:
            raise PolicyError(f"{option} {spec!r}: missing ']'")
        try:
            host: str | IPAddress = ipaddress.IPv6Address(inner)
        except ValueError:
            raise PolicyError(f"{option} {spec!r}: {inner!r} is not an IPv6 address") from None
        if rest and not rest.startswith(":"):
            raise PolicyError(f"{option} {spec!r}: expected ':PORT' after ']'")
        port_text = rest[1:] if rest else None
    elif spec.count(":") == 1:
        host_text, port_text = spec.split(":")
        if not host_text:
            raise PolicyError(f"{option} {spec!r}: names no host")
        host = _host(host_text, option, spec)
    else:  # a name, an IPv4 address, '*', or an IPv6 address without brackets (so without a port)
        host, port_text = _host(spec, option, spec), None
    if isinstance(host, ipaddress.IPv6Address) and host.scope_id:
        raise PolicyError(f"{option} {spec!r}: zone ids ('%...') are not supported")
    if port_text is None:
        if port_required:
            raise PolicyError(f"{option} {spec!r}: needs a port")
        return host, None
    return host, _port(port_text, option, spec, lowest_port)


def _resolve(host: str) -> frozenset[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return frozenset()  # a name that does not resolve now reaches nothing; lookups of it stay allowed
    return frozenset(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos)


def _canonical(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def parse_dir(spec: str) -> Preopen:
    """HOST_DIR or HOST_DIR::GUEST_DIR, as wasmtime reads it (HOST_DIR:: names the guest directory "")."""
    host_dir, sep, guest_dir = spec.partition("::")
    if not host_dir:  # an empty shell variable must not grant the current directory
        raise PolicyError(f"--dir {spec!r}: the host directory is empty")
    path = Path(host_dir).expanduser()
    if not path.is_dir():
        raise PolicyError(f"--dir {spec!r}: {host_dir!r} is not a directory")
    return Preopen(path.resolve(), guest_dir if sep else host_dir)


# -- the policy ------------------------------------------------------------------------------------

class Policy(Record):
    """The rules from --allow-net / --allow-listen, or an embedder's own decision, and the preopens.

    `decide(use, address) -> bool`, if given, answers every question about an address in place of
    the rules; a guest given one may make sockets (each bind, connect, datagram peer and lookup is
    then asked).
    """

    _fields = ("net", "listen", "preopens", "decide")

    def __init__(self, net: list[NetRule] | None = None, listen: list[ListenRule] | None = None,
                 preopens: list[Preopen] | None = None, decide: Decide | None = None):
        self.net: list[NetRule] = [] if net is None else net
        self.listen: list[ListenRule] = [] if listen is None else listen
        self.preopens: list[Preopen] = [] if preopens is None else preopens
        self.decide = decide

    @classmethod
    def build(cls, *, allow_net: list[str] = (), allow_listen: list[str] = (), dirs: list[str] = (),
              decide: Decide | None = None) -> "Policy":
        policy = cls(decide=decide)
        for spec in allow_net:
            host, port = _split(spec, "--allow-net", port_required=False, lowest_port=1)
            if host == "*":
                addrs: frozenset[IPAddress] = frozenset()
            elif isinstance(host, str):
                addrs = _resolve(host)
            else:
                addrs = frozenset([_canonical(host)])
            policy.net.append(NetRule(str(host), port, addrs))
        for spec in allow_listen:
            if spec.isascii() and spec.isdigit():
                host, port = "*", _port(spec, "--allow-listen", spec, 0)
            else:
                host, port = _split(spec, "--allow-listen", port_required=True, lowest_port=0)
            if host == "*":
                policy.listen.append(ListenRule(None, port))
            elif isinstance(host, str):
                resolved = _resolve(host)
                if not resolved:
                    raise PolicyError(f"--allow-listen {spec!r}: cannot resolve {host!r}")
                policy.listen.extend(ListenRule(a, port) for a in sorted(resolved, key=str))
            else:
                policy.listen.append(ListenRule(_canonical(host), port))
        policy.preopens.extend(parse_dir(spec) for spec in dirs)
        return policy

    def check(self, use: NetworkUse, address: Any) -> bool:
        """May the guest do `use` with `address`? The one question every network call asks."""
        if use in _CREATE:
            return self.decide is not None or bool(self.net or self.listen)
        if self.decide is not None:
            return bool(self.decide(use, address))
        if use is NetworkUse.NAME_LOOKUP:
            return self._may_lookup(address)
        if use in _CONNECT:
            return self._may_reach(address.ip, address.port)
        if use in _BIND:
            return self._may_bind(address.ip, address.port)
        raise ValueError(f"unknown network use {use!r}")

    def _may_reach(self, ip: IPAddress, port: int | None) -> bool:
        ip = _canonical(ip)
        return any((rule.port is None or port is None or rule.port == port)
                   and (rule.host == "*" or ip in rule.addresses) for rule in self.net)

    def _may_lookup(self, name: str) -> bool:
        name = name.lower().rstrip(".")
        if any(rule.host == "*" or rule.host == name for rule in self.net):
            return True
        try:  # an IP literal "resolves" if some port of it may be reached
            return self._may_reach(ipaddress.ip_address(name), None)
        except ValueError:
            return False

    def _may_bind(self, ip: IPAddress, port: int) -> bool:
        ip = _canonical(ip)
        return any(rule.port == port and (rule.address is None or rule.address == ip) for rule in self.listen)
