"""Capability policy: what a guest may reach, built once from the command line or the Python API.

Every WASI call that touches the network or the filesystem asks this object; nothing else decides.
By default a guest reaches no address, binds nothing, resolves no name and sees no directory.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

from .records import FrozenRecord, Record

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class PolicyError(ValueError):
    """A malformed option (bad address, missing directory): one line for the person who typed it."""


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
    port: int

    def __init__(self, address: IPAddress | None, port: int):
        self._set(address=address, port=port)


class Preopen(FrozenRecord):
    _fields = ("host_path", "guest_path")
    host_path: Path
    guest_path: str

    def __init__(self, host_path: Path, guest_path: str):
        self._set(host_path=host_path, guest_path=guest_path)


def _split_host_port(spec: str, *, port_required: bool) -> tuple[str, int | None]:
    spec = spec.strip()
    if spec.startswith("["):  # [v6]:port
        host, _, rest = spec[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise PolicyError(f"cannot parse address {spec!r}")
        port_s = rest[1:] if rest else ""
    elif spec.count(":") == 1:
        host, port_s = spec.split(":")
    else:
        host, port_s = spec, ""  # a bare name or a bare IPv6 literal
    if not port_s:
        if port_required:
            raise PolicyError(f"{spec!r} needs a port")
        return host, None
    try:
        port = int(port_s)
    except ValueError:
        raise PolicyError(f"bad port in {spec!r}") from None
    if not 0 <= port <= 65535:
        raise PolicyError(f"port out of range in {spec!r}")
    return host, port


def _resolve(host: str) -> frozenset[IPAddress]:
    try:
        return frozenset([ipaddress.ip_address(host)])
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        return frozenset()  # a name that does not resolve now reaches nothing; lookups of it stay allowed
    return frozenset(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos)


def _canonical(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class Policy(Record):
    _fields = ("net", "listen", "preopens")

    def __init__(self, net: list[NetRule] | None = None, listen: list[ListenRule] | None = None,
                 preopens: list[Preopen] | None = None):
        self.net: list[NetRule] = [] if net is None else net
        self.listen: list[ListenRule] = [] if listen is None else listen
        self.preopens: list[Preopen] = [] if preopens is None else preopens

    @classmethod
    def build(cls, *, allow_net: list[str] = (), allow_listen: list[str] = (), dirs: list[str] = ()) -> "Policy":
        policy = cls()
        for spec in allow_net:
            host, port = _split_host_port(spec, port_required=False)
            if not host:
                raise PolicyError(f"--allow-net {spec!r} names no host")
            addrs = frozenset() if host == "*" else _resolve(host)
            policy.net.append(NetRule(host.lower(), port, addrs))
        for spec in allow_listen:
            if spec.isdigit():
                host, port = "", int(spec)
            else:
                host, port = _split_host_port(spec, port_required=True)
            if host in ("", "*"):
                addr = None
            else:
                try:
                    addr = ipaddress.ip_address(host)
                except ValueError:
                    resolved = _resolve(host)
                    if not resolved:
                        raise PolicyError(f"--allow-listen {spec!r}: cannot resolve {host!r}") from None
                    for a in sorted(resolved, key=str):
                        policy.listen.append(ListenRule(a, port))
                    continue
            policy.listen.append(ListenRule(addr, port))
        for spec in dirs:
            host_dir, sep, guest_dir = spec.partition("::")
            if not sep:
                guest_dir = host_dir
            path = Path(host_dir).expanduser()
            if not path.is_dir():
                raise PolicyError(f"--dir {spec!r}: {host_dir!r} is not a directory")
            policy.preopens.append(Preopen(path.resolve(), guest_dir if sep else host_dir))
        return policy

    # -- network -------------------------------------------------------------------------------
    def may_connect(self, ip: IPAddress, port: int) -> bool:
        ip = _canonical(ip)
        for rule in self.net:
            if rule.port is not None and rule.port != port:
                continue
            if rule.host == "*" or ip in rule.addresses:
                return True
        return False

    def may_lookup(self, name: str) -> bool:
        name = name.lower().rstrip(".")
        for rule in self.net:
            if rule.host == "*" or rule.host == name:
                return True
        try:
            return self.may_connect_any_port(ipaddress.ip_address(name))
        except ValueError:
            return False

    def may_connect_any_port(self, ip: IPAddress) -> bool:
        ip = _canonical(ip)
        return any(rule.host == "*" or ip in rule.addresses for rule in self.net)

    def may_bind(self, ip: IPAddress, port: int) -> bool:
        ip = _canonical(ip)
        for rule in self.listen:
            if rule.port != port:
                continue
            if rule.address is None or rule.address == ip:
                return True
        return False

    def may_bind_ephemeral_udp(self) -> bool:
        """A UDP client must bind before it sends; an ephemeral port is allowed to any guest that may send."""
        return bool(self.net)

    @property
    def has_network(self) -> bool:
        return bool(self.net or self.listen)

