"""wasi:random/random@0.2.9: the host's CSPRNG."""

from __future__ import annotations

import os
from typing import Any, Callable

from ...component.linker import HostInterface

_CHUNK = 1 << 16  # bytes made at a time while filling guest memory


class RandomBytes:
    """`len` bytes from `source`, made only when the runtime fills them into guest memory.

    A byte producer (`__len__` and `readinto`): the guest chooses `len`, up to 2**64 - 1, and the
    runtime refuses a length its memory cannot receive before any byte is made.
    """

    def __init__(self, length: int, source: Callable[[int], bytes]):
        self.length = length
        self.source = source

    def __len__(self) -> int:
        return self.length  # OverflowError past 2**63: the runtime turns it into a trap

    def readinto(self, buffer: memoryview) -> int:
        for start in range(0, len(buffer), _CHUNK):
            end = min(start + _CHUNK, len(buffer))
            buffer[start:end] = self.source(end - start)
        return len(buffer)

    def __bytes__(self) -> bytes:  # for engines that copy values rather than fill memory
        buffer = bytearray(len(self))
        self.readinto(memoryview(buffer))
        return bytes(buffer)


class Random(HostInterface):
    wit = "wasi:random/random@0.2.9"

    def __init__(self, ctx: Any = None):
        self.ctx = ctx

    def get_random_bytes(self, len: int) -> RandomBytes:
        return RandomBytes(len, os.urandom)

    def get_random_u64(self) -> int:
        return int.from_bytes(os.urandom(8), "little")
