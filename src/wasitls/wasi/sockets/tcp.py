"""wasi:sockets/tcp@0.2.9: the `tcp-socket` resource over a non-blocking OS socket.

State machine (wasmtime's, which the WIT describes):

    unbound --start-bind--> bind-in-progress --finish-bind--> bound
    bound --start-listen--> listen-in-progress --finish-listen--> listening --accept--> (new connected socket)
    unbound|bound --start-connect--> connect-in-progress --finish-connect--> connected
    a failed finish-connect or finish-listen --> closed

A connected socket's streams are wasi:io streams over `TcpSource` and `TcpSink`.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import sys
import threading
import time
from typing import Any

from ...component.linker import HostInterface
from ...component.values import Err
from ...policy import NetworkUse
from ..io.poll import Pollable, Wait
from ..io.streams import MAX_READ, BufferedSink, InputStream, OutputStream, StreamClosed, StreamFailed
from .network import (
    NetworkCapability,
    os_address_to_wit,
    os_bind,
    fail,
    get_buffer_size,
    hop_limit_option,
    is_valid_address_family,
    is_valid_remote_address,
    is_valid_unicast_address,
    set_buffer_size,
    socket_address_from_wit,
    stream_error,
    track,
    untrack,
)

UNBOUND = "unbound"
BIND_STARTED = "bind-in-progress"
BOUND = "bound"
LISTEN_STARTED = "listen-in-progress"
LISTENING = "listening"
CONNECTING = "connect-in-progress"
CONNECTED = "connected"
CLOSED = "closed"

DEFAULT_BACKLOG = 128  # what wasmtime (after Rust's std) listens with unless told otherwise
MAX_BACKLOG = 2**31 - 1
NANOS = 1_000_000_000
MAX_KEEPALIVE_SECONDS = 2**15 - 1  # Linux's limit, the lowest of the platforms wasmtime supports
MAX_KEEPALIVE_COUNT = 127

_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)  # a closed peer is EPIPE, never SIGPIPE
_TCP_KEEPIDLE = getattr(socket, "TCP_KEEPIDLE", getattr(socket, "TCP_KEEPALIVE", 0x10))
# Linux reports errors already pending on a new connection from accept(); wasmtime makes them all
# connection-aborted, what other systems say for a connection that died before it was accepted
_ACCEPT_ABORTED = {getattr(errno, n) for n in ("ECONNRESET", "ENETRESET", "EHOSTUNREACH", "EHOSTDOWN", "ENETDOWN",
                                           "ENETUNREACH", "EPROTO", "ENOPROTOOPT", "ENONET", "EOPNOTSUPP")
                   if hasattr(errno, n)} if sys.platform.startswith("linux") else set()


def _poll(fd: int, events: int) -> int:
    poller = select.poll()
    poller.register(fd, events)
    ready = poller.poll(0)
    return ready[0][1] if ready else 0


class TcpSocket:
    """The `tcp-socket` resource."""

    def __init__(self, ctx: Any, family: str, sock: socket.socket, state: str = UNBOUND):
        self.ctx = ctx
        self.family = family
        self.sock = sock
        self.state = state
        self.backlog = DEFAULT_BACKLOG
        self.connect_result: int | None = None  # errno of a connect that already ended (0: success)
        self.connect_seen = False  # the pollable saw the connect end (wasmtime's ConnectReady)
        self.source: TcpSource | None = None
        self.sink: TcpSink | None = None
        track(ctx, self)

    # -- bind ------------------------------------------------------------------------------------
    def start_bind(self, network: NetworkCapability, local_address: Any) -> None:
        addr = socket_address_from_wit(local_address)
        if not self.ctx.policy.check(NetworkUse.TCP_BIND, addr):
            raise Err("access-denied")
        if not is_valid_unicast_address(addr.ip) or not is_valid_address_family(addr.ip, self.family):
            raise Err("invalid-argument")
        if self.state != UNBOUND:
            raise Err("invalid-state")
        try:
            # WIT: a bind must not be refused because of TIME_WAIT, so SO_REUSEADDR always
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        except OSError:
            pass
        os_bind(self.sock, addr)
        self.state = BIND_STARTED

    def finish_bind(self) -> None:
        if self.state != BIND_STARTED:
            raise Err("not-in-progress")
        self.state = BOUND

    # -- connect ---------------------------------------------------------------------------------
    def start_connect(self, network: NetworkCapability, remote_address: Any) -> None:
        addr = socket_address_from_wit(remote_address)
        if not self.ctx.policy.check(NetworkUse.TCP_CONNECT, addr):
            raise Err("access-denied")
        if self.state == CONNECTING and not self.connect_seen:
            raise Err("concurrency-conflict")
        if self.state not in (UNBOUND, BOUND):
            raise Err("invalid-state")
        if not (is_valid_unicast_address(addr.ip) and is_valid_remote_address(addr)
                and is_valid_address_family(addr.ip, self.family)):
            raise Err("invalid-argument")
        try:
            code = self.sock.connect_ex(addr.sockaddr())
        except OverflowError:
            raise Err("invalid-argument") from None
        except OSError as e:
            code = e.errno or errno.EINVAL
        self.state = CONNECTING
        self.connect_seen = False
        # like wasmtime, an error of the connect call itself is reported by finish-connect
        self.connect_result = None if code in (errno.EINPROGRESS, errno.EAGAIN, errno.EINTR) else code

    def finish_connect(self) -> tuple[InputStream, OutputStream]:
        if self.state != CONNECTING:
            raise Err("not-in-progress")
        if self.connect_result is None:
            if not _poll(self.sock.fileno(), select.POLLOUT):
                raise Err("would-block")
            self.connect_result = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if self.connect_result:
            code = self.connect_result
            self._release()
            raise fail(code)
        self.state = CONNECTED
        return self._streams()

    # -- listen ----------------------------------------------------------------------------------
    def start_listen(self) -> None:
        if self.state != BOUND:
            raise Err("invalid-state")
        self.state = LISTEN_STARTED

    def finish_listen(self) -> None:
        if self.state != LISTEN_STARTED:
            raise Err("not-in-progress")
        try:
            self.sock.listen(self.backlog)
        except OSError as e:
            self._release()
            raise fail(e) from None
        self.state = LISTENING

    def accept(self) -> tuple["TcpSocket", InputStream, OutputStream]:
        if self.state != LISTENING:
            raise Err("invalid-state")
        try:
            client, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            raise Err("would-block") from None
        except OSError as e:
            if e.errno in _ACCEPT_ABORTED:
                raise Err("connection-aborted") from None
            raise fail(e) from None
        client.setblocking(False)
        accepted = TcpSocket(self.ctx, self.family, client, CONNECTED)
        input_stream, output_stream = accepted._streams()
        return accepted, input_stream, output_stream

    def _streams(self) -> tuple[InputStream, OutputStream]:
        self.sink = TcpSink(self.sock)
        self.source = TcpSource(self.sock)
        return InputStream(self.source), OutputStream(self.sink)

    # -- addresses and state ---------------------------------------------------------------------
    def local_address(self) -> Any:
        if self.state not in (BOUND, LISTENING, CONNECTED):
            raise Err("invalid-state")
        return os_address_to_wit(self.sock.getsockname)

    def remote_address(self) -> Any:
        if self.state != CONNECTED:
            raise Err("invalid-state")
        return os_address_to_wit(self.sock.getpeername)

    def is_listening(self) -> bool:
        return self.state == LISTENING

    def address_family(self) -> str:
        return self.family

    def set_listen_backlog_size(self, value: int) -> None:
        if value == 0:
            raise Err("invalid-argument")
        value = min(max(value, 1), MAX_BACKLOG)
        if self.state in (UNBOUND, BOUND):
            self.backlog = value  # used by finish-listen
        elif self.state == LISTENING:
            try:
                self.sock.listen(value)  # Linux changes the backlog of a listening socket this way
            except OSError:
                raise Err("not-supported") from None
            self.backlog = value
        else:
            raise Err("invalid-state")

    # -- options ---------------------------------------------------------------------------------
    def _option_socket(self) -> socket.socket:
        # as in wasmtime: there is no socket to ask while a connect is in progress, nor after close
        if self.state in (CONNECTING, CLOSED):
            raise Err("invalid-state")
        return self.sock

    def _get(self, level: int, name: int) -> int:
        try:
            return self._option_socket().getsockopt(level, name)
        except OSError as e:
            raise fail(e) from None

    def _set(self, level: int, name: int, value: int) -> None:
        try:
            self._option_socket().setsockopt(level, name, value)
        except OSError as e:
            raise fail(e) from None

    def keep_alive_enabled(self) -> bool:
        return bool(self._get(socket.SOL_SOCKET, socket.SO_KEEPALIVE))

    def set_keep_alive_enabled(self, value: bool) -> None:
        self._set(socket.SOL_SOCKET, socket.SO_KEEPALIVE, int(bool(value)))

    def keep_alive_idle_time(self) -> int:
        return self._get(socket.IPPROTO_TCP, _TCP_KEEPIDLE) * NANOS

    def set_keep_alive_idle_time(self, value: int) -> None:
        self._option_socket()
        self._set(socket.IPPROTO_TCP, _TCP_KEEPIDLE, _keepalive_seconds(value))

    def keep_alive_interval(self) -> int:
        return self._get(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) * NANOS

    def set_keep_alive_interval(self, value: int) -> None:
        self._option_socket()
        self._set(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, _keepalive_seconds(value))

    def keep_alive_count(self) -> int:
        return self._get(socket.IPPROTO_TCP, socket.TCP_KEEPCNT)

    def set_keep_alive_count(self, value: int) -> None:
        self._option_socket()
        if value == 0:
            raise Err("invalid-argument")
        self._set(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, min(value, MAX_KEEPALIVE_COUNT))

    def hop_limit(self) -> int:
        value = self._get(*hop_limit_option(self.family))
        if not 0 <= value <= 255:
            raise Err("not-supported")
        return value

    def set_hop_limit(self, value: int) -> None:
        self._option_socket()
        if value == 0:  # validated here: the OSes disagree on TTL 0
            raise Err("invalid-argument")
        self._set(*hop_limit_option(self.family), value)

    def receive_buffer_size(self) -> int:
        return get_buffer_size(self._get(socket.SOL_SOCKET, socket.SO_RCVBUF))

    def set_receive_buffer_size(self, value: int) -> None:
        set_buffer_size(self._option_socket(), socket.SO_RCVBUF, value)

    def send_buffer_size(self) -> int:
        return get_buffer_size(self._get(socket.SOL_SOCKET, socket.SO_SNDBUF))

    def set_send_buffer_size(self, value: int) -> None:
        set_buffer_size(self._option_socket(), socket.SO_SNDBUF, value)

    # -- readiness: the socket is the source of its own pollable ---------------------------------
    def subscribe(self) -> Pollable:
        return Pollable(self)

    def poll_ready(self) -> bool:
        if self.state == CONNECTING:
            if self.connect_result is None and not _poll(self.sock.fileno(), select.POLLOUT):
                return False
            self.connect_seen = True
            return True
        if self.state == LISTENING:
            return bool(_poll(self.sock.fileno(), select.POLLIN))
        return True  # nothing else this socket does can block

    def wait_on(self) -> Wait:
        if self.state == CONNECTING:
            return Wait(write_fds=(self.sock.fileno(),))
        if self.state == LISTENING:
            return Wait(read_fds=(self.sock.fileno(),))
        return Wait()

    # -- shutdown and close ----------------------------------------------------------------------
    def shutdown(self, shutdown_type: str) -> None:
        if self.state != CONNECTED or self.source is None or self.sink is None:
            raise Err("invalid-state")
        if shutdown_type in ("receive", "both"):
            self.source.shutdown()
        if shutdown_type in ("send", "both"):
            self.sink.shutdown()

    def _release(self) -> None:
        """Closes the OS socket; the resource stays, in the `closed` state."""
        if self.sink is not None:
            self.sink.detach()
        if self.source is not None:
            self.source.closed = True
        self.sock.close()
        self.state = CLOSED

    def close(self) -> None:
        self._release()
        untrack(self.ctx, self)

    def drop(self) -> None:
        self.close()


def _keepalive_seconds(value: int) -> int:
    if value <= 0:
        raise Err("invalid-argument")
    # clamped to [1 s, the Linux maximum], then whole seconds rounded up (wasmtime: rustix's Duration -> secs)
    return -(-min(max(value, NANOS), MAX_KEEPALIVE_SECONDS * NANOS) // NANOS)


# -- the streams of a connection ----------------------------------------------------------------

class TcpSink(BufferedSink):
    """The output-stream backend of a connection: a bounded buffer drained into the socket.

    `check-write` says how much room is left, so a guest writing to a peer that does not read is held
    at `capacity` bytes. Bytes the kernel could not take at once keep moving without the guest (the
    background flusher), as wasmtime's background writes do, so shutdown(send) loses nothing even when
    the guest then waits on something else. The lock guards the buffer against that flusher.
    """

    capacity = 1 << 20

    def __init__(self, sock: socket.socket):
        super().__init__()
        self.sock = sock
        self.fd = sock.fileno()
        self.closed = False
        self.shutdown_pending = False
        self.lock = threading.RLock()
        self.flushing_in_background = False  # registered with the flusher

    def fileno(self) -> int:
        return self.fd

    def send(self, data: Any) -> int:
        try:
            return self.sock.send(data, _SEND_FLAGS)
        except (BlockingIOError, InterruptedError):
            return 0
        except BrokenPipeError:  # the connection is gone: the stream is closed, not failed (wasmtime)
            self.closed = True
            return 0
        except OSError as e:
            raise StreamFailed(stream_error(e)) from None

    # the methods starting with an underscore are called with the lock held
    def _drain(self) -> None:
        super()._drain()
        if self.shutdown_pending and (not self.buffer or self.error is not None):
            self._shutdown_now()
        self._hand_to_flusher()

    def _hand_to_flusher(self) -> None:
        if self.buffer and not self.closed and self.error is None and not self.flushing_in_background:
            self.flushing_in_background = True
            FLUSHER.add(self)

    def _background_done(self) -> bool:
        """Whether the flusher can forget this sink."""
        if self.buffer and not self.closed and self.error is None:
            return False
        self.flushing_in_background = False
        return True

    def check_write(self) -> int:
        with self.lock:
            if self.closed:
                raise StreamClosed
            n = super().check_write()
            if self.closed:
                raise StreamClosed
            return 0 if self.shutdown_pending else n

    def write(self, data: bytes) -> None:
        with self.lock:
            if self.closed:
                raise StreamClosed
            if self.buffer or self.error is not None:
                super().write(data)
                return
            # nothing queued: hand the bytes to the kernel directly and keep only what it did not take
            try:
                n = self.send(data)
            except StreamFailed as e:
                self.error = e
                return
            if n < len(data) and not self.closed:
                self.buffer += memoryview(data)[n:]
                self._hand_to_flusher()

    def flush(self) -> None:
        with self.lock:
            if self.closed:
                raise StreamClosed
            super().flush()

    def poll_ready(self) -> bool:
        try:
            return self.check_write() > 0
        except (StreamFailed, StreamClosed):
            return True

    def wait_on(self) -> Wait:
        # always the socket: the flusher may empty the buffer between poll_ready and here
        return Wait(write_fds=(self.fd,))

    def shutdown(self) -> None:
        """shutdown(send): FIN once everything already written has gone out."""
        with self.lock:
            if self.closed or self.shutdown_pending:
                return
            self.shutdown_pending = True
            self._drain()

    def _shutdown_now(self) -> None:
        self.shutdown_pending = False
        self.closed = self.error is None  # a failed write stays reported as such
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        """The guest dropped the output stream: like wasmtime, that does not shut the connection down."""

    def detach(self) -> None:
        """The socket is closing: one last try to send what is buffered, then no more."""
        with self.lock:
            if self.buffer and not self.closed and self.error is None:
                BufferedSink._drain(self)
            self.closed = True
            self.buffer = bytearray()
            if self.flushing_in_background:
                FLUSHER.remove(self)
                self.flushing_in_background = False


class _Flusher:
    """One daemon thread sending what sinks hold while the guest is busy elsewhere."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sinks: set[TcpSink] = set()
        self.thread: threading.Thread | None = None
        self.wake_r = self.wake_w = -1  # a pipe that wakes the thread when a sink is added

    def add(self, sink: TcpSink) -> None:
        with self.lock:
            self.sinks.add(sink)
            if self.thread is None:
                self.wake_r, self.wake_w = os.pipe()
                os.set_blocking(self.wake_w, False)
                self.thread = threading.Thread(target=self._run, name="wasitls tcp flusher", daemon=True)
                self.thread.start()
        try:
            os.write(self.wake_w, b"\0")
        except BlockingIOError:
            pass  # already woken

    def remove(self, sink: TcpSink) -> None:
        with self.lock:
            self.sinks.discard(sink)

    def _run(self) -> None:
        while True:
            try:
                self._flush_ready()
            except Exception:  # never let one odd socket stop the flushing of all the others
                time.sleep(0.01)

    def _flush_ready(self) -> None:
        with self.lock:
            sinks = {sink.fd: sink for sink in self.sinks}
        poller = select.poll()
        poller.register(self.wake_r, select.POLLIN)
        for fd in sinks:
            poller.register(fd, select.POLLOUT)
        for fd, _ in poller.poll():
            if fd == self.wake_r:
                os.read(self.wake_r, 4096)
                continue
            sink = sinks[fd]
            with sink.lock:  # the lock order is sink, then flusher, as in add
                if not sink.closed and sink.error is None:
                    sink._drain()
                if sink._background_done():
                    self.remove(sink)


FLUSHER = _Flusher()


class TcpSource:
    """The input-stream backend of a connection: non-blocking recv into bytes of the asked size."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.fd = sock.fileno()
        self.closed = False
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLIN)

    def read(self, n: int) -> bytes:
        if self.closed:
            raise StreamClosed
        if n <= 0:
            return b""
        try:
            data = self.sock.recv(min(n, MAX_READ))
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as e:
            self.closed = True
            raise StreamFailed(stream_error(e)) from None
        if not data:
            self.closed = True
            raise StreamClosed
        return data

    def poll_ready(self) -> bool:
        return self.closed or bool(self.poller.poll(0))

    def wait_on(self) -> Wait:
        return Wait(read_fds=(self.fd,))

    def shutdown(self) -> None:
        """shutdown(receive): the input stream ends here; unread data is discarded."""
        if not self.closed:
            try:
                self.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass
            self.closed = True


class Tcp(HostInterface):
    wit = "wasi:sockets/tcp@0.2.9"
    resources = {"tcp-socket": TcpSocket}

    def __init__(self, ctx: Any = None):
        self.ctx = ctx
