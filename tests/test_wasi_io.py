"""The wasi:io/streams and wasi:io/poll contract, driven from Python over a TCP connection to a real loopback
peer: the blocking helpers, check-write permits and a pollable that is not ready while the peer does not
read (memory stays bounded), and the data path at volume."""

from __future__ import annotations

import threading
import time

import pytest

from sockets_helpers import TIMEOUT, block, connect, make, recv_all, server, write_all
from wasitls.wasi.sockets.tcp import TcpSink

pytestmark = pytest.mark.usefixtures("close_guest_sockets")


# -- blocking-write-and-flush, blocking-read ------------------------------------------------------

def test_tcp_blocking_write_and_read():
    g = make()
    def handler(conn):
        conn.sendall(conn.recv(100).upper())
        return conn.recv(1)  # b"" once the guest closes

    port, done = server("ipv4", handler)
    sock, input_stream, output_stream = connect(g, "ipv4", port)
    output_stream.blocking_write_and_flush(b"ping")
    assert input_stream.blocking_read(100) == b"PING"
    sock.drop()
    assert done.result(TIMEOUT) == b""


# -- backpressure and throughput ----------------------------------------------------------------

def test_backpressure_bounds_memory():
    g = make()
    release = threading.Event()
    total = 10 * 1024 * 1024

    def handler(conn):
        release.wait(TIMEOUT)
        return recv_all(conn)

    port, done = server("ipv4", handler, rcvbuf=65536)
    sock, input_stream, output_stream = connect(g, "ipv4", port)
    sock.set_send_buffer_size(65536)
    payload = (bytes(range(256)) * (total // 256 + 1))[:total]

    written = 0
    while written < total:
        permit = output_stream.check_write()
        if permit == 0:
            break
        n = min(permit, 256 * 1024, total - written)
        output_stream.write(payload[written:written + n])
        written += n
    assert output_stream.check_write() == 0  # the peer does not read: the guest must wait
    assert written < 4 * 1024 * 1024  # what the kernel holds plus our bounded buffer
    assert len(output_stream.sink.buffer) <= TcpSink.capacity
    assert not output_stream.subscribe().ready()

    release.set()
    write_all(output_stream, payload[written:])
    sock.shutdown("send")
    received = done.result(TIMEOUT)
    assert len(received) == total and received == payload
    sock.drop()


def test_throughput_both_directions():
    """Moves 64 MiB each way through the streams; a guard against per-byte work on the data path."""
    g = make()
    size = 64 * 1024 * 1024
    chunk = b"\xab" * (1 << 20)

    def handler(conn):
        received = 0
        while received < size:
            received += len(conn.recv(1 << 20))
        for _ in range(size // len(chunk)):
            conn.sendall(chunk)
        return received

    port, done = server("ipv4", handler)
    sock, input_stream, output_stream = connect(g, "ipv4", port)
    start = time.perf_counter()
    write_all(output_stream, b"\0" * size)
    received = 0
    pollable = input_stream.subscribe()
    while received < size:
        data = input_stream.read(1 << 20)
        if data:
            received += len(data)
        else:
            block(pollable)
    elapsed = time.perf_counter() - start
    assert done.result(TIMEOUT) == size and received == size
    assert elapsed < 20, f"128 MiB through loopback took {elapsed:.1f}s"
    sock.drop()


# -- write-zeroes: the guest-chosen length is checked before anything is allocated -------------

def test_write_zeroes_beyond_the_permit_traps_before_allocating():
    """Issue 10 (found since): write-zeroes and blocking-write-zeroes-and-flush used to build
    bytes(len) from the guest's u64 first (2^40: a terabyte; 2^64-1: OverflowError). Writing more
    than permitted is a trap with one line, as for write; within the permit the zeroes arrive."""
    from wasitls.component.values import Trap

    g = make()
    port, done = server("ipv4", recv_all)
    sock, input_stream, output_stream = connect(g, "ipv4", port)
    for length in (1 << 40, (1 << 64) - 1):
        with pytest.raises(Trap, match="write-zeroes of .* exceeds the .* check-write permitted"):
            output_stream.write_zeroes(length)
        with pytest.raises(Trap, match="blocking-write-zeroes-and-flush of .* exceeds the 4096-byte limit"):
            output_stream.blocking_write_zeroes_and_flush(length)
    output_stream.write_zeroes(3)
    output_stream.blocking_write_zeroes_and_flush(4096)
    sock.shutdown("send")
    assert done.result(TIMEOUT) == bytes(4099)
    sock.drop()
