"""Lengths a guest chooses are bounded before the host allocates (issue 10, F10).

A guest asks wasi:random for up to 2**64 - 1 bytes. The runtime refuses a list no 32-bit memory can
hold before anything is built, and fills a byte producer (what the random interfaces return)
straight into guest memory once the guest's realloc made room, so a request the guest's memory
cannot receive costs the host nothing. Measured with tracemalloc: allocations, not time.
"""

from __future__ import annotations

import tracemalloc

import pytest

from test_component_runtime import ENGINES, Recorder, instantiate, load
from wasitls.component.canonical import MAX_LIST_BYTES, list_length
from wasitls.component.errors import GuestTrap
from wasitls.component.linker import HostLinker
from wasitls.component.values import Trap
from wasitls.wasi.random.insecure import Insecure
from wasitls.wasi.random.random import Random, RandomBytes

FUNCS = ["random", "insecure"]


def random_guest(engine: str):
    linker = HostLinker()
    linker.register(Random())
    linker.register(Insecure())
    return load(engine, "random-bytes").instantiate(linker)


def peak_during(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("func", FUNCS)
def test_random_bytes_reach_the_guest(engine, func):
    inst = random_guest(engine)
    assert inst.call(None, func, 0) == 0
    assert inst.call(None, func, 1000) == 1000
    assert inst.call(None, func, 200_000) == 200_000  # grows the guest's memory


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("n", [2**32, 2**40, 2**63 - 1, 2**63, 2**64 - 1])
def test_lengths_past_a_32_bit_memory_trap_before_anything_is_built(engine, func, n):
    inst = random_guest(engine)
    info = None

    def call():
        nonlocal info
        with pytest.raises(GuestTrap) as info:
            inst.call(None, func, n)

    assert peak_during(call) < 1 << 20
    message = str(info.value)
    assert "exceeds the 4 GiB a guest memory can hold" in message, message
    assert "\n" not in message and "OverflowError" not in message


@pytest.mark.parametrize("func", FUNCS)
def test_lengths_the_guest_memory_cannot_receive_cost_the_host_nothing(func):
    # 1 GiB and 4 GiB - 1 fit the canonical ABI's bound, but this guest's memory stops at 1 MiB: its
    # realloc traps, and no byte was made on the host
    for n in (2**30, MAX_LIST_BYTES):
        inst = random_guest("fast")
        info = None

        def call():
            nonlocal info
            with pytest.raises(GuestTrap) as info:
                inst.call(None, func, n)

        assert peak_during(call) < 1 << 20
        assert "unreachable" in str(info.value)


def test_host_lists_are_checked_before_realloc():
    # a host reply as long as no memory holds: refused before the guest's allocator is asked
    host = Recorder()
    host.reply = RandomBytes(2**32, lambda k: bytes(k))
    inst = instantiate("fast", "lists", host)
    with pytest.raises(GuestTrap, match="exceeds the 4 GiB"):
        inst.call(None, "bytes", b"x")


def test_list_length():
    assert list_length(b"abc", 1) == 3
    assert list_length(range(2**30 - 1), 4) == 2**30 - 1
    with pytest.raises(Trap, match="1073741824 elements of 4 bytes"):
        list_length(range(2**30), 4)
    with pytest.raises(Trap, match="over 2\\*\\*63 elements"):
        list_length(RandomBytes(2**64 - 1, bytes), 1)


def test_random_bytes_fill_in_chunks():
    made = []

    def source(k):
        made.append(k)
        return bytes([7]) * k

    buffer = bytearray(150_000)
    assert RandomBytes(len(buffer), source).readinto(memoryview(buffer)) == len(buffer)
    assert buffer == bytes([7]) * len(buffer) and max(made) <= 1 << 16
    assert bytes(RandomBytes(5, source)) == bytes([7]) * 5
