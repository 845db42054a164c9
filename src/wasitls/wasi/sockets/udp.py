"""wasi:sockets/udp@0.2.9: `udp-socket` and its datagram streams over a non-blocking OS socket.

A socket is unbound, then (after start-bind/finish-bind) bound; `stream` then optionally connects
it to one peer and hands out the only pair of datagram streams that works until both are dropped.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import socket
import sys
from typing import Any

from ...component.linker import HostInterface
from ...component.values import Err, Trap
from ...policy import NetworkUse
from ..io.poll import Pollable, Wait
from .network import (
    NetworkCapability,
    os_address_to_wit,
    os_bind,
    SocketAddress,
    fail,
    get_buffer_size,
    hop_limit_option,
    is_valid_address_family,
    is_valid_remote_address,
    set_buffer_size,
    socket_address_from_os,
    socket_address_from_wit,
    track,
    untrack,
)

UNBOUND = "unbound"
BIND_STARTED = "bind-in-progress"
BOUND = "bound"

MAX_DATAGRAM_SIZE = 65535  # the theoretical maximum; the OS refuses what it cannot send
SEND_PERMIT = 16  # datagrams one check-send allows, as in wasmtime
MAX_DROPPED_PER_RECEIVE = 64  # refused datagrams one receive discards before it returns (a flood cannot hold it)


def _poll(fd: int, events: int) -> int:
    poller = select.poll()
    poller.register(fd, events)
    ready = poller.poll(0)
    return ready[0][1] if ready else 0


class UdpSocket:
    """The `udp-socket` resource."""

    def __init__(self, ctx: Any, family: str, sock: socket.socket):
        self.ctx = ctx
        self.family = family
        self.sock = sock
        self.state = UNBOUND
        self.remote: SocketAddress | None = None  # set while "connected" by `stream`
        self.listener = False  # bound where the policy grants UDP_BIND: receives from any sender
        self.streams: set[Any] = set()  # datagram streams the guest has not dropped yet
        self.closed = False
        track(ctx, self)

    def start_bind(self, network: NetworkCapability, local_address: Any) -> None:
        addr = socket_address_from_wit(local_address)
        # A client must bind (to an ephemeral port) before it can send, so a bind to port 0 the policy
        # does not grant as a listener is still made, as a client's: it then exchanges datagrams only
        # with peers the policy lets it send to, and never listens for the whole network.
        listener = self.ctx.policy.check(NetworkUse.UDP_BIND, addr)
        if not listener and addr.port != 0:
            raise Err("access-denied")
        if self.state != UNBOUND:
            raise Err("invalid-state")
        if not is_valid_address_family(addr.ip, self.family):
            raise Err("invalid-argument")
        os_bind(self.sock, addr)
        self.listener = listener
        self.state = BIND_STARTED

    def finish_bind(self) -> None:
        if self.state != BIND_STARTED:
            raise Err("not-in-progress")
        self.state = BOUND

    def stream(self, remote_address: Any) -> tuple["IncomingDatagramStream", "OutgoingDatagramStream"]:
        if self.streams:
            raise Trap("UDP streams not dropped yet")
        if self.state != BOUND:
            raise Err("invalid-state")
        # disconnect, then connect: a failed connect leaves the socket consistently unconnected
        if self.remote is not None:
            try:
                _disconnect(self.sock)
            except OSError as e:
                raise fail(e) from None
            self.remote = None
        if remote_address is not None:
            addr = socket_address_from_wit(remote_address)
            if not self.ctx.policy.check(NetworkUse.UDP_CONNECT, addr):
                raise Err("access-denied")
            if not is_valid_address_family(addr.ip, self.family) or not is_valid_remote_address(addr):
                raise Err("invalid-argument")
            try:
                _connect(self.sock, addr)
            except OverflowError:
                raise Err("invalid-argument") from None
            except OSError as e:
                raise (Err("invalid-argument") if e.errno == errno.EAFNOSUPPORT else fail(e)) from None
            self.remote = addr
        incoming = IncomingDatagramStream(self, self.remote)
        outgoing = OutgoingDatagramStream(self, self.remote)
        self.streams.update((incoming, outgoing))
        return incoming, outgoing

    def local_address(self) -> Any:
        if self.state != BOUND:
            raise Err("invalid-state")
        return os_address_to_wit(self.sock.getsockname)

    def remote_address(self) -> Any:
        if self.remote is None:
            raise Err("invalid-state")
        return os_address_to_wit(self.sock.getpeername)

    def address_family(self) -> str:
        return self.family

    def _get(self, level: int, name: int) -> int:
        try:
            return self.sock.getsockopt(level, name)
        except OSError as e:
            raise fail(e) from None

    def unicast_hop_limit(self) -> int:
        value = self._get(*hop_limit_option(self.family))
        if not 0 <= value <= 255:
            raise Err("not-supported")
        return value

    def set_unicast_hop_limit(self, value: int) -> None:
        if value == 0:
            raise Err("invalid-argument")
        try:
            self.sock.setsockopt(*hop_limit_option(self.family), value)
        except OSError as e:
            raise fail(e) from None

    def receive_buffer_size(self) -> int:
        return get_buffer_size(self._get(socket.SOL_SOCKET, socket.SO_RCVBUF))

    def set_receive_buffer_size(self, value: int) -> None:
        set_buffer_size(self.sock, socket.SO_RCVBUF, value)

    def send_buffer_size(self) -> int:
        return get_buffer_size(self._get(socket.SOL_SOCKET, socket.SO_SNDBUF))

    def set_send_buffer_size(self, value: int) -> None:
        set_buffer_size(self.sock, socket.SO_SNDBUF, value)

    def subscribe(self) -> Pollable:
        return Pollable(self)

    def poll_ready(self) -> bool:
        return True  # none of the socket's own operations block

    def wait_on(self) -> Wait:
        return Wait()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()
        untrack(self.ctx, self)

    def drop(self) -> None:
        self.close()


class _DatagramStream:
    def __init__(self, owner: UdpSocket, remote: SocketAddress | None):
        self.owner = owner
        self.sock = owner.sock
        self.remote = remote

    def _check_open(self) -> None:
        if self.owner.closed:  # wasmtime refuses to drop a socket whose streams are still alive
            raise Trap("the udp-socket of this datagram stream was dropped")

    def subscribe(self) -> Pollable:
        return Pollable(self)

    def drop(self) -> None:
        self.owner.streams.discard(self)


class IncomingDatagramStream(_DatagramStream):
    """The `incoming-datagram-stream` resource."""

    def receive(self, max_results: int) -> list[dict]:
        self._check_open()
        datagrams: list[dict] = []
        dropped = 0
        while len(datagrams) < max_results and dropped < MAX_DROPPED_PER_RECEIVE:
            try:
                data, sockaddr = self.sock.recvfrom(MAX_DATAGRAM_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                if datagrams:  # the error shows again on the next call
                    break
                raise fail(e) from None
            source = socket_address_from_os(sockaddr)
            if self.remote is not None and source != self.remote:
                dropped += 1
                continue  # the OS filters for a connected socket; this is only a safety net
            # a client's socket hears only from peers it may send to (the question its sends ask)
            if (self.remote is None and not self.owner.listener
                    and not self.owner.ctx.policy.check(NetworkUse.UDP_OUTGOING_DATAGRAM, source)):
                dropped += 1
                continue
            datagrams.append({"data": data, "remote-address": source.to_wit()})
        return datagrams

    def poll_ready(self) -> bool:
        return self.owner.closed or bool(_poll(self.sock.fileno(), select.POLLIN))

    def wait_on(self) -> Wait:
        return Wait(read_fds=(self.sock.fileno(),))


class OutgoingDatagramStream(_DatagramStream):
    """The `outgoing-datagram-stream` resource."""

    def __init__(self, owner: UdpSocket, remote: SocketAddress | None):
        super().__init__(owner, remote)
        self.family = owner.family
        self.permit: int | None = None  # None: check-send not called since the last send
        self.waiting = False  # the OS said would-block; check-send is 0 until the pollable is ready

    def check_send(self) -> int:
        self._check_open()
        if self.waiting:
            return 0
        if self.permit is None:
            self.permit = SEND_PERMIT
        return self.permit

    def send(self, datagrams: list[dict]) -> int:
        self._check_open()
        if self.permit is None or self.waiting:
            raise Trap("unpermitted: must call check-send first")
        if len(datagrams) > self.permit:
            raise Trap("unpermitted: argument exceeds permitted size")
        self.permit = None
        sent = 0
        for datagram in datagrams:
            try:
                self._send_one(datagram)
            except Err as e:
                if sent:  # WIT: once one datagram went out, send reports how many, never an error
                    return sent
                if e.value == "would-block":
                    self.waiting = True
                    return 0
                raise
            sent += 1
        return sent

    def _send_one(self, datagram: dict) -> None:
        data = datagram["data"]
        if len(data) > MAX_DATAGRAM_SIZE:
            raise Err("datagram-too-large")
        given = datagram.get("remote-address")
        given = None if given is None else socket_address_from_wit(given)
        if self.remote is None and given is not None:
            if not self.owner.ctx.policy.check(NetworkUse.UDP_OUTGOING_DATAGRAM, given):
                raise Err("access-denied")
            addr = given
        elif self.remote is not None and (given is None or given == self.remote):
            addr = self.remote
        else:
            raise Err("invalid-argument")
        if not is_valid_remote_address(addr) or not is_valid_address_family(addr.ip, self.family):
            raise Err("invalid-argument")
        try:
            if addr == self.remote:
                self.sock.send(data)
            else:
                self.sock.sendto(data, addr.sockaddr())
        except (BlockingIOError, InterruptedError):
            raise Err("would-block") from None
        except OverflowError:
            raise Err("invalid-argument") from None
        except OSError as e:
            raise fail(e) from None

    def poll_ready(self) -> bool:
        if self.owner.closed or not self.waiting:
            return True
        if not _poll(self.sock.fileno(), select.POLLOUT):
            return False
        self.waiting = False
        return True

    def wait_on(self) -> Wait:
        return Wait(write_fds=(self.sock.fileno(),))


# Python's socket API cannot connect to AF_UNSPEC, which is how a UDP socket is disconnected.
_libc = ctypes.CDLL(None, use_errno=True)
_libc.connect.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32)
_UNSPEC = ctypes.create_string_buffer(32)  # a zeroed sockaddr: sa_family AF_UNSPEC


def _disconnect(sock: socket.socket) -> None:
    if _libc.connect(sock.fileno(), _UNSPEC, 16) == 0:
        return
    err = ctypes.get_errno()
    if sys.platform == "darwin" and err in (errno.EINVAL, errno.EAFNOSUPPORT):
        return  # macOS reports an error even though the association is dissolved
    raise OSError(err, os.strerror(err))


def _connect(sock: socket.socket, addr: SocketAddress) -> None:
    try:
        sock.connect(addr.sockaddr())
    except OSError as e:
        # Linux may refuse to move a connected socket to a new route without a disconnect first
        if e.errno != errno.EINVAL or not sys.platform.startswith("linux"):
            raise
        _disconnect(sock)
        sock.connect(addr.sockaddr())


class Udp(HostInterface):
    wit = "wasi:sockets/udp@0.2.9"
    resources = {
        "udp-socket": UdpSocket,
        "incoming-datagram-stream": IncomingDatagramStream,
        "outgoing-datagram-stream": OutgoingDatagramStream,
    }

    def __init__(self, ctx: Any = None):
        self.ctx = ctx
