"""wasi:sockets/ip-name-lookup@0.2.9: resolve-addresses and the `resolve-address-stream` resource.

Names are checked and normalised the way wasmtime does (the URL standard's host parser), IP
literals answer at once, and other names are resolved by getaddrinfo on a thread so the guest can
poll meanwhile. A name the policy does not allow fails exactly like one that does not exist.
Each lookup in progress holds a thread and a pipe, so a guest has at most MAX_LOOKUPS of them; one
more, or one the host has no descriptors for, fails (at resolve-next-address) instead of trapping.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from typing import Any
from urllib.parse import unquote_to_bytes

from ...component.linker import HostInterface
from ...component.values import Err
from ...policy import NetworkUse
from ..io.poll import Pollable, Wait
from .network import IPAddress, NetworkCapability, canonical, error_code, ip_to_wit, track, untrack

MAX_LOOKUPS = 32  # lookups one guest may have in progress (each a thread and a pipe) at a time


class ResolveAddressStream:
    """The `resolve-address-stream` resource: addresses in the resolver's order, then none."""

    def __init__(self, ctx: Any, addresses: list[IPAddress] | None = None, error: str | None = None,
                 slots: threading.BoundedSemaphore | None = None):
        self.ctx = ctx
        self.addresses = addresses
        self.error = error
        self.next = 0
        self.done = addresses is not None or error is not None
        self._lock = threading.Lock()
        self._wake: tuple[int, int] | None = None  # a pipe the lookup thread writes to when it is done
        # the guest's lookup slots: one is held until both the thread has ended and the pipe is closed
        self._slots = slots

    @classmethod
    def lookup(cls, ctx: Any, name: str, slots: threading.BoundedSemaphore) -> "ResolveAddressStream":
        if not slots.acquire(blocking=False):
            return cls(ctx, error="temporary-resolver-failure")  # too many lookups in progress: try later
        try:
            wake = os.pipe()
        except OSError as e:  # out of descriptors (new-socket-limit, as TCP says) or memory
            slots.release()
            return cls(ctx, error=error_code(e))
        stream = cls(ctx, slots=slots)
        stream._wake = wake
        track(ctx, stream)
        try:
            threading.Thread(target=stream._resolve, args=(name,), name=f"resolve {name}", daemon=True).start()
        except RuntimeError:  # the host cannot start another thread
            with stream._lock:
                stream.done = True  # no thread will run: close() gives the slot back
            stream.close()
            return cls(ctx, error="temporary-resolver-failure")
        return stream

    def _resolve(self, name: str) -> None:
        try:
            infos = socket.getaddrinfo(name, 0, type=socket.SOCK_STREAM)
            addresses = [canonical(ipaddress.ip_address(info[4][0].split("%", 1)[0])) for info in infos]
            error = None
        except (OSError, UnicodeError, ValueError):
            addresses, error = None, "name-unresolvable"  # wasmtime reports every failure so
        with self._lock:
            self.addresses, self.error, self.done = addresses, error, True
            if self._wake is not None:
                os.write(self._wake[1], b"\0")
            elif self._slots is not None:  # dropped while resolving: the slot was kept for this thread
                self._slots.release()

    def resolve_next_address(self) -> Any:
        if not self.poll_ready():
            raise Err("would-block")
        if self.error is not None:
            raise Err(self.error)
        assert self.addresses is not None
        if self.next >= len(self.addresses):
            return None
        self.next += 1
        return ip_to_wit(self.addresses[self.next - 1])

    def subscribe(self) -> Pollable:
        return Pollable(self)

    def poll_ready(self) -> bool:
        with self._lock:
            done = self.done
        if done:
            self._release()  # the thread has written its last byte: pipe and slot go back now
        return done

    def wait_on(self) -> Wait:
        return Wait(read_fds=(self._wake[0],)) if self._wake is not None else Wait()

    def _release(self) -> None:
        with self._lock:  # the thread never writes to a pipe closed (and its number reused) here
            if self._wake is not None:
                for fd in self._wake:
                    os.close(fd)
                self._wake = None
                if self.done and self._slots is not None:  # else the thread gives it back when it ends
                    self._slots.release()

    def close(self) -> None:
        self._release()
        untrack(self.ctx, self)

    def drop(self) -> None:
        self.close()


class IpNameLookup(HostInterface):
    wit = "wasi:sockets/ip-name-lookup@0.2.9"
    resources = {"resolve-address-stream": ResolveAddressStream}

    def __init__(self, ctx: Any = None):
        self.ctx = ctx
        self.slots = threading.BoundedSemaphore(MAX_LOOKUPS)

    def resolve_addresses(self, network: NetworkCapability, name: str) -> ResolveAddressStream:
        host = parse_host(name)
        if isinstance(host, str):
            if not self.ctx.policy.check(NetworkUse.NAME_LOOKUP, host):
                return ResolveAddressStream(self.ctx, error="name-unresolvable")
            return ResolveAddressStream.lookup(self.ctx, host, self.slots)
        if not self.ctx.policy.check(NetworkUse.NAME_LOOKUP, str(host)):
            return ResolveAddressStream(self.ctx, error="name-unresolvable")
        return ResolveAddressStream(self.ctx, addresses=[host])


# -- the URL standard's host parser, as wasmtime applies it (url::Host::parse) -------------------

_FORBIDDEN = frozenset("\x00\t\n\r #/:<>?@[\\]^|%\x7f") | frozenset(map(chr, range(0x20)))


def parse_host(name: str) -> IPAddress | str:
    """An IP address, or the ASCII domain name to resolve; invalid-argument for anything else."""
    if name.startswith("["):
        if not name.endswith("]"):
            raise Err("invalid-argument")
        try:
            return ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            raise Err("invalid-argument") from None
    try:
        return ipaddress.IPv6Address(name)  # bare IPv6, which URLs do not allow but wasmtime does
    except ValueError:
        pass
    domain = unquote_to_bytes(name).decode("utf-8", "replace")
    if domain.isascii():
        domain = domain.lower()
    else:
        try:
            domain = domain.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise Err("invalid-argument") from None
    if not domain or any(c in _FORBIDDEN for c in domain):
        raise Err("invalid-argument")
    if _ends_in_number(domain):
        ip = _parse_ipv4(domain)
        if ip is None:
            raise Err("invalid-argument")
        return ip
    return domain


def _ipv4_number(part: str) -> int | None:
    if not part:
        return None
    radix = 10
    if part[:2] in ("0x", "0X"):
        part, radix = part[2:], 16
        if not part:
            return 0
    elif len(part) > 1 and part[0] == "0":
        part, radix = part[1:], 8
    digits = {10: "0123456789", 16: "0123456789abcdefABCDEF", 8: "01234567"}[radix]
    if not all(c in digits for c in part):
        return None
    return int(part, radix)


def _ends_in_number(domain: str) -> bool:
    parts = domain.split(".")
    if parts[-1] == "":
        if len(parts) == 1:
            return False
        parts.pop()
    last = parts[-1]
    return (last != "" and last.isdigit() and last.isascii()) or _ipv4_number(last) is not None


def _parse_ipv4(domain: str) -> ipaddress.IPv4Address | None:
    parts = domain.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if len(parts) > 4:
        return None
    numbers = [_ipv4_number(p) for p in parts]
    if any(n is None for n in numbers):
        return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for i, n in enumerate(head):
        value += n * 256 ** (3 - i)
    return ipaddress.IPv4Address(value)
